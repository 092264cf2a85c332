FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]
RUN <<EOT
echo in heredoc
exit 5
EOT

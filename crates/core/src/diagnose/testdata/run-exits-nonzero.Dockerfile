FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]
# build it
RUN echo one && \
    echo two && \
    exit 3
RUN echo never

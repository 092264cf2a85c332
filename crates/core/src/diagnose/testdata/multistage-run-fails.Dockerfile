ARG BASE=scratch
FROM ${BASE} AS tools
COPY busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]

FROM tools
# comment
RUN echo stage two \
  && false

FROM 127.0.0.1:5999/base:1.0
RUN true

FROM nosuchimage:1.0
RUN true

FROM 127.0.0.1:5056/nosuch/base:1.0
RUN true

#!/bin/sh
# The image's entry point: greet, and prove the image has a working shell.
echo "hello from jobforge, running on $(uname -s)"

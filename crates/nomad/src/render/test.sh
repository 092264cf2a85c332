# jobforge test task (runs as `sh -c` in the image under test, after decode.sh, with the names
# of the job's `test.env` variables as its arguments). Constant text: the test command arrives
# encoded in JF_TEST_COMMAND and each `test.env` value encoded under its own name; decode
# them, then run the command as `sh -c COMMAND` would: same `$0`, no arguments, no variable
# or function of this wrapper left behind. Variables from Vault templates are not encoded and
# not among the arguments.
while [ "$#" -gt 0 ]; do
    jf_decode "$1"
    shift
done
jf_decode JF_TEST_COMMAND
# The command is expanded into eval's text before eval runs, so the unset cannot touch it.
eval "unset -f jf_decode; unset JF_TEST_COMMAND
$JF_TEST_COMMAND"

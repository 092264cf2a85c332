# jobforge's Nomad task scripts all begin with this (render.rs puts it in front of each).
#
# Nomad rewrites a dollar-brace variable reference in every task `Env` value, with no escape,
# and evaluates its driver config (where these scripts are) as an HCL template, where a
# dollar-brace or a percent-brace starts an expression. So each caller's value is put in `Env`
# encoded (render.rs `encode`: `\` as `\\`, `$` as `\0044`, a newline as `\0012`), and this
# text, like every script after it, holds neither sequence, not even in a comment.
#
# jf_decode NAME: replace the encoded value of the variable NAME with the value it stands for.
# printf's %b turns the escapes back into bytes; the x keeps trailing newlines through $(...),
# and the eval strips it with the dollar-brace spelled in two quoted halves.
jf_decode() {
    case $1 in
        '' | [0-9]* | *[!A-Za-z0-9_]*) printf 'jobforge: %s is not a variable name\n' "$1" >&2; exit 125 ;;
    esac
    set -- "$1" "$(eval "printf '%bx' \"\$$1\"")"
    eval "$1="'"$''{2%x}"'
}

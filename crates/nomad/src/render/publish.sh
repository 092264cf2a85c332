# jobforge publish task (runs as `sh -c` in the buildah image, after decode.sh): pull the
# tested temp image by digest, tag it for every target, push each. Constant text; values come
# from the environment, the caller's encoded and decoded first. Every value that follows a
# tool's options comes after `--`.
#
# Encoded: JF_SOURCE (the temp image by digest) JF_SOURCE_REGISTRY JF_TARGETS
# (space-separated references) JF_TARGET_REGISTRY. Plain: JF_SOURCE_TLS_VERIFY
# JF_TARGET_TLS_VERIFY; from templates (only when the job names the secret):
# JF_SOURCE_USERNAME JF_SOURCE_PASSWORD JF_TARGET_USERNAME JF_TARGET_PASSWORD.
#
# The templates' variables may be missing: read them while an unset variable still reads as
# empty, before `set -u`.
source_username=$JF_SOURCE_USERNAME
source_password=$JF_SOURCE_PASSWORD
target_username=$JF_TARGET_USERNAME
target_password=$JF_TARGET_PASSWORD
set -eu
# One stream keeps the order: Nomad ships stdout and stderr apart, and a diagnosis reads the
# tool's error after the step that printed it.
exec 2>&1
say() { printf '==> %s\n' "$*"; }
for name in JF_SOURCE JF_SOURCE_REGISTRY JF_TARGETS JF_TARGET_REGISTRY; do
    jf_decode "$name"
done
auth="$NOMAD_SECRETS_DIR/auth.json"
login() {
    [ -n "$2" ] || return 0
    printf '%s' "$3" | buildah login --tls-verify="$4" --authfile "$auth" --username="$2" --password-stdin -- "$1" >/dev/null
}
login "$JF_SOURCE_REGISTRY" "$source_username" "$source_password" "$JF_SOURCE_TLS_VERIFY"
login "$JF_TARGET_REGISTRY" "$target_username" "$target_password" "$JF_TARGET_TLS_VERIFY"
set --
[ -f "$auth" ] && set -- --authfile "$auth"

say "pulling $JF_SOURCE"
image=$(buildah pull --quiet --tls-verify="$JF_SOURCE_TLS_VERIFY" "$@" -- "docker://$JF_SOURCE")
for target in $JF_TARGETS; do
    say "pushing $target"
    buildah tag -- "$image" "$target"
    buildah push --tls-verify="$JF_TARGET_TLS_VERIFY" "$@" -- "$target" "docker://$target"
done

# jobforge publish task (runs as `sh -c` in the buildah image): pull the tested temp image by
# digest, tag it for every target, push each. Constant text; values come from the environment.
#
# JF_SOURCE (the temp image by digest) JF_SOURCE_REGISTRY JF_SOURCE_TLS_VERIFY JF_TARGETS
# (space-separated references) JF_TARGET_REGISTRY JF_TARGET_TLS_VERIFY; from templates:
# JF_SOURCE_USERNAME JF_SOURCE_PASSWORD JF_TARGET_USERNAME JF_TARGET_PASSWORD.
set -eu
# One stream keeps the order: Nomad ships stdout and stderr apart, and a diagnosis reads the
# tool's error after the step that printed it.
exec 2>&1
say() { printf '==> %s\n' "$*"; }
auth="$NOMAD_SECRETS_DIR/auth.json"
login() {
    [ -n "$2" ] || return 0
    printf '%s' "$3" | buildah login --tls-verify="$4" --authfile "$auth" --username "$2" --password-stdin "$1" >/dev/null
}
login "$JF_SOURCE_REGISTRY" "${JF_SOURCE_USERNAME:-}" "${JF_SOURCE_PASSWORD:-}" "$JF_SOURCE_TLS_VERIFY"
login "$JF_TARGET_REGISTRY" "${JF_TARGET_USERNAME:-}" "${JF_TARGET_PASSWORD:-}" "$JF_TARGET_TLS_VERIFY"
[ -f "$auth" ] || auth=""

say "pulling $JF_SOURCE"
image=$(buildah pull --quiet --tls-verify="$JF_SOURCE_TLS_VERIFY" ${auth:+--authfile "$auth"} "docker://$JF_SOURCE")
for target in $JF_TARGETS; do
    say "pushing $target"
    buildah tag "$image" "$target"
    buildah push --tls-verify="$JF_TARGET_TLS_VERIFY" ${auth:+--authfile "$auth"} "$target" "docker://$target"
done

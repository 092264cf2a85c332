# jobforge build task (runs as `sh -c` in the buildah image). Constant text: every value
# comes from the environment, set in the job's Env or by its Vault templates, never spliced in.
#
# JF_REPO_URL JF_GIT_REF JF_GIT_REF_IS_COMMIT JF_DOCKERFILE JF_CONTEXT JF_IMAGE JF_REGISTRY
# JF_TLS_VERIFY JF_NO_CACHE JF_BUILD_ARG_<NAME>; from templates: JF_GIT_USERNAME
# JF_GIT_PASSWORD JF_REGISTRY_USERNAME JF_REGISTRY_PASSWORD.
set -eu
# One stream keeps the order: Nomad ships stdout and stderr apart, and a diagnosis reads the
# tool's error after the step that printed it.
exec 2>&1
say() { printf '==> %s\n' "$*"; }
src="$NOMAD_TASK_DIR/src"
rm -rf "$src"
git init --quiet "$src"
cd "$src"
git config remote.origin.url "$JF_REPO_URL"
if [ -n "${JF_GIT_USERNAME:-}" ]; then
    # The helper reads the credentials from the environment when git asks for them.
    git config credential.helper '!f() { test "$1" = get || exit 0; printf "username=%s\npassword=%s\n" "$JF_GIT_USERNAME" "$JF_GIT_PASSWORD"; }; f'
fi
say "fetching $JF_GIT_REF from $JF_REPO_URL"
if ! git fetch --depth 1 --no-tags origin "$JF_GIT_REF"; then
    if [ "$JF_GIT_REF_IS_COMMIT" != true ]; then
        # When the ref is not there, the branches the remote does have make the hint.
        say "branches of the remote"
        git ls-remote --heads origin || true
        exit 1
    fi
    say "the server refused a shallow fetch of a commit; fetching everything"
    git fetch --no-tags origin
fi
target=FETCH_HEAD
if [ "$JF_GIT_REF_IS_COMMIT" = true ]; then target="$JF_GIT_REF"; fi
git -c advice.detachedHead=false checkout --quiet --detach "$target"

inside() {
    resolved=$(realpath -e -- "$2" 2>/dev/null) || { echo "$1: \"$2\" does not exist in the repository" >&2; exit 1; }
    case "$resolved/" in
        "$src"/*) ;;
        *) echo "$1: \"$2\" leads outside the repository (through a symbolic link)" >&2; exit 1 ;;
    esac
}
inside dockerfile_path "$JF_DOCKERFILE"
inside context "$JF_CONTEXT"

set -- --isolation chroot --layers --file "$JF_DOCKERFILE" --tag "$JF_IMAGE"
[ "$JF_NO_CACHE" = true ] && set -- "$@" --no-cache
for name in $(env | sed -n 's/^JF_BUILD_ARG_\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p'); do
    set -- "$@" --build-arg "$name=$(printenv "JF_BUILD_ARG_$name")"
done
say "buildah bud $JF_DOCKERFILE"
buildah bud "$@" "$JF_CONTEXT"

auth=""
if [ -n "${JF_REGISTRY_USERNAME:-}" ]; then
    auth="$NOMAD_SECRETS_DIR/auth.json"
    printf '%s' "$JF_REGISTRY_PASSWORD" | buildah login --tls-verify="$JF_TLS_VERIFY" --authfile "$auth" \
        --username "$JF_REGISTRY_USERNAME" --password-stdin "$JF_REGISTRY" >/dev/null
fi
say "pushing $JF_IMAGE"
buildah push --tls-verify="$JF_TLS_VERIFY" ${auth:+--authfile "$auth"} "$JF_IMAGE" "docker://$JF_IMAGE"

# jobforge build task (runs as `sh -c` in the buildah image, after decode.sh). Constant text:
# every value comes from the environment, set in the job's Env or by its Vault templates, never
# spliced in; the caller's values arrive encoded and are decoded first. Every value that
# follows a tool's options comes after `--`, or is one the script made itself.
#
# Encoded: JF_REPO_URL JF_GIT_REF JF_DOCKERFILE JF_CONTEXT JF_IMAGE JF_REGISTRY and
# JF_BUILD_ARG_<NAME> for each NAME in JF_BUILD_ARG_NAMES (space-separated). Plain:
# JF_GIT_REF_IS_COMMIT JF_TLS_VERIFY JF_NO_CACHE; from templates (only when the job names the
# secret): JF_GIT_USERNAME JF_GIT_PASSWORD JF_REGISTRY_USERNAME JF_REGISTRY_PASSWORD.
#
# The templates' variables may be missing: read them while an unset variable still reads as
# empty, before `set -u`.
git_username=$JF_GIT_USERNAME
registry_username=$JF_REGISTRY_USERNAME
registry_password=$JF_REGISTRY_PASSWORD
set -eu
# One stream keeps the order: Nomad ships stdout and stderr apart, and a diagnosis reads the
# tool's error after the step that printed it.
exec 2>&1
say() { printf '==> %s\n' "$*"; }
for name in JF_REPO_URL JF_GIT_REF JF_DOCKERFILE JF_CONTEXT JF_IMAGE JF_REGISTRY; do
    jf_decode "$name"
done
src="$NOMAD_TASK_DIR/src"
rm -rf -- "$src"
git init --quiet -- "$src"
cd "$src"
git config -- remote.origin.url "$JF_REPO_URL"
if [ -n "$git_username" ]; then
    # The helper reads the credentials from the environment when git asks for them.
    git config credential.helper '!f() { test "$1" = get || exit 0; printf "username=%s\npassword=%s\n" "$JF_GIT_USERNAME" "$JF_GIT_PASSWORD"; }; f'
fi
say "fetching $JF_GIT_REF from $JF_REPO_URL"
if ! git fetch --depth 1 --no-tags -- origin "$JF_GIT_REF"; then
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
# checkout takes a revision only among its options; the full hash rev-parse answers is one
# that cannot be taken for an option.
commit=$(git rev-parse --verify --quiet --end-of-options "$target^{commit}") || {
    echo "git_ref: $JF_GIT_REF is not a commit of the repository" >&2
    exit 1
}
git -c advice.detachedHead=false checkout --quiet --detach "$commit"

inside() {
    resolved=$(realpath -e -- "$2" 2>/dev/null) || { echo "$1: \"$2\" does not exist in the repository" >&2; exit 1; }
    case "$resolved/" in
        "$src"/*) ;;
        *) echo "$1: \"$2\" leads outside the repository (through a symbolic link)" >&2; exit 1 ;;
    esac
}
inside dockerfile_path "$JF_DOCKERFILE"
inside context "$JF_CONTEXT"

set -- --isolation chroot --layers --file="$JF_DOCKERFILE" --tag="$JF_IMAGE"
[ "$JF_NO_CACHE" = true ] && set -- "$@" --no-cache
for name in $JF_BUILD_ARG_NAMES; do
    jf_decode "JF_BUILD_ARG_$name"
    eval "set -- \"\$@\" --build-arg \"\$name=\$JF_BUILD_ARG_$name\""
done
say "buildah bud $JF_DOCKERFILE"
buildah bud "$@" -- "$JF_CONTEXT"

set -- --tls-verify="$JF_TLS_VERIFY"
if [ -n "$registry_username" ]; then
    auth="$NOMAD_SECRETS_DIR/auth.json"
    printf '%s' "$registry_password" | buildah login --tls-verify="$JF_TLS_VERIFY" --authfile "$auth" \
        --username="$registry_username" --password-stdin -- "$JF_REGISTRY" >/dev/null
    set -- "$@" --authfile "$auth"
fi
say "pushing $JF_IMAGE"
# The digest buildah pushed is what gets tested and published, whatever the tag names later:
# jobforge reads this file from the allocation.
buildah push "$@" --digestfile="$NOMAD_TASK_DIR/digest" -- "$JF_IMAGE" "docker://$JF_IMAGE"

#!/usr/bin/env bash
# The example job's steps as a person would run them, with the same tools and flags jobforge
# uses: the baseline of the pipeline benchmark. Not a product script.
#
# env: REPO_URL STORAGE RUNROOT PODMAN_TMP REGISTRY IMAGE TAGS TEST1 TEST2 WORK
set -euo pipefail
B=(buildah --root "$STORAGE" --runroot "$RUNROOT" --storage-driver overlay)
P=(podman --root "$STORAGE" --runroot "$RUNROOT" --storage-driver overlay --runtime runc --tmpdir "$PODMAN_TMP" --events-backend file)
TEMP="$REGISTRY/temp/$(basename "$WORK"):latest"

git init --quiet "$WORK/src"
git -C "$WORK/src" config remote.origin.url "$REPO_URL"
git -C "$WORK/src" fetch --quiet --depth 1 --no-tags origin main
git -C "$WORK/src" -c advice.detachedHead=false checkout --quiet --detach FETCH_HEAD
BUILDAH_ISOLATION=chroot "${B[@]}" bud --quiet --isolation chroot --layers --file "$WORK/src/Dockerfile" --tag "$TEMP" "$WORK/src" >/dev/null
"${B[@]}" push --quiet --tls-verify=false --digestfile "$WORK/digest" "$TEMP" "docker://$TEMP"
DIGEST=$(cat "$WORK/digest")
PINNED="$REGISTRY/temp/$(basename "$WORK")@$DIGEST"
for test in "$TEST1" "$TEST2"; do
    "${P[@]}" run --rm --quiet --init --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        --tls-verify=false "$PINNED" sh -c "$test" >/dev/null &
done
wait
for tag in $TAGS; do
    skopeo copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
        "docker://$PINNED" "docker://$REGISTRY/$IMAGE:$tag"
done

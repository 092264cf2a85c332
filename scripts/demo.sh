#!/usr/bin/env bash
# The main job, end to end on one machine: install what is missing, build jobforge, start a
# registry on 127.0.0.1:5000 and `jobforge serve` on 127.0.0.1:8080 (local backend, SQLite),
# submit examples/hello/job.yaml and follow it to SUCCEEDED.
#
#   ./scripts/demo.sh          run the demo (as root, or through sudo)
#   ./scripts/demo.sh stop     stop the registry and service it started
source "$(dirname "$0")/lib.sh"
as_root "$@"
trap hand_back_files EXIT

DEMO=/var/tmp/jobforge-demo
REGISTRY=127.0.0.1:5000
SERVICE=http://127.0.0.1:8080

stop() {
    for name in service registry; do
        if [ -f "$DEMO/$name.pid" ]; then
            kill "$(cat "$DEMO/$name.pid")" 2>/dev/null && log "stopped the $name" || true
            rm -f "$DEMO/$name.pid"
        fi
    done
}

if [ "${1:-}" = stop ]; then
    stop
    exit 0
fi

setup
log "building jobforge (release)"
(cd "$REPO_ROOT" && cargo build --release --locked -q -p jobforge-cli)
JOBFORGE="$REPO_ROOT/target/release/jobforge"
mkdir -p "$DEMO"

if curl -sf "http://$REGISTRY/v2/" >/dev/null; then
    log "a registry already answers on $REGISTRY; using it"
else
    log "starting a registry on $REGISTRY (storage in $DEMO/registry)"
    cat >"$DEMO/registry.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $DEMO/registry}, delete: {enabled: true}}
http: {addr: $REGISTRY}
YAML
    nohup docker-registry serve "$DEMO/registry.yml" >"$DEMO/registry.log" 2>&1 &
    echo $! >"$DEMO/registry.pid"
    for _ in $(seq 50); do curl -sf "http://$REGISTRY/v2/" >/dev/null && break; sleep 0.1; done
fi

log "making the example repository $DEMO/hello.git from examples/hello"
rm -rf "$DEMO/hello" "$DEMO/hello.git"
cp -r "$REPO_ROOT/examples/hello" "$DEMO/hello"
cp /bin/busybox "$DEMO/hello/busybox"
git -C "$DEMO/hello" init -q -b main
git -C "$DEMO/hello" add -A
git -C "$DEMO/hello" -c user.name=jobforge-demo -c user.email=demo@localhost commit -qm "the example image"
git clone -q --bare "$DEMO/hello" "$DEMO/hello.git"

if "$JOBFORGE" --url "$SERVICE" health >/dev/null 2>&1; then
    log "jobforge already answers on $SERVICE; using it"
else
    log "starting jobforge serve on $SERVICE (data in $DEMO/data, log in $DEMO/service.log)"
    # The example repository is a local one: the service accepts file:// repositories from
    # this directory only.
    nohup "$JOBFORGE" serve --listen 127.0.0.1:8080 --data-dir "$DEMO/data" --insecure-registry "$REGISTRY" \
        --allow-local-repos "$DEMO" >"$DEMO/service.out" 2>"$DEMO/service.log" &
    echo $! >"$DEMO/service.pid"
    for _ in $(seq 100); do "$JOBFORGE" --url "$SERVICE" health >/dev/null 2>&1 && break; sleep 0.1; done
    "$JOBFORGE" --url "$SERVICE" health
fi

log "submitting examples/hello/job.yaml and following it"
"$JOBFORGE" --url "$SERVICE" submit "$REPO_ROOT/examples/hello/job.yaml" --watch

log "the image is published; look at it with:"
echo "  skopeo inspect --tls-verify=false docker://$REGISTRY/hello:v1"
echo "  podman --runtime runc run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --tls-verify=false $REGISTRY/hello:v1"
echo "  $JOBFORGE history"
echo "the registry and the service keep running; stop them with: $0 stop"

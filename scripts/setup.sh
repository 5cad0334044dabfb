#!/usr/bin/env bash
# Installs everything ferry needs on a Debian 12 host, then builds the release binaries.
# Idempotent: run it as often as you like; it only does what is missing.
#
#   scripts/setup.sh            install prerequisites and build
#   scripts/setup.sh --no-build install prerequisites only
#
# CRIU: Debian 12's criu (3.17) cannot dump on recent kernels, so unless a criu >= 4.2 is
# already on the machine, this installs Debian unstable's criu and its whole library closure
# into a private prefix (FERRY_CRIU_PREFIX, default /opt/ferry/criu) using a private apt state.
# The host's apt configuration is never changed. The wrapper $PREFIX/criu runs CRIU through
# the prefix's own dynamic loader; ferry finds it there (or through $FERRY_CRIU).
set -euo pipefail

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (ferry manages namespaces, cgroups and CRIU)"
here=$(cd "$(dirname "$0")/.." && pwd)
build=1
[ "${1:-}" = "--no-build" ] && build=0

CRIU_PREFIX=${FERRY_CRIU_PREFIX:-/opt/ferry/criu}
export DEBIAN_FRONTEND=noninteractive

# ---- Debian packages -------------------------------------------------------------------------
pkgs=(iptables iproute2 busybox-static e2fsprogs xfsprogs zstd rsync debootstrap tmux tar xz-utils gzip fonts-dejavu-core
      util-linux procps kmod jq gcc libc6-dev postgresql-client redis-tools binutils debian-archive-keyring
      make libaio-dev libcap-dev   # these three build CRIU's zdtm test programs (scripts/zdtm.sh)
      podman runc)                 # the checkpoint benchmark's baseline (runc: Debian's crun has no CRIU)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages present"
fi

# ---- QEMU, for the guest lane (testbed/vm: stock Debian kernels under emulation) ---------------
# Debian 12's qemu-system-x86 (7.2) cannot sit beside a qemu-utils from bookworm-backports (10.x,
# which this project's machine image has): installing it would replace that. So it comes from
# the suite qemu-utils came from, bookworm-backports through a private apt list (the host's apt
# sources are never changed; only new packages are installed).
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    case "$utils" in
        *bpo12*)
            log "installing qemu-system-x86 from bookworm-backports (beside qemu-utils $utils)"
            uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
            case "$uri" in */debian) ;; *) uri=http://deb.debian.org/debian ;; esac
            qstate=$(mktemp -d /tmp/ferry-qemu-apt.XXXXXX)
            mkdir -p "$qstate/lists/partial" "$qstate/cache/archives/partial"
            for s in bookworm bookworm-updates bookworm-backports; do
                echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $s main"
            done > "$qstate/sources.list"
            echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${uri%/debian}/debian-security bookworm-security main" >> "$qstate/sources.list"
            qopts=(-o "Dir::Etc::SourceList=$qstate/sources.list" -o Dir::Etc::SourceParts=/nonexistent
                   -o "Dir::State::Lists=$qstate/lists" -o "Dir::Cache=$qstate/cache" -o APT::Sandbox::User=root)
            apt-get "${qopts[@]}" -qq update
            apt-get "${qopts[@]}" -qq -y install --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
            rm -rf "$qstate"
            ;;
        *)
            log "installing qemu-system-x86"
            apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
            ;;
    esac
    command -v qemu-system-x86_64 >/dev/null 2>&1 || die "qemu-system-x86_64 is still missing after installing qemu-system-x86"
else
    log "QEMU present: $(qemu-system-x86_64 --version | head -n1)"
fi

# ---- CRIU >= 4.2 ------------------------------------------------------------------------------
# scripts/install-criu.sh (also shipped in the Debian package as /usr/lib/ferry/install-criu).
FERRY_CRIU_PREFIX=$CRIU_PREFIX bash "$here/scripts/install-criu.sh" || die "installing CRIU failed"

# ---- Rust toolchain, cargo-fuzz and build -------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (rustup) first"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    log "installing cargo-fuzz (the protocol's fuzz targets)"
    cargo install cargo-fuzz --locked --quiet
fi
if [ "$build" = 1 ]; then
    log "building release binaries"
    (cd "$here" && cargo build --release --bins --quiet)
    log "binaries in $here/target/release: vzctl vzlist vzpkg"
fi
log "done"

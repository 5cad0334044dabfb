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
CRIU_MIN=4.2
export DEBIAN_FRONTEND=noninteractive

# ---- Debian packages -------------------------------------------------------------------------
pkgs=(iptables iproute2 busybox-static e2fsprogs xfsprogs zstd rsync debootstrap tmux tar xz-utils gzip fonts-dejavu-core
      util-linux procps kmod jq gcc libc6-dev postgresql-client redis-tools binutils debian-archive-keyring
      make libaio-dev libcap-dev)  # these three build CRIU's zdtm test programs (scripts/zdtm.sh)
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
version_ok() { # $1 = a criu binary; true when its version is >= CRIU_MIN
    local v
    v=$("$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)
    [ -n "$v" ] || return 1
    [ "$(printf '%s\n%s\n' "$CRIU_MIN" "$v" | sort -V | head -n1)" = "$CRIU_MIN" ]
}

criu_found=""
if [ -n "${FERRY_CRIU:-}" ] && version_ok "$FERRY_CRIU"; then
    criu_found=$FERRY_CRIU
elif [ -x "$CRIU_PREFIX/criu" ] && version_ok "$CRIU_PREFIX/criu"; then
    criu_found=$CRIU_PREFIX/criu
elif command -v criu >/dev/null 2>&1 && version_ok "$(command -v criu)"; then
    criu_found=$(command -v criu)
fi

if [ -n "$criu_found" ]; then
    log "CRIU present: $criu_found ($("$criu_found" --version | sed -n 's/^Version: *//p'))"
else
    log "installing CRIU >= $CRIU_MIN from Debian unstable into $CRIU_PREFIX (private apt state)"
    # The archive's address is taken from the host's own apt sources, so a local mirror or
    # proxy configured there is used here too.
    uri=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        u=$(awk '/^URIs:/{print $2; exit}' "$f")
        case "$u" in */debian) uri=$u; break ;; esac
    done
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || die "no Debian archive found in /etc/apt sources to fetch criu from"
    state=$(mktemp -d /tmp/ferry-criu-apt.XXXXXX)
    trap 'rm -rf "$state"' EXIT
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc"
    : > "$state/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main" > "$state/etc/sources.list"
    aptopts=(-o "Dir::Etc::SourceList=$state/etc/sources.list" -o Dir::Etc::SourceParts=/nonexistent
             -o "Dir::State::Lists=$state/lists" -o "Dir::State::status=$state/status"
             -o "Dir::Cache=$state/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${aptopts[@]}" -qq update
    apt-get "${aptopts[@]}" -qq -y install --download-only --no-install-recommends criu >/dev/null
    ls "$state"/cache/archives/*.deb >/dev/null 2>&1 || die "apt downloaded no packages for criu"
    staging="$CRIU_PREFIX.new"
    rm -rf "$staging"
    mkdir -p "$staging/root"
    for deb in "$state"/cache/archives/*.deb; do dpkg -x "$deb" "$staging/root"; done
    lib="$CRIU_PREFIX/root/usr/lib/x86_64-linux-gnu:$CRIU_PREFIX/root/lib/x86_64-linux-gnu"
    cat > "$staging/criu" <<WRAP
#!/bin/sh
# ferry: runs Debian unstable's CRIU through its own loader and libraries (see scripts/setup.sh).
exec $CRIU_PREFIX/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path $lib $CRIU_PREFIX/root/usr/sbin/criu "\$@"
WRAP
    chmod 755 "$staging/criu"
    rm -rf "$CRIU_PREFIX"
    mkdir -p "$(dirname "$CRIU_PREFIX")"
    mv "$staging" "$CRIU_PREFIX"
    version_ok "$CRIU_PREFIX/criu" || die "the installed CRIU does not run: $("$CRIU_PREFIX/criu" --version 2>&1 | head -n3)"
    log "CRIU installed: $CRIU_PREFIX/criu ($("$CRIU_PREFIX/criu" --version | sed -n 's/^Version: *//p'))"
fi

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

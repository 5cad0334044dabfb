#!/usr/bin/env bash
# Makes sure a CRIU >= 4.2 is on the machine for ferry. Debian 12's criu (3.17) cannot dump on
# recent kernels, so unless a criu >= 4.2 is already there ($FERRY_CRIU, the prefix, or on
# PATH), this installs Debian unstable's criu and its whole library closure into a private
# prefix (FERRY_CRIU_PREFIX, default /opt/ferry/criu) using a private apt state. The host's apt
# configuration is never changed. The wrapper $PREFIX/criu runs CRIU through the prefix's own
# dynamic loader; ferry finds it there (or through $FERRY_CRIU). Idempotent.
#
# scripts/setup.sh runs it; the Debian package ships it as /usr/lib/ferry/install-criu (its
# postinst names it when no CRIU >= 4.2 is found, and never fetches on its own).
set -euo pipefail

log() { printf 'install-criu: %s\n' "$*"; }
die() { printf 'install-criu: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
CRIU_PREFIX=${FERRY_CRIU_PREFIX:-/opt/ferry/criu}
CRIU_MIN=4.2
export DEBIAN_FRONTEND=noninteractive

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
# ferry: runs Debian unstable's CRIU through its own loader and libraries (see scripts/install-criu.sh).
exec $CRIU_PREFIX/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path $lib $CRIU_PREFIX/root/usr/sbin/criu "\$@"
WRAP
    chmod 755 "$staging/criu"
    rm -rf "$CRIU_PREFIX"
    mkdir -p "$(dirname "$CRIU_PREFIX")"
    mv "$staging" "$CRIU_PREFIX"
    version_ok "$CRIU_PREFIX/criu" || die "the installed CRIU does not run: $("$CRIU_PREFIX/criu" --version 2>&1 | head -n3)"
    log "CRIU installed: $CRIU_PREFIX/criu ($("$CRIU_PREFIX/criu" --version | sed -n 's/^Version: *//p'))"
fi


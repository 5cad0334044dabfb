#!/usr/bin/env bash
# Builds ferry's Debian package with dpkg-deb, then checks it. Idempotent.
#
#   scripts/package.sh                 build release binaries, the package, check it
#   scripts/package.sh --no-cargo      take the binaries already in the target dir
#   scripts/package.sh --check FILE    only check a package built before
#
# Environment:
#   FERRY_PACKAGE_TARGET  cargo's target dir for the release build (default: the guest lane's,
#                         /var/cache/ferry-guests/target, so one release build serves both)
#   FERRY_PACKAGE_OUT     where ferry_VERSION_ARCH.deb goes (default /var/cache/ferry-package)
#
# The package (dpkg-deb rather than cargo-deb: dpkg-deb is on every Debian host, cargo-deb would
# be one more tool to build on a fresh CI machine, and the layout below is all it would write):
#   /usr/sbin/            vzctl vzlist vzmigrate vzagentd vzpkg vzevacuate vzboot
#   /usr/share/man/man8/  one page per command and subcommand (ferry-docs, gzipped)
#   /usr/share/bash-completion/completions/, /usr/share/zsh/vendor-completions/,
#   /usr/share/fish/vendor_completions.d/      completions (ferry-docs)
#   /lib/systemd/system/ferry.service          vzboot at boot and shutdown (enabled by the admin)
#   /usr/lib/ferry/install-criu                the CRIU provisioning (scripts/install-criu.sh)
#   /usr/share/doc/ferry/                      README, docs/*.md, copyright
# Its postinst says whether a CRIU >= 4.2 was found and, if not, names install-criu; it never
# fetches anything on its own.
set -euo pipefail

log() { printf 'package: %s\n' "$*" >&2; }
die() { printf 'package: error: %s\n' "$*" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${FERRY_PACKAGE_TARGET:-/var/cache/ferry-guests/target}
OUT=${FERRY_PACKAGE_OUT:-/var/cache/ferry-package}
BINS=(vzctl vzlist vzmigrate vzagentd vzpkg vzevacuate vzboot)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)
arch=$(dpkg --print-architecture)
deb=$OUT/ferry_${version}_${arch}.deb

# ---- the checks: what a package must hold and say -------------------------------------------
pass=0
fail=0
check() { # check NAME COMMAND...
    if "${@:2}" >/dev/null 2>&1; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        printf 'package: FAIL: %s\n' "$1" >&2
    fi
}
check_package() { # $1 = the .deb
    local f=$1 x
    x=$(mktemp -d /tmp/ferry-package-check.XXXXXX)
    dpkg-deb -x "$f" "$x/root"
    dpkg-deb -e "$f" "$x/DEBIAN"
    local field
    for field in Package Version Architecture Maintainer Depends Description Section Priority; do
        check "control has $field" grep -q "^$field: ." "$x/DEBIAN/control"
    done
    check "the package is ferry $version" grep -qx "Package: ferry" "$x/DEBIAN/control"
    check "its version is $version" grep -qx "Version: $version" "$x/DEBIAN/control"
    local b
    for b in "${BINS[@]}"; do
        check "/usr/sbin/$b is executable" test -x "$x/root/usr/sbin/$b"
        check "$b --version runs" "$x/root/usr/sbin/$b" --version
        check "man page $b.8" test -s "$x/root/usr/share/man/man8/$b.8.gz"
        check "bash completion of $b" test -s "$x/root/usr/share/bash-completion/completions/$b"
        check "zsh completion of $b" test -s "$x/root/usr/share/zsh/vendor-completions/_$b"
        check "fish completion of $b" test -s "$x/root/usr/share/fish/vendor_completions.d/$b.fish"
    done
    check "man page vzctl-set.8 (subcommands get theirs)" test -s "$x/root/usr/share/man/man8/vzctl-set.8.gz"
    check "a man page reads" sh -c "zcat '$x/root/usr/share/man/man8/vzctl.8.gz' | grep -q '^.TH vzctl'"
    check "ferry.service runs vzboot" grep -q "^ExecStart=/usr/sbin/vzboot start" "$x/root/lib/systemd/system/ferry.service"
    check "install-criu is executable" test -x "$x/root/usr/lib/ferry/install-criu"
    check "the docs" test -s "$x/root/usr/share/doc/ferry/README.md"
    check "copyright" test -s "$x/root/usr/share/doc/ferry/copyright"
    check "postinst is executable" test -x "$x/DEBIAN/postinst"
    check "postinst names install-criu" grep -q /usr/lib/ferry/install-criu "$x/DEBIAN/postinst"
    # Nothing beyond the layout above (no build paths, no test binaries).
    local extra
    extra=$(cd "$x/root" && find . ! -type d | grep -Ev '^\./(usr/sbin/|usr/share/man/man8/|usr/share/bash-completion/completions/|usr/share/zsh/vendor-completions/|usr/share/fish/vendor_completions.d/|lib/systemd/system/ferry\.service$|usr/lib/ferry/install-criu$|usr/share/doc/ferry/)' || true)
    check "nothing beyond the layout${extra:+ (found: $extra)}" test -z "$extra"
    check "owned by root" sh -c "dpkg-deb -c '$f' | awk '{print \$2}' | grep -vqx root/root && exit 1 || exit 0"
    rm -rf "$x"
    printf 'test result: %s. %d passed; %d failed (package checks)\n' "$([ $fail = 0 ] && echo ok || echo FAILED)" $pass $fail
    [ $fail = 0 ]
}

if [ "${1:-}" = "--check" ]; then
    [ -f "${2:-}" ] || die "usage: $0 --check FILE.deb"
    check_package "$2"
    exit
fi
cargo=1
[ "${1:-}" = "--no-cargo" ] && cargo=0

# ---- the build ------------------------------------------------------------------------------
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian's dpkg)"
if [ $cargo = 1 ]; then
    log "cargo build --release (target dir $TARGET)"
    (cd "$repo" && CARGO_TARGET_DIR=$TARGET nice -n 10 cargo build --release --quiet --bins -p ferry) \
        || die "cargo build failed"
fi
rel=$TARGET/release
for b in "${BINS[@]}" ferry-docs; do
    [ -x "$rel/$b" ] || die "$rel/$b is missing (run without --no-cargo)"
done

stage=$(mktemp -d /tmp/ferry-package.XXXXXX)
trap 'rm -rf "$stage"' EXIT
root=$stage/ferry
install -d "$root/DEBIAN" "$root/usr/sbin" "$root/usr/share/man/man8" "$root/lib/systemd/system" \
    "$root/usr/lib/ferry" "$root/usr/share/doc/ferry/docs" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d"
for b in "${BINS[@]}"; do
    install -m 755 "$rel/$b" "$root/usr/sbin/$b"
    strip --strip-unneeded "$root/usr/sbin/$b" 2>/dev/null || true
done
"$rel/ferry-docs" "$stage/docs" >/dev/null
for p in "$stage"/docs/man/man8/*.8; do
    gzip -9n < "$p" > "$root/usr/share/man/man8/$(basename "$p").gz"
done
cp "$stage"/docs/completions/bash/* "$root/usr/share/bash-completion/completions/"
cp "$stage"/docs/completions/zsh/* "$root/usr/share/zsh/vendor-completions/"
cp "$stage"/docs/completions/fish/* "$root/usr/share/fish/vendor_completions.d/"
install -m 644 "$repo/dist/systemd/ferry.service" "$root/lib/systemd/system/ferry.service"
install -m 755 "$repo/scripts/install-criu.sh" "$root/usr/lib/ferry/install-criu"
install -m 644 "$repo/README.md" "$root/usr/share/doc/ferry/README.md"
install -m 644 "$repo"/docs/*.md "$root/usr/share/doc/ferry/docs/"
cat > "$root/usr/share/doc/ferry/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ferry

Files: *
License: GPL-2.0-only
 On Debian systems the full text is in /usr/share/common-licenses/GPL-2.
EOF
size=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: ferry
Version: $version
Architecture: $arch
Maintainer: ferry developers <ferry@localhost>
Installed-Size: $size
Depends: libc6, iproute2, iptables, tar, zstd, util-linux, e2fsprogs, xfsprogs
Recommends: debootstrap, busybox-static
Section: admin
Priority: optional
Description: system containers with checkpoint and live migration
 ferry runs OpenVZ-style system containers (vzctl, vzlist, vzmigrate) on
 namespaces, cgroups v1 and v2 and CRIU: user namespaces by default,
 live resource limits, checkpoints, and live migration between hosts with
 open TCP connections kept. It needs CRIU >= 4.2 (install-criu provides it
 where the distribution's is older).
EOF
cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# ferry's postinst: says whether a usable CRIU is there; fetches nothing on its own.
set -e
if [ "$1" = configure ]; then
    ok=""
    for c in "${FERRY_CRIU:-}" /opt/ferry/criu/criu "$(command -v criu || true)"; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        v=$("$c" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)
        [ -n "$v" ] || continue
        if [ "$(printf '%s\n%s\n' 4.2 "$v" | sort -V | head -n1)" = 4.2 ]; then ok="$c ($v)"; break; fi
    done
    if [ -n "$ok" ]; then
        echo "ferry: CRIU found: $ok"
    else
        echo "ferry: no CRIU >= 4.2 found: checkpoints and migration need it; run /usr/lib/ferry/install-criu"
    fi
    echo "ferry: containers start at boot once you run: systemctl enable ferry"
fi
exit 0
EOF
chmod 755 "$root/DEBIAN/postinst"
mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb.new" >/dev/null
mv "$deb.new" "$deb"
log "built $deb ($(du -h "$deb" | cut -f1))"
check_package "$deb"
echo "$deb"

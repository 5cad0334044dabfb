#!/usr/bin/env bash
# Builds (or brings up to date) everything the guest lane needs to boot stock Debian kernels in
# QEMU with ferry inside. Idempotent: it only rebuilds what is missing or out of date.
#
#   testbed/vm/build.sh              build what is missing (kernels, root image, ferry layer)
#   testbed/vm/build.sh --refresh    also fetch the newest kernels of the two suites again
#   testbed/vm/build.sh --no-cargo   do not run cargo; take the binaries already in the target dir
#
# Environment:
#   FERRY_GUEST_CACHE      where everything is kept (default /var/cache/ferry-guests; machine-local)
#   FERRY_GUEST_ROOT_SIZE  size of the (sparse) root image (default 8G; guests write to a snapshot)
#   FERRY_CRIU_PREFIX      the CRIU prefix that scripts/setup.sh installed (default /opt/ferry/criu)
#
# What it makes, below $FERRY_GUEST_CACHE:
#   target/                         cargo's target dir for the release binaries (never /work/main/target)
#   kernels/NAME/vmlinuz, vmlinux (uncompressed, booted via PVH), initrd.img, config, version,
#                lib/modules/VERSION/ (modules decompressed)
#                                   NAME = bookworm (linux-image-amd64, 6.1) or trixie (6.12), fetched
#                                   as packages through a private apt state (apt/NAME/); the host's apt
#                                   configuration is never touched. The initrd is tiny: busybox-static
#                                   loads virtio/ext4 modules, mounts the two disks and switch_roots.
#   rootfs/                         debootstrap bookworm minbase + the tools ferry's tests use
#   images/root.img                 ext4 image (mke2fs -d, no mount) of rootfs/ with both kernels'
#                                   modules; guests boot it read-only (QEMU snapshot), it stays pristine
#   templates/                      a host root where the release vzpkg builds debian-13 (systemd,
#                                   with lighttpd) for the guests' systemd containers
#   layer/, images/layer.img        the cheap last layer: ferry's binaries (bin/), the CRIU prefix
#                                   (criu/), the guest's init (init, inittab), that template
#                                   (templates/) and the Debian package (pkg/, scripts/package.sh);
#                                   rebuilt in a few seconds whenever one changes
#
# Booting: testbed/vm/run.sh; for developers: scripts/guests.sh.
set -euo pipefail

log() { printf 'guest-build: %s\n' "$*" >&2; }
die() { printf 'guest-build: error: %s\n' "$*" >&2; exit 1; }
set -E
trap 'die "line $LINENO: \"$BASH_COMMAND\" failed"' ERR

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CACHE=${FERRY_GUEST_CACHE:-/var/cache/ferry-guests}
ROOT_SIZE=${FERRY_GUEST_ROOT_SIZE:-8G}
CRIU_PREFIX=${FERRY_CRIU_PREFIX:-/opt/ferry/criu}
SUITES=(bookworm trixie)
BINS=(vzctl vzlist vzmigrate vzagentd vzpkg vzevacuate vzboot ferry-lab)
# Packages of the guest's root file system besides minbase: what ferry and its tests run.
ROOT_PKGS=busybox-static,iproute2,iptables,procps,kmod,e2fsprogs,xfsprogs,zstd,xz-utils,util-linux,tmux,jq,iputils-ping,less
# Module trees nobody needs in a guest (keeps the root image small).
PRUNE=(sound drivers/gpu drivers/media drivers/infiniband drivers/staging drivers/iio drivers/comedi
       drivers/isdn drivers/bluetooth drivers/net/wireless drivers/net/can net/bluetooth net/mac80211
       net/wireless)
# Modules the initrd loads (with their dependencies) to mount the root disk.
INITRD_MODS=(virtio_pci virtio_blk ext4 crc32c_generic)

refresh=0
cargo=1
for a in "$@"; do
    case "$a" in
        --refresh) refresh=1 ;;
        --no-cargo) cargo=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$a' (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and the image's file ownership need it)"

# ---- prerequisites: name the package to install, never skip silently ----------------------------
missing=()
export PATH=$PATH:/usr/sbin:/sbin
have() { # have COMMAND: an executable file COMMAND on PATH
    local d IFS=:
    for d in $PATH; do [ -f "$d/$1" ] && [ -x "$d/$1" ] && return 0; done
    return 1
}
need() { have "$1" || missing+=("$2 (for $1)"); }
need qemu-system-x86_64 qemu-system-x86
need debootstrap debootstrap
need mke2fs e2fsprogs
need dpkg-deb dpkg
need apt-get apt
need depmod kmod
need modprobe kmod
need xz xz-utils
need zstd zstd
need gzip gzip
need objcopy binutils
need rsync rsync
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=("debian-archive-keyring (for /usr/share/keyrings/debian-archive-keyring.gpg)")
[ "$cargo" = 0 ] || have cargo || missing+=("a Rust toolchain (cargo; rustup) or pass --no-cargo")
[ -x "$CRIU_PREFIX/criu" ] || missing+=("CRIU in $CRIU_PREFIX (run scripts/setup.sh --no-build)")
if [ ${#missing[@]} -gt 0 ]; then
    printf 'guest-build: error: missing prerequisites:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    printf 'install the Debian packages with: apt-get install --no-install-recommends qemu-system-x86 debootstrap e2fsprogs kmod xz-utils zstd binutils rsync debian-archive-keyring\n' >&2
    printf '(on a host that has qemu-utils from bookworm-backports, qemu-system-x86 must come from bookworm-backports too)\n' >&2
    exit 1
fi

mkdir -p "$CACHE"/{kernels,images,apt,tmp}
exec 9>"$CACHE/.build.lock"
flock -n 9 || { log "another build.sh holds $CACHE/.build.lock; waiting"; flock 9; }

# The Debian archives, taken from the host's apt sources (a local mirror or proxy is used here too).
archive_uri() { # archive_uri debian|debian-security
    local want=$1 u f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        for u in $(awk '/^URIs:/{for (i = 2; i <= NF; i++) print $i}' "$f"); do
            case "${u%/}" in */"$want") echo "${u%/}"; return 0 ;; esac
        done
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        u=$(awk -v w="/$want" '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { u=$i; sub(/\/$/, "", u); if (substr(u, length(u) - length(w) + 1) == w) { print u; exit } } }' "$f")
        [ -n "$u" ] && { echo "$u"; return 0; }
    done
    return 1
}
MIRROR=$(archive_uri debian) || die "no Debian archive (…/debian) in the host's apt sources"
SECURITY=$(archive_uri debian-security || echo "${MIRROR%/debian}/debian-security")
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# ---- 1. ferry's release binaries -----------------------------------------------------------------
TARGET=$CACHE/target
if [ "$cargo" = 1 ]; then
    log "cargo build --release (target dir $TARGET)"
    (cd "$repo" && CARGO_TARGET_DIR=$TARGET nice -n 10 cargo build --release --quiet --bins -p ferry -p ferry-testbed) \
        || die "cargo build failed"
fi
for b in "${BINS[@]}"; do
    [ -x "$TARGET/release/$b" ] || die "$TARGET/release/$b missing (run without --no-cargo)"
done

# ---- 2. kernels ----------------------------------------------------------------------------------
apt_private() { # apt_private SUITE ARGS... : apt-get with a private state for SUITE
    local suite=$1; shift
    local s=$CACHE/apt/$suite
    apt-get -o "Dir::Etc::SourceList=$s/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
        -o "Dir::State::Lists=$s/lists" -o "Dir::State::status=$s/status" -o "Dir::Cache=$s/cache" \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}
apt_cache_private() {
    local suite=$1; shift
    local s=$CACHE/apt/$suite
    apt-cache -o "Dir::Etc::SourceList=$s/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
        -o "Dir::State::Lists=$s/lists" -o "Dir::State::status=$s/status" -o "Dir::Cache=$s/cache" "$@"
}

fetch_kernel() { # fetch_kernel SUITE
    local suite=$1 s=$CACHE/apt/$1 dst=$CACHE/kernels/$1
    log "kernel $suite: fetching linux-image-amd64 ($MIRROR, private apt state $s)"
    mkdir -p "$s/lists/partial" "$s/cache/archives/partial" "$s/debs"
    : > "$s/status"
    {
        echo "deb [signed-by=$KEYRING] $MIRROR $suite main"
        echo "deb [signed-by=$KEYRING] $MIRROR $suite-updates main"
        echo "deb [signed-by=$KEYRING] $SECURITY $suite-security main"
    } > "$s/sources.list"
    apt_private "$suite" -qq update || die "apt-get update for $suite failed (private state $s)"
    local pkg
    pkg=$(apt_cache_private "$suite" show --no-all-versions linux-image-amd64 \
          | sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -n1)
    [ -n "$pkg" ] || die "no linux-image-amd64 in $suite"
    rm -f "$s/debs"/*.deb
    (cd "$s/debs" && apt_private "$suite" -qq download "$pkg") || die "downloading $pkg failed"
    local deb
    deb=$(echo "$s/debs/${pkg}_"*.deb)
    [ -f "$deb" ] || die "apt downloaded no $pkg into $s/debs"
    local x=$CACHE/tmp/kernel-$suite
    rm -rf "$x" "$dst.new"
    mkdir -p "$x" "$dst.new/lib/modules"
    dpkg -x "$deb" "$x"
    local mods="" d
    for d in "$x"/lib/modules/* "$x"/usr/lib/modules/*; do
        if [ -d "$d" ]; then mods=$d; break; fi
    done
    [ -n "$mods" ] || die "$deb holds no modules"
    local ver=${mods##*/}
    cp "$x/boot/vmlinuz-$ver" "$dst.new/vmlinuz"
    cp "$x/boot/config-$ver" "$dst.new/config"
    cp "$x/boot/System.map-$ver" "$dst.new/System.map"
    mv "$mods" "$dst.new/lib/modules/$ver"
    local p
    for p in "${PRUNE[@]}"; do rm -rf "$dst.new/lib/modules/$ver/kernel/$p"; done
    depmod -b "$dst.new" -F "$dst.new/System.map" "$ver" || die "depmod for $ver failed"
    echo "$ver" > "$dst.new/version"
    echo "${deb##*/}" > "$dst.new/package"
    grep -q '^CONFIG_MEM_SOFT_DIRTY=y' "$dst.new/config" || log "warning: $ver has no CONFIG_MEM_SOFT_DIRTY"
    rm -rf "$x" "$dst" "$deb"
    mv "$dst.new" "$dst"
    log "kernel $suite: $ver (${deb##*/})"
}

# Compressed modules (trixie's are .ko.xz) are decompressed once here: the guest's kmod would
# otherwise decompress every module it loads in user space, seconds of each boot under TCG.
decompress_modules() { # decompress_modules SUITE
    local k=$CACHE/kernels/$1 ver
    ver=$(cat "$k/version")
    [ -n "$(find "$k/lib/modules/$ver" \( -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print -quit)" ] || return 0
    log "kernel $1: decompressing its modules"
    find "$k/lib/modules/$ver" -name '*.ko.xz' -print0 | xargs -0 -r xz -d
    find "$k/lib/modules/$ver" -name '*.ko.zst' -print0 | xargs -0 -r zstd -q -d --rm
    find "$k/lib/modules/$ver" -name '*.ko.gz' -print0 | xargs -0 -r gzip -d
    depmod -b "$k" -F "$k/System.map" "$ver" || die "depmod for $ver failed"
}

# The uncompressed ELF vmlinux, taken out of vmlinuz: QEMU boots it through its PVH entry point
# (CONFIG_PVH=y in Debian's kernels), which saves the kernel's self-decompression (6 s of
# bookworm's xz kernel under TCG). run.sh falls back to vmlinuz when there is no vmlinux.
extract_vmlinux() { # extract_vmlinux SUITE
    local k=$CACHE/kernels/$1 off pat
    [ -f "$k/vmlinux" ] && [ "$k/vmlinux" -nt "$k/vmlinuz" ] && return 0
    grep -q '^CONFIG_PVH=y' "$k/config" || { log "kernel $1: no CONFIG_PVH, booting vmlinuz"; return 0; }
    for pat in '\xFD7zXZ\x00' '\x28\xB5\x2F\xFD' '\x1F\x8B\x08'; do
        for off in $(LC_ALL=C grep -obUaP "$pat" "$k/vmlinuz" | cut -d: -f1 || true); do
            case "$pat" in
                *7zXZ*) tail -c +$((off + 1)) "$k/vmlinuz" | xz -dc --single-stream > "$k/vmlinux.new" 2>/dev/null || true ;;
                *B5*) tail -c +$((off + 1)) "$k/vmlinuz" | zstd -qdc > "$k/vmlinux.new" 2>/dev/null || true ;;
                *) tail -c +$((off + 1)) "$k/vmlinuz" | gzip -dc > "$k/vmlinux.new" 2>/dev/null || true ;;
            esac
            if [ "$(head -c 4 "$k/vmlinux.new" | od -An -c | tr -d ' ')" = '177ELF' ]; then
                mv "$k/vmlinux.new" "$k/vmlinux"
                log "kernel $1: vmlinux extracted ($(du -h "$k/vmlinux" | cut -f1))"
                return 0
            fi
        done
    done
    rm -f "$k/vmlinux.new" "$k/vmlinux"
    log "warning: kernel $1: no ELF vmlinux found in vmlinuz; guests boot vmlinuz (slower)"
}

for suite in "${SUITES[@]}"; do
    if [ "$refresh" = 1 ] || [ ! -f "$CACHE/kernels/$suite/version" ]; then
        fetch_kernel "$suite"
    else
        log "kernel $suite: $(cat "$CACHE/kernels/$suite/version") (cached)"
    fi
    decompress_modules "$suite"
    extract_vmlinux "$suite"
done

# ---- 3. the root file system (debootstrap) --------------------------------------------------------
ROOTFS=$CACHE/rootfs
if [ ! -f "$ROOTFS/.ferry-complete" ] || [ "$(cat "$ROOTFS/.ferry-complete")" != "$ROOT_PKGS" ]; then
    log "rootfs: debootstrap bookworm minbase from $MIRROR (a few minutes)"
    rm -rf "$ROOTFS.new"
    debootstrap --variant=minbase --include="$ROOT_PKGS" --keyring="$KEYRING" \
        bookworm "$ROOTFS.new" "$MIRROR" > "$CACHE/tmp/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $CACHE/tmp/debootstrap.log (and $ROOTFS.new/debootstrap/debootstrap.log)"
    r=$ROOTFS.new
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
    echo ferry-guest > "$r/etc/hostname"
    printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > "$r/etc/hosts"
    : > "$r/etc/resolv.conf"
    : > "$r/etc/fstab"
    # busybox init is PID 1 (it reaps orphans such as stopped containers' inits); its inittab and
    # the init script live in the ferry layer (/ferry), so they change without a root image rebuild.
    ln -sfn /ferry/inittab "$r/etc/inittab"
    mkdir -p "$r/ferry" "$r/job" "$r/shared" "$r/opt/ferry/criu" "$r$CRIU_PREFIX" "$r/var/lib/ferry"
    rm -rf "$r/usr/lib/modules" && mkdir -p "$r/usr/lib/modules"
    echo "$ROOT_PKGS" > "$r/.ferry-complete"
    rm -rf "$ROOTFS"
    mv "$r" "$ROOTFS"
    log "rootfs: done ($(du -sh "$ROOTFS" | cut -f1))"
else
    log "rootfs: cached"
fi

# ---- 4. initrds ------------------------------------------------------------------------------------
BUSYBOX=$ROOTFS/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (busybox-static in the rootfs)"
read -r -d '' INITRD_INIT <<'EOF' || true
#!/bin/busybox sh
# ferry guest initrd: load the modules of the root disk, mount it and the ferry layer, switch_root.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "ferry-initrd: $*" > /dev/console; echo o > /proc/sysrq-trigger; sleep 10; exit 1; }
while read -r m; do
    insmod "/modules/$m" 2>/dev/null || grep -q "^$(echo "${m%.ko}" | tr - _) " /proc/modules || echo "ferry-initrd: insmod $m failed" > /dev/console
done < /modules/order
i=0
while [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "no /dev/vda and /dev/vdb after 20 s"
    sleep 0.1
done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount the root disk /dev/vda"
mount -t ext4 -o ro /dev/vdb /newroot/ferry || fail "cannot mount the ferry layer /dev/vdb"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/busybox init
EOF
for suite in "${SUITES[@]}"; do
    k=$CACHE/kernels/$suite
    ver=$(cat "$k/version")
    stamp=$(printf '%s\n' "$ver" "${INITRD_MODS[*]}" "$INITRD_INIT" "$(sha256sum "$BUSYBOX")" | sha256sum | cut -d' ' -f1)
    if [ -f "$k/initrd.img" ] && [ "$(cat "$k/initrd.stamp" 2>/dev/null)" = "$stamp" ]; then
        log "initrd $suite: cached"
        continue
    fi
    w=$CACHE/tmp/initrd-$suite
    rm -rf "$w"; mkdir -p "$w/bin" "$w/modules"
    cp "$BUSYBOX" "$w/bin/busybox"
    printf '%s\n' "$INITRD_INIT" > "$w/init"; chmod 755 "$w/init"
    modprobe -d "$k" -S "$ver" --show-depends -a "${INITRD_MODS[@]}" > "$w/deps" \
        || die "modprobe --show-depends ${INITRD_MODS[*]} failed for $ver"
    : > "$w/modules/order"
    while read -r kind path _; do
        [ "$kind" = insmod ] || continue
        name=${path##*/}; name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
        grep -qx "$name" "$w/modules/order" && continue
        case "$path" in
            *.xz) xz -dc "$path" > "$w/modules/$name" ;;
            *.zst) zstd -qdc "$path" > "$w/modules/$name" ;;
            *.gz) gzip -dc "$path" > "$w/modules/$name" ;;
            *) cp "$path" "$w/modules/$name" ;;
        esac
        echo "$name" >> "$w/modules/order"
    done < "$w/deps"
    rm "$w/deps"
    (cd "$w" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -9 > "$k/initrd.img.new")
    mv "$k/initrd.img.new" "$k/initrd.img"
    echo "$stamp" > "$k/initrd.stamp"
    log "initrd $suite: built (modules: $(sed 's/\.ko$//' "$w/modules/order" | tr '\n' ' '))"
    rm -rf "$w"
done

# ---- 5. the root image: rootfs + both kernels' modules ---------------------------------------------
ROOT_IMG=$CACHE/images/root.img
root_stamp=$( { cat "$ROOTFS/.ferry-complete"; stat -c %Y "$ROOTFS/.ferry-complete"; for s in "${SUITES[@]}"; do cat "$CACHE/kernels/$s/version" "$CACHE/kernels/$s/package"; stat -c %Y "$CACHE/kernels/$s/lib/modules/$(cat "$CACHE/kernels/$s/version")/modules.dep"; done; echo "$ROOT_SIZE"; } | sha256sum | cut -d' ' -f1)
if [ -f "$ROOT_IMG" ] && [ "$(cat "$ROOT_IMG.stamp" 2>/dev/null)" = "$root_stamp" ]; then
    log "root image: cached ($ROOT_IMG)"
else
    log "root image: mke2fs -d $ROOTFS ($ROOT_SIZE, sparse)"
    rm -rf "$ROOTFS/usr/lib/modules"; mkdir -p "$ROOTFS/usr/lib/modules"
    for s in "${SUITES[@]}"; do
        v=$(cat "$CACHE/kernels/$s/version")
        cp -a "$CACHE/kernels/$s/lib/modules/$v" "$ROOTFS/usr/lib/modules/$v"
    done
    rm -f "$ROOT_IMG.new"
    mke2fs -q -F -t ext4 -L ferry-root -d "$ROOTFS" "$ROOT_IMG.new" "$ROOT_SIZE" >/dev/null \
        || die "mke2fs of the root image failed"
    mv "$ROOT_IMG.new" "$ROOT_IMG"
    echo "$root_stamp" > "$ROOT_IMG.stamp"
    log "root image: done ($(du -h "$ROOT_IMG" | cut -f1) used of $ROOT_SIZE)"
fi

# ---- 5b. the systemd template the guests' containers are made from --------------------------------
# Debian 13's built-in recipe (systemd) with lighttpd, built on this host with the release vzpkg
# (debootstrap from the same archive) in a root of its own, again only when the recipe changes.
TPL_ROOT=$CACHE/templates
TPL=debian-13
TPL_PKGS=(lighttpd)
mkdir -p "$TPL_ROOT"
rm -rf "$TPL_ROOT/vz/template/$TPL"
args=(); for p in "${TPL_PKGS[@]}"; do args+=(--add-package "$p"); done
"$TARGET/release/vzpkg" --root-dir "$TPL_ROOT" -q recipe "$TPL" "${args[@]}" >/dev/null || die "vzpkg recipe $TPL failed"
echo "MIRROR=\"$MIRROR\"" >> "$TPL_ROOT/vz/template/$TPL/template.conf"
tpl_stamp=$(cat "$TPL_ROOT/vz/template/$TPL"/* | sha256sum | cut -d' ' -f1)
tpl_cache=$TPL_ROOT/vz/template/cache/$TPL.tar.zst
if [ -f "$tpl_cache" ] && [ "$(cat "$tpl_cache.stamp" 2>/dev/null)" = "$tpl_stamp" ]; then
    log "template $TPL: cached"
else
    log "template $TPL: vzpkg create-cache with ${TPL_PKGS[*]} (debootstrap, a few minutes)"
    rm -f "$tpl_cache.stamp"
    "$TARGET/release/vzpkg" --root-dir "$TPL_ROOT" -q create-cache "$TPL" > "$CACHE/tmp/template.log" 2>&1 \
        || die "vzpkg create-cache $TPL failed; see $CACHE/tmp/template.log"
    echo "$tpl_stamp" > "$tpl_cache.stamp"
    log "template $TPL: built ($(du -h "$tpl_cache" | cut -f1))"
fi
mkdir -p "$CACHE/layer/templates"
cmp -s "$tpl_cache" "$CACHE/layer/templates/$TPL.tar.zst" || cp "$tpl_cache" "$CACHE/layer/templates/$TPL.tar.zst"

# ---- 6. the ferry layer: binaries, CRIU, the guest init ---------------------------------------------
LAYER=$CACHE/layer
LAYER_IMG=$CACHE/images/layer.img
mkdir -p "$LAYER/bin" "$LAYER/criu"
for b in "${BINS[@]}"; do
    # Stripped of their debug info (they are built with debug=1): a quarter of the size.
    if [ ! -f "$LAYER/bin/$b" ] || [ "$TARGET/release/$b" -nt "$LAYER/bin/$b" ]; then
        objcopy --strip-debug "$TARGET/release/$b" "$LAYER/bin/$b.new"
        touch -r "$TARGET/release/$b" "$LAYER/bin/$b.new"
        mv "$LAYER/bin/$b.new" "$LAYER/bin/$b"
    fi
done
rsync -a --delete "$CRIU_PREFIX/" "$LAYER/criu/"
# The Debian package (scripts/package.sh, which checks it), for the guests' suite/package.sh;
# built again only when what goes into it changed.
PKG=$LAYER/pkg
mkdir -p "$PKG"
deb=$(ls "$PKG"/ferry_*.deb 2>/dev/null | head -n1 || true)
pkg_new=$([ -n "$deb" ] && echo 0 || echo 1)
for f in "$TARGET"/release/{vzctl,vzlist,vzmigrate,vzagentd,vzpkg,vzevacuate,vzboot,ferry-docs} \
         "$repo/scripts/package.sh" "$repo/scripts/install-criu.sh" "$repo/dist/systemd/ferry.service"; do
    [ -z "$deb" ] || [ ! "$f" -nt "$deb" ] || pkg_new=1
done
if [ "$pkg_new" = 1 ]; then
    rm -f "$PKG"/ferry_*.deb
    FERRY_PACKAGE_TARGET=$TARGET FERRY_PACKAGE_OUT=$PKG bash "$repo/scripts/package.sh" --no-cargo >&2 \
        || die "scripts/package.sh failed"
else
    log "package: cached ($deb)"
fi
cmp -s "$here/guest-init.sh" "$LAYER/init" || install -m 755 "$here/guest-init.sh" "$LAYER/init"
cat > "$LAYER/inittab.new" <<'EOF'
# ferry guest (busybox init; see testbed/vm/guest-init.sh)
::sysinit:/ferry/init setup
::once:/ferry/init main
::ctrlaltdel:/bin/busybox poweroff -f
EOF
if cmp -s "$LAYER/inittab.new" "$LAYER/inittab"; then rm "$LAYER/inittab.new"; else mv "$LAYER/inittab.new" "$LAYER/inittab"; fi
[ "$(cat "$LAYER/criu-prefix" 2>/dev/null)" = "$CRIU_PREFIX" ] || echo "$CRIU_PREFIX" > "$LAYER/criu-prefix"
layer_stamp=$( (cd "$LAYER" && find . ! -type d -printf '%P %s %T@ %m %l\n' | sort) | sha256sum | cut -d' ' -f1)
if [ -f "$LAYER_IMG" ] && [ "$(cat "$LAYER_IMG.stamp" 2>/dev/null)" = "$layer_stamp" ]; then
    log "ferry layer: cached ($LAYER_IMG)"
else
    kib=$(du -sk "$LAYER" | cut -f1)
    size=$(( (kib * 13 / 10 + 32768) / 1024 ))M
    rm -f "$LAYER_IMG.new"
    mke2fs -q -F -t ext4 -L ferry-layer -d "$LAYER" "$LAYER_IMG.new" "$size" >/dev/null || die "mke2fs of the ferry layer failed"
    mv "$LAYER_IMG.new" "$LAYER_IMG"
    echo "$layer_stamp" > "$LAYER_IMG.stamp"
    log "ferry layer: rebuilt ($LAYER_IMG, $size: ${BINS[*]}, CRIU from $CRIU_PREFIX, init)"
fi
log "ready: kernels ${SUITES[*]}; boot with testbed/vm/run.sh KERNEL SCRIPT"

# The Debian package on a stock Debian 12 guest (scripts/package.sh, built into the ferry layer by
# testbed/vm/build.sh): apt installs it offline, the installed commands, pages and completions are
# there, the installed vzboot starts ONBOOT containers in BOOTORDER and stops them in reverse on
# this kernel, and apt removes it. Needs lib.sh first; uses a host root of its own.
deb=$(ls /ferry/pkg/ferry_*.deb 2>/dev/null | head -n1)
holds "the package is in the ferry layer ($deb)" '[ -f "$deb" ]'
check "apt-get install $(basename "$deb") (no network needed)" \
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb"
same "dpkg has it installed" "install ok installed" "$(dpkg-query -W -f='${Status}' ferry 2>&1)"
for b in vzctl vzlist vzmigrate vzagentd vzpkg vzevacuate vzboot; do
    check "the installed $b runs" "/usr/sbin/$b" --version
done
holds "man pages (vzctl-set.8)" '[ -s /usr/share/man/man8/vzctl-set.8.gz ]'
holds "bash completion" '[ -s /usr/share/bash-completion/completions/vzctl ]'
holds "the boot unit" 'grep -q "^ExecStart=/usr/sbin/vzboot start" /lib/systemd/system/ferry.service'
holds "the CRIU installer" '[ -x /usr/lib/ferry/install-criu ]'

P=/var/lib/ferry-pkg
mkdir -p "$P/etc/vz"
printf 'CGROUP_PARENT="ferrypkg"\nSTOP_TIMEOUT="20"\n' > "$P/etc/vz/vz.conf"
pz() { "/usr/sbin/$1" --root-dir "$P" "${@:2}"; }
check "the installed vzpkg builds the busybox template" pz vzpkg -q create-cache busybox
for c in 201 202; do check "create $c" pz vzctl create "$c"; done
check "201: --onboot yes --bootorder 10" pz vzctl set 201 --onboot yes --bootorder 10 --save
check "202: --onboot yes --bootorder 20" pz vzctl set 202 --onboot yes --bootorder 20 --save
ids() { jq -r '[.[] | "\(.ctid):\(.action):\(.result)"] | join(" ")'; }
same "vzboot start: 202 then 201" "202:start:done 201:start:done" "$(pz vzboot start --json | ids)"
same "both run" "running running" "$(pz vzlist -a -H -o status | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')"
same "vzboot stop: 201 then 202" "201:stop:done 202:stop:done" "$(pz vzboot stop --json | ids)"
same "both stopped" "stopped stopped" "$(pz vzlist -a -H -o status | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')"
for c in 201 202; do pz vzctl destroy "$c" >/dev/null 2>&1; done
check "apt-get remove ferry" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q ferry
holds "its commands are gone" '[ ! -e /usr/sbin/vzctl ] && [ ! -e /usr/sbin/vzboot ]'

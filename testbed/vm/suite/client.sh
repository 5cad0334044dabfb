# The client of the guest lane's migration (runs in the lane's network namespace, on the bridge
# with both guests): one TCP session to the container's echo service, a numbered line every
# 0.2 s, each echo checked, until the guests say they are done (bounded: 3000 lines). Writes
# "ok" or what went wrong to $SHARED/client.result. Then the same for the systemd container's
# lighttpd: one keep-alive connection, a HEAD request every 0.5 s, each answered 200 (bounded:
# 2000 requests), until the guests say sd.done; the result in $SHARED/sd.client.result.
set -u
put() { echo "$2" > "$SHARED/.$1.tmp" && mv "$SHARED/.$1.tmp" "$SHARED/$1"; }
for i in $(seq 1 600); do [ -e "$SHARED/ct.up" ] && break; [ -e "$SHARED/abort" ] && exit 1; sleep 1; done
addr=$(cat "$SHARED/ct.up" 2>/dev/null) || { echo "the container never came up"; exit 1; }
for i in $(seq 1 60); do exec 3<>"/dev/tcp/$addr/7" 2>/dev/null && break; sleep 1; done
{ true >&3; } 2>/dev/null || { put client.result "could not connect to $addr:7"; exit 1; }
put client.connected ""
n=0; worst=0
while [ $n -lt 3000 ] && [ ! -e "$SHARED/done" ] && [ ! -e "$SHARED/abort" ]; do
    t0=$(date +%s%N)
    echo "line $n" >&3
    if ! read -r -t 120 reply <&3; then put client.result "no echo for line $n within 120 s"; exit 1; fi
    [ "$reply" = "line $n" ] || { put client.result "line $n came back as '$reply'"; exit 1; }
    dt=$(( ($(date +%s%N) - t0) / 1000000 )); [ $dt -gt $worst ] && worst=$dt
    n=$((n + 1)); sleep 0.2
done
echo "client: $n lines echoed on one connection, each correct; longest wait $worst ms"
[ $n -gt 10 ] || { put client.result "only $n lines"; exit 1; }
put client.result ok

for i in $(seq 1 900); do [ -e "$SHARED/sd.up" ] && break; [ -e "$SHARED/abort" ] && exit 1; sleep 1; done
addr=$(cat "$SHARED/sd.up" 2>/dev/null) || { echo "the systemd container never came up"; exit 1; }
for i in $(seq 1 60); do exec 4<>"/dev/tcp/$addr/80" 2>/dev/null && break; sleep 1; done
{ true >&4; } 2>/dev/null || { put sd.client.result "could not connect to $addr:80"; exit 1; }
n=0; worst=0
while [ $n -lt 2000 ] && [ ! -e "$SHARED/sd.done" ] && [ ! -e "$SHARED/abort" ]; do
    t0=$(date +%s%N)
    printf 'HEAD / HTTP/1.1\r\nHost: ct\r\n\r\n' >&4
    if ! read -r -t 120 status <&4; then put sd.client.result "no answer to request $n within 120 s"; exit 1; fi
    case "$status" in "HTTP/1.1 200 OK"*) ;; *) put sd.client.result "request $n answered '$status'"; exit 1 ;; esac
    while read -r -t 30 h <&4 && [ "$h" != $'\r' ]; do :; done
    [ $n = 0 ] && put sd.client.connected ""
    dt=$(( ($(date +%s%N) - t0) / 1000000 )); [ $dt -gt $worst ] && worst=$dt
    n=$((n + 1)); sleep 0.5
done
echo "client: $n HTTP requests answered on one keep-alive connection; longest wait $worst ms"
[ $n -gt 10 ] || { put sd.client.result "only $n requests"; exit 1; }
put sd.client.result ok

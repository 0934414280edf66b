#!/bin/sh
# nsqd's entrypoint in the compose demo: find every nsqlookupd through Consul DNS (SRV for the
# ports, then A for each target), wait until $NSQLOOKUPD_COUNT answer, and start nsqd with them.
# Needs only a POSIX sh and busybox nslookup (both in nsqio/nsq and in the test's stand-in image).
# nsqd reads its lookupd list at start; restart nsqd to pick up lookupds added later.
set -eu

dns="${CONSUL_DNS_ADDR:-127.0.0.1}"
port="${CONSUL_DNS_PORT:-8600}"
name="${NSQLOOKUPD_SERVICE:-nsqlookupd}.service.consul"
want="${NSQLOOKUPD_COUNT:-2}"

lookupds() {
  nslookup -type=srv -port="$port" "$name" "$dns" 2>/dev/null |
    awk '/service = / { print $(NF-1), $NF }' |
    while read -r srv_port target; do
      address="$(nslookup -type=a -port="$port" "$target" "$dns" 2>/dev/null |
        awk '/^Name:/ { named = 1 } named && /^Address:/ { print $2; exit }')"
      [ -n "$address" ] && echo "$address:$srv_port"
    done | sort -u
}

while :; do
  found="$(lookupds || true)"
  count="$(printf '%s' "$found" | grep -c . || true)"
  [ "$count" -ge "$want" ] && break
  echo "nsqd-entrypoint: $count of $want nsqlookupd in Consul DNS ($name @ $dns:$port); waiting" >&2
  sleep 1
done

# The address consumers reach nsqd on: the source address of the default route unless given.
broadcast="${NSQD_BROADCAST_ADDRESS:-$(ip route get 1.1.1.1 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }')}"
set -- nsqd --broadcast-address="${broadcast:-$(hostname)}" "$@"
for lookupd in $found; do
  set -- "$@" --lookupd-tcp-address="$lookupd"
done
echo "nsqd-entrypoint: exec $*" >&2
exec "$@"

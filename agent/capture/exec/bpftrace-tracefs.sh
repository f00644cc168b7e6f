#!/bin/sh
# Runs bpftrace ($BPFTRACE, or bpftrace from PATH) with this script's arguments, where tracefs is mounted.
#
# bpftrace 0.17 finds a tracepoint (its id, the layout of its record) only through tracefs, at
# /sys/kernel/debug/tracing or /sys/kernel/tracing, and neither hosts nor containers always mount it. When it
# is missing, bpftrace runs in a mount namespace of its own with tracefs mounted there: nothing changes for
# the host or anyone else, and the mount goes away with bpftrace. unshare (without --fork) and sh -c exec, so
# bpftrace keeps this script's pid and its caller's signals (SIGINT: detach and flush) reach it.
set -eu
bpftrace=${BPFTRACE:-bpftrace}
for dir in /sys/kernel/debug/tracing /sys/kernel/tracing; do
  if [ -d "$dir/events" ]; then exec "$bpftrace" "$@"; fi
done
# shellcheck disable=SC2016 # $0 and $@ are expanded by the inner sh
exec unshare --mount --propagation private -- \
  sh -c 'mount -t tracefs tracefs /sys/kernel/tracing && exec "$0" "$@"' "$bpftrace" "$@"

# etcd of a local cluster or node, one member on loopback: sourced by cluster.sh and node.sh after
# processes.sh (start_detached). The sourcing script sets `bin_dir` (where e2e/cluster/build.sh put etcd).
# shellcheck shell=bash
# shellcheck disable=SC2154 # bin_dir is the sourcing script's

# Starts etcd as component `etcd`: member $1, its data in $2, clients on 127.0.0.1:$3, peers on
# 127.0.0.1:$4, no fsync (test data). etcd reads any ETCD_* environment variable as a flag (a caller's
# ETCD_PORT, a developer's settings for a real etcd): none reaches it.
start_etcd_member() { # name data-dir client-port peer-port
	local name=$1 data=$2 client=$3 peer=$4 etcd_env=() v
	for v in $(compgen -e); do
		[[ $v != ETCD_* ]] || etcd_env+=(-u "$v")
	done
	mkdir -p "$data"
	chmod 700 "$data" # etcd warns about looser permissions
	start_detached etcd env "${etcd_env[@]}" "$bin_dir/etcd" \
		--name="$name" \
		--initial-cluster="$name=http://127.0.0.1:$peer" \
		--data-dir="$data" \
		--listen-client-urls="http://127.0.0.1:$client" \
		--advertise-client-urls="http://127.0.0.1:$client" \
		--listen-peer-urls="http://127.0.0.1:$peer" \
		--initial-advertise-peer-urls="http://127.0.0.1:$peer" \
		--unsafe-no-fsync=true
}

# True if the etcd serving clients on 127.0.0.1:$1 says it is healthy. Plain HTTP on loopback; bash's
# /dev/tcp avoids depending on curl.
etcd_healthy_on() { # client-port
	local resp
	# shellcheck disable=SC2016 # $0 is for the inner bash
	resp=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
		printf "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' "$1" 2>/dev/null) || return 1
	[[ $resp == *'"health":"true"'* ]]
}

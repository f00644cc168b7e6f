#!/usr/bin/env bash
# A real, minimal Kubernetes control plane (etcd + kube-apiserver) on loopback
# for tests and demos, started the way controller-runtime's envtest does it:
# no kubelet, no scheduler, no controller-manager.
#
# Usage: cluster.sh up|down|status|env
#   up      build the binaries if needed (build.sh), start etcd and
#           kube-apiserver in the background, wait until /readyz is ok and write
#           an admin kubeconfig. Does nothing if the cluster is already up.
#   down    stop kube-apiserver and etcd and delete CLUSTER_DIR. Idempotent.
#   status  print whether the cluster is running; exit 0 if it is, 1 if not.
#   env     print `export KUBECONFIG=...` (for: eval "$(cluster.sh env)").
#
# Environment (defaults in brackets):
#   CLUSTER_DIR            state directory, owned by this script and deleted
#                          by `down` [<repo>/.cache/cluster]
#   APISERVER_PORT         kube-apiserver HTTPS port on 127.0.0.1 [16443]
#   ETCD_PORT              etcd client port on 127.0.0.1 [12379]
#   ETCD_PEER_PORT         etcd peer port on 127.0.0.1 [12380]
#   CLUSTER_READY_TIMEOUT  seconds `up` waits for readiness [90]
#
# Several clusters can run at once (e.g. tests next to a developer's cluster)
# as long as each has its own CLUSTER_DIR and ports: all state, pid files and
# logs live in CLUSTER_DIR, and processes are only ever stopped via those pid
# files.
#
# Files in CLUSTER_DIR: kubeconfig (admin, certs embedded), pki/ (CA, serving
# and admin client certs, service-account key pair), etcd/ (data),
# etcd.log, kube-apiserver.log, etcd.pid, kube-apiserver.pid, cluster.env
# (the ports, so later commands need only CLUSTER_DIR), .lock, and the marker
# .container-auditor-cluster (`down` deletes only a directory that has it).
# Linux only (uses /proc, setsid, flock, ss).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/../.." && pwd)
bin_dir="$repo_dir/.cache/bin"

default_cluster_dir="$repo_dir/.cache/cluster"
# Port variables given explicitly; the others are taken from the cluster's
# recorded settings (cluster.env) if there are any, see below.
explicit_ports=" ${APISERVER_PORT+APISERVER_PORT} ${ETCD_PORT+ETCD_PORT} ${ETCD_PEER_PORT+ETCD_PEER_PORT} "
CLUSTER_DIR=${CLUSTER_DIR:-$default_cluster_dir}
APISERVER_PORT=${APISERVER_PORT:-16443}
ETCD_PORT=${ETCD_PORT:-12379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-12380}
CLUSTER_READY_TIMEOUT=${CLUSTER_READY_TIMEOUT:-90}

# Absolute path: it is recorded in the processes' command lines (used to
# recognise them) and they run with it as working directory.
case $CLUSTER_DIR in
/*) ;;
*) CLUSTER_DIR="$PWD/$CLUSTER_DIR" ;;
esac
CLUSTER_DIR=${CLUSTER_DIR%/}

pki_dir="$CLUSTER_DIR/pki"
kubeconfig="$CLUSTER_DIR/kubeconfig"
marker="$CLUSTER_DIR/.container-auditor-cluster" # lets `down` know it may delete the dir
settings_file="$CLUSTER_DIR/cluster.env"
service_account_issuer="https://kubernetes.default.svc.cluster.local"
context_name="container-auditor-local"

log() { printf '%s\n' "$*"; }
err() { printf 'cluster.sh: error: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

# A cluster remembers its ports (cluster.env), so e.g. `CLUSTER_DIR=x
# cluster.sh status` works without repeating them. Explicit settings win.
if [[ -f $settings_file ]]; then
	while IFS='=' read -r k v; do
		case $k in
		APISERVER_PORT | ETCD_PORT | ETCD_PEER_PORT)
			[[ $explicit_ports == *" $k "* ]] || printf -v "$k" %s "$v"
			;;
		esac
	done <"$settings_file"
fi

for v in APISERVER_PORT ETCD_PORT ETCD_PEER_PORT CLUSTER_READY_TIMEOUT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
if [[ $APISERVER_PORT == "$ETCD_PORT" || $APISERVER_PORT == "$ETCD_PEER_PORT" || $ETCD_PORT == "$ETCD_PEER_PORT" ]]; then
	die "APISERVER_PORT ($APISERVER_PORT), ETCD_PORT ($ETCD_PORT) and ETCD_PEER_PORT ($ETCD_PEER_PORT) must differ"
fi
case $CLUSTER_DIR in
"" | / | "$HOME" | "$repo_dir" | "$repo_dir/.cache") die "refusing to use CLUSTER_DIR=$CLUSTER_DIR" ;;
esac

# How to repeat a command against this cluster (ports are remembered).
cmd_prefix() {
	[[ $CLUSTER_DIR == "$default_cluster_dir" ]] || printf 'CLUSTER_DIR=%q ' "$CLUSTER_DIR"
}

# ---------------------------------------------------------------- processes

# pid files, start_detached, stop_component, wait_ready, show_log_tail, port_holder
state_dir=$CLUSTER_DIR
# shellcheck source=e2e/lib/processes.sh
. "$script_dir/../lib/processes.sh"
# start_etcd_member, etcd_healthy_on
# shellcheck source=e2e/lib/etcd.sh
. "$script_dir/../lib/etcd.sh"
# make_pki, write_kubeconfig_file
# shellcheck source=e2e/lib/pki.sh
. "$script_dir/../lib/pki.sh"

stop_all() {
	stop_component kube-apiserver # first, so it doesn't spin on a vanished etcd
	stop_component etcd
}

# ---------------------------------------------------------------- health

apiserver_ready() {
	[[ -f $kubeconfig && -x $bin_dir/kubectl ]] || return 1
	[[ $("$bin_dir/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz 2>/dev/null) == ok ]]
}

# ---------------------------------------------------------------- ports

check_ports_free() {
	local var holder bad=0
	for var in APISERVER_PORT ETCD_PORT ETCD_PEER_PORT; do
		holder=$(port_holder "${!var}")
		if [[ -n $holder ]]; then
			err "port ${!var} ($var) is already in use:"
			printf '    %s\n' "$holder" >&2
			bad=1
		fi
	done
	if ((bad)); then
		printf 'Stop whatever holds the port, or choose other ports, e.g.\n    CLUSTER_DIR=/tmp/my-cluster APISERVER_PORT=26443 ETCD_PORT=22379 ETCD_PEER_PORT=22380 %s up\n' "$0" >&2
		return 1
	fi
}

# ---------------------------------------------------------------- certificates

# Once per CLUSTER_DIR: a CA, the apiserver serving cert, an admin client cert (O=system:masters, which RBAC
# always allows) and the service-account token signing key pair (e2e/lib/pki.sh).
generate_pki() {
	[[ -f $pki_dir/sa.pub ]] && return 0
	log "Generating certificates in $pki_dir"
	make_pki "$pki_dir" container-auditor-local-ca \
		IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local \
		"apiserver|/CN=kube-apiserver|server" "admin|/O=system:masters/CN=admin|client"
}

write_kubeconfig() {
	write_kubeconfig_file "$kubeconfig" "https://127.0.0.1:$APISERVER_PORT" "$context_name" "$pki_dir" admin
}

# ---------------------------------------------------------------- commands

start_apiserver() {
	# ServiceAccount admission is off because no controller-manager creates the
	# `default` service accounts it would insist on; the service CIDR is only
	# needed for the apiserver's own `kubernetes` Service (nothing routes it).
	# The endpoint reconciler is off because Endpoints may not point to
	# loopback: it would fail and log an error every 10 s.
	start_detached kube-apiserver "$bin_dir/kube-apiserver" \
		--bind-address=127.0.0.1 \
		--advertise-address=127.0.0.1 \
		--secure-port="$APISERVER_PORT" \
		--tls-cert-file="$pki_dir/apiserver.crt" \
		--tls-private-key-file="$pki_dir/apiserver.key" \
		--client-ca-file="$pki_dir/ca.crt" \
		--authorization-mode=RBAC \
		--service-account-key-file="$pki_dir/sa.pub" \
		--service-account-signing-key-file="$pki_dir/sa.key" \
		--service-account-issuer="$service_account_issuer" \
		--api-audiences="$service_account_issuer" \
		--service-cluster-ip-range=10.96.0.0/24 \
		--allow-privileged=true \
		--disable-admission-plugins=ServiceAccount \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--endpoint-reconciler-type=none
}

# Fail `up`: show the relevant log (for the apiserver, which readiness checks fail) and stop whatever this run
# started.
up_failed() {
	err "$1"
	if [[ $2 == kube-apiserver ]] && running_pid kube-apiserver >/dev/null; then
		"$bin_dir/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw '/readyz?verbose' 2>&1 |
			sed 's/\\n/\n/g' | grep -E '^\[-\]' >&2 || true
	fi
	show_log_tail "$2"
	stop_all
	exit 1
}

print_usage_hint() {
	local p
	p=$(cmd_prefix)
	log ""
	log "Use it with:"
	log "  $bin_dir/kubectl --kubeconfig $kubeconfig get ns"
	log "  export KUBECONFIG=$kubeconfig    # or: eval \"\$(${p}$script_dir/cluster.sh env)\""
	log "Stop it (and delete its data) with: ${p}$script_dir/cluster.sh down"
}

lock_cluster_dir() {
	# One `up`/`down` at a time per CLUSTER_DIR.
	exec 8>"$CLUSTER_DIR/.lock"
	flock 8
}

cmd_up() {
	local start deadline fresh=""
	"$script_dir/build.sh" kube-apiserver kubectl etcd
	[[ -d $CLUSTER_DIR ]] || fresh=1
	mkdir -p "$CLUSTER_DIR"
	lock_cluster_dir

	if running_pid etcd >/dev/null && running_pid kube-apiserver >/dev/null; then
		if [[ -f $settings_file && $(<"$settings_file") != "$(settings)" ]]; then
			die "a cluster with other ports is already running in $CLUSTER_DIR ($(tr '\n' ' ' <"$settings_file")); run '$(cmd_prefix)$0 down' first or use another CLUSTER_DIR"
		fi
		if apiserver_ready; then
			log "Cluster in $CLUSTER_DIR is already up: https://127.0.0.1:$APISERVER_PORT"
			print_usage_hint
			return 0
		fi
	fi
	if running_pid etcd >/dev/null || running_pid kube-apiserver >/dev/null; then
		log "Found a partly running or unhealthy cluster in $CLUSTER_DIR; restarting it"
		stop_all
	fi

	if ! check_ports_free; then
		[[ -z $fresh ]] || rm -rf "$CLUSTER_DIR" # don't leave an empty dir behind
		exit 1
	fi
	touch "$marker"
	settings >"$settings_file"
	generate_pki
	write_kubeconfig

	# Anything that ends this script from here on (error, Ctrl-C, the caller
	# killing it) stops the processes it started; only success leaves them up.
	trap 'stop_all' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	start=$SECONDS
	deadline=$((start + CLUSTER_READY_TIMEOUT))
	log "Starting etcd on 127.0.0.1:$ETCD_PORT (log: $CLUSTER_DIR/etcd.log)"
	start_etcd_member local "$CLUSTER_DIR/etcd" "$ETCD_PORT" "$ETCD_PEER_PORT"
	# etcd first: the apiserver would only retry against it, and waiting here
	# makes a failure point at the right log.
	log "Waiting for etcd to become ready (up to $((deadline - SECONDS))s) ..."
	wait_ready etcd $((deadline - SECONDS)) CLUSTER_READY_TIMEOUT etcd_healthy_on "$ETCD_PORT"
	log "Starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT (log: $CLUSTER_DIR/kube-apiserver.log)"
	start_apiserver
	log "Waiting for kube-apiserver to become ready (up to $((deadline - SECONDS))s) ..."
	wait_ready kube-apiserver $((deadline - SECONDS)) CLUSTER_READY_TIMEOUT apiserver_ready
	trap - EXIT INT TERM

	log "Cluster is up in $((SECONDS - start))s: https://127.0.0.1:$APISERVER_PORT (admin kubeconfig: $kubeconfig)"
	log "No controller-manager runs: namespaces are not finalized on delete, ownerReferences are not garbage-collected."
	print_usage_hint
}

settings() {
	printf 'APISERVER_PORT=%s\nETCD_PORT=%s\nETCD_PEER_PORT=%s\n' "$APISERVER_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"
}

cmd_down() {
	if [[ ! -d $CLUSTER_DIR ]]; then
		log "Cluster in $CLUSTER_DIR is not running (nothing to do)"
		return 0
	fi
	lock_cluster_dir
	if ! running_pid kube-apiserver >/dev/null && ! running_pid etcd >/dev/null; then
		log "Cluster in $CLUSTER_DIR is not running"
	fi
	stop_all
	if [[ -f $marker ]]; then
		rm -rf "$CLUSTER_DIR"
		log "Removed $CLUSTER_DIR"
	else
		log "Not deleting $CLUSTER_DIR: it was not created by '$(basename "$0") up'"
	fi
}

cmd_status() {
	local etcd_pid api_pid
	etcd_pid=$(running_pid etcd) && etcd_pid="pid $etcd_pid" || etcd_pid=""
	api_pid=$(running_pid kube-apiserver) && api_pid="pid $api_pid" || api_pid=""
	if [[ -n $etcd_pid && -n $api_pid ]] && apiserver_ready; then
		log "running: kube-apiserver https://127.0.0.1:$APISERVER_PORT ($api_pid), etcd 127.0.0.1:$ETCD_PORT ($etcd_pid)"
		log "kubeconfig: $kubeconfig"
		return 0
	fi
	if [[ -n $etcd_pid || -n $api_pid ]]; then
		log "not running: unhealthy (etcd: ${etcd_pid:-stopped}; kube-apiserver: ${api_pid:-stopped}${api_pid:+, not ready}); see the logs in $CLUSTER_DIR, '$(cmd_prefix)$0 up' restarts it"
	else
		log "not running (CLUSTER_DIR=$CLUSTER_DIR)"
	fi
	return 1
}

cmd_env() {
	if [[ ! -f $kubeconfig ]]; then
		err "no kubeconfig at $kubeconfig; start the cluster with '$(cmd_prefix)$0 up'"
		return 1
	fi
	printf 'export KUBECONFIG=%q\n' "$kubeconfig"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
*)
	# The header comment of this file is the help text.
	awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac

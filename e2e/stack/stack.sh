#!/usr/bin/env bash
# The node half of containerd-level tests: a containerd with its CRI plugin on, driven with
# crictl the way a kubelet drives it, whose `container-auditor` runtime handler
# (what a RuntimeClass names) runs containers through the runc wrapper, and
# whose default handler `runc` runs the others. Pods share the node's network
# namespace, so no CNI plugin is needed. Images are built here, from the host's
# files, and imported into the `k8s.io` namespace (there is no registry).
#
# Usage: stack.sh up|down|status|env|crictl|run-pod|rm-pod
#   up       build what is missing (the runc wrapper, crictl, a static pause,
#            the images), start containerd in the background, import the
#            images, and wait until the CRI answers. Does nothing if it is up.
#   down     remove every pod, stop containerd and its shims, unmount and
#            delete STACK_DIR. Idempotent.
#   status   print whether the stack runs; exit 0 if it does, 1 if not.
#   env      print `export CONTAINER_RUNTIME_ENDPOINT=... IMAGE_SERVICE_ENDPOINT=...`
#            (for: eval "$(stack.sh env)"; then plain `crictl ...` works).
#   crictl ARGS...
#            crictl against this stack's containerd.
#   run-pod --name NAME --namespace NS --uid UID [--container NAME]
#           [--runtime HANDLER] [--image REF] [-- COMMAND...]
#            runs a pod sandbox (host network) with one container and prints
#            POD_ID=<id> and CONTAINER_ID=<id>, one per line. The metadata
#            should be a Pod object's: containerd puts it in the containers'
#            annotations (io.kubernetes.cri.sandbox-name, ...). HANDLER is
#            container-auditor (the default) or runc. The image's command
#            (sleep infinity) runs unless COMMAND is given.
#   rm-pod POD_ID
#            stops and removes a pod and its containers.
#
# Environment (defaults in brackets):
#   STACK_DIR            everything of the stack; `down` deletes it
#                        [<repo>/.cache/stack]
#   STACK_HANDOFF_DIR    the wrapper's hand-off spool [$STACK_DIR/handoff];
#                        `up` creates it (mode 0700) if missing, `down`
#                        deletes it only if it is inside STACK_DIR
#   STACK_READY_TIMEOUT  seconds `up` waits for containerd's CRI [60]
#
# Images (in containerd's k8s.io namespace, unpacked by overlayfs):
#   localhost/container-auditor/pause:1       the sandbox image (sandbox_image)
#   localhost/container-auditor/demo-shell:1  the host's bash and its libraries
#                                             plus busybox's applets; PATH set;
#                                             runs `sleep infinity`
#
# Several stacks can run at once (one per test file) as long as each has
# its own STACK_DIR: the socket, state, runc root, CNI directories and cgroup
# parent are all derived from it, and `down` only ever stops processes that
# name this stack's socket. containerd 1.6 puts its shims' sockets in
# /run/containerd/s whatever its state directory; `down` removes only this
# stack's. Linux only, as root (uses /proc, setsid, flock, mount).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/../.." && pwd)
bin_dir="$repo_dir/.cache/bin"
crictl_bin="$bin_dir/crictl"
wrapper_bin="$repo_dir/runc-wrapper/container-auditor-runc"

default_stack_dir="$repo_dir/.cache/stack"
STACK_DIR=${STACK_DIR:-$default_stack_dir}
case $STACK_DIR in
/*) ;;
*) STACK_DIR="$PWD/$STACK_DIR" ;;
esac
STACK_DIR=${STACK_DIR%/}
STACK_READY_TIMEOUT=${STACK_READY_TIMEOUT:-60}

PAUSE_IMAGE=localhost/container-auditor/pause:1
DEMO_IMAGE=localhost/container-auditor/demo-shell:1
AUDITED_HANDLER='container-auditor'
K8S_NAMESPACE=k8s.io # containerd's namespace for the CRI
SHIM_SOCKET_ROOT=/run/containerd # hard-coded in containerd 1.6
IMAGE_PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

containerd_dir="$STACK_DIR/containerd"
socket="$containerd_dir/containerd.sock"
config_file="$containerd_dir/config.toml"
runc_root="$containerd_dir/runc" # runc --root is <this>/<namespace>
cni_dir="$containerd_dir/cni"
images_dir="$STACK_DIR/images"
runtime_script="$STACK_DIR/runtime/container-auditor-runc"
wrapper_log="$STACK_DIR/wrapper.log"
wrapper_config="$STACK_DIR/runc-wrapper.conf" # optional; for ack_timeout_ms and agent_stale_ms
crictl_config="$STACK_DIR/crictl.yaml"
pods_dir="$STACK_DIR/pods"
settings_file="$STACK_DIR/stack.env"
marker="$STACK_DIR/.container-auditor-stack" # lets `down` know it may delete the dir

log() { printf '%s\n' "$*"; }
err() { printf 'stack.sh: error: %s\n' "$*" >&2; }
die() {
	err "$*"
	exit 1
}

case $STACK_DIR in
"" | / | "$HOME" | "$repo_dir" | "$repo_dir/.cache" | /tmp | /run) die "refusing to use STACK_DIR=$STACK_DIR" ;;
esac
[[ $STACK_READY_TIMEOUT =~ ^[0-9]+$ ]] || die "STACK_READY_TIMEOUT must be a number, got '$STACK_READY_TIMEOUT'"
# A unix socket path holds at most 107 bytes; the shim's ttrpc one is longer.
((${#socket} + 6 <= 107)) || die "STACK_DIR is too long for a unix socket path: $socket"

# A stack remembers its spool (stack.env), so later commands need only STACK_DIR.
if [[ -z ${STACK_HANDOFF_DIR:-} && -f $settings_file ]]; then
	STACK_HANDOFF_DIR=$(sed -n 's/^STACK_HANDOFF_DIR=//p' "$settings_file")
fi
STACK_HANDOFF_DIR=${STACK_HANDOFF_DIR:-$STACK_DIR/handoff}
[[ $STACK_HANDOFF_DIR == /* ]] || die "STACK_HANDOFF_DIR must be an absolute path, got '$STACK_HANDOFF_DIR'"

# Every pod of this stack gets a cgroup under this parent (cgroupfs driver, as
# the kubelet's /kubepods/...), named after STACK_DIR so stacks never share one.
cgroup_root="ca-stack-$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-10)"

cmd_prefix() {
	[[ $STACK_DIR == "$default_stack_dir" ]] || printf 'STACK_DIR=%q ' "$STACK_DIR"
}

# ---------------------------------------------------------------- processes

pid_file="$containerd_dir/containerd.pid"

# Prints the pid of this stack's containerd if it runs: the pid file's process
# only counts if it is a containerd whose command line names this config file.
running_pid() {
	local pid args
	[[ -f $pid_file ]] || return 1
	pid=$(<"$pid_file")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
	args=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $(head -n1 <<<"$args") == containerd || $(head -n1 <<<"$args") == */containerd ]] || return 1
	grep -qxF -- "$config_file" <<<"$args" || return 1
	printf '%s\n' "$pid"
}

# True if process $1 exists and is not a zombie.
alive() {
	local stat
	{ stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# Like cluster.sh: containerd in a session of its own, stdin from /dev/null,
# output appended to its log, no inherited descriptor (a test runner reading
# our output would hang, and the lock on STACK_DIR must not be kept). The
# child writes its own pid, which stays valid across the exec.
start_containerd() {
	local log_file="$containerd_dir/containerd.log" i bg
	rm -f "$pid_file"
	printf '==== %s: starting containerd --config %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$config_file" >>"$log_file"
	# shellcheck disable=SC2016 # $$/$0/$@ are for the inner sh
	(
		cd "$containerd_dir"
		for fd in /proc/"$BASHPID"/fd/*; do
			fd=${fd##*/}
			if ((fd > 2)); then eval "exec $fd>&-"; fi
		done
		exec setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pid_file" \
			containerd --config "$config_file"
	) </dev/null >>"$log_file" 2>&1 &
	bg=$!
	for ((i = 0; i < 50; i++)); do
		running_pid >/dev/null && return 0
		alive "$bg" || break
		sleep 0.1
	done
	up_failed "containerd did not start"
}

stop_containerd() {
	local pid i
	pid=$(running_pid) || {
		rm -f "$pid_file"
		return 0
	}
	log "Stopping containerd (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		running_pid >/dev/null || break
		sleep 0.1
	done
	if running_pid >/dev/null; then
		log "containerd did not exit within 10s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
	fi
	rm -f "$pid_file"
}

# shim_pids, children_of, kill_shims, shim_sockets, delete_leftover_runc_containers, mounts_under,
# unmount_under, remove_cgroups
# shellcheck source=e2e/lib/containerd.sh
. "$script_dir/../lib/containerd.sh"
# oci_archive, shell_image_archive
# shellcheck source=e2e/lib/image.sh
. "$script_dir/../lib/image.sh"

# ---------------------------------------------------------------- images

# /pause, statically linked: the whole of the sandbox image.
build_pause_image() {
	local root="$images_dir/pause-rootfs"
	rm -rf "$root"
	mkdir -p "$root"
	gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -static -s -o "$root/pause" "$script_dir/pause.c" ||
		die "cannot build the pause program (gcc -static needs Debian's gcc and libc6-dev)"
	oci_archive "$root" "$PAUSE_IMAGE" "$images_dir/pause.oci.tar" \
		"{\"Env\":[\"$IMAGE_PATH_ENV\"],\"Entrypoint\":[\"/pause\"]}"
}

# The host's bash and busybox (e2e/lib/image.sh).
build_demo_image() {
	shell_image_archive "$images_dir/demo-shell-rootfs" "$DEMO_IMAGE" "$images_dir/demo-shell.oci.tar"
}

import_image() { # archive ref
	local repo=${2%:*} out
	if ! out=$(ctr --address "$socket" -n "$K8S_NAMESPACE" images import --base-name "$repo" \
		--snapshotter overlayfs "$1" 2>&1); then
		up_failed "ctr images import $1 failed: $out"
	fi
}

# ---------------------------------------------------------------- config

toml_string() { printf '"%s"' "$(sed 's/\\/\\\\/g; s/"/\\"/g' <<<"$1")"; }

write_config() {
	local runc
	runc=$(command -v runc) || die "runc is missing: install Debian's runc"
	mkdir -p "$containerd_dir"/{root,state,opt} "$runc_root" "$cni_dir/net.d" "$cni_dir/bin"
	chmod 700 "$containerd_dir"/{root,state} "$runc_root"
	cat >"$config_file" <<-EOF
		# Generated by e2e/stack/stack.sh up. containerd 1.6, config version 2.
		version = 2
		root = $(toml_string "$containerd_dir/root")
		state = $(toml_string "$containerd_dir/state")
		disabled_plugins = [
		  "io.containerd.snapshotter.v1.aufs",
		  "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.snapshotter.v1.zfs",
		]

		[grpc]
		  address = $(toml_string "$socket")
		[ttrpc]
		  address = $(toml_string "$socket.ttrpc")
		[debug]
		  level = "info"

		[plugins."io.containerd.internal.v1.opt"]
		  path = $(toml_string "$containerd_dir/opt")

		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = $(toml_string "$PAUSE_IMAGE")
		  # exec/attach streams: loopback, a free port (the default, said out loud:
		  # a fixed port would collide with another stack's)
		  stream_server_address = "127.0.0.1"
		  stream_server_port = "0"
		  disable_apparmor = true
		  enable_selinux = false
		  # containerd gives a sandbox oom_score_adj -998 and runc then fails with
		  # "failed to update /proc/self/oom_score_adj: Permission denied" where
		  # lowering it is not allowed (this VM). Clamp to containerd's own value.
		  restrict_oom_score_adj = true

		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"

		    # Pods without a RuntimeClass: the host's runc.
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        BinaryName = $(toml_string "$runc")
		        Root = $(toml_string "$runc_root")
		        SystemdCgroup = false

		    # RuntimeClass handler "container-auditor": the runc wrapper, through a
		    # script that sets its configuration (the shim does not pass
		    # containerd's environment on to the runtime binary).
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$AUDITED_HANDLER]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$AUDITED_HANDLER.options]
		        BinaryName = $(toml_string "$runtime_script")
		        Root = $(toml_string "$runc_root")
		        SystemdCgroup = false

		  # Host-network pods need no CNI plugin. The CRI plugin still watches a
		  # configuration directory (and creates it): a private, empty one, so it
		  # neither reads nor creates the host's /etc/cni/net.d.
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = $(toml_string "$cni_dir/bin")
		    conf_dir = $(toml_string "$cni_dir/net.d")
	EOF
}

# The runtime binary of the container-auditor handler: the wrapper over the
# host's runc, its settings from the environment, never from the host's
# /etc/container-auditor/runc-wrapper.conf.
write_runtime_script() {
	local runc
	runc=$(command -v runc)
	mkdir -p "$(dirname "$runtime_script")"
	cat >"$runtime_script.tmp" <<-EOF
		#!/bin/sh
		# Generated by e2e/stack/stack.sh up: the container-auditor runtime handler's BinaryName.
		export CONTAINER_AUDITOR_RUNC=$(printf '%q' "$runc")
		export CONTAINER_AUDITOR_HANDOFF_DIR=$(printf '%q' "$STACK_HANDOFF_DIR")
		export CONTAINER_AUDITOR_WRAPPER_LOG=$(printf '%q' "$wrapper_log")
		export CONTAINER_AUDITOR_RUNC_CONFIG=$(printf '%q' "$wrapper_config")
		exec $(printf '%q' "$wrapper_bin") "\$@"
	EOF
	chmod 755 "$runtime_script.tmp"
	mv "$runtime_script.tmp" "$runtime_script"
}

write_crictl_config() {
	cat >"$crictl_config" <<-EOF
		# Generated by e2e/stack/stack.sh up.
		runtime-endpoint: unix://$socket
		image-endpoint: unix://$socket
		timeout: 30
		debug: false
		pull-image-on-create: false
	EOF
}

# ---------------------------------------------------------------- commands

crictl_run() { "$crictl_bin" --config "$crictl_config" "$@"; }

cri_ready() {
	[[ -x $crictl_bin && -f $crictl_config ]] || return 1
	crictl_run --timeout 5s info 2>/dev/null | grep -q '"RuntimeReady"'
}

lock_stack_dir() {
	exec 8>"$STACK_DIR/.lock"
	flock 8
}

show_log_tail() {
	local f="$containerd_dir/containerd.log"
	[[ -f $f ]] || return 0
	printf -- '---- last 30 lines of %s ----\n' "$f" >&2
	tail -n 30 "$f" >&2
	printf -- '----\n' >&2
}

up_failed() {
	err "$1"
	show_log_tail
	teardown
	exit 1
}

ensure_tools() {
	local c
	for c in containerd ctr containerd-shim-runc-v2 runc gcc ldd tar gzip sha256sum setsid flock; do
		command -v "$c" >/dev/null 2>&1 || die "'$c' is missing (make setup installs what the project needs)"
	done
	[[ $(id -u) -eq 0 ]] || die "the stack needs root (containerd, runc, mounts)"
	if [[ ! -x $crictl_bin ]]; then
		log "crictl is not built yet: building it (e2e/cluster/build.sh crictl)"
		"$repo_dir/e2e/cluster/build.sh" crictl
	fi
	make -s -C "$repo_dir/runc-wrapper" container-auditor-runc >/dev/null ||
		die "cannot build the runc wrapper (make -C runc-wrapper)"
}

cmd_up() {
	local start
	start=$SECONDS
	ensure_tools
	mkdir -p "$STACK_DIR"
	lock_stack_dir
	if running_pid >/dev/null && cri_ready; then
		log "Stack in $STACK_DIR is already up (containerd pid $(running_pid), socket $socket)"
		print_usage_hint
		return 0
	fi
	# Anything else of an earlier stack here (containerd not answering, or
	# killed, its shims or mounts left): take it all down, then start afresh.
	if [[ -f $marker ]]; then
		log "Found a stopped or unhealthy stack in $STACK_DIR; taking it down first"
		teardown
		mkdir -p "$STACK_DIR"
		lock_stack_dir
	fi
	touch "$marker"
	{
		printf 'STACK_HANDOFF_DIR=%s\n' "$STACK_HANDOFF_DIR"
		# Whether up created containerd's shim socket directories (down removes
		# them again if they are empty then).
		[[ -d $SHIM_SOCKET_ROOT ]] || printf 'CREATED_SHIM_DIR=%s\n' "$SHIM_SOCKET_ROOT"
		[[ -d $SHIM_SOCKET_ROOT/s ]] || printf 'CREATED_SHIM_DIR=%s\n' "$SHIM_SOCKET_ROOT/s"
	} >"$settings_file"
	mkdir -p "$images_dir" "$pods_dir"

	trap 'teardown' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	log "Building the images (pause, demo-shell) in $images_dir"
	build_pause_image
	build_demo_image
	write_config
	write_runtime_script
	write_crictl_config
	if [[ ! -d $STACK_HANDOFF_DIR ]]; then
		install -d -m 0700 "$STACK_HANDOFF_DIR"
	fi

	log "Starting containerd with the CRI plugin (socket $socket, log $containerd_dir/containerd.log)"
	start_containerd
	local deadline=$((SECONDS + STACK_READY_TIMEOUT))
	until ctr --address "$socket" version >/dev/null 2>&1 && cri_ready; do
		running_pid >/dev/null || up_failed "containerd exited during start-up"
		((SECONDS < deadline)) || up_failed "containerd's CRI did not answer within ${STACK_READY_TIMEOUT}s (STACK_READY_TIMEOUT)"
		sleep 0.2
	done
	log "Importing $PAUSE_IMAGE and $DEMO_IMAGE into containerd's $K8S_NAMESPACE namespace"
	import_image "$images_dir/pause.oci.tar" "$PAUSE_IMAGE"
	import_image "$images_dir/demo-shell.oci.tar" "$DEMO_IMAGE"
	# The CRI keeps its own view of the images, updated from containerd's events.
	local ref
	for ref in "$PAUSE_IMAGE" "$DEMO_IMAGE"; do
		until crictl_run inspecti "$ref" >/dev/null 2>&1; do
			((SECONDS < deadline)) || up_failed "the CRI does not list $ref after its import"
			sleep 0.2
		done
	done
	trap - EXIT INT TERM
	log "Stack is up in $((SECONDS - start))s: containerd pid $(running_pid), CRI socket $socket"
	print_usage_hint
}

print_usage_hint() {
	local p
	p=$(cmd_prefix)
	log "  ${p}$script_dir/stack.sh crictl pods     # or: eval \"\$(${p}$script_dir/stack.sh env)\"; crictl pods"
	log "  ${p}$script_dir/stack.sh run-pod --name NAME --namespace NS --uid UID"
	log "  hand-offs of the container-auditor handler: $STACK_HANDOFF_DIR (wrapper log: $wrapper_log)"
	log "Stop it (and delete its data) with: ${p}$script_dir/stack.sh down"
}

# Pods first (through the CRI, so containerd stops and deletes everything
# itself), then containerd, then whatever is left.
teardown_processes() {
	local pods pod
	if running_pid >/dev/null && [[ -x $crictl_bin && -f $crictl_config ]]; then
		pods=$(crictl_run pods -q 2>/dev/null) || pods=""
		for pod in $pods; do
			crictl_run stopp "$pod" >/dev/null 2>&1 || true
			crictl_run rmp --force "$pod" >/dev/null 2>&1 || true
		done
	fi
	mapfile -t sockets < <(shim_sockets)
	stop_containerd
	kill_shims
	delete_leftover_runc_containers
	local s
	for s in "${sockets[@]}"; do rm -f "$s"; done
}

teardown() {
	teardown_processes
	unmount_under "$STACK_DIR"
	remove_cgroups
	local dir i created=()
	[[ -f $settings_file ]] && mapfile -t created < <(sed -n 's/^CREATED_SHIM_DIR=//p' "$settings_file")
	case $STACK_HANDOFF_DIR in
	"$STACK_DIR"/*) ;;
	*) log "Leaving the spool $STACK_HANDOFF_DIR (outside $STACK_DIR) in place" ;;
	esac
	if [[ -f $marker ]]; then
		rm -rf --one-file-system "$STACK_DIR"
	fi
	# Deepest first; only if empty: another containerd may use them by now.
	for ((i = ${#created[@]} - 1; i >= 0; i--)); do
		dir=${created[i]}
		if [[ $dir == "$SHIM_SOCKET_ROOT" || $dir == "$SHIM_SOCKET_ROOT/s" ]]; then rmdir "$dir" 2>/dev/null || true; fi
	done
}

cmd_down() {
	if [[ ! -d $STACK_DIR ]]; then
		log "Stack in $STACK_DIR is not running (nothing to do)"
		return 0
	fi
	if [[ ! -f $marker ]]; then
		die "not touching $STACK_DIR: it was not created by '$(basename "$0") up'"
	fi
	lock_stack_dir
	running_pid >/dev/null || log "containerd of the stack in $STACK_DIR is not running"
	teardown
	log "Stack in $STACK_DIR is down; removed $STACK_DIR"
}

cmd_status() {
	local pid
	if pid=$(running_pid) && cri_ready; then
		log "running: containerd pid $pid, CRI socket $socket, $(crictl_run pods -q 2>/dev/null | wc -l) pod(s)"
		return 0
	fi
	if [[ -n ${pid:-} ]]; then
		log "not running: containerd (pid $pid) does not answer on the CRI; see $containerd_dir/containerd.log"
	else
		log "not running (STACK_DIR=$STACK_DIR)"
	fi
	return 1
}

cmd_env() {
	[[ -f $crictl_config ]] || die "the stack in $STACK_DIR is not up; start it with '$(cmd_prefix)$0 up'"
	printf 'export CONTAINER_RUNTIME_ENDPOINT=%q\n' "unix://$socket"
	printf 'export IMAGE_SERVICE_ENDPOINT=%q\n' "unix://$socket"
	printf 'export CRI_CONFIG_FILE=%q\n' "$crictl_config"
	printf 'export PATH=%q\n' "$bin_dir:$PATH"
}

cmd_crictl() {
	[[ -f $crictl_config ]] || die "the stack in $STACK_DIR is not up; start it with '$(cmd_prefix)$0 up'"
	exec "$crictl_bin" --config "$crictl_config" "$@"
}

# A JSON string (the characters that need it escaped).
json_string() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\t'/\\t}
	s=${s//$'\r'/\\r}
	printf '"%s"' "$s"
}

cmd_run_pod() {
	local name="" namespace="" uid="" container=main handler=$AUDITED_HANDLER image=$DEMO_IMAGE
	local command=()
	while (($#)); do
		case $1 in
		--name) name=${2-} && shift 2 ;;
		--namespace) namespace=${2-} && shift 2 ;;
		--uid) uid=${2-} && shift 2 ;;
		--container) container=${2-} && shift 2 ;;
		--runtime) handler=${2-} && shift 2 ;;
		--image) image=${2-} && shift 2 ;;
		--)
			shift
			command=("$@")
			break
			;;
		*) die "run-pod: unknown argument '$1'" ;;
		esac
	done
	local dns='^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'
	[[ $name =~ $dns ]] || die "run-pod: --name must be a DNS name, got '$name'"
	[[ $namespace =~ $dns ]] || die "run-pod: --namespace must be a DNS name, got '$namespace'"
	[[ $container =~ $dns ]] || die "run-pod: --container must be a DNS name, got '$container'"
	[[ $uid =~ ^[A-Za-z0-9][-A-Za-z0-9]*$ ]] || die "run-pod: --uid must be letters, digits and dashes, got '$uid'"
	[[ -z $handler || $handler =~ ^[A-Za-z0-9][-A-Za-z0-9_.]*$ ]] || die "run-pod: bad --runtime '$handler'"
	if ! running_pid >/dev/null || ! cri_ready; then
		die "the stack in $STACK_DIR is not up; start it with '$(cmd_prefix)$0 up'"
	fi

	# As the kubelet writes it for a host-network pod: no hostname (the pod has
	# the node's UTS namespace, where runc refuses to set one).
	local dir="$pods_dir/${namespace}_${name}_${uid}"
	mkdir -p "$dir/logs"
	local host_network=2 # NamespaceMode NODE
	local labels
	labels=$(printf '{"io.kubernetes.pod.name":%s,"io.kubernetes.pod.namespace":%s,"io.kubernetes.pod.uid":%s}' \
		"$(json_string "$name")" "$(json_string "$namespace")" "$(json_string "$uid")")
	cat >"$dir/sandbox.json" <<-EOF
		{
		  "metadata": {"name": $(json_string "$name"), "namespace": $(json_string "$namespace"), "uid": $(json_string "$uid"), "attempt": 0},
		  "log_directory": $(json_string "$dir/logs"),
		  "labels": $labels,
		  "annotations": {},
		  "linux": {
		    "cgroup_parent": $(json_string "/$cgroup_root/pod$uid"),
		    "security_context": {"namespace_options": {"network": $host_network, "pid": 1, "ipc": 0}}
		  }
		}
	EOF
	local command_json="" c sep=""
	if ((${#command[@]})); then
		command_json='"command": ['
		for c in "${command[@]}"; do
			command_json+="$sep$(json_string "$c")"
			sep=", "
		done
		command_json+='],'
	fi
	cat >"$dir/container.json" <<-EOF
		{
		  "metadata": {"name": $(json_string "$container"), "attempt": 0},
		  "image": {"image": $(json_string "$image")},
		  $command_json
		  "log_path": $(json_string "$container.log"),
		  "labels": {"io.kubernetes.container.name": $(json_string "$container"), "io.kubernetes.pod.name": $(json_string "$name"), "io.kubernetes.pod.namespace": $(json_string "$namespace"), "io.kubernetes.pod.uid": $(json_string "$uid")},
		  "linux": {
		    "security_context": {"namespace_options": {"network": $host_network, "pid": 1, "ipc": 0}}
		  }
		}
	EOF
	local pod ctr
	pod=$(crictl_run runp ${handler:+--runtime "$handler"} "$dir/sandbox.json") ||
		die "crictl runp failed (containerd log: $containerd_dir/containerd.log)"
	if ! ctr=$(crictl_run create "$pod" "$dir/container.json" "$dir/sandbox.json") ||
		! crictl_run start "$ctr" >/dev/null; then
		crictl_run stopp "$pod" >/dev/null 2>&1 || true
		crictl_run rmp --force "$pod" >/dev/null 2>&1 || true
		die "could not create or start the container in pod $pod (containerd log: $containerd_dir/containerd.log)"
	fi
	printf 'POD_ID=%s\nCONTAINER_ID=%s\n' "$pod" "$ctr"
}

cmd_rm_pod() {
	local pod=${1-}
	[[ $pod =~ ^[0-9a-f]+$ ]] || die "rm-pod: expected a pod sandbox id, got '$pod'"
	running_pid >/dev/null || die "the stack in $STACK_DIR is not up"
	crictl_run stopp "$pod" >/dev/null
	crictl_run rmp "$pod" >/dev/null
	log "Removed pod $pod"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
crictl) cmd_crictl "${@:2}" ;;
run-pod) cmd_run_pod "${@:2}" ;;
rm-pod) cmd_rm_pod "${@:2}" ;;
*)
	# The header comment of this file is the help text.
	awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac

#!/usr/bin/env bash
# container-auditor on one machine, end to end, the way users run it: a real one-node Kubernetes
# (e2e/node/node.sh: kubelet, bridge CNI, kube-proxy, CoreDNS), the operator and agent images built from
# images/*/Dockerfile and imported into the node's containerd, the Helm chart installed with `helm install`,
# the runtime handler added to containerd as the chart's NOTES print it, a policy, a Pod scheduled by the
# scheduler, and commands typed into its shell through `kubectl exec -it`, all the way to `kubectl get
# auditrecords`. As root. Behind `make demo`, `make demo-shell`, `make demo-down`.
#
# Usage: demo.sh up|shell|down|status
#   up      install and build what is missing (scripts/setup.sh, make build, helm, the images), bring the
#           node up, install the chart, type the lines of DEMO_COMMANDS into `bash -i` in the demo pod
#           through `kubectl exec -it`, wait until they are AuditRecords and print what a user looks at.
#           Idempotent: what runs already is kept, and each run types into a new shell session.
#   shell   bring the demo up if it is not (without typing), then `kubectl exec -it` into `bash -i` in the
#           demo pod on this terminal, with the pod's audit Events streaming into the same terminal.
#   down    remove everything: the node (node.sh down, which restores the host) and DEMO_DIR. With a node
#           of DEMO_NODE_DIR, only what the demo made on it (the release and its namespace, the policy,
#           namespace shop), never the node. Idempotent.
#   status  print what runs; exit 0 if everything does.
#
# Everything lives in DEMO_DIR: the node (cluster/, node.sh's NODE_DIR: the admin kubeconfig is
# cluster/kubeconfig), Helm's own directories (helm/), the chart's values for this node (values.yaml), the
# agent's state on the node (agent-state/), the demo pod's image (images/) and the logs (logs/).
#
# Environment (defaults in brackets):
#   DEMO_DIR        [<repo>/.cache/demo]
#   DEMO_NODE_DIR   the NODE_DIR of a node that is up already (e2e/node/node.sh), to run the demo on instead
#                   of bringing one up (one node runs on a machine at a time); `down` then leaves the node
#                   up [unset: the demo's own node, in DEMO_DIR/cluster]
#   DEMO_COMMANDS   a file whose lines are typed into the shell [e2e/demo/commands.txt]
#   DEMO_TIMEOUT    seconds to wait for each stage [180]
#   DEMO_BUILD      0: skip scripts/setup.sh, make build, and building helm and the images, done by the
#                   caller already (the real-node tests) [1]
# The release (container-auditor), its namespace (container-auditor), the policy (production-shells) and
# namespace shop have fixed names: one demo per cluster.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/../.." && pwd)
cd "$repo_dir"
# The Node.js scripts/setup.sh chose (scripts/node-runtime.sh), also when this script is run without make.
export PATH="$repo_dir/.cache/node/bin:$PATH"

absolute() { # path
	case $1 in
	/*) printf '%s\n' "${1%/}" ;;
	*) printf '%s\n' "$repo_dir/${1%/}" ;;
	esac
}

DEMO_DIR=$(absolute "${DEMO_DIR:-$repo_dir/.cache/demo}")
DEMO_COMMANDS=${DEMO_COMMANDS:-$script_dir/commands.txt}
DEMO_TIMEOUT=${DEMO_TIMEOUT:-180}
DEMO_BUILD=${DEMO_BUILD:-1}

# What the demo makes in the cluster.
RELEASE=container-auditor
SYSTEM_NS=container-auditor
POLICY_FILE=$repo_dir/examples/production-shells.yaml
POLICY=production-shells
APP_NS=shop
APP_POD=web
APP_CONTAINER=app
RUNTIME_CLASS=container-auditor
DEMO_IMAGE=container-auditor.local/demo-shell:1

bin_dir=$repo_dir/.cache/bin
kubectl_bin=$bin_dir/kubectl
helm_bin=$bin_dir/helm
node_script=$repo_dir/e2e/node/node.sh
harness=$repo_dir/dist/e2e/harness/main.js # the test harness's command line (make build)
image_archives=("$repo_dir/.cache/images/operator.tar" "$repo_dir/.cache/images/agent.tar")
marker=$DEMO_DIR/.container-auditor-demo # `down` deletes only a directory that has it
settings_file=$DEMO_DIR/demo.env         # NODE_DIR=<the node the demo runs on>
logs_dir=$DEMO_DIR/logs
helm_dir=$DEMO_DIR/helm
images_dir=$DEMO_DIR/images
values_file=$DEMO_DIR/values.yaml
handler_file=$DEMO_DIR/containerd-runtime.toml
state_dir=$DEMO_DIR/agent-state
demo_archive=$images_dir/demo-shell.tar
installed_images=$DEMO_DIR/images.installed # the archives (content-keyed) the release's pods were started from
own_node_dir=$DEMO_DIR/cluster

step() { printf "==> [%ss] %s\n" "$SECONDS" "$*"; }
log() { printf '    %s\n' "$*"; }
indent() { sed -u 's/^/    /'; }
err() { printf 'demo.sh: error: %s\n' "$*" >&2; }
die() {
	err "$*"
	exit 1
}

case $DEMO_DIR in
"" | / | "$HOME" | "$repo_dir" | "$repo_dir/.cache" | /tmp | /run) die "refusing to use DEMO_DIR=$DEMO_DIR" ;;
esac
[[ $DEMO_TIMEOUT =~ ^[0-9]+$ ]] || die "DEMO_TIMEOUT must be a number, got '$DEMO_TIMEOUT'"

# The node the demo runs on: the one it was brought up on (demo.env), else DEMO_NODE_DIR, else its own.
NODE_DIR=$own_node_dir
[[ -z ${DEMO_NODE_DIR:-} ]] || NODE_DIR=$(absolute "$DEMO_NODE_DIR")
recorded_node_dir=""
if [[ -f $settings_file ]]; then
	recorded_node_dir=$(sed -n 's/^NODE_DIR=//p' "$settings_file")
	NODE_DIR=${recorded_node_dir:-$NODE_DIR}
fi
own_node() { [[ $NODE_DIR == "$own_node_dir" ]]; }
export KUBECONFIG=$NODE_DIR/kubeconfig

kubectl() { "$kubectl_bin" --kubeconfig "$KUBECONFIG" "$@"; }
helm() {
	HELM_CACHE_HOME=$helm_dir/cache HELM_CONFIG_HOME=$helm_dir/config HELM_DATA_HOME=$helm_dir/data \
		"$helm_bin" --kubeconfig "$KUBECONFIG" "$@"
}
# node.sh on the demo's node; fd 9 (our lock) closed, so nothing it leaves running holds it.
node_sh() { NODE_DIR=$NODE_DIR bash "$node_script" "$@" 9>&-; }

# Waits until `$2...` succeeds, for at most DEMO_TIMEOUT seconds, saying so every 15 s; dies saying what it
# waited for ($1) otherwise.
wait_until() { # what command...
	local what=$1 t0=$SECONDS next=$((SECONDS + 15))
	shift
	until "$@"; do
		((SECONDS - t0 < DEMO_TIMEOUT)) || die "timed out after ${DEMO_TIMEOUT}s waiting for $what (DEMO_TIMEOUT)"
		if ((SECONDS >= next)); then
			log "... still waiting for $what ($((SECONDS - t0))s)"
			next=$((SECONDS + 15))
		fi
		sleep 0.5
	done
}

# Runs a command with its output in logs/NAME.log; on failure shows the log's end and dies.
quietly() { # name command...
	local name=$1
	shift
	if ! "$@" >>"$logs_dir/$name.log" 2>&1 9>&-; then
		err "$* failed; the end of $logs_dir/$name.log:"
		tail -n 40 "$logs_dir/$name.log" >&2
		exit 1
	fi
}

# Runs a command like quietly, in the background, printing every 15 s how long it has taken and what
# `$2` (a command; may be empty) says about it meanwhile.
with_progress() { # name progress-command command...
	local name=$1 progress=$2 pid t0=$SECONDS next=$((SECONDS + 15)) rc=0
	shift 2
	quietly "$name" "$@" &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= next)); then
			log "... $((SECONDS - t0))s${progress:+: $($progress 2>/dev/null || true)}"
			next=$((SECONDS + 15))
		fi
		sleep 0.5
	done
	wait "$pid" || rc=$?
	((rc == 0)) || exit "$rc"
}

# ---------------------------------------------------------------- stages

require_root() {
	[[ $(id -u) -eq 0 ]] || die "the demo needs root (a Kubernetes node: containerd, the kubelet, kube-proxy; bpftrace): run it as root, e.g. sudo make demo"
}

lock_demo_dir() {
	exec 9>"$DEMO_DIR/.lock"
	flock -n 9 || {
		log "Another demo.sh runs in $DEMO_DIR; waiting for it"
		flock 9
	}
}

# The directory, once: a demo stays on the node it was brought up on.
claim_demo_dir() {
	if [[ -n $recorded_node_dir && -n ${DEMO_NODE_DIR:-} && $(absolute "$DEMO_NODE_DIR") != "$recorded_node_dir" ]]; then
		die "the demo in $DEMO_DIR runs on the node in $recorded_node_dir, not DEMO_NODE_DIR=$DEMO_NODE_DIR: take it down first (demo.sh down)"
	fi
	mkdir -p "$DEMO_DIR" "$logs_dir"
	lock_demo_dir
	touch "$marker"
	[[ -f $settings_file ]] || printf 'NODE_DIR=%s\n' "$NODE_DIR" >"$settings_file"
}

install_and_build() {
	if [[ $DEMO_BUILD == 0 ]]; then
		local f
		for f in "$kubectl_bin" "$helm_bin" "$harness" "${image_archives[@]}"; do
			[[ -e $f ]] || die "$f is missing (DEMO_BUILD=0): build it first, or run without DEMO_BUILD=0"
		done
		return 0
	fi
	step "Installing what is missing and building (scripts/setup.sh: Debian packages, npm ci; make build)"
	make -s -C "$repo_dir" build 9>&-
	step "Building kubectl and helm from their Go modules (e2e/cluster/build.sh, cached: the first time takes about 6 minutes)"
	# Its progress lines as they come; not the table of paths it ends with.
	bash e2e/cluster/build.sh kubectl helm 9>&- | sed -u -n '/ -> /!s/^/    /p'
	step "Building the operator and agent images from images/*/Dockerfile (images/build.sh: buildah, cached by content; the first time takes about 3 minutes; log: $logs_dir/images.log)"
	bash images/build.sh operator agent 9>&- 2>&1 | tee -a "$logs_dir/images.log" | sed -u -n 's/^==> /    /p'
}

start_node() {
	if ! own_node; then
		step "Using the node in $NODE_DIR (DEMO_NODE_DIR): it stays up after demo.sh down"
		node_sh status >/dev/null 2>&1 || die "no node runs in $NODE_DIR (DEMO_NODE_DIR): NODE_DIR=$NODE_DIR $node_script up"
		return 0
	fi
	step "Bringing up the node (e2e/node/node.sh up, NODE_DIR=$NODE_DIR; building its binaries the first time takes about 20 minutes)"
	# Its progress lines as they come; not the table of the binaries' paths.
	if ! node_sh up 2>&1 | tee -a "$logs_dir/node.log" | sed -u '/ -> /d; s/^/    /'; then
		local other
		other=$(cat /run/container-auditor-node.lock.dir 2>/dev/null || true)
		if [[ -n $other && $other != "$NODE_DIR" ]]; then
			err "one node runs on a machine at a time, and one runs from $other: wait until it is down (a test run's node goes when the run ends), or run the demo on it: DEMO_NODE_DIR=$other make demo"
		fi
		die "node.sh up failed (its log: $logs_dir/node.log and $NODE_DIR/*.log)"
	fi
}

# The demo pod's image: the host's bash and busybox, the node stack's shell image (the harness's `image shell`,
# buildShellImage in e2e/support/image.ts), made once per DEMO_DIR.
build_demo_image() {
	[[ -f $demo_archive ]] && return 0
	step "Building the demo pod's image $DEMO_IMAGE: the host's bash and busybox, one layer"
	mkdir -p "$images_dir"
	node "$harness" image shell "$demo_archive" "$DEMO_IMAGE" 9>&- || die "building the demo pod's image failed"
}

import_images() {
	step "Importing the images into the node's containerd (node.sh import; there is no registry: image.pullPolicy=Never)"
	node_sh import "${image_archives[@]}" "$demo_archive" 2>&1 | indent
}

namespace_phase() { kubectl get namespace "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true; }
namespace_gone() { [[ -z $(namespace_phase "$1") ]]; }
namespace_not_terminating() { [[ $(namespace_phase "$1") != Terminating ]]; }

ensure_namespace() { # name label=value...
	local name=$1
	shift
	if [[ $(namespace_phase "$name") == Terminating ]]; then
		log "Namespace $name is being deleted; waiting until it is gone"
		wait_until "namespace $name to be deleted" namespace_not_terminating "$name"
	fi
	namespace_gone "$name" && quietly kubectl kubectl create namespace "$name"
	quietly kubectl kubectl label --overwrite namespace "$name" "$@"
}

# The values for this node: the runc wrapper installed by the agents into the node's bin directory, the
# node's containerd paths, the agent's state in DEMO_DIR, and the imported images.
write_values() {
	cat >"$values_file.tmp" <<-EOF
		# The chart's values for the demo's node (written by e2e/demo/demo.sh). The paths are the node's:
		# e2e/node/node.sh keeps containerd and its state in NODE_DIR rather than in /run and /var/lib.
		image:
		  pullPolicy: Never # imported into the node's containerd, not pulled
		nodeSetup:
		  installWrapper: true
		  hostBinDir: $NODE_DIR/bin
		agent:
		  hostPaths:
		    handoff: $NODE_DIR/run/container-auditor/handoff
		    state: $state_dir
		    bundles: $NODE_DIR/run/containerd/io.containerd.runtime.v2.task
		    snapshots: $NODE_DIR/containerd/root/io.containerd.snapshotter.v1.overlayfs
	EOF
	mv "$values_file.tmp" "$values_file"
}

# The release's pods and their states, on one line.
system_pods() {
	kubectl get pods -n "$SYSTEM_NS" --no-headers -o custom-columns=NAME:.metadata.name,STATUS:.status.phase,READY:.status.containerStatuses[*].ready |
		awk '{ printf "%s%s %s ready=%s", sep, $1, $2, $3; sep = ", " }'
}

release_status() { helm status "$RELEASE" -n "$SYSTEM_NS" 2>/dev/null | sed -n 's/^STATUS: //p' || true; }

install_release() {
	# The RuntimeClass is cluster-scoped: one release of the chart per cluster.
	local owner status
	owner=$(kubectl get runtimeclass "$RUNTIME_CLASS" -o \
		jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name} {.metadata.annotations.meta\.helm\.sh/release-namespace}' 2>/dev/null || true)
	if [[ -n ${owner// /} && $owner != "$RELEASE $SYSTEM_NS" ]]; then
		die "RuntimeClass $RUNTIME_CLASS belongs to Helm release ${owner% *} in namespace ${owner#* } (one release per cluster): helm uninstall ${owner% *} -n ${owner#* } first"
	fi
	write_values
	status=$(release_status)
	if [[ $status == deployed ]]; then
		helm get values "$RELEASE" -n "$SYSTEM_NS" 2>/dev/null | grep -qF "state: $state_dir" ||
			die "release $RELEASE in namespace $SYSTEM_NS was not installed by this demo (DEMO_DIR=$DEMO_DIR): take the other one down first"
		step "The chart runs already: release $RELEASE in namespace $SYSTEM_NS, revision $(helm status "$RELEASE" -n "$SYSTEM_NS" | sed -n 's/^REVISION: //p')"
		restart_on_new_images
		return 0
	fi
	if [[ -n $status ]]; then
		log "Release $RELEASE is '$status': uninstalling it first"
		quietly helm helm uninstall "$RELEASE" -n "$SYSTEM_NS" --wait --timeout 3m
	fi
	ensure_namespace "$SYSTEM_NS" pod-security.kubernetes.io/enforce=privileged
	step "Installing the chart: helm install $RELEASE charts/container-auditor -n $SYSTEM_NS -f ${values_file#"$repo_dir/"} --wait (two operator replicas, the agent DaemonSet; about a minute)"
	sed -n '/^[^#]/s/^/    | /p' "$values_file"
	with_progress helm system_pods helm install "$RELEASE" charts/container-auditor --namespace "$SYSTEM_NS" \
		-f "$values_file" --wait --timeout 5m
	archives_in_use >"$installed_images"
	kubectl get pods -n "$SYSTEM_NS" -o wide 2>&1 | indent
}

archives_in_use() { readlink -f "${image_archives[@]}"; }

# The images keep their tag when the sources change (images/build.sh makes a new archive, node.sh imports it):
# pods started from the earlier ones are restarted, as after a `helm upgrade` to new images.
restart_on_new_images() {
	[[ -f $installed_images && $(archives_in_use) != "$(<"$installed_images")" ]] || return 0
	step "The images changed since the operator and the agent started: restarting them (kubectl rollout restart)"
	quietly kubectl kubectl rollout restart -n "$SYSTEM_NS" "deployment/$RELEASE-operator" "daemonset/$RELEASE-agent"
	with_progress kubectl system_pods kubectl rollout status -n "$SYSTEM_NS" "deployment/$RELEASE-operator" --timeout=5m
	with_progress kubectl system_pods kubectl rollout status -n "$SYSTEM_NS" "daemonset/$RELEASE-agent" --timeout=5m
	archives_in_use >"$installed_images"
}

# The one step the chart leaves to a node's administrator, as its NOTES print it: containerd's entry for the
# runtime handler, from the ConfigMap <release>-node-setup.
add_runtime_handler() {
	step "Adding the runtime handler to the node's containerd, as the chart's NOTES say (ConfigMap $RELEASE-node-setup, key containerd-runtime.toml; node.sh runtime-handler)"
	kubectl get configmap -n "$SYSTEM_NS" "$RELEASE-node-setup" -o jsonpath='{.data.containerd-runtime\.toml}' >"$handler_file" ||
		die "no ConfigMap $RELEASE-node-setup in namespace $SYSTEM_NS"
	sed 's/^/    | /' "$handler_file"
	node_sh runtime-handler "$handler_file" 2>&1 | indent
}

pod_field() { kubectl get pod -n "$APP_NS" "$APP_POD" -o jsonpath="$1" 2>/dev/null || true; }
pod_ready() { [[ $(pod_field '{.status.conditions[?(@.type=="Ready")].status}') == True ]]; }
pod_gone() { [[ -z $(pod_field '{.metadata.uid}') ]]; }

apply_policy_and_pod() {
	step "Applying the policy ${POLICY_FILE#"$repo_dir/"} (namespaces labelled environment=production)"
	quietly kubectl kubectl apply -f "$POLICY_FILE"
	ensure_namespace "$APP_NS" environment=production
	if [[ -n $(pod_field '{.metadata.uid}') && -z $(pod_field '{.metadata.deletionTimestamp}') &&
		$(pod_field '{.status.phase}') =~ ^(Pending|Running)$ ]]; then
		step "Pod $APP_NS/$APP_POD exists already (uid $(pod_field '{.metadata.uid}'))"
	else
		if ! pod_gone; then
			log "Pod $APP_NS/$APP_POD is $(pod_field '{.status.phase}'); replacing it"
			quietly kubectl kubectl delete pod -n "$APP_NS" "$APP_POD" --wait --timeout="${DEMO_TIMEOUT}s"
		fi
		step "Creating Pod $APP_NS/$APP_POD (runtimeClassName $RUNTIME_CLASS, image $DEMO_IMAGE); the scheduler puts it on the node"
		quietly kubectl kubectl apply -f - <<-EOF
			apiVersion: v1
			kind: Pod
			metadata:
			  name: $APP_POD
			  namespace: $APP_NS
			  labels: {app: $APP_POD}
			spec:
			  runtimeClassName: $RUNTIME_CLASS
			  terminationGracePeriodSeconds: 1
			  containers:
			    - name: $APP_CONTAINER
			      image: $DEMO_IMAGE
			      imagePullPolicy: Never
			      command: [sleep, infinity]
		EOF
	fi
	wait_until "Pod $APP_NS/$APP_POD to be Ready (kubectl describe pod -n $APP_NS $APP_POD)" pod_ready
}

# Everything but the typing; sets pod_uid, the Pod object's uid.
pod_uid=""
bring_up() {
	require_root
	claim_demo_dir
	install_and_build
	start_node
	build_demo_image
	import_images
	install_release
	add_runtime_handler
	apply_policy_and_pod
	pod_uid=$(pod_field '{.metadata.uid}')
	log "Pod $APP_NS/$APP_POD runs on node $(pod_field '{.spec.nodeName}') (uid $pod_uid)"
}

# ---------------------------------------------------------------- typing

# The commands recorded for the demo pod so far, one per line.
recorded_commands() {
	kubectl get auditrecords -n "$APP_NS" -o go-template --template \
		'{{range .items}}{{if eq .spec.pod.uid "'"$1"'"}}{{range .status.commands}}{{.command}}{{"\n"}}{{end}}{{end}}{{end}}'
}

recorded_count() { recorded_commands "$1" | grep -c '' || true; }

prompts() { grep -o 'bash-[0-9.]*# ' "$1" 2>/dev/null | grep -c '' || true; }

# Waits until the terminal of type_commands shows its prompt for the n-th time.
pty_pid="" transcript="" prompt_n=0
wait_prompt() {
	local deadline=$((SECONDS + DEMO_TIMEOUT))
	prompt_n=$((prompt_n + 1))
	until (($(prompts "$transcript") >= prompt_n)); do
		if ! kill -0 "$pty_pid" 2>/dev/null || ((SECONDS >= deadline)); then
			kill "$pty_pid" 2>/dev/null || true
			die "bash in the pod did not show its prompt (transcript: $transcript)"
		fi
		sleep 0.05
	done
}

# The command line that opens `bash -i` in the demo pod on a terminal, as a user types it.
exec_command() { printf '%q ' "$kubectl_bin" --kubeconfig "$KUBECONFIG" exec -it -n "$APP_NS" "$APP_POD" -c "$APP_CONTAINER" -- bash -i; }

# Types each line of $1 into a new `bash -i` in the demo pod, through `kubectl exec -it` on a
# pseudo-terminal that script(1) provides, waiting for bash's prompt before each line as a person would,
# then `exit`. What the terminal shows is copied to stdout and to $2.
type_commands() { # commands-file transcript
	local file=$1 fifo keys line tail_pid
	transcript=$2
	prompt_n=0
	fifo=$DEMO_DIR/keys.$$
	rm -f "$fifo"
	mkfifo -m 600 "$fifo"
	: >"$transcript"
	script -qfec "$(exec_command)" /dev/null <"$fifo" >"$transcript" 2>&1 9>&- &
	pty_pid=$!
	exec {keys}>"$fifo"
	rm -f "$fifo"
	tail -n +1 -f --pid="$pty_pid" "$transcript" 2>/dev/null > >(sed -u 's/\r$//; s/^/    | /') &
	tail_pid=$!
	while IFS= read -r line || [[ -n $line ]]; do
		[[ -n $line ]] || continue
		wait_prompt
		printf '%s\n' "$line" >&"$keys"
	done <"$file"
	wait_prompt
	printf 'exit\n' >&"$keys"
	exec {keys}>&-
	wait "$pty_pid" || true
	wait "$tail_pid" 2>/dev/null || true
}

show() { # command...: print it as a user would type it, then run it
	printf '\n$ %s\n' "$*"
	"$@"
}

print_results() {
	printf '\n'
	step "What a user looks at (export KUBECONFIG=$KUBECONFIG; kubectl is $kubectl_bin)"
	show kubectl get pods -n "$SYSTEM_NS" -o wide
	show kubectl get auditrecords -n "$APP_NS"
	# Each session's commands, as typed (but for what redaction replaced), with the alert that matched.
	local commands='{range .items[*]}{range .status.commands[*]}{.time}{"  "}{.command}{"  "}{.alert.name}{"\n"}{end}{end}'
	printf "\n$ kubectl get auditrecords -n %s -o jsonpath='%s'\n" "$APP_NS" "$commands"
	kubectl get auditrecords -n "$APP_NS" -o jsonpath="$commands"
	show kubectl describe auditpolicy "$POLICY"
	show kubectl get events -n "$APP_NS" --field-selector "involvedObject.name=$APP_POD" --sort-by=.metadata.resourceVersion
}

print_next_steps() {
	printf '\n'
	step "The demo runs. Next:"
	log "make demo-shell      # a shell in $APP_NS/$APP_POD, audited, with its Events streaming beside it"
	log "export KUBECONFIG=$KUBECONFIG PATH=$bin_dir:\$PATH"
	log "kubectl get auditrecords -A -w"
	log "kubectl logs -n $SYSTEM_NS daemonset/$RELEASE-agent    # or deployment/$RELEASE-operator"
	if own_node; then
		log "logs of the node: $NODE_DIR/*.log; of the demo: $logs_dir"
		log "make demo-down       # removes everything (the node too) and restores the host"
	else
		log "make demo-down       # with DEMO_DIR=$DEMO_DIR: removes what the demo made; the node stays up"
	fi
}

expected_count=0
commands_visible() { (($(recorded_count "$pod_uid") >= expected_count)); }
# The policy's status counts commands every 2 s or so (the operator writes it at most that often).
policy_counted() {
	local n
	n=$(kubectl get auditpolicy "$POLICY" -o jsonpath='{.status.commandsRecorded}' 2>/dev/null || true)
	((${n:-0} >= expected_count))
}

cmd_up() {
	local start=$SECONDS lines typed_at
	[[ -r $DEMO_COMMANDS ]] || die "DEMO_COMMANDS: cannot read $DEMO_COMMANDS"
	bring_up
	lines=$(grep -c . "$DEMO_COMMANDS" || true)
	expected_count=$(($(recorded_count "$pod_uid") + lines + 1)) # and `exit`
	step "Typing $lines commands from ${DEMO_COMMANDS#"$repo_dir/"} into bash -i in $APP_NS/$APP_POD (kubectl exec -it, on a pty)"
	type_commands "$DEMO_COMMANDS" "$logs_dir/typed-$(date +%Y%m%dT%H%M%S).log"
	typed_at=$(date +%s%3N)
	step "Waiting until the $((lines + 1)) commands (with exit) are AuditRecords in the API server"
	wait_until "the commands in AuditRecords; see kubectl logs -n $SYSTEM_NS daemonset/$RELEASE-agent" commands_visible
	log "all there $(($(date +%s%3N) - typed_at)) ms after the shell ended"
	local deadline=$((SECONDS + 10))
	until policy_counted || ((SECONDS >= deadline)); do sleep 0.5; done
	print_results
	print_next_steps
	printf '\n'
	step "Done in $((SECONDS - start))s"
}

# ---------------------------------------------------------------- shell, status, down

# Prints each audit Event line (REASON MESSAGE) over the line of bash's prompt: kubectl puts the terminal in
# raw mode, so lines end with \r\n there. (Readline does not know: Ctrl-L redraws its prompt and line.)
relay_events() {
	local line
	while IFS= read -r line; do printf '\r\033[K[audit] %s\r\n' "$line"; done
}

watcher_pid=""
cmd_shell() {
	[[ -t 0 && -t 1 ]] || die "demo-shell needs a terminal (it runs kubectl exec -it)"
	if ! cmd_status >/dev/null 2>&1; then
		bring_up
	fi
	exec 9>&- # no lock held while you type
	step "Audited shell in $APP_NS/$APP_POD: bash -i through kubectl exec -it"
	log "Each command you type shows up as '[audit] ...': an Event on the Pod, written by the operator"
	log "from the agent's report (kubectl get events -w); Ctrl-L redraws the prompt. exit or Ctrl-D leaves."
	kubectl get events -n "$APP_NS" --field-selector "involvedObject.name=$APP_POD" --watch-only \
		-o custom-columns='REASON:.reason,MESSAGE:.message' --no-headers 2>/dev/null > >(relay_events) &
	watcher_pid=$!
	trap 'kill "$watcher_pid" 2>/dev/null || true' EXIT
	kubectl exec -it -n "$APP_NS" "$APP_POD" -c "$APP_CONTAINER" -- bash -i || true
}

workloads_ready() {
	local want ready
	want=$(kubectl get deployment -n "$SYSTEM_NS" "$RELEASE-operator" -o jsonpath='{.spec.replicas}' 2>/dev/null) || return 1
	ready=$(kubectl get deployment -n "$SYSTEM_NS" "$RELEASE-operator" -o jsonpath='{.status.readyReplicas}' 2>/dev/null) || return 1
	[[ -n $want && $want == "$ready" ]] || return 1
	want=$(kubectl get daemonset -n "$SYSTEM_NS" "$RELEASE-agent" -o jsonpath='{.status.desiredNumberScheduled}' 2>/dev/null) || return 1
	ready=$(kubectl get daemonset -n "$SYSTEM_NS" "$RELEASE-agent" -o jsonpath='{.status.numberReady}' 2>/dev/null) || return 1
	[[ -n $want && $want != 0 && $want == "$ready" ]]
}

cmd_status() {
	local ok=0
	if [[ ! -f $marker ]]; then
		log "not running (no demo in $DEMO_DIR)"
		return 1
	fi
	if node_sh status >/dev/null 2>&1; then
		log "node: running (NODE_DIR=$NODE_DIR$(own_node || printf ', DEMO_NODE_DIR'))"
	else
		log "node: not running (NODE_DIR=$NODE_DIR)"
		return 1
	fi
	if [[ $(release_status) == deployed ]] && workloads_ready; then
		log "chart: release $RELEASE deployed in namespace $SYSTEM_NS, operator and agent Ready"
	else
		log "chart: release $RELEASE not deployed, or its pods not Ready (kubectl get pods -n $SYSTEM_NS)"
		ok=1
	fi
	if pod_ready; then log "pod $APP_NS/$APP_POD: Ready (uid $(pod_field '{.metadata.uid}'))"; else
		log "pod $APP_NS/$APP_POD: not Ready"
		ok=1
	fi
	return "$ok"
}

# What the demo made on a node that is not its own, deleted; the node stays as it was.
remove_from_node() {
	if ! node_sh status >/dev/null 2>&1; then
		log "The node in $NODE_DIR is not running: nothing to remove from it"
		return 0
	fi
	step "Removing what the demo made on the node in $NODE_DIR (the node stays up)"
	log "namespace $APP_NS (its pods and AuditRecords), policy $POLICY"
	quietly kubectl kubectl delete namespace "$APP_NS" --ignore-not-found --wait --timeout="${DEMO_TIMEOUT}s"
	quietly kubectl kubectl delete containerauditpolicy "$POLICY" --ignore-not-found
	if [[ -n $(release_status) ]]; then
		log "helm uninstall $RELEASE -n $SYSTEM_NS"
		quietly helm helm uninstall "$RELEASE" -n "$SYSTEM_NS" --wait --timeout 3m
	fi
	log "namespace $SYSTEM_NS"
	quietly kubectl kubectl delete namespace "$SYSTEM_NS" --ignore-not-found --wait --timeout="${DEMO_TIMEOUT}s"
	wait_until "namespace $SYSTEM_NS to be gone" namespace_gone "$SYSTEM_NS"
	wait_until "namespace $APP_NS to be gone" namespace_gone "$APP_NS"
}

cmd_down() {
	if [[ ! -d $DEMO_DIR ]]; then
		step "The demo is not running (no $DEMO_DIR): nothing to do"
		return 0
	fi
	[[ -f $marker ]] || die "not touching $DEMO_DIR: it was not made by demo.sh"
	require_root
	lock_demo_dir
	mkdir -p "$logs_dir"
	if own_node; then
		step "Taking the demo's node down (node.sh down: every pod, every component; the host restored)"
		node_sh down 2>&1 | indent || die "node.sh down failed; $DEMO_DIR is kept"
	else
		remove_from_node
	fi
	rm -rf --one-file-system "$DEMO_DIR"
	step "Removed $DEMO_DIR"
}

case ${1:-} in
up) cmd_up ;;
shell) cmd_shell ;;
down) cmd_down ;;
status) cmd_status ;;
*)
	# The header comment of this file is the help text.
	awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac

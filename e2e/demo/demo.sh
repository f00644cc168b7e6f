#!/usr/bin/env bash
# container-auditor on one machine, end to end: a local control plane, a
# containerd whose `container-auditor` runtime handler runs the runc wrapper,
# the operator and the agent as local processes with real credentials, a policy,
# a Pod, and commands typed into its shell, all the way to `kubectl get
# auditrecords`. As root. Behind `make demo`, `make demo-shell`, `make demo-down`.
#
# Usage: demo.sh up|shell|down|status
#   up      install and build what is missing (scripts/setup.sh, make build,
#           e2e/cluster/build.sh), start everything, type the commands of
#           DEMO_COMMANDS into `bash -i` in the demo pod, wait until they are
#           in the API server and print what a user looks at. Idempotent: what
#           runs already is kept, and each run types into a new shell session.
#   shell   bring the demo up if it is not (without typing), then open `bash -i`
#           in the demo pod on this terminal, with the pod's audit Events
#           streaming into the same terminal as they are written.
#   down    stop and remove everything the demo started (agent, operator,
#           containerd and its pods, etcd and kube-apiserver) and delete
#           DEMO_DIR. Idempotent.
#   status  print what runs; exit 0 if everything does.
#
# Everything lives in DEMO_DIR: the control plane (cluster/), containerd
# (stack/), credentials (tls/, operator/, agent/), the agent's state and every
# log (logs/). Processes are only ever stopped through pid files there whose
# process's command line names DEMO_DIR.
#
# Environment (defaults in brackets):
#   DEMO_DIR              [<repo>/.cache/demo]
#   DEMO_COMMANDS         a file whose lines are typed into the shell
#                         [e2e/demo/commands.txt]
#   DEMO_NODE             this machine's Node name [the host name, lower case]
#   DEMO_APISERVER_PORT   kube-apiserver on 127.0.0.1 [18443]
#   DEMO_ETCD_PORT, DEMO_ETCD_PEER_PORT   etcd on 127.0.0.1 [18379, 18380]
#   DEMO_OPERATOR_PORT    the operator's agent endpoint (HTTPS) [18444]
#   DEMO_PROBE_PORT       the operator's /healthz, /readyz, /metrics [18081]
#   DEMO_TIMEOUT          seconds to wait for each stage [60]
#   DEMO_BUILD            0: skip scripts/setup.sh, make build and build.sh,
#                         done by the caller already (the node test) [1]
# The ports differ from `make cluster-up`'s (16443, 12379, 12380) and lie
# below the kernel's ephemeral range, where the test tier picks its ports.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/../.." && pwd)
cd "$repo_dir"
# The Node.js scripts/setup.sh chose (scripts/node-runtime.sh), also when this script is run without make.
export PATH="$repo_dir/.cache/node/bin:$PATH"
# The flags the images' ENTRYPOINT gives node (cli/node-flags.ts; a unit test keeps the two in step).
node_flags=(--max-semi-space-size=16)

DEMO_DIR=${DEMO_DIR:-$repo_dir/.cache/demo}
case $DEMO_DIR in
/*) ;;
*) DEMO_DIR="$repo_dir/$DEMO_DIR" ;;
esac
DEMO_DIR=${DEMO_DIR%/}
DEMO_COMMANDS=${DEMO_COMMANDS:-$script_dir/commands.txt}
DEMO_APISERVER_PORT=${DEMO_APISERVER_PORT:-18443}
DEMO_ETCD_PORT=${DEMO_ETCD_PORT:-18379}
DEMO_ETCD_PEER_PORT=${DEMO_ETCD_PEER_PORT:-18380}
DEMO_OPERATOR_PORT=${DEMO_OPERATOR_PORT:-18444}
DEMO_PROBE_PORT=${DEMO_PROBE_PORT:-18081}
DEMO_TIMEOUT=${DEMO_TIMEOUT:-60}
DEMO_BUILD=${DEMO_BUILD:-1}

# The node name: the host name as a DNS label (what a kubelet registers).
default_node=$(hostname | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9.\n-' '-')
DEMO_NODE=${DEMO_NODE:-$default_node}

# What the demo creates in the cluster.
SYSTEM_NS=container-auditor
OPERATOR_SA=container-auditor-operator
AGENT_SA=container-auditor-agent
AGENT_POD=container-auditor-agent-$DEMO_NODE
POLICY_FILE=$repo_dir/examples/production-shells.yaml
POLICY=production-shells
APP_NS=shop
APP_POD=web
APP_CONTAINER=app
RUNTIME_CLASS=container-auditor
DEMO_IMAGE=localhost/container-auditor/demo-shell:1
TOKEN_DURATION=24h

bin_dir=$repo_dir/.cache/bin
kubectl_bin=$bin_dir/kubectl
helm_bin=$bin_dir/helm
crictl_bin=$bin_dir/crictl
marker=$DEMO_DIR/.container-auditor-demo # `down` deletes only a directory that has it
logs_dir=$DEMO_DIR/logs
run_dir=$DEMO_DIR/run
tls_dir=$DEMO_DIR/tls
operator_dir=$DEMO_DIR/operator
agent_dir=$DEMO_DIR/agent
state_file=$DEMO_DIR/demo.env # the running pod: POD_UID, POD_ID, CONTAINER_ID

# The two scripts the demo stands on, pointed into DEMO_DIR.
export CLUSTER_DIR=$DEMO_DIR/cluster
export APISERVER_PORT=$DEMO_APISERVER_PORT ETCD_PORT=$DEMO_ETCD_PORT ETCD_PEER_PORT=$DEMO_ETCD_PEER_PORT
export STACK_DIR=$DEMO_DIR/stack
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
crictl_config=$STACK_DIR/crictl.yaml
handoff_dir=$STACK_DIR/handoff

step() { printf "==> [%ss] %s\n" "$SECONDS" "$*"; }
log() { printf '    %s\n' "$*"; }
err() { printf 'demo.sh: error: %s\n' "$*" >&2; }
die() {
	err "$*"
	exit 1
}

case $DEMO_DIR in
"" | / | "$HOME" | "$repo_dir" | "$repo_dir/.cache" | /tmp | /run) die "refusing to use DEMO_DIR=$DEMO_DIR" ;;
esac
for v in DEMO_APISERVER_PORT DEMO_ETCD_PORT DEMO_ETCD_PEER_PORT DEMO_OPERATOR_PORT DEMO_PROBE_PORT DEMO_TIMEOUT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
[[ $DEMO_NODE =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] || die "DEMO_NODE must be a DNS name, got '$DEMO_NODE'"

kubectl() { "$kubectl_bin" --kubeconfig "$KUBECONFIG" "$@"; }
crictl() { "$crictl_bin" --config "$crictl_config" "$@"; }

# Runs a helper script with its output in logs/NAME.log; on failure shows the
# log's end. fd 9 (our lock) is closed for it, so nothing it leaves running
# holds the lock.
quietly() { # name command...
	local name=$1
	shift
	if ! "$@" >>"$logs_dir/$name.log" 2>&1 9>&-; then
		err "$* failed; the end of $logs_dir/$name.log:"
		tail -n 40 "$logs_dir/$name.log" >&2
		exit 1
	fi
}

# Waits until `$2...` succeeds, for at most DEMO_TIMEOUT seconds; dies saying
# what it waited for ($1) otherwise.
wait_until() { # what command...
	local what=$1 deadline=$((SECONDS + DEMO_TIMEOUT))
	shift
	until "$@"; do
		((SECONDS < deadline)) || die "timed out after ${DEMO_TIMEOUT}s waiting for $what (DEMO_TIMEOUT)"
		sleep 0.2
	done
}

# ---------------------------------------------------------------- processes

pid_file() { printf '%s/%s.pid\n' "$run_dir" "$1"; }

# The pid of the demo's process $1 if it runs: the pid file's process counts
# only if its command line names DEMO_DIR (a recycled pid is never touched).
running_pid() {
	local file pid
	file=$(pid_file "$1")
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
	tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$DEMO_DIR/" || return 1
	printf '%s\n' "$pid"
}

# Starts "$@" as process $1, detached: its own session (it outlives this
# script and make), stdin from /dev/null, output appended to logs/NAME.log,
# no inherited fd but 0-2 (no caller's pipe or lock kept open).
start_detached() { # name command...
	local name=$1 file log_file i bg
	shift
	file=$(pid_file "$name")
	log_file=$logs_dir/$name.log
	rm -f "$file"
	# shellcheck disable=SC2016 # $$/$0/$@ are for the inner sh
	(
		for fd in /proc/"$BASHPID"/fd/*; do
			fd=${fd##*/}
			if ((fd > 2)); then eval "exec $fd>&-"; fi
		done
		exec setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$file" "$@"
	) </dev/null >>"$log_file" 2>&1 &
	bg=$!
	for ((i = 0; i < 50; i++)); do
		running_pid "$name" >/dev/null && return 0
		kill -0 "$bg" 2>/dev/null || break
		sleep 0.1
	done
	show_log "$name"
	die "$name did not start"
}

# SIGTERM, up to 10 s to finish (the agent sends what it has queued), then SIGKILL.
stop_process() {
	local name=$1 pid i
	if pid=$(running_pid "$name"); then
		log "Stopping the $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			running_pid "$name" >/dev/null || break
			sleep 0.1
		done
		if running_pid "$name" >/dev/null; then
			log "The $name did not exit within 10s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$(pid_file "$name")"
}

show_log() {
	local f=$logs_dir/$1.log
	[[ -f $f ]] || return 0
	printf -- '---- last 30 lines of %s ----\n' "$f" >&2
	tail -n 30 "$f" >&2
	printf -- '----\n' >&2
}

# Who holds TCP port $1 on this machine (empty when it is free).
port_holder() { ss -Htlnp "sport = :$1" 2>/dev/null || true; }

check_port_free() { # port what
	local holder
	holder=$(port_holder "$1")
	[[ -z $holder ]] || die "port $1 ($2) is already in use: $holder
Stop what holds it, or move the demo, e.g. ${2##*, }=$(($1 + 10000)) make demo (make demo-down first if it is half up)"
}

# ---------------------------------------------------------------- stages

require_root() {
	[[ $(id -u) -eq 0 ]] || die "the demo needs root (containerd, runc, bpftrace): run it as root, e.g. sudo make demo"
}

install_and_build() {
	[[ $DEMO_BUILD != 0 ]] || return 0
	step "Installing what is missing and building (scripts/setup.sh: Debian packages, npm ci; make build)"
	make -s -C "$repo_dir" build 9>&-
	step "Building kube-apiserver, kubectl, etcd, crictl and helm from their Go modules (cached: the first time takes 15 to 20 minutes)"
	# Its progress lines as they come; not the table of paths it ends with.
	bash e2e/cluster/build.sh kube-apiserver kubectl etcd crictl helm 9>&- | sed -u -n '/ -> /!s/^/    /p'
}

lock_demo_dir() {
	exec 9>"$DEMO_DIR/.lock"
	flock -n 9 || {
		log "Another demo.sh runs in $DEMO_DIR; waiting for it"
		flock 9
	}
}

# Before anything starts: the ports of what does not run yet must be free.
check_ports() {
	if [[ ! -d $CLUSTER_DIR ]]; then
		check_port_free "$APISERVER_PORT" "kube-apiserver, DEMO_APISERVER_PORT"
		check_port_free "$ETCD_PORT" "etcd, DEMO_ETCD_PORT"
		check_port_free "$ETCD_PEER_PORT" "etcd's peer port, DEMO_ETCD_PEER_PORT"
	fi
	if ! running_pid operator >/dev/null; then
		check_port_free "$DEMO_OPERATOR_PORT" "the operator's agent endpoint, DEMO_OPERATOR_PORT"
		check_port_free "$DEMO_PROBE_PORT" "the operator's probes, DEMO_PROBE_PORT"
	fi
}

start_cluster() {
	step "Starting the control plane: etcd and kube-apiserver on https://127.0.0.1:$APISERVER_PORT (logs: $CLUSTER_DIR)"
	quietly cluster bash e2e/cluster/cluster.sh up
	step "Installing the CRDs (charts/container-auditor/crds/)"
	quietly kubectl kubectl apply --server-side -f charts/container-auditor/crds/
	quietly kubectl kubectl wait --for=condition=Established --timeout="${DEMO_TIMEOUT}s" -f charts/container-auditor/crds/
}

start_stack() {
	step "Starting containerd with its CRI; runtime handler container-auditor runs the runc wrapper (logs: $STACK_DIR)"
	quietly stack bash e2e/stack/stack.sh up
}

apply_objects() {
	step "Creating the ServiceAccounts, the operator's RBAC, RuntimeClass $RUNTIME_CLASS and the AuditRecords' protection, from the Helm chart (charts/container-auditor/)"
	# The chart's own objects, not a copy: the demo's operator runs with exactly the RBAC a helm install grants.
	# Its workloads are left out: here the operator and the agent are local processes.
	quietly kubectl kubectl apply -f - <<-EOF
		apiVersion: v1
		kind: Namespace
		metadata: {name: $SYSTEM_NS}
	EOF
	"$helm_bin" template container-auditor charts/container-auditor --namespace "$SYSTEM_NS" \
		--set runtimeClass.name="$RUNTIME_CLASS" \
		--show-only templates/serviceaccounts.yaml --show-only templates/operator-rbac.yaml \
		--show-only templates/view-rbac.yaml --show-only templates/runtimeclass.yaml \
		--show-only templates/record-protection.yaml >"$logs_dir/chart-objects.yaml" ||
		die "helm template failed"
	quietly kubectl kubectl apply -f "$logs_dir/chart-objects.yaml"
	step "Registering this machine as Node $DEMO_NODE, with the agent's Pod $SYSTEM_NS/$AGENT_POD on it"
	# No kubelet: the Node is only an object, and Pods on it stay Pending.
	quietly kubectl kubectl apply -f - <<-EOF
		apiVersion: v1
		kind: Node
		metadata:
		  name: $DEMO_NODE
		  labels: {kubernetes.io/hostname: $DEMO_NODE, kubernetes.io/os: linux}
		---
		apiVersion: v1
		kind: Pod
		metadata:
		  name: $AGENT_POD
		  namespace: $SYSTEM_NS
		  labels: {app.kubernetes.io/name: container-auditor-agent}
		spec:
		  nodeName: $DEMO_NODE
		  serviceAccountName: $AGENT_SA
		  containers:
		    - name: agent
		      image: container-auditor:dev
	EOF
}

# The operator's serving certificate, signed by a CA of the demo's own (the
# agent trusts that CA only). Made once per DEMO_DIR.
make_tls() {
	[[ -f $tls_dir/tls.crt ]] && return 0
	local tmp=$tls_dir.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp"
	chmod 700 "$tmp"
	(
		cd "$tmp"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
			-subj '/CN=container-auditor demo CA' -keyout ca.key -out ca.crt
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-subj '/CN=container-auditor-operator' -keyout tls.key -out tls.csr
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext.cnf
		openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
			-extfile ext.cnf -out tls.crt
		rm -f tls.csr ext.cnf ca.srl
	) >>"$logs_dir/openssl.log" 2>&1 || die "openssl failed (see $logs_dir/openssl.log)"
	mv "$tmp" "$tls_dir"
}

# ServiceAccount tokens from the API server's TokenRequest: the operator's own
# (in its kubeconfig), and the agent's with the agent audience, bound to the
# agent's Pod (so to this Node), as the kubelet would project it. Renewed by
# every `up`; they last TOKEN_DURATION.
issue_credentials() {
	local audience agent_uid token
	step "Issuing credentials: ServiceAccount tokens (TokenRequest), the operator's TLS certificate (openssl)"
	make_tls
	audience=$(node --input-type=module -e \
		"import { AGENT_TOKEN_AUDIENCE } from '$repo_dir/dist/api/agentapi/v1.js'; console.log(AGENT_TOKEN_AUDIENCE)")
	agent_uid=$(kubectl get pod -n "$SYSTEM_NS" "$AGENT_POD" -o jsonpath='{.metadata.uid}')
	mkdir -p "$operator_dir" "$agent_dir"
	chmod 700 "$operator_dir" "$agent_dir"

	token=$(kubectl create token "$OPERATOR_SA" -n "$SYSTEM_NS" --duration="$TOKEN_DURATION")
	local kc=$operator_dir/kubeconfig.tmp
	rm -f "$kc"
	{
		"$kubectl_bin" config --kubeconfig "$kc" set-cluster demo --server="https://127.0.0.1:$APISERVER_PORT" \
			--certificate-authority="$CLUSTER_DIR/pki/ca.crt" --embed-certs
		"$kubectl_bin" config --kubeconfig "$kc" set-credentials "$OPERATOR_SA" --token="$token"
		"$kubectl_bin" config --kubeconfig "$kc" set-context demo --cluster=demo --user="$OPERATOR_SA"
		"$kubectl_bin" config --kubeconfig "$kc" use-context demo
	} >/dev/null
	mv "$kc" "$operator_dir/kubeconfig"

	token=$(kubectl create token "$AGENT_SA" -n "$SYSTEM_NS" --audience="$audience" --duration="$TOKEN_DURATION" \
		--bound-object-kind=Pod --bound-object-name="$AGENT_POD" --bound-object-uid="$agent_uid")
	(umask 077 && printf '%s\n' "$token" >"$agent_dir/token.tmp")
	mv "$agent_dir/token.tmp" "$agent_dir/token"
	log "operator: $SYSTEM_NS/$OPERATOR_SA (kubeconfig $operator_dir/kubeconfig)"
	log "agent:    $SYSTEM_NS/$AGENT_SA, audience $audience, bound to Pod $AGENT_POD on Node $DEMO_NODE"
}

operator_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$DEMO_PROBE_PORT/readyz" 2>/dev/null; }

# The agents' endpoint answers a plan for this node to the agent's token: TLS,
# TokenReview, the node binding, and leadership all work.
operator_serves_agent() {
	curl -fsS -o /dev/null --max-time 5 --cacert "$tls_dir/ca.crt" \
		-H "Authorization: Bearer $(<"$agent_dir/token")" \
		"https://127.0.0.1:$DEMO_OPERATOR_PORT/v1/plan?node=$DEMO_NODE&version=" 2>/dev/null
}

alive_or_die() { # name
	running_pid "$1" >/dev/null && return 0
	show_log "$1"
	die "the $1 exited"
}

operator_up() { alive_or_die operator && operator_serves_agent; }
agent_up() { alive_or_die agent && grep -q '"message":"Auditing"' "$logs_dir/agent.log"; }

start_operator() {
	local pid
	# Its token (in its kubeconfig, read once) lasts TOKEN_DURATION: an operator
	# started more than half of that ago is restarted with the one just issued.
	if pid=$(running_pid operator) && (($(ps -o etimes= -p "$pid") > 12 * 3600)); then
		step "Restarting the operator with a new token"
		stop_process operator
	fi
	if running_pid operator >/dev/null; then
		step "The operator runs already (pid $(running_pid operator))"
		return 0
	fi
	step "Starting the operator: agents' endpoint https://127.0.0.1:$DEMO_OPERATOR_PORT, probes :$DEMO_PROBE_PORT (log: $logs_dir/operator.log)"
	start_detached operator node "${node_flags[@]}" "$repo_dir/bin/container-auditor.js" operator \
		--kubeconfig "$operator_dir/kubeconfig" \
		--tls-cert "$tls_dir/tls.crt" --tls-key "$tls_dir/tls.key" \
		--host 127.0.0.1 --port "$DEMO_OPERATOR_PORT" --probe-port "$DEMO_PROBE_PORT" \
		--agent-service-account "$SYSTEM_NS/$AGENT_SA" --lease-namespace "$SYSTEM_NS" \
		--runtime-class "$RUNTIME_CLASS"
	wait_until "the operator to lead and serve agents" operator_up
}

start_agent() {
	if running_pid agent >/dev/null; then
		step "The agent runs already (pid $(running_pid agent))"
		return 0
	fi
	step "Starting the agent on Node $DEMO_NODE: hand-offs from $handoff_dir, bpftrace on readline (log: $logs_dir/agent.log)"
	start_detached agent node "${node_flags[@]}" "$repo_dir/bin/container-auditor.js" agent \
		--node "$DEMO_NODE" --operator "https://127.0.0.1:$DEMO_OPERATOR_PORT" \
		--token-file "$agent_dir/token" --operator-ca "$tls_dir/ca.crt" \
		--handoff-dir "$handoff_dir" --state-dir "$agent_dir/state" \
		--bundle-root "$STACK_DIR/containerd/state"
	wait_until "the agent to start" agent_up
}

apply_policy_and_pod() {
	step "Applying the policy ${POLICY_FILE#"$repo_dir/"} (namespaces labelled environment=production)"
	quietly kubectl kubectl apply -f "$POLICY_FILE"
	step "Creating namespace $APP_NS (environment=production) and Pod $APP_NS/$APP_POD (runtimeClassName $RUNTIME_CLASS, nodeName $DEMO_NODE)"
	quietly kubectl kubectl apply -f - <<-EOF
		apiVersion: v1
		kind: Namespace
		metadata:
		  name: $APP_NS
		  labels: {environment: production}
		---
		apiVersion: v1
		kind: Pod
		metadata:
		  name: $APP_POD
		  namespace: $APP_NS
		  labels: {app: $APP_POD}
		spec:
		  nodeName: $DEMO_NODE
		  runtimeClassName: $RUNTIME_CLASS
		  containers:
		    - name: $APP_CONTAINER
		      image: $DEMO_IMAGE
		      command: [sleep, infinity]
	EOF
}

# The plan the agent applies (it keeps it in its state directory) names the pod.
agent_plans_pod() { grep -qF -- "\"podUid\":\"$1\"" "$agent_dir/state/plan.json" 2>/dev/null; }

container_running() { # container id
	[[ $(crictl inspect -o go-template --template '{{.status.state}}' "$1" 2>/dev/null) == CONTAINER_RUNNING ]]
}

# Starts the pod's container through the CRI, as the kubelet would once the
# Pod is scheduled here, unless it runs already for this very Pod object.
run_pod() {
	local uid=$1 POD_UID="" POD_ID="" CONTAINER_ID="" out
	# shellcheck disable=SC1090 # written by this script
	[[ -f $state_file ]] && source "$state_file"
	if [[ $POD_UID == "$uid" && -n $CONTAINER_ID ]] && container_running "$CONTAINER_ID"; then
		step "The pod's container runs already (container $CONTAINER_ID)"
		return 0
	fi
	if [[ -n $POD_ID ]]; then # an earlier Pod object's, or gone with an earlier containerd
		bash e2e/stack/stack.sh rm-pod "$POD_ID" >>"$logs_dir/stack.log" 2>&1 9>&- || true
	fi
	step "Starting the pod's container through containerd's CRI with handler $RUNTIME_CLASS (stack.sh run-pod, uid $uid)"
	out=$(bash e2e/stack/stack.sh run-pod --name "$APP_POD" --namespace "$APP_NS" --uid "$uid" \
		--container "$APP_CONTAINER" --runtime "$RUNTIME_CLASS" --image "$DEMO_IMAGE" -- sleep infinity 9>&-) ||
		die "stack.sh run-pod failed"
	POD_ID=$(sed -n 's/^POD_ID=//p' <<<"$out")
	CONTAINER_ID=$(sed -n 's/^CONTAINER_ID=//p' <<<"$out")
	printf 'POD_UID=%s\nPOD_ID=%s\nCONTAINER_ID=%s\n' "$uid" "$POD_ID" "$CONTAINER_ID" >"$state_file"
	log "pod sandbox $POD_ID, container $CONTAINER_ID"
}

container_id() {
	local CONTAINER_ID=""
	# shellcheck disable=SC1090 # written by this script
	[[ -f $state_file ]] && source "$state_file"
	printf '%s\n' "$CONTAINER_ID"
}

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
			die "bash in the container did not show its prompt (transcript: $transcript)"
		fi
		sleep 0.05
	done
}

# Types each line of $2 into a new `bash -i` in container $1, through `crictl
# exec -it` on a pseudo-terminal that script(1) provides, waiting for bash's
# prompt before each line as a person would, then `exit`. What the terminal
# shows is copied to stdout and to $3.
type_commands() { # container-id commands-file transcript
	local cid=$1 file=$2 fifo keys line tail_pid
	transcript=$3
	prompt_n=0
	fifo=$run_dir/keys.$$
	rm -f "$fifo"
	mkfifo -m 600 "$fifo"
	: >"$transcript"
	script -qfec "$(printf '%q ' "$crictl_bin" --config "$crictl_config" exec -it "$cid" bash -i)" /dev/null \
		<"$fifo" >"$transcript" 2>&1 9>&- &
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
	show kubectl get auditrecords -A
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
	log "logs: $logs_dir (operator.log, agent.log), $CLUSTER_DIR, $STACK_DIR/containerd"
	log "make demo-down       # stops and removes everything"
}

# Everything but the typing; sets pod_uid, the Pod object's uid.
pod_uid=""
bring_up() {
	require_root
	install_and_build
	mkdir -p "$DEMO_DIR"
	lock_demo_dir
	touch "$marker"
	mkdir -p "$logs_dir" "$run_dir"
	check_ports
	start_cluster
	start_stack
	apply_objects
	issue_credentials
	start_operator
	start_agent
	apply_policy_and_pod
	pod_uid=$(kubectl get pod -n "$APP_NS" "$APP_POD" -o jsonpath='{.metadata.uid}')
	step "Waiting for the operator's plan for Node $DEMO_NODE to name Pod $APP_NS/$APP_POD at the agent"
	wait_until "the agent's plan to name pod $APP_NS/$APP_POD ($pod_uid); see $logs_dir/operator.log and agent.log" \
		agent_plans_pod "$pod_uid"
	run_pod "$pod_uid"
}

expected_count=0
commands_visible() { (($(recorded_count "$pod_uid") >= expected_count)); }

cmd_up() {
	local start=$SECONDS lines typed_at
	[[ -r $DEMO_COMMANDS ]] || die "DEMO_COMMANDS: cannot read $DEMO_COMMANDS"
	bring_up
	lines=$(grep -c . "$DEMO_COMMANDS" || true)
	expected_count=$(($(recorded_count "$pod_uid") + lines + 1)) # and `exit`
	step "Typing $lines commands from ${DEMO_COMMANDS#"$repo_dir/"} into bash -i in $APP_NS/$APP_POD (crictl exec -it, on a pty)"
	type_commands "$(container_id)" "$DEMO_COMMANDS" "$logs_dir/typed-$(date +%Y%m%dT%H%M%S).log"
	typed_at=$(date +%s%3N)
	step "Waiting until the $((lines + 1)) commands (with exit) are AuditRecords in the API server"
	wait_until "the commands in AuditRecords; see $logs_dir/agent.log and operator.log" commands_visible
	log "all there $(($(date +%s%3N) - typed_at)) ms after the shell ended"
	print_results
	print_next_steps
	printf '\n'
	step "Done in $((SECONDS - start))s"
}

# Prints each audit Event line (REASON MESSAGE) over the line of bash's prompt:
# crictl puts the terminal in raw mode, so lines end with \r\n there. (Readline
# does not know: Ctrl-L redraws its prompt and line.)
relay_events() {
	local line
	while IFS= read -r line; do printf '\r\033[K[audit] %s\r\n' "$line"; done
}

watcher_pid=""
cmd_shell() {
	local cid
	[[ -t 0 && -t 1 ]] || die "demo-shell needs a terminal (it runs crictl exec -it)"
	if ! cmd_status >/dev/null 2>&1; then
		bring_up
	else
		# Tokens last TOKEN_DURATION: renewed here too, for a demo left running.
		require_root
		lock_demo_dir
		issue_credentials >/dev/null
		start_operator >/dev/null
	fi
	exec 9>&- # no lock held while you type
	cid=$(container_id)
	step "Audited shell in $APP_NS/$APP_POD (container $cid): bash -i through crictl exec -it, as kubectl exec -it would"
	log "Each command you type shows up as '[audit] ...': an Event on the Pod, written by the operator"
	log "from the agent's report (kubectl get events -w); Ctrl-L redraws the prompt. exit or Ctrl-D leaves."
	kubectl get events -n "$APP_NS" --field-selector "involvedObject.name=$APP_POD" --watch-only \
		-o custom-columns='REASON:.reason,MESSAGE:.message' --no-headers 2>/dev/null > >(relay_events) &
	watcher_pid=$!
	trap 'kill "$watcher_pid" 2>/dev/null || true' EXIT
	crictl exec -it "$cid" bash -i || true
}

cmd_status() {
	local ok=0 pid
	if bash e2e/cluster/cluster.sh status >/dev/null 2>&1; then log "control plane: running (https://127.0.0.1:$APISERVER_PORT)"; else
		log "control plane: not running"
		ok=1
	fi
	if bash e2e/stack/stack.sh status >/dev/null 2>&1; then log "containerd: running ($STACK_DIR)"; else
		log "containerd: not running"
		ok=1
	fi
	for p in operator agent; do
		if pid=$(running_pid "$p"); then log "$p: running (pid $pid)"; else
			log "$p: not running"
			ok=1
		fi
	done
	local cid
	cid=$(container_id 2>/dev/null || true)
	if [[ -n $cid ]] && [[ -f $crictl_config ]] && container_running "$cid"; then log "pod $APP_NS/$APP_POD: running (container $cid)"; else
		log "pod $APP_NS/$APP_POD: not running"
		ok=1
	fi
	return "$ok"
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
	step "Stopping the demo in $DEMO_DIR"
	if [[ -d $STACK_DIR ]]; then
		log "Stopping containerd, its pods and shims"
		bash e2e/stack/stack.sh down 9>&- 2>&1 | sed 's/^/    /' || err "stack.sh down failed; going on"
	fi
	stop_process agent
	stop_process operator
	if [[ -d $CLUSTER_DIR ]]; then
		log "Stopping the control plane"
		bash e2e/cluster/cluster.sh down 9>&- 2>&1 | sed 's/^/    /' || err "cluster.sh down failed; going on"
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

#!/usr/bin/env bash
# A real one-node Kubernetes on this machine, built only from Go modules and Debian packages: etcd,
# kube-apiserver (Node and RBAC authorization), kube-controller-manager, kube-scheduler, containerd's CRI with
# Debian's CNI plugins (a bridge), the kubelet, kube-proxy (iptables) and CoreDNS (a Deployment). What users
# run `helm install` and `kubectl exec -it` against; the real-node tests and `make demo` use it.
#
# Usage: node.sh up|down|status|env|runtime-handler FILE|restart COMPONENT|import ARCHIVE...
#   up        build what is missing (e2e/cluster/build.sh), start every component in the background, wait
#             until the node is Ready and cluster DNS answers, and write an admin kubeconfig. Does nothing
#             if the node is already up.
#   down      delete every pod, stop every component, and undo what the node changed on the host (sysctls,
#             iptables chains, the bridge and the node's address, mounts, cgroups, the runc wrapper's
#             configuration directory if the node created it); then delete NODE_DIR. Idempotent.
#   status    print whether the node runs; exit 0 if it does, 1 if not.
#   env       print `export KUBECONFIG=...` (for: eval "$(node.sh env)").
#   runtime-handler FILE
#             add a runtime handler to containerd's configuration, as a node's administrator does it from the
#             snippet the chart's NOTES print (config version 2), and restart containerd; running containers
#             stay up. The same FILE again changes nothing.
#   restart COMPONENT
#             stop one component and start it again with the same settings (containerd: running containers
#             stay up, as with `systemctl restart containerd`).
#   import ARCHIVE...
#             import image archives (docker-archive or OCI) into containerd's k8s.io namespace, where the
#             kubelet finds them (there is no registry: pods name them with imagePullPolicy IfNotPresent).
#             An archive imported before (the same path and content checksum) whose images are all still
#             there is not imported again.
#
# Environment (defaults in brackets):
#   NODE_DIR              everything of the node; `down` deletes it [<repo>/.cache/k8s-node]
#   NODE_NAME             the Node's name [audit-node]
#   NODE_IP               the node's address, added to the loopback interface [10.245.0.1]
#   NODE_POD_CIDR         the pods' network (a bridge) [10.244.0.0/24]
#   NODE_SERVICE_CIDR     Services' ClusterIPs; the API server is .1, cluster DNS .10 [10.97.0.0/24]
#   NODE_APISERVER_PORT   kube-apiserver's HTTPS port on NODE_IP and 127.0.0.1 [26443]
#   NODE_ETCD_PORT        etcd's client port on 127.0.0.1 (its peer port is the next one) [22379]
#   NODE_KUBELET_PORT     the kubelet's port on NODE_IP (its healthz port is the next one) [20250]
#   NODE_PORT_BASE        kube-controller-manager, kube-scheduler, kube-proxy's health and metrics ports
#                         on 127.0.0.1 are BASE, +1, +2, +3 [20257]
#   NODE_READY_TIMEOUT    seconds `up` waits for each component [180]
#
# One node at a time on a machine: kube-proxy's iptables chains, the sysctls and the runc wrapper's
# /etc/container-auditor are the host's. `up` refuses while another NODE_DIR's node runs.
# Logs: NODE_DIR/<component>.log; the pods' logs through `kubectl logs`.
# Linux only, as root: the host facts this needs are in the README's "The real node" section.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/../.." && pwd)
bin_dir="$repo_dir/.cache/bin"
harness="$repo_dir/dist/e2e/harness/main.js" # the test harness's command line (make build): images
# The Node.js scripts/setup.sh chose (scripts/node-runtime.sh), for the harness, also when run without make.
export PATH="$repo_dir/.cache/node/bin:$PATH"

NODE_DIR=${NODE_DIR:-$repo_dir/.cache/k8s-node}
case $NODE_DIR in
/*) ;;
*) NODE_DIR="$PWD/$NODE_DIR" ;;
esac
NODE_DIR=${NODE_DIR%/}
case $NODE_DIR in
"" | / | "$HOME" | "$repo_dir" | "$repo_dir/.cache") printf 'node.sh: error: refusing NODE_DIR=%s\n' "$NODE_DIR" >&2 && exit 1 ;;
esac

# A node remembers its settings (node.env), so later commands need only NODE_DIR; explicit ones win on `up`.
settings_file="$NODE_DIR/node.env"
setting_names=(NODE_NAME NODE_IP NODE_POD_CIDR NODE_SERVICE_CIDR NODE_APISERVER_PORT NODE_ETCD_PORT NODE_KUBELET_PORT NODE_PORT_BASE)
if [[ -f $settings_file ]]; then
	while IFS='=' read -r k v; do
		[[ " ${setting_names[*]} " == *" $k "* && -z ${!k:-} ]] && printf -v "$k" %s "$v"
	done <"$settings_file"
fi
NODE_NAME=${NODE_NAME:-audit-node}
NODE_IP=${NODE_IP:-10.245.0.1}
NODE_POD_CIDR=${NODE_POD_CIDR:-10.244.0.0/24}
NODE_SERVICE_CIDR=${NODE_SERVICE_CIDR:-10.97.0.0/24}
NODE_APISERVER_PORT=${NODE_APISERVER_PORT:-26443}
NODE_ETCD_PORT=${NODE_ETCD_PORT:-22379}
NODE_KUBELET_PORT=${NODE_KUBELET_PORT:-20250}
NODE_PORT_BASE=${NODE_PORT_BASE:-20257}
NODE_READY_TIMEOUT=${NODE_READY_TIMEOUT:-180}

# Addresses derived from the ranges (a /24 or wider, given as its network address).
prefix3() { local ip=${1%/*}; printf '%s\n' "${ip%.*}"; }
service_ip="$(prefix3 "$NODE_SERVICE_CIDR").1"
dns_ip="$(prefix3 "$NODE_SERVICE_CIDR").10"
pod_gateway="$(prefix3 "$NODE_POD_CIDR").1"
etcd_peer_port=$((NODE_ETCD_PORT + 1))
kubelet_healthz_port=$((NODE_KUBELET_PORT + 1))
kcm_port=$NODE_PORT_BASE
scheduler_port=$((NODE_PORT_BASE + 1))
proxy_health_port=$((NODE_PORT_BASE + 2))
proxy_metrics_port=$((NODE_PORT_BASE + 3))

# Host-wide names: one node at a time.
node_ip_label=lo:ca-node
bridge_link=ca-cni0
cni_network=container-auditor-node
host_lock=/run/container-auditor-node.lock
cgroup_root=container-auditor-node
# Made by the node's parts when missing: the runc wrapper's configuration (the chart's nodeSetup), the
# kubelet's log links and device-plugin socket (a fixed path), libcni's cache, the CRI's default runc root.
host_dirs=(/etc/container-auditor /var/log/containers /var/lib/cni /var/lib/kubelet /run/containerd/runc)

pki_dir="$NODE_DIR/pki"
logs_dir=$NODE_DIR
kubeconfig="$NODE_DIR/kubeconfig"
marker="$NODE_DIR/.container-auditor-node"
host_state="$NODE_DIR/host-state"
# containerd's state is a shared mount of its own (made by `up`): the agent's view of the bundles' root
# filesystems, mounted after it started, needs mount propagation from it (a real node's / is shared).
run_dir="$NODE_DIR/run"
containerd_dir="$NODE_DIR/containerd"
containerd_config="$containerd_dir/config.toml"
handler_snippet="$containerd_dir/runtime-handler.toml"
socket="$run_dir/containerd.sock"
runc_root="$run_dir/runc"
kubelet_dir="$NODE_DIR/kubelet"
cni_dir="$NODE_DIR/cni"
images_dir="$NODE_DIR/images"
imported_list="$images_dir/imported" # what ctr_import imported: "<path> <crc> <size>\t<image names>"
SHIM_SOCKET_ROOT=/run/containerd # hard-coded in containerd 1.6
# Images of the node itself, made here (no registry): the sandbox (images/build.sh pause) and cluster DNS.
pause_image=docker.io/container-auditor/pause:3.10
coredns_image=container-auditor.local/coredns:v1.12.1

log() { printf '%s\n' "$*"; }
step() { printf '==> %s\n' "$*"; }
err() { printf 'node.sh: error: %s\n' "$*" >&2; }
die() {
	err "$*"
	exit 1
}

state_dir=$NODE_DIR # the components' pid files and logs (every command line names it)
# shellcheck source=e2e/lib/processes.sh
. "$script_dir/../lib/processes.sh"
# shellcheck source=e2e/lib/etcd.sh
. "$script_dir/../lib/etcd.sh"
# shellcheck source=e2e/lib/containerd.sh
. "$script_dir/../lib/containerd.sh"
# shellcheck source=e2e/lib/pki.sh
. "$script_dir/../lib/pki.sh"

kubectl() { "$bin_dir/kubectl" --kubeconfig "$kubeconfig" "$@"; }

components=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

up_failed() {
	err "$1"
	show_log_tail "$2"
	exit 1
}

# ---------------------------------------------------------------- certificates

# One CA for everything; a serving certificate for the API server; a client certificate for each identity.
generate_pki() {
	[[ -f $pki_dir/sa.pub ]] && return 0
	step "Generating certificates"
	make_pki "$pki_dir" container-auditor-node-ca \
		"IP:127.0.0.1,IP:$NODE_IP,IP:$service_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
		"apiserver|/CN=kube-apiserver|server" \
		"admin|/O=system:masters/CN=admin|client" \
		"apiserver-kubelet-client|/O=system:masters/CN=kube-apiserver-kubelet-client|client" \
		"front-proxy-client|/CN=front-proxy-client|client" \
		"kubelet|/O=system:nodes/CN=system:node:$NODE_NAME|client" \
		"kube-controller-manager|/CN=system:kube-controller-manager|client" \
		"kube-scheduler|/CN=system:kube-scheduler|client" \
		"kube-proxy|/CN=system:kube-proxy|client"
}

write_kubeconfig() { # file identity
	write_kubeconfig_file "$1" "https://$NODE_IP:$NODE_APISERVER_PORT" container-auditor-node "$pki_dir" "$2"
}

# ---------------------------------------------------------------- host changes, recorded to be undone

# The value of a sysctl before the node changed it, recorded once per node.
save_sysctls() {
	[[ -f $host_state/sysctls ]] && return 0
	mkdir -p "$host_state"
	local key
	for key in vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward; do
		printf '%s=%s\n' "$key" "$(sysctl -n "$key")"
	done >"$host_state/sysctls.tmp"
	mv "$host_state/sysctls.tmp" "$host_state/sysctls"
}

restore_sysctls() {
	[[ -f $host_state/sysctls ]] || return 0
	local key value
	while IFS='=' read -r key value; do
		[[ $(sysctl -n "$key") == "$value" ]] || sysctl -q -w "$key=$value" >/dev/null || err "could not restore $key=$value"
	done <"$host_state/sysctls"
}

setup_host() {
	mkdir -p "$host_state"
	save_sysctls
	# Directories of the host the node's parts create when missing: removed on the way down if they were.
	if [[ ! -e $host_state/absent-dirs ]]; then
		local dir
		for dir in "${host_dirs[@]}"; do [[ -e $dir ]] || printf '%s\n' "$dir"; done >"$host_state/absent-dirs"
	fi
	# The node's own address, on the loopback interface (this kernel has no dummy links): nothing reaches it
	# from outside, and it is the same on every machine.
	ip addr replace "$NODE_IP/32" dev lo label "$node_ip_label"
	# Where a chart may install the runc wrapper on this node (nodeSetup.hostBinDir), instead of the host's
	# /usr/local/bin.
	mkdir -p "$NODE_DIR/bin"
	# containerd's state as a shared mount (see run_dir).
	mkdir -p "$run_dir"
	if ! mountpoint -q "$run_dir"; then
		mount --bind "$run_dir" "$run_dir"
		mount --make-shared "$run_dir"
	fi
	# The kubelet's cgroup root, in every v1 hierarchy (cpuset needs its cpus and mems filled in).
	local hierarchy
	while read -r hierarchy; do
		mkdir -p "$hierarchy/$cgroup_root"
		if [[ -f $hierarchy/cpuset.cpus ]]; then
			cat "$hierarchy/cpuset.cpus" >"$hierarchy/$cgroup_root/cpuset.cpus"
			cat "$hierarchy/cpuset.mems" >"$hierarchy/$cgroup_root/cpuset.mems"
		fi
	done < <(cgroup_hierarchies)
}

cgroup_hierarchies() {
	awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup") print $5; break } }' /proc/self/mountinfo
}

# iptables rules and chains: kube-proxy removes its own (--cleanup); the kubelet's and the bridge plugin's
# masquerading chains (CNI-*, named by a hash of the network and the container) are removed here.
restore_iptables() {
	if [[ -x $bin_dir/kube-proxy ]]; then
		"$bin_dir/kube-proxy" --cleanup >>"$logs_dir/kube-proxy-cleanup.log" 2>&1 || true
	fi
	local table chain rule
	for table in filter nat mangle; do
		# Jumps into the chains first, then the chains.
		while read -r rule; do
			# shellcheck disable=SC2086 # the rule's words
			iptables -w -t "$table" ${rule/-A/-D} 2>/dev/null || true
		done < <(iptables -w -t "$table" -S 2>/dev/null | grep -E '^-A .* -j (KUBE-|CNI-)' | grep -vE '^-A (KUBE-|CNI-)' || true)
		for chain in $(iptables -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) { print $2 }'); do
			iptables -w -t "$table" -F "$chain" 2>/dev/null || true
		done
		for chain in $(iptables -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) { print $2 }'); do
			iptables -w -t "$table" -X "$chain" 2>/dev/null || true
		done
	done
}

restore_host() {
	# The CRI's runtimes other than runc keep the shim's default runc root (the snippet names no Root).
	delete_leftover_runc_containers_in /run/containerd/runc/k8s.io
	unmount_under "$NODE_DIR"
	remove_cgroups
	restore_iptables
	ip link del "$bridge_link" 2>/dev/null || true
	ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
	restore_sysctls
	# The kubelet links every container's log into /var/log/containers; libcni caches results by network.
	find /var/log/containers -maxdepth 1 -type l -lname "$kubelet_dir/*" -delete 2>/dev/null || true
	rm -rf "/var/lib/cni/results/$cni_network-"* 2>/dev/null || true
	local dir
	if [[ -f $host_state/absent-dirs ]]; then
		while read -r dir; do
			[[ -n $dir ]] && rm -rf "$dir"
		done <"$host_state/absent-dirs"
	fi
}

delete_leftover_runc_containers_in() { # root: only containers whose bundle is this node's
	local root=$1 id state
	[[ -d $root ]] || return 0
	for state in "$root"/*/state.json; do
		[[ -f $state ]] || continue
		grep -qF "\"$run_dir/" "$state" || continue
		id=${state%/state.json}
		id=${id##*/}
		runc --root "$root" delete --force "$id" >/dev/null 2>&1 || true
	done
}

# ---------------------------------------------------------------- configuration files

toml_string() { printf '"%s"' "$(sed 's/\\/\\\\/g; s/"/\\"/g' <<<"$1")"; }

write_containerd_config() {
	local runc
	runc=$(command -v runc) || die "runc is missing: install Debian's runc"
	mkdir -p "$containerd_dir"/{root,opt} "$runc_root" "$cni_dir/net.d" "$cni_dir/ipam"
	chmod 700 "$containerd_dir/root" "$runc_root"
	{
		cat <<-EOF
			# Generated by e2e/node/node.sh. containerd 1.6, config version 2.
			version = 2
			root = $(toml_string "$containerd_dir/root")
			state = $(toml_string "$run_dir/containerd")
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
			[plugins."io.containerd.internal.v1.opt"]
			  path = $(toml_string "$containerd_dir/opt")
			[plugins."io.containerd.grpc.v1.cri"]
			  sandbox_image = $(toml_string "$pause_image")
			  stream_server_address = "127.0.0.1"
			  stream_server_port = "0"
			  disable_apparmor = true
			  # Where root lacks CAP_SYS_RESOURCE (this machine kind), the pause container's oom_score_adj of
			  # -998 cannot be set and every sandbox fails: clamp to containerd's own value.
			  restrict_oom_score_adj = true
			  [plugins."io.containerd.grpc.v1.cri".containerd]
			    snapshotter = "overlayfs"
			    default_runtime_name = "runc"
			    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
			      runtime_type = "io.containerd.runc.v2"
			      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
			        BinaryName = $(toml_string "$runc")
			        Root = $(toml_string "$runc_root")
			        SystemdCgroup = false
			  [plugins."io.containerd.grpc.v1.cri".cni]
			    bin_dir = "/usr/lib/cni"
			    conf_dir = $(toml_string "$cni_dir/net.d")
			    max_conf_num = 1
		EOF
		if [[ -f $handler_snippet ]]; then
			printf '\n# The runtime handler, as the chart NOTES print it (node.sh runtime-handler):\n'
			cat "$handler_snippet"
		fi
	} >"$containerd_config.tmp"
	mv "$containerd_config.tmp" "$containerd_config"

	local mtu
	mtu=$(ip -o route get 1.1.1.1 2>/dev/null | grep -o 'dev [^ ]*' | cut -d' ' -f2 | head -n1)
	mtu=$(cat "/sys/class/net/${mtu:-lo}/mtu" 2>/dev/null || echo 1500)
	((mtu <= 1500)) || mtu=1500
	cat >"$cni_dir/net.d/10-$cni_network.conflist" <<-EOF
		{
		  "cniVersion": "0.4.0",
		  "name": "$cni_network",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "$bridge_link",
		      "isGateway": true,
		      "ipMasq": true,
		      "hairpinMode": true,
		      "mtu": $mtu,
		      "ipam": {
		        "type": "host-local",
		        "dataDir": "$cni_dir/ipam",
		        "ranges": [[{ "subnet": "$NODE_POD_CIDR", "gateway": "$pod_gateway" }]],
		        "routes": [{ "dst": "0.0.0.0/0" }]
		      }
		    },
		    { "type": "portmap", "capabilities": { "portMappings": true } }
		  ]
		}
	EOF
}

write_kubelet_config() {
	mkdir -p "$kubelet_dir"/{root,pods-logs,volume-plugins,certs}
	cat >"$kubelet_dir/config.yaml" <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		address: $NODE_IP
		port: $NODE_KUBELET_PORT
		healthzBindAddress: 127.0.0.1
		healthzPort: $kubelet_healthz_port
		readOnlyPort: 0
		containerRuntimeEndpoint: unix://$socket
		imageServiceEndpoint: unix://$socket
		cgroupDriver: cgroupfs
		cgroupRoot: /$cgroup_root
		# This machine kind: a hybrid cgroup v1 host with swap.
		failCgroupV1: false
		failSwapOn: false
		authentication:
		  anonymous: {enabled: false}
		  webhook: {enabled: true}
		  x509: {clientCAFile: $pki_dir/ca.crt}
		authorization: {mode: Webhook}
		clusterDomain: cluster.local
		clusterDNS: [$dns_ip]
		podLogsDir: $kubelet_dir/pods-logs
		volumePluginDir: $kubelet_dir/volume-plugins
		# Small disks: do not evict or collect images on disk pressure.
		evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%"}
		imageGCHighThresholdPercent: 100
		imageGCLowThresholdPercent: 99
		serializeImagePulls: false
		maxPods: 60
	EOF
}

write_proxy_config() {
	cat >"$NODE_DIR/kube-proxy.yaml" <<-EOF
		apiVersion: kubeproxy.config.k8s.io/v1alpha1
		kind: KubeProxyConfiguration
		mode: iptables
		clientConnection: {kubeconfig: $NODE_DIR/kube-proxy.kubeconfig}
		hostnameOverride: $NODE_NAME
		clusterCIDR: $NODE_POD_CIDR
		bindAddress: 127.0.0.1
		healthzBindAddress: 127.0.0.1:$proxy_health_port
		metricsBindAddress: 127.0.0.1:$proxy_metrics_port
		# 0: the host's conntrack sysctls stay as they are.
		conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
		iptables: {localhostNodePorts: false}
	EOF
}

# ---------------------------------------------------------------- components

start_etcd() { start_etcd_member node "$NODE_DIR/etcd" "$NODE_ETCD_PORT" "$etcd_peer_port"; }

start_apiserver() {
	local issuer=https://kubernetes.default.svc.cluster.local
	start_detached kube-apiserver "$bin_dir/kube-apiserver" \
		--advertise-address="$NODE_IP" \
		--bind-address="$NODE_IP" \
		--secure-port="$NODE_APISERVER_PORT" \
		--tls-cert-file="$pki_dir/apiserver.crt" --tls-private-key-file="$pki_dir/apiserver.key" \
		--client-ca-file="$pki_dir/ca.crt" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--allow-privileged=true \
		--kubelet-client-certificate="$pki_dir/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$pki_dir/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types=InternalIP,Hostname \
		--requestheader-client-ca-file="$pki_dir/ca.crt" \
		--requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User \
		--requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="$pki_dir/front-proxy-client.crt" \
		--proxy-client-key-file="$pki_dir/front-proxy-client.key" \
		--service-account-key-file="$pki_dir/sa.pub" \
		--service-account-signing-key-file="$pki_dir/sa.key" \
		--service-account-issuer="$issuer" --api-audiences="$issuer" \
		--service-cluster-ip-range="$NODE_SERVICE_CIDR" \
		--etcd-servers="http://127.0.0.1:$NODE_ETCD_PORT"
}

start_controller_manager() {
	start_detached kube-controller-manager "$bin_dir/kube-controller-manager" \
		--kubeconfig="$NODE_DIR/kube-controller-manager.kubeconfig" \
		--authentication-kubeconfig="$NODE_DIR/kube-controller-manager.kubeconfig" \
		--authorization-kubeconfig="$NODE_DIR/kube-controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port="$kcm_port" \
		--cert-dir="$NODE_DIR/kcm-certs" \
		--leader-elect=false \
		--use-service-account-credentials \
		--service-account-private-key-file="$pki_dir/sa.key" \
		--root-ca-file="$pki_dir/ca.crt" \
		--cluster-signing-cert-file="$pki_dir/ca.crt" --cluster-signing-key-file="$pki_dir/ca.key" \
		--service-cluster-ip-range="$NODE_SERVICE_CIDR" \
		--controllers='*'
}

start_scheduler() {
	start_detached kube-scheduler "$bin_dir/kube-scheduler" \
		--kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
		--authentication-kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
		--authorization-kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port="$scheduler_port" \
		--cert-dir="$NODE_DIR/scheduler-certs" \
		--leader-elect=false
}

start_containerd() {
	start_detached containerd "$(command -v containerd)" --config "$containerd_config"
}

start_kubelet() {
	start_detached kubelet "$bin_dir/kubelet" \
		--config="$kubelet_dir/config.yaml" \
		--kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
		--root-dir="$kubelet_dir/root" \
		--cert-dir="$kubelet_dir/certs" \
		--hostname-override="$NODE_NAME" \
		--node-ip="$NODE_IP"
}

start_proxy() {
	start_detached kube-proxy "$bin_dir/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
}

stop_all() {
	local name i
	for ((i = ${#components[@]} - 1; i >= 0; i--)); do
		name=${components[i]}
		stop_component "$name"
	done
}

# ---------------------------------------------------------------- readiness

etcd_healthy() { etcd_healthy_on "$NODE_ETCD_PORT"; }
apiserver_ready() { [[ $(kubectl --request-timeout=5s get --raw /readyz 2>/dev/null) == ok ]]; }
cri_ready() { [[ -S $socket ]] && ctr --address "$socket" version >/dev/null 2>&1; }
node_ready() {
	[[ $(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
coredns_ready() {
	[[ $(kubectl -n kube-system get deployment coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null) == 1 ]]
}

# Polls check $2 until it succeeds while component $1 runs, for up to NODE_READY_TIMEOUT s.
wait_until() { wait_ready "$1" "$NODE_READY_TIMEOUT" NODE_READY_TIMEOUT "$2"; }

# ---------------------------------------------------------------- images of the node

# The sandbox's pause (images/build.sh, cached by content) and CoreDNS, the static Go binary alone.
node_images() {
	mkdir -p "$images_dir/coredns-rootfs"
	bash "$repo_dir/images/build.sh" pause >>"$logs_dir/images.log" 2>&1 ||
		die "building the pause image failed (see $logs_dir/images.log)"
	if [[ ! -f $images_dir/coredns.tar ]]; then
		cp "$bin_dir/coredns" "$images_dir/coredns-rootfs/coredns"
		node "$harness" image archive "$images_dir/coredns-rootfs" "$images_dir/coredns.tar" "$coredns_image" \
			/coredns || die "building the CoreDNS image failed (the harness, $harness: make build)"
	fi
	ctr_import "$repo_dir/.cache/images/pause.tar" "$images_dir/coredns.tar"
}

# Imports each archive, unless the same file (its path, and cksum's CRC and size of its content: a tenth of a
# second for 600 MB, where an import takes seconds) was imported into this node before and every image it
# brought is still there. Not the modification time: images/build.sh touches the archives it keeps.
ctr_import() {
	local archive key names out
	mkdir -p "$images_dir"
	for archive in "$@"; do
		[[ -f $archive ]] || die "no image archive at $archive"
		key="$(readlink -f "$archive") $(cksum <"$archive")"
		names=$(awk -F '\t' -v key="$key" '$1 == key { names = $2 } END { print names }' "$imported_list" 2>/dev/null || true)
		if [[ -n $names ]] && images_present "$names"; then
			log "$archive: imported already ($names)"
			continue
		fi
		log "Importing $archive"
		if ! out=$(ctr --address "$socket" -n k8s.io images import "$archive" 2>&1); then
			printf '%s\n' "$out" >>"$logs_dir/images.log"
			die "importing $archive failed (see $logs_dir/images.log)"
		fi
		printf '%s\n' "$out" >>"$logs_dir/images.log"
		# ctr says `unpacking <name> (sha256:...)...done` for each image.
		names=$(sed -n 's/^unpacking \([^ ]*\) (sha256:.*/\1/p' <<<"$out" | tr '\n' ' ')
		[[ -z $names ]] || printf '%s\t%s\n' "$key" "${names% }" >>"$imported_list"
	done
}

images_present() { # "name..."
	local have name
	have=$(ctr --address "$socket" -n k8s.io images ls -q 2>/dev/null) || return 1
	for name in $1; do
		grep -qxF -- "$name" <<<"$have" || return 1
	done
}

deploy_coredns() {
	kubectl apply --server-side --force-conflicts -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: ServiceAccount
		metadata: {name: coredns, namespace: kube-system}
		---
		apiVersion: rbac.authorization.k8s.io/v1
		kind: ClusterRole
		metadata: {name: "system:coredns"}
		rules:
		- apiGroups: [""]
		  resources: [endpoints, services, pods, namespaces]
		  verbs: [list, watch]
		- apiGroups: [discovery.k8s.io]
		  resources: [endpointslices]
		  verbs: [list, watch]
		---
		apiVersion: rbac.authorization.k8s.io/v1
		kind: ClusterRoleBinding
		metadata: {name: "system:coredns"}
		roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
		subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
		---
		apiVersion: v1
		kind: ConfigMap
		metadata: {name: coredns, namespace: kube-system}
		data:
		  Corefile: |
		    .:53 {
		        errors
		        health {
		            lameduck 5s
		        }
		        ready
		        kubernetes cluster.local in-addr.arpa ip6.arpa {
		            pods insecure
		            fallthrough in-addr.arpa ip6.arpa
		        }
		        forward . /etc/resolv.conf
		        cache 30
		        loop
		        reload
		    }
		---
		apiVersion: apps/v1
		kind: Deployment
		metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
		spec:
		  replicas: 1
		  selector: {matchLabels: {k8s-app: kube-dns}}
		  template:
		    metadata: {labels: {k8s-app: kube-dns}}
		    spec:
		      serviceAccountName: coredns
		      dnsPolicy: Default
		      priorityClassName: system-cluster-critical
		      containers:
		      - name: coredns
		        image: $coredns_image
		        imagePullPolicy: Never
		        command: [/coredns, -conf, /etc/coredns/Corefile]
		        ports:
		        - {name: dns, containerPort: 53, protocol: UDP}
		        - {name: dns-tcp, containerPort: 53, protocol: TCP}
		        # root for port 53 (a non-root user's added capabilities are not effective), with nothing else
		        securityContext:
		          runAsUser: 0
		          allowPrivilegeEscalation: false
		          capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
		          readOnlyRootFilesystem: true
		        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
		        livenessProbe: {httpGet: {path: /health, port: 8080}, initialDelaySeconds: 30}
		        resources: {limits: {memory: 170Mi}, requests: {cpu: 50m, memory: 70Mi}}
		        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
		      volumes:
		      - name: config
		        configMap: {name: coredns, items: [{key: Corefile, path: Corefile}]}
		---
		apiVersion: v1
		kind: Service
		metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
		spec:
		  selector: {k8s-app: kube-dns}
		  clusterIP: $dns_ip
		  ports:
		  - {name: dns, port: 53, protocol: UDP}
		  - {name: dns-tcp, port: 53, protocol: TCP}
	EOF
}

# ---------------------------------------------------------------- commands

settings() {
	local k
	for k in "${setting_names[@]}"; do printf '%s=%s\n' "$k" "${!k}"; done
}

lock_node() {
	exec 8>"$host_lock"
	flock -n 8 || die "another node.sh up/down is running on this machine"
	local other
	other=$(cat "$host_lock.dir" 2>/dev/null || true)
	if [[ -n $other && $other != "$NODE_DIR" && -f $other/.container-auditor-node ]]; then
		die "a node from $other is up on this machine (one at a time): NODE_DIR=$other $0 down"
	fi
}

up_fail_cleanup() {
	err "up failed: stopping what it started (logs in $logs_dir)"
	stop_all
}

cmd_up() {
	local t0=$SECONDS
	[[ $(id -u) -eq 0 ]] || die "run as root: the node runs containerd, the kubelet and kube-proxy"
	mkdir -p "$NODE_DIR" "$logs_dir"
	lock_node
	if [[ -f $settings_file && $(<"$settings_file") != "$(settings)" ]] && running_pid kube-apiserver >/dev/null; then
		die "a node with other settings runs in $NODE_DIR ($(tr '\n' ' ' <"$settings_file")); run '$0 down' first"
	fi
	if node_ready && coredns_ready && running_pid kubelet >/dev/null && running_pid kube-proxy >/dev/null &&
		running_pid containerd >/dev/null; then
		log "Node $NODE_NAME in $NODE_DIR is already up: https://$NODE_IP:$NODE_APISERVER_PORT"
		log "kubeconfig: $kubeconfig"
		return 0
	fi
	step "Building the node's binaries (cached)"
	"$repo_dir/e2e/cluster/build.sh" kube-apiserver kubectl etcd kube-controller-manager kube-scheduler kubelet kube-proxy coredns
	touch "$marker"
	echo "$NODE_DIR" >"$host_lock.dir"
	settings >"$settings_file"
	generate_pki
	write_kubeconfig "$kubeconfig" admin
	local who
	for who in kubelet kube-controller-manager kube-scheduler kube-proxy; do
		write_kubeconfig "$NODE_DIR/$who.kubeconfig" "$who"
	done
	setup_host
	write_containerd_config
	write_kubelet_config
	write_proxy_config

	trap up_fail_cleanup ERR
	trap 'up_fail_cleanup; exit 130' INT
	trap 'up_fail_cleanup; exit 143' TERM
	if ! running_pid etcd >/dev/null; then
		step "Starting etcd (log: $logs_dir/etcd.log)"
		start_etcd
	fi
	wait_until etcd etcd_healthy
	if ! running_pid kube-apiserver >/dev/null; then
		step "Starting kube-apiserver on https://$NODE_IP:$NODE_APISERVER_PORT"
		start_apiserver
	fi
	wait_until kube-apiserver apiserver_ready
	if ! running_pid kube-controller-manager >/dev/null; then
		step "Starting kube-controller-manager and kube-scheduler"
		start_controller_manager
	fi
	running_pid kube-scheduler >/dev/null || start_scheduler
	if ! running_pid containerd >/dev/null; then
		step "Starting containerd (CRI, bridge CNI $NODE_POD_CIDR)"
		start_containerd
	fi
	wait_until containerd cri_ready
	step "Importing the node's images (pause, CoreDNS)"
	node_images
	if ! running_pid kubelet >/dev/null; then
		step "Starting the kubelet (node $NODE_NAME at $NODE_IP)"
		start_kubelet
	fi
	running_pid kube-proxy >/dev/null || start_proxy
	wait_until kubelet node_ready
	step "Deploying cluster DNS (CoreDNS at $dns_ip)"
	deploy_coredns
	wait_until kubelet coredns_ready
	trap - ERR INT TERM
	step "Node $NODE_NAME is Ready in $((SECONDS - t0))s: https://$NODE_IP:$NODE_APISERVER_PORT"
	log "  kubeconfig: $kubeconfig   (export KUBECONFIG=$kubeconfig)"
	log "  kubectl:    $bin_dir/kubectl"
	log "  logs:       $logs_dir/"
	log "  stop it:    ${NODE_DIR:+NODE_DIR=$NODE_DIR }$0 down"
}

# Every pod's containers stopped and removed through the CRI (so the CNI plugin deletes their network and
# the shims exit), then whatever is left is killed.
remove_pods() {
	cri_ready || return 0
	local crictl=(env CONTAINER_RUNTIME_ENDPOINT="unix://$socket" IMAGE_SERVICE_ENDPOINT="unix://$socket" "$bin_dir/crictl" --timeout 30s)
	if [[ -n $("${crictl[@]}" pods -q 2>/dev/null) ]]; then
		step "Removing the node's pods"
		"${crictl[@]}" rmp --force --all >>"$logs_dir/down.log" 2>&1 || true
	fi
}

cmd_down() {
	if [[ ! -d $NODE_DIR ]]; then
		log "No node in $NODE_DIR (nothing to do)"
		return 0
	fi
	[[ -f $marker ]] || die "$NODE_DIR was not made by '$0 up': not touching it"
	mkdir -p "$logs_dir"
	exec 8>"$host_lock"
	flock 8
	# The kubelet first, so that it does not restart what is removed next.
	stop_component kube-proxy
	stop_component kubelet
	remove_pods
	stop_component containerd
	kill_shims
	delete_leftover_runc_containers
	stop_all
	step "Restoring the host (iptables, links, sysctls, mounts, cgroups)"
	restore_host
	rm -f "$host_lock.dir"
	rm -rf "$NODE_DIR"
	log "Node removed (NODE_DIR=$NODE_DIR)"
}

cmd_status() {
	local name missing=()
	for name in "${components[@]}"; do running_pid "$name" >/dev/null || missing+=("$name"); done
	if ((${#missing[@]} == 0)) && node_ready; then
		log "running: node $NODE_NAME Ready, https://$NODE_IP:$NODE_APISERVER_PORT (kubeconfig: $kubeconfig)"
		return 0
	fi
	if [[ -d $NODE_DIR ]]; then
		log "not running: ${missing[*]:-the node is not Ready}${missing[*]:+ stopped} (NODE_DIR=$NODE_DIR); '$0 up' starts it"
	else
		log "not running (NODE_DIR=$NODE_DIR)"
	fi
	return 1
}

cmd_env() {
	[[ -f $kubeconfig ]] || die "no kubeconfig at $kubeconfig: start the node with '$0 up'"
	printf 'export KUBECONFIG=%q\n' "$kubeconfig"
}

cmd_runtime_handler() {
	local file=${1:-}
	[[ -f $file ]] || die "usage: $0 runtime-handler FILE (the containerd snippet the chart's NOTES print)"
	grep -q '^\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.' "$file" ||
		die "$file is not a containerd config-version-2 runtime entry ([plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.NAME])"
	running_pid containerd >/dev/null || die "the node is not up: '$0 up' first"
	if [[ -f $handler_snippet ]] && cmp -s "$file" "$handler_snippet"; then
		log "containerd already has this runtime handler"
		return 0
	fi
	cp "$file" "$handler_snippet"
	write_containerd_config
	step "Restarting containerd with the runtime handler (running containers stay up)"
	stop_component containerd
	start_containerd
	wait_until containerd cri_ready
}

cmd_restart() {
	local name=${1:-}
	[[ " ${components[*]} " == *" $name "* ]] || die "usage: $0 restart COMPONENT (one of: ${components[*]})"
	running_pid "$name" >/dev/null || die "$name is not running: '$0 up' first"
	step "Restarting $name"
	stop_component "$name"
	case $name in
	etcd) start_etcd && wait_until etcd etcd_healthy ;;
	kube-apiserver) start_apiserver && wait_until kube-apiserver apiserver_ready ;;
	kube-controller-manager) start_controller_manager ;;
	kube-scheduler) start_scheduler ;;
	containerd) start_containerd && wait_until containerd cri_ready ;;
	kubelet) start_kubelet && wait_until kubelet node_ready ;;
	kube-proxy) start_proxy ;;
	esac
}

cmd_import() {
	(($#)) || die "usage: $0 import ARCHIVE..."
	running_pid containerd >/dev/null || die "the node is not up: '$0 up' first"
	ctr_import "$@"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
runtime-handler) cmd_runtime_handler "${2:-}" ;;
import) cmd_import "${@:2}" ;;
restart) cmd_restart "${2:-}" ;;
*)
	awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac

#!/usr/bin/env bash
# Build the binaries of the local test control plane (kube-apiserver, kubectl,
# etcd and optionally kube-controller-manager) from the Go module next to this
# script, crictl (the CRI client the node stack drives containerd with,
# e2e/stack/) from the Go module in crictl/, and helm (the chart's tests,
# charts/) from the Go module in helm/, into a machine-wide cache outside the
# git clone, then symlink them into <repo>/.cache/bin/.
#
# Usage: build.sh [component...]
#   components: kube-apiserver kubectl etcd kube-controller-manager crictl helm
#               kubelet kube-scheduler kube-proxy coredns (the real node's, e2e/node/)
#   default:    kube-apiserver kubectl etcd kube-controller-manager crictl helm
#
# Environment:
#   CONTAINER_AUDITOR_CACHE  cache root (default: $HOME/.cache/container-auditor)
#
# The cache directory name contains the Kubernetes and etcd versions and a hash
# of go.mod + go.sum, so a fresh clone (e.g. in CI) reuses earlier builds and a
# dependency change gets a new directory. Binaries are only built when missing.
#
# crictl is a module of its own (crictl/go.mod) with a cache directory of its
# own (crictl-<version>-<hash>): cri-tools requires newer grpc, otel and
# golang.org/x modules than Kubernetes 1.34 pins, and in one module those would
# raise the versions kube-apiserver and etcd are built with (and a crictl bump
# would rebuild the control plane). helm is a module of its own for the same
# reasons (Helm 4 pins Kubernetes 1.35 client libraries).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/../.." && pwd)
link_dir="$repo_dir/.cache/bin"

die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

# Version of a required module, read from a go.mod (no Go toolchain needed, so a
# machine with a warm cache can run the cluster without Go).
module_version() { # module [module dir]
	local v dir=${2:-$script_dir}
	v=$(awk -v m="$1" '
		$1 == "require" && $2 == m && $3 ~ /^v/ { print $3; exit }
		$1 == m && $2 ~ /^v/ { print $2; exit } # skips tool and replace lines
	' "$dir/go.mod")
	[[ -n $v ]] || die "module $1 not found in $dir/go.mod"
	printf '%s\n' "$v"
}
mod_hash() { cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-12; }

k8s_version=$(module_version k8s.io/kubernetes)
etcd_version=$(module_version go.etcd.io/etcd/server/v3)
cache_root=${CONTAINER_AUDITOR_CACHE:-$HOME/.cache/container-auditor}
cache_dir="$cache_root/k8s-$k8s_version-etcd-$etcd_version-$(mod_hash "$script_dir")"

crictl_module_dir="$script_dir/crictl"
crictl_version=$(module_version sigs.k8s.io/cri-tools "$crictl_module_dir")
crictl_cache_dir="$cache_root/crictl-$crictl_version-$(mod_hash "$crictl_module_dir")"

helm_module_dir="$script_dir/helm"
helm_version=$(module_version helm.sh/helm/v4 "$helm_module_dir")
helm_cache_dir="$cache_root/helm-$helm_version-$(mod_hash "$helm_module_dir")"

# CoreDNS is a module of its own too (coredns/go.mod): its dependencies are its own, not Kubernetes'.
coredns_module_dir="$script_dir/coredns"
coredns_version=$(module_version github.com/coredns/coredns "$coredns_module_dir")
coredns_cache_dir="$cache_root/coredns-$coredns_version-$(mod_hash "$coredns_module_dir")"

# Kubernetes binaries report their version from ldflags (what `make` in the
# kubernetes repo does); without it they say v0.0.0 and kubectl warns about skew.
k8s_major=${k8s_version#v}; k8s_major=${k8s_major%%.*}
k8s_minor=${k8s_version#v*.}; k8s_minor=${k8s_minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$k8s_major -X $pkg.gitMinor=$k8s_minor"
done
k8s_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

# Cold-build times measured on 2 cores, in the default order (later components
# reuse packages compiled for earlier ones): kube-apiserver 8m31s, kubectl 52s,
# etcd 25s; kube-controller-manager 2m03s after those. crictl shares little
# more than the standard library with them (other versions of grpc, otel,
# golang.org/x): 2m12s to 3m35s after those (2m12s to 2m31s of CPU; the VM
# had a load average of 6 to 10 from other work), 10m06s (4m50s of CPU) from
# empty Go build and module caches, compiling the standard library included.
# helm (Helm 4, Kubernetes 1.35 client libraries): 5m03s after those, with
# another build loading the second core.
# The real node's, after the control plane's (its packages in the Go build cache): kubelet 45s to 2m14s,
# kube-scheduler 10s, kube-proxy 13s to 15s; CoreDNS 2m40s to 3m09s, its modules downloaded.
declare -A cold_minutes=([kube-apiserver]=9 [kubectl]=1 [etcd]=1 [kube-controller-manager]=2 [crictl]=3 [helm]=5
	[kubelet]=3 [kube-scheduler]=1 [kube-proxy]=1 [coredns]=4)

# Go package, version, ldflags, module and cache directories per component.
component_pkg() {
	case $1 in
	kube-apiserver | kubectl | kube-controller-manager | kubelet | kube-scheduler | kube-proxy)
		printf 'k8s.io/kubernetes/cmd/%s\n' "$1"
		;;
	etcd) printf 'go.etcd.io/etcd/server/v3\n' ;; # the module root is package main
	crictl) printf 'sigs.k8s.io/cri-tools/cmd/crictl\n' ;;
	helm) printf 'helm.sh/helm/v4/cmd/helm\n' ;;
	coredns) printf 'github.com/coredns/coredns\n' ;; # the module root is package main
	*) die "unknown component '$1' (known: kube-apiserver kubectl etcd kube-controller-manager crictl helm kubelet kube-scheduler kube-proxy coredns)" ;;
	esac
}
component_version() {
	case $1 in
	etcd) echo "$etcd_version" ;;
	crictl) echo "$crictl_version" ;;
	helm) echo "$helm_version" ;;
	coredns) echo "$coredns_version" ;;
	*) echo "$k8s_version" ;;
	esac
}
component_ldflags() {
	case $1 in
	etcd | coredns) echo "-s -w" ;;
	# What cri-tools' Makefile sets (its version without the v).
	crictl) echo "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${crictl_version#v}" ;;
	# What helm's Makefile sets for a tagged release.
	helm) echo "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean" ;;
	*) echo "$k8s_ldflags" ;;
	esac
}
component_module_dir() {
	case $1 in
	crictl) echo "$crictl_module_dir" ;;
	helm) echo "$helm_module_dir" ;;
	coredns) echo "$coredns_module_dir" ;;
	*) echo "$script_dir" ;;
	esac
}
component_cache_dir() {
	case $1 in
	crictl) echo "$crictl_cache_dir" ;;
	helm) echo "$helm_cache_dir" ;;
	coredns) echo "$coredns_cache_dir" ;;
	*) echo "$cache_dir" ;;
	esac
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(kube-apiserver kubectl etcd kube-controller-manager crictl helm)
for c in "${components[@]}"; do component_pkg "$c" >/dev/null; done

declare -A go_checked=()
check_go() { # module dir: the Go version its go.mod asks for is the one needed
	local module_dir=$1
	[[ -z ${go_checked[$module_dir]:-} ]] || return 0
	# Go's own installer puts it in /usr/local/go; non-login shells (CI, make) may not have it on PATH.
	if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
		PATH="/usr/local/go/bin:$PATH"
	fi
	command -v go >/dev/null 2>&1 ||
		die "'go' not found in PATH. Go $(required_go "$module_dir")+ is needed to build the local test control plane (only for that; the operator itself does not need Go). Install it from https://go.dev/dl/"
	local have need
	# Run inside the module: with GOTOOLCHAIN=auto an older go may switch to the
	# toolchain that go.mod asks for, which is fine.
	have=$(cd "$module_dir" && go env GOVERSION 2>&1) ||
		die "'go env GOVERSION' failed: $have
Go $(required_go "$module_dir")+ is needed to build the local test control plane."
	need=$(required_go "$module_dir")
	if [[ $have =~ ^go([0-9]+\.[0-9]+(\.[0-9]+)?) ]]; then
		have=${BASH_REMATCH[1]}
		if [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1) != "$need" ]]; then
			die "Go $have is too old: Go $need+ is needed to build the local test control plane (go.mod uses 'tool' directives). Install a newer Go from https://go.dev/dl/"
		fi
	fi # devel builds: can't compare, just try
	go_checked[$module_dir]=1
}
required_go() { awk '$1 == "go" { print $2; exit }' "$1/go.mod"; }

build_pid=""
tmp_out=""
cleanup() {
	# Stop an in-flight go build (its own process group, see below) and drop
	# the partial output so the cache never holds a half-written binary.
	if [[ -n $build_pid ]]; then
		kill -TERM -- "-$build_pid" 2>/dev/null || kill -TERM "$build_pid" 2>/dev/null || true
		wait "$build_pid" 2>/dev/null || true
	fi
	[[ -z $tmp_out ]] || rm -f "$tmp_out"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fmt_duration() { if (($1 >= 60)); then printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); else printf '%ds' "$1"; fi; }

build_one() {
	local name=$1 pkg version ldflags module_dir out start elapsed rc
	pkg=$(component_pkg "$name")
	version=$(component_version "$name")
	ldflags=$(component_ldflags "$name")
	module_dir=$(component_module_dir "$name")
	out="$(component_cache_dir "$name")/bin/$name"
	if [[ -x $out ]]; then
		return 0
	fi
	check_go "$module_dir"
	local m=${cold_minutes[$name]}
	echo "Building $name $version (first build: about $m minute$( ((m == 1)) || echo s) on 2 cores; cached afterwards in ${out%/*})"
	tmp_out="$out.tmp.$$"
	start=$SECONDS
	# - GOWORK=off: never pick up a go.work from a parent directory.
	# - GOFLAGS cleared: flags such as -mod=vendor or -tags from the environment
	#   could break or change the build; the flags we need are given explicitly.
	# - CGO_ENABLED=0: static binaries, no C toolchain needed.
	# - GOOS/GOARCH unset: the binaries must run on this machine.
	# - setsid: own process group, so cleanup can stop the compiler processes too.
	(
		cd "$module_dir"
		unset GOOS GOARCH
		export GOWORK=off GOFLAGS="" CGO_ENABLED=0
		exec setsid -w go build -trimpath -buildvcs=false -mod=readonly -ldflags "$ldflags" -o "$tmp_out" "$pkg"
	) &
	build_pid=$!
	while kill -0 "$build_pid" 2>/dev/null; do
		sleep 1
		elapsed=$((SECONDS - start))
		if ((elapsed > 0 && elapsed % 30 == 0)) && kill -0 "$build_pid" 2>/dev/null; then
			echo "... still building $name, $(fmt_duration "$elapsed") elapsed"
		fi
	done
	rc=0
	wait "$build_pid" || rc=$?
	build_pid=""
	if ((rc != 0)); then
		die "go build of $name ($pkg) failed (exit $rc)"
	fi
	mv -f "$tmp_out" "$out" # atomic: the final name only ever holds a complete binary
	tmp_out=""
	echo "Built $name in $(fmt_duration $((SECONDS - start)))"
}

mkdir -p "$link_dir"

# Serialise concurrent builds into the same cache dir (e.g. two test runs
# starting at once); the second one waits and then finds the binaries there.
# One lock per cache dir, taken once and held until the script exits.
declare -A locked=()
lock_cache_dir() {
	local dir=$1 fd
	[[ -z ${locked[$dir]:-} ]] || return 0
	mkdir -p "$dir/bin"
	exec {fd}>"$dir/.lock"
	if ! flock -n "$fd"; then
		echo "Another build into $dir is running; waiting for it to finish ..."
		flock "$fd"
	fi
	locked[$dir]=$fd
}

for c in "${components[@]}"; do
	lock_cache_dir "$(component_cache_dir "$c")"
	build_one "$c"
	ln -sfn "$(component_cache_dir "$c")/bin/$c" "$link_dir/$c"
done

for c in "${components[@]}"; do
	printf '%-24s %s\n' "$c:" "$link_dir/$c -> $(component_cache_dir "$c")/bin/$c"
done

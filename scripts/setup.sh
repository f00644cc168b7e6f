#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently: the Debian packages behind the commands we call,
# Node.js 24 when the machine's is older, and the npm dependencies from the lock file. Safe to run again;
# does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# command -> Debian package that provides it. Later capabilities (bpftrace, runc, containerd) join this list.
declare -A PACKAGE_OF=(
  [openssl]=openssl      # certificates of the local control plane
  [curl]=curl            # readiness probes of the local control plane
  [ss]=iproute2          # naming what holds a port the control plane wants
  [make]=make
  [shellcheck]=shellcheck # lints our shell scripts (make lint, make test)
  [gcc]=gcc               # builds runc-wrapper/container-auditor-runc (static, glibc)
  [runc]=runc             # the real runtime the wrapper runs
  [containerd]=containerd # node tests start their own containerd (ctr comes with it)
  [busybox]=busybox-static # root filesystems for test containers (no registry here)
  [bpftrace]=bpftrace     # the agent's capture engine runs it (node tests use Debian's)
  [script]=bsdutils       # util-linux `script`: node tests type into bash on a pseudo-terminal
  [git]=git
  [buildah]=buildah       # builds images/*/Dockerfile for the real node (no Docker engine, no registry)
  [debootstrap]=debootstrap # the Debian base images those Dockerfiles name, made locally (images/README.md)
  [iptables]=iptables     # the real node: kube-proxy's Services, the bridge CNI's masquerading
  [conntrack]=conntrack   # the real node: kube-proxy clears stale UDP flows (cluster DNS)
  [socat]=socat           # the real node: kubectl port-forward through the kubelet
)

# file -> Debian package, for what is not a command.
declare -A PACKAGE_OF_FILE=(
  [/usr/include/readline/readline.h]=libreadline-dev # node tests build a shell that takes readline from libreadline.so
  [/bin/bash-static]=bash-static # node tests: a static, stripped bash (no dynamic readline: a coverage gap)
  [/usr/lib/cni/bridge]=containernetworking-plugins # the real node's pod network (bridge, host-local, loopback, portmap)
  [/usr/include/stdio.h]=libc6-dev # gcc -static (the runc wrapper, the stack's pause): gcc only recommends it
)

missing=()
for cmd in "${!PACKAGE_OF[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$cmd]}")
done
for file in "${!PACKAGE_OF_FILE[@]}"; do
  [[ -e $file ]] || missing+=("${PACKAGE_OF_FILE[$file]}")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); run as root or install them: apt-get install ${missing[*]}"
  step "Installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Node.js 24: the machine's own when it is new enough, else the pinned build (scripts/node-runtime.sh), which
# .cache/node/bin then provides; npm ci below and every entry point run on it.
bash scripts/node-runtime.sh
export PATH="$PWD/.cache/node/bin:$PATH"

# npm ci only when the lock file changed since the last install (its hash is kept beside the modules).
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ "$(cat node_modules/.lock-hash 2>/dev/null)" != "$lock_hash" ]]; then
  step "Installing npm dependencies (npm ci)"
  # No install scripts run: no dependency needs one (the images test checks the production ones), and the only
  # one that has one, @parcel/watcher under jest, ships a prebuilt binary and would only build from source.
  # --prefer-offline: what the npm cache holds is used without asking the registry whether it is stale (the lock
  # file pins every version and its integrity), so a slow or failing registry costs nothing on a warm machine.
  npm ci --ignore-scripts --prefer-offline --no-audit --no-fund
  echo "$lock_hash" >node_modules/.lock-hash
fi

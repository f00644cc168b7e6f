#!/usr/bin/env bash
# `make test`: installs what is needed, then runs every tier: static checks, unit tests, the integration
# tests against a real kube-apiserver + etcd (built from their Go modules on first use, then cached), the
# node tests against real runc and containerd (as root), and the real-node tests on a whole one-node
# Kubernetes with the images built from images/*/Dockerfile (as root).
# Ends with one line "tests: N passed, N failed" over all tiers, and a non-zero exit if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

step() { printf '\n==> %s\n' "$*"; }
results=.cache/test-results
mkdir -p "$results"
rm -f "$results"/*.json
failed_steps=()

run_step() { # name, command...
  local name=$1
  shift
  step "$name"
  local start=$SECONDS
  if "$@"; then
    printf -- '--- %s: ok (%ss)\n' "$name" $((SECONDS - start))
  else
    printf -- '--- %s: FAILED (%ss)\n' "$name" $((SECONDS - start))
    failed_steps+=("$name")
  fi
}

jest() { # project
  node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js \
    --selectProjects "$1" --ci --json --outputFile="$results/$1.json" "${@:2}"
}

bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }
# The Node.js setup chose (scripts/node-runtime.sh), also when this script is run without make.
export PATH="$PWD/.cache/node/bin:$PATH"
echo "Node.js $(node --version) ($(command -v node))"
run_step "typecheck" npx tsc -p tsconfig.json --noEmit
run_step "lint" npx eslint --max-warnings=0 .
run_step "format" npx prettier --check --log-level=warn .
run_step "shellcheck" shellcheck -x .ci/run scripts/*.sh e2e/cluster/*.sh e2e/demo/*.sh e2e/node/*.sh \
  e2e/lib/*.sh images/*.sh agent/capture/*/*.sh
run_step "build (TypeScript, runc wrapper)" make -s build
run_step "unit tests" jest unit
run_step "control-plane binaries" bash e2e/cluster/build.sh
if [[ " ${failed_steps[*]} " == *" control-plane binaries "* ]]; then
  echo "integration tests not run: the control plane could not be built" >&2
else
  run_step "integration tests (real kube-apiserver + etcd)" jest integration --runInBand
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "node tests need root (runc, containerd): run make test as root" >&2
  failed_steps+=("node tests (not root)")
else
  run_step "node tests (real runc, containerd, bpftrace)" jest node --runInBand
  # Its global set-up brings a one-node Kubernetes up (e2e/node/node.sh) and builds the images with buildah.
  run_step "real-node tests (kubelet, helm install, kubectl exec -it)" jest real-node --runInBand
fi

node scripts/test-summary.mjs "$results"/*.json "${#failed_steps[@]}"
if ((${#failed_steps[@]})); then
  echo "failed: ${failed_steps[*]}" >&2
  exit 1
fi

# The front door. Every target installs what it needs first (scripts/setup.sh), so each works on a fresh clone.
.DEFAULT_GOAL := build
SHELL := /bin/bash
# Node.js 24 for every target: scripts/setup.sh links .cache/node to the pinned build when this machine's own
# Node is older (and removes the link when it is not), so the first `node` on this PATH is the right one.
export PATH := $(CURDIR)/.cache/node/bin:$(PATH)

.PHONY: setup build crds test test-unit test-integration test-node test-real-node test-hostile bench lint format cluster-build cluster-up cluster-down stack-up stack-down node-up node-down demo demo-shell demo-down clean

setup:
	@bash scripts/setup.sh

## build: compile the TypeScript into dist/ (the product as tsconfig.build.json has it, which the images build, and the test harness's command line, dist/e2e/harness/main.js) and the runc wrapper into runc-wrapper/container-auditor-runc
build: setup
	npx tsc -p e2e/harness/tsconfig.json
	$(MAKE) -C runc-wrapper

## crds: regenerate charts/container-auditor/crds/*.yaml from the zod schemas in api/ (a unit test fails when they drift)
crds: build
	node dist/api/crd/main.js

## test: every tier (static checks, unit, integration against a real kube-apiserver); what CI runs
test:
	@bash scripts/test.sh

test-unit: setup
	node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --selectProjects unit

test-integration: setup cluster-build
	node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --selectProjects integration --runInBand

## test-node: the node tier (root): real runc and containerd
test-node: build
	node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --selectProjects node --runInBand

## test-real-node: the real-node tier (root): a one-node Kubernetes (e2e/node/node.sh), the images built from images/*/Dockerfile, the chart installed by helm, commands typed through kubectl exec -it
test-real-node: build
	node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --selectProjects real-node --runInBand

## test-hostile: the hostile-input suite alone (every *.hostile.*.test.ts of every tier: bad probe paths, crafted images, floods, forged and oversized reports, control characters, secrets typed in many shapes); make test runs it too
test-hostile: build cluster-build
	node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --testPathPatterns '\.hostile\.' --runInBand

# Options of the benches (see their --help), e.g. make bench BENCH_ARGS='--cycles 10' AGENT_BENCH_ARGS='--shells 10'
BENCH_ARGS ?=
AGENT_BENCH_ARGS ?=
DEMO_BENCH_ARGS ?=
OPERATOR_BENCH_ARGS ?=
RULES_BENCH_ARGS ?=
ENGINES_BENCH_ARGS ?=

## bench: the benchmarks (root): the runc wrapper's added cost (runc alone vs through the wrapper, interleaved), then the agent's memory, latency and throughput under a private containerd
bench: build
	node dist/bench/runc-wrapper.js $(BENCH_ARGS)
	node dist/bench/command-rules.js $(RULES_BENCH_ARGS)
	node dist/bench/regexp-engines.js $(ENGINES_BENCH_ARGS)
	node dist/bench/agent-capture.js $(AGENT_BENCH_ARGS)
	node dist/bench/operator-writes.js $(OPERATOR_BENCH_ARGS)
	node dist/bench/demo-latency.js $(DEMO_BENCH_ARGS)

lint: setup
	npx eslint --max-warnings=0 . && npx prettier --check --log-level=warn .
	shellcheck -x .ci/run scripts/*.sh e2e/cluster/*.sh e2e/demo/*.sh e2e/node/*.sh e2e/lib/*.sh images/*.sh agent/capture/*/*.sh

format: setup
	npx eslint --fix . && npx prettier --write --log-level=warn .

## cluster-build: build kube-apiserver, kubectl and etcd from their Go modules (cached, keyed by version)
cluster-build: setup
	@bash e2e/cluster/build.sh

## cluster-up: a local control plane on loopback with our CRDs installed; admin kubeconfig in .cache/cluster/kubeconfig
cluster-up: setup
	@bash e2e/cluster/cluster.sh up
	@echo "Installing the CRDs from charts/container-auditor/crds/"
	@.cache/bin/kubectl --kubeconfig .cache/cluster/kubeconfig apply --server-side -f charts/container-auditor/crds/
	@.cache/bin/kubectl --kubeconfig .cache/cluster/kubeconfig wait --for=condition=Established --timeout=60s -f charts/container-auditor/crds/

## cluster-down: stop it and remove its data
cluster-down:
	@bash e2e/cluster/cluster.sh down

## stack-up: a containerd with its CRI plugin on, driven by crictl, the runc wrapper as its container-auditor runtime handler (root; e2e/stack/, STACK_DIR default .cache/stack); `node dist/e2e/harness/main.js help` lists the rest (status, env, crictl, run-pod, rm-pod)
stack-up: build
	@node dist/e2e/harness/main.js stack up

## stack-down: remove its pods, stop it and delete STACK_DIR
stack-down: build
	@node dist/e2e/harness/main.js stack down

## node-up: a real one-node Kubernetes on this machine (root): etcd, kube-apiserver, controller-manager, scheduler, containerd with a bridge CNI, kubelet, kube-proxy, CoreDNS; admin kubeconfig in .cache/k8s-node/kubeconfig (e2e/node/node.sh; NODE_* variables choose ports and ranges)
node-up: build
	@bash e2e/node/node.sh up

## node-down: take it down and undo what it changed on the host (iptables, sysctls, addresses, mounts, cgroups)
node-down:
	@bash e2e/node/node.sh down

## demo: everything on this machine, as root (e2e/demo/): installs and builds what is missing (the images too), brings up a real one-node Kubernetes (e2e/node/node.sh), helm installs the chart, adds the runtime handler as its NOTES say, applies a policy, creates a pod, types commands into its shell through kubectl exec -it and prints what kubectl shows of them. Everything lives in .cache/demo/ (the node's kubeconfig: .cache/demo/cluster/kubeconfig); DEMO_NODE_DIR=<NODE_DIR> runs it on a node that is up already
demo:
	@bash e2e/demo/demo.sh up

## demo-shell: an audited shell in the demo's pod, with its audit Events streaming into the same terminal (starts the demo if it is not up)
demo-shell:
	@bash e2e/demo/demo.sh shell

## demo-down: remove everything the demo made: its node (node.sh down restores the host; with DEMO_NODE_DIR only the release, its namespace, the policy and namespace shop) and .cache/demo/ (idempotent)
demo-down:
	@bash e2e/demo/demo.sh down

clean:
	rm -rf dist coverage .cache/test-results
	$(MAKE) -C runc-wrapper clean

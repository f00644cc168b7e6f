# Images made here, without a registry or a builder: deterministic single-layer OCI image archives, and the
# root filesystem of a shell image (the host's bash and busybox). Sourced by e2e/stack/stack.sh,
# e2e/node/node.sh and e2e/demo/demo.sh; the sourcing script defines die.
# shellcheck shell=bash

# An OCI image archive (oci-layout, index.json, blobs/sha256/) whose single
# layer is the whole of a directory, like e2e/support/image.ts, deterministic:
# same files, same digests. Args: rootfs ref archive image-config-json.
oci_archive() {
	local rootfs=$1 ref=$2 archive=$3 image_config=$4 work arch diff_id
	local layer_digest layer_size config config_digest manifest manifest_digest
	work=$(mktemp -d "$(dirname "$archive")/.oci-XXXXXX")
	mkdir -p "$work/blobs/sha256"
	arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
	tar --format=gnu --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 \
		-C "$rootfs" -cf "$work/layer.tar" .
	diff_id=$(sha256sum <"$work/layer.tar" | cut -d' ' -f1)
	gzip -n -6 "$work/layer.tar"
	layer_digest=$(sha256sum <"$work/layer.tar.gz" | cut -d' ' -f1)
	layer_size=$(stat -c %s "$work/layer.tar.gz")
	mv "$work/layer.tar.gz" "$work/blobs/sha256/$layer_digest"
	config=$(printf '{"created":"1970-01-01T00:00:00Z","architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"e2e/stack/stack.sh"}]}' \
		"$arch" "$image_config" "$diff_id")
	config_digest=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
	printf '%s' "$config" >"$work/blobs/sha256/$config_digest"
	manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
		"$config_digest" "${#config}" "$layer_digest" "$layer_size")
	manifest_digest=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
	printf '%s' "$manifest" >"$work/blobs/sha256/$manifest_digest"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"%s","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
		"$manifest_digest" "${#manifest}" "$arch" "$ref" >"$work/index.json"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
	tar --format=gnu --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 \
		-C "$work" -cf "$archive.partial" oci-layout index.json blobs
	mv "$archive.partial" "$archive"
	rm -rf "$work"
}

# The host's bash with the libraries it loads (ldd), busybox's applets for the
# rest, /etc/passwd and /etc/group for root, in directory $1 (made anew). bash
# must stay a dynamic binary that exports readline (Debian's does): that is
# what the agent probes.
shell_rootfs() { # root
	local root=$1 applets lib bash
	[[ -x /bin/busybox ]] || die "/bin/busybox is missing: install Debian's busybox-static"
	bash=$(readlink -f /bin/bash)
	rm -rf "$root"
	mkdir -p "$root"/{bin,etc,root,proc,sys,dev,run,var/tmp,usr/bin,usr/sbin,sbin}
	install -d -m 1777 "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	# One symlink per applet; perl (Debian's perl-base is essential) makes the
	# few hundred in one process, where a loop of ln would take seconds.
	mapfile -t applets < <(/bin/busybox --list | grep -vx -e busybox -e bash)
	(cd "$root/bin" && perl -e 'for (@ARGV) { symlink("busybox", $_) or die "$_: $!\n" }' "${applets[@]}")
	cp "$bash" "$root/bin/bash"
	while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done < <(ldd "$bash" | grep -o '/[^ ]* (0x' | sed 's/ (0x$//')
	printf 'root:x:0:0:root:/root:/bin/bash\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
}

# The shell image: shell_rootfs in $1, as image $2 in OCI archive $3, with PATH
# set, working directory /root and command `sleep infinity`.
shell_image_archive() { # rootfs-dir ref archive
	shell_rootfs "$1"
	oci_archive "$1" "$2" "$3" \
		'{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sleep","infinity"],"WorkingDir":"/root"}'
}

# A private containerd's leftovers, found and removed (its shims, runc containers, mounts, cgroups): sourced by
# e2e/node/node.sh (the node stack's containerd, e2e/stack/, does the same in TypeScript: Containerd.stop in
# e2e/support/containerd.ts). The sourcing script sets `socket` (containerd's), `containerd_dir`
# (its root and state are root/ and state/ in it), `runc_root`, `cgroup_root`, SHIM_SOCKET_ROOT, and defines
# log.
# shellcheck shell=bash
# shellcheck disable=SC2154 # those variables are the sourcing script's

# The runc shims of this containerd's containerd: `containerd-shim-runc-v2 ...
# -address <our socket> ...` (the shim of every other containerd names its own).
shim_pids() {
	local f pid argv i
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		mapfile -d '' -t argv 2>/dev/null <"$f" || continue
		((${#argv[@]} > 2)) || continue
		[[ ${argv[0]} == *containerd-shim-runc-v2 ]] || continue
		for ((i = 1; i + 1 < ${#argv[@]}; i++)); do
			if [[ ${argv[i]} == -address && ${argv[i + 1]} == "$socket" ]]; then
				printf '%s\n' "$pid"
				break
			fi
		done
	done
}

# Direct children of process $1.
children_of() {
	local f stat fields
	for f in /proc/[0-9]*/stat; do
		{ stat=$(<"$f"); } 2>/dev/null || continue
		read -r -a fields <<<"${stat##*) }"
		[[ ${fields[1]} == "$1" ]] && printf '%s\n' "${f//[!0-9]/}"
	done
	return 0
}

# What runs under this containerd's shims (the pods' processes), then the shims.
kill_shims() {
	local round shims pid child i
	for ((round = 0; round < 3; round++)); do
		mapfile -t shims < <(shim_pids)
		((${#shims[@]})) || return 0
		log "Killing ${#shims[@]} leftover shim(s) of this containerd: ${shims[*]}"
		for pid in "${shims[@]}"; do
			for child in $(children_of "$pid"); do kill -KILL "$child" 2>/dev/null || true; done
			kill -KILL "$pid" 2>/dev/null || true
		done
		for ((i = 0; i < 50; i++)); do
			[[ -n $(shim_pids) ]] || break
			sleep 0.1
		done
	done
}

# The shims' sockets, from the `address` file in each task's bundle.
shim_sockets() {
	local f address
	for f in "$containerd_dir"/state/io.containerd.runtime.v2.task/*/*/address; do
		[[ -f $f ]] || continue
		address=$(<"$f")
		[[ $address == "unix://$SHIM_SOCKET_ROOT/"* ]] && printf '%s\n' "${address#unix://}"
	done
	return 0
}

# Containers that runc still knows under this containerd's root (a shim killed mid-
# way): `runc delete --force` kills their processes and removes their cgroups.
delete_leftover_runc_containers() {
	local root id
	for root in "$runc_root"/*/; do
		[[ -d $root ]] || continue
		for id in "$root"*/; do
			[[ -d $id ]] || continue
			id=${id%/}
			id=${id##*/}
			runc --root "${root%/}" delete --force "$id" >/dev/null 2>&1 || true
		done
	done
}

# Mount points at or under $1, deepest first (octal escapes of mountinfo decoded).
mounts_under() {
	local dir=$1
	awk -v d="$dir" '{
		p = $5
		while (match(p, /\\[0-7][0-7][0-7]/)) {
			c = substr(p, RSTART + 1, 3)
			v = (substr(c, 1, 1) * 64) + (substr(c, 2, 1) * 8) + substr(c, 3, 1)
			p = substr(p, 1, RSTART - 1) sprintf("%c", v) substr(p, RSTART + 4)
		}
		if (p == d || index(p, d "/") == 1) print length(p) "\t" p
	}' /proc/self/mountinfo | sort -rn | cut -f2-
}

unmount_under() {
	local round mp
	for ((round = 0; round < 5; round++)); do
		mapfile -t mps < <(mounts_under "$1")
		((${#mps[@]})) || return 0
		for mp in "${mps[@]}"; do umount -l "$mp" 2>/dev/null || true; done
	done
}

# The cgroups runc left: the pods' parents under /<cgroup_root> (runc removes
# each container's own). Only empty ones can go.
remove_cgroups() {
	local hierarchy dir
	while read -r hierarchy; do
		dir="$hierarchy/$cgroup_root"
		[[ -d $dir ]] || continue
		find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done < <(awk '{
		for (i = 7; i < NF; i++) if ($i == "-") {
			if ($(i + 1) == "cgroup" || $(i + 1) == "cgroup2") print $5
			break
		}
	}' /proc/self/mountinfo)
}

# Processes of a local cluster or node, started detached and recognised by their pid files: sourced by
# cluster.sh and node.sh. The sourcing script sets `state_dir` (absolute: every process's command line names
# it, which is how its pids are told from recycled ones and from another cluster's) and defines log, and
# up_failed MESSAGE COMPONENT (what to do when a component does not start or get ready).
# shellcheck shell=bash
# shellcheck disable=SC2154 # state_dir is the sourcing script's

pid_file() { printf '%s/%s.pid\n' "$state_dir" "$1"; }

# Prints the pid of component $1 of THIS cluster if it is running. The pid is
# only trusted if that process's command line is $1 and mentions state_dir,
# so a recycled pid or another cluster's process is never touched.
running_pid() {
	local name=$1 file pid args
	file=$(pid_file "$name")
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
	args=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline") || return 1 # empty for zombies
	[[ $(head -n1 <<<"$args") == */"$name" ]] || return 1
	grep -qF -- "$state_dir/" <<<"$args" || return 1
	printf '%s\n' "$pid"
}

# True if process $1 exists and is not a zombie.
alive() {
	local stat
	{ stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# Starts "$@" detached: own session (so it survives the calling shell, a
# closed terminal, Ctrl-C, or `make` returning), stdin from /dev/null and
# output appended to state_dir/$name.log, and every other inherited fd
# closed: no caller's pipe is held open (a test runner reading our output
# would hang) and the lock on state_dir (fd 8) is not kept by the cluster.
# The child writes its own pid, which stays valid across the exec.
start_detached() {
	local name=$1 file log_file i bg
	shift
	file=$(pid_file "$name")
	log_file="$state_dir/$name.log"
	rm -f "$file"
	printf '==== %s: starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$log_file"
	# shellcheck disable=SC2016 # $$/$0/$@ are for the inner sh
	(
		cd "$state_dir" || exit 1
		for fd in /proc/"$BASHPID"/fd/*; do
			fd=${fd##*/}
			if ((fd > 2)); then eval "exec $fd>&-"; fi
		done
		exec setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$file" "$@"
	) \
		</dev/null >>"$log_file" 2>&1 &
	bg=$!
	# Wait until the pid file exists and the exec has happened (before that the
	# process is still `sh` and running_pid would not recognise it); give up
	# early if it already died (e.g. bad flags).
	for ((i = 0; i < 50; i++)); do
		running_pid "$name" >/dev/null && return 0
		alive "$bg" || break
		sleep 0.1
	done
	up_failed "$name did not start" "$name"
}

# Runs the check "${@:4}" until it succeeds, while component $1 runs, for up to $2 seconds (the setting $3
# says how long); saying every 15 s that it still waits. up_failed if the component exits or time runs out.
wait_ready() { # component seconds setting check...
	local name=$1 seconds=$2 setting=$3 t0=$SECONDS next=$((SECONDS + 15))
	shift 3
	until "$@"; do
		running_pid "$name" >/dev/null || up_failed "$name exited during startup" "$name"
		((SECONDS - t0 < seconds)) || up_failed "$name: '$*' did not succeed within ${seconds}s ($setting)" "$name"
		if ((SECONDS >= next)); then
			log "... still waiting for $name ($*), $((SECONDS - t0))s"
			next=$((SECONDS + 15))
		fi
		sleep 0.3
	done
}

# TERM, up to ~10 s grace, then KILL.
stop_component() {
	local name=$1 pid i
	if pid=$(running_pid "$name"); then
		log "Stopping $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			running_pid "$name" >/dev/null || break
			sleep 0.1
		done
		if running_pid "$name" >/dev/null; then
			log "$name did not exit within 10s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				running_pid "$name" >/dev/null || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$(pid_file "$name")"
}

show_log_tail() {
	local f="$state_dir/$1.log"
	[[ -f $f ]] || return 0
	printf -- '---- last 30 lines of %s ----\n' "$f" >&2
	tail -n 30 "$f" >&2
	printf -- '----\n' >&2
}

# Non-empty if something listens on TCP port $1 (any address).
port_holder() {
	if command -v ss >/dev/null 2>&1; then
		ss -Hltnp "sport = :$1" 2>/dev/null || true
	elif (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
		echo "(something accepts connections on 127.0.0.1:$1; install iproute2's ss to see what)"
	fi
}

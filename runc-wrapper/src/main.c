/*
 * container-auditor-runc: a runc that tells the container-auditor agent what it did.
 *
 * containerd's runc shim runs this instead of runc for pods whose RuntimeClass maps to the
 * container-auditor handler. Verbs the agent does not care about are exec'd straight into the real runc (no
 * extra process). For create, run, exec and delete the wrapper runs runc as a child with the same argv,
 * environment, stdio and inherited descriptors, forwards signals to it, and once it has returned writes a
 * hand-off file to the spool; after `create` it may wait, bounded, for the agent to attach its probes
 * before the container's first instruction runs. It then exits exactly as runc did.
 *
 * Fail-open: nothing the spool or the agent does can change runc's result, and the wrapper writes nothing
 * to stdout or stderr (the shim parses runc's output); its own problems go to its log file or syslog.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "bound.h"
#include "config.h"
#include "handoff.h"
#include "json.h"

static struct config cfg;
static struct invocation inv;
static volatile pid_t child_pid;

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cfg.log_file[0]) {
		int fd = open(cfg.log_file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
		if (fd >= 0) {
			char line[1200];
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			struct tm tm;
			gmtime_r(&ts.tv_sec, &tm);
			int n = snprintf(line, sizeof(line),
					 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ pid=%d verb=%s id=%s %s\n",
					 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
					 tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid(),
					 inv.verb_name ? inv.verb_name : "-", inv.id ? inv.id : "-", msg);
			if (n > 0 && write(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) >= 0) {
				close(fd);
				return;
			}
			close(fd);
		}
	}
	openlog("container-auditor-runc", LOG_PID, LOG_DAEMON);
	syslog(LOG_WARNING, "verb=%s id=%s %s", inv.verb_name ? inv.verb_name : "-", inv.id ? inv.id : "-", msg);
	closelog();
}

/* The real runc: configured, or the first `runc` on PATH that is not this very binary. */
static const char *find_runc(char *buf, size_t len)
{
	struct stat self, cand;
	bool have_self = stat("/proc/self/exe", &self) == 0;
	if (cfg.runc[0]) {
		/* A configured "runc" that is this very binary would run itself forever; one that cannot run would
		 * fail every container. Either way, say so and fall back to PATH. */
		if (access(cfg.runc, X_OK) != 0)
			log_line("configured runc %s cannot be run (%s); searching PATH instead", cfg.runc, strerror(errno));
		else if (have_self && stat(cfg.runc, &cand) == 0 && cand.st_dev == self.st_dev && cand.st_ino == self.st_ino)
			log_line("configured runc %s is the wrapper itself; searching PATH instead", cfg.runc);
		else
			return cfg.runc;
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path) {
		const char *colon = strchr(path, ':');
		size_t dlen = colon ? (size_t)(colon - path) : strlen(path);
		if (dlen && dlen + 6 < len) {
			memcpy(buf, path, dlen);
			strcpy(buf + dlen, "/runc");
			if (access(buf, X_OK) == 0 && stat(buf, &cand) == 0 && S_ISREG(cand.st_mode) &&
			    !(have_self && cand.st_dev == self.st_dev && cand.st_ino == self.st_ino))
				return buf;
		}
		path += dlen + (colon ? 1 : 0);
	}
	return NULL;
}

static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

/* Signals the shim (or a person) may send to runc; they go to the real runc. */
static const int FORWARDED[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};

/* run_child results that are not a wait status: runc never started, or it ran and its status is lost. */
#define RUN_FORK_FAILED (-1)
#define RUN_WAIT_FAILED (-2)

static int run_child(const char *runc, char *argv[])
{
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old); /* no handler may run before child_pid is known */
	/* An inherited SIGCHLD=SIG_IGN would have the kernel reap runc itself: waitpid would then fail with
	 * ECHILD once runc ran, and main would run runc a second time. runc gets the inherited disposition back. */
	struct sigaction dfl, inherited_chld;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &dfl, &inherited_chld);
	pid_t pid = fork();
	if (pid < 0) {
		sigaction(SIGCHLD, &inherited_chld, NULL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		return RUN_FORK_FAILED;
	}
	if (pid == 0) {
		sigaction(SIGCHLD, &inherited_chld, NULL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		execv(runc, argv);
		_exit(127);
	}
	child_pid = pid;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t k = 0; k < sizeof(FORWARDED) / sizeof(FORWARDED[0]); k++)
		sigaction(FORWARDED[k], &sa, NULL);
	sigprocmask(SIG_SETMASK, &old, NULL);
	/* Wait without reaping first: until runc is reaped its pid cannot be reused, so a signal forwarded
	 * meanwhile reaches runc or nothing. Then stop forwarding (the ack wait comes next), then reap. */
	siginfo_t info;
	while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) < 0) {
		if (errno != EINTR)
			return RUN_WAIT_FAILED;
	}
	child_pid = 0;
	/* From here on a signal is meant for us (for example the shim giving up during the ack wait). */
	struct sigaction deflt;
	memset(&deflt, 0, sizeof(deflt));
	deflt.sa_handler = SIG_DFL;
	for (size_t k = 0; k < sizeof(FORWARDED) / sizeof(FORWARDED[0]); k++)
		sigaction(FORWARDED[k], &deflt, NULL);
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return RUN_WAIT_FAILED;
	}
	return status;
}

/* Leaves this process the way runc left its child: same exit code, or the same signal. */
static void exit_like(int status)
{
	if (WIFEXITED(status))
		exit(WEXITSTATUS(status));
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		signal(sig, SIG_DFL);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		raise(sig);
		exit(128 + sig);
	}
	exit(1);
}

static long read_pid_file(const char *path)
{
	if (!path)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return -1;
	char buf[32];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *end;
	long pid = strtol(buf, &end, 10);
	return pid > 0 && (*end == '\0' || *end == '\n') ? pid : -1;
}

/* args, cwd, user and terminal from runc's --process file; never env (it may hold secrets). */
static void add_process(struct sb *doc, const char *path)
{
	static const char *const KEYS[] = {"args", "cwd", "user", "terminal"};
	struct json_span spans[4];
	const char *error = NULL;
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY) : -1;
	if (fd < 0) {
		sb_str(doc, ",\"process\":null,\"processError\":");
		sb_json_string(doc, path ? strerror(errno) : "no --process file");
		return;
	}
	static char buf[MAX_PROCESS_FILE + 1];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (len > MAX_PROCESS_FILE)
		error = "process file larger than 1 MiB";
	else if (json_object_members(buf, len, KEYS, 4, spans, &error) == 0)
		error = NULL;
	if (error) {
		sb_str(doc, ",\"process\":null,\"processError\":");
		sb_json_string(doc, error);
		return;
	}
	sb_str(doc, ",\"process\":{");
	bool first = true;
	for (size_t k = 0; k < 4; k++) {
		if (!spans[k].start)
			continue;
		sb_printf(doc, "%s\"%s\":", first ? "" : ",", KEYS[k]);
		sb_raw(doc, spans[k].start, spans[k].len);
		first = false;
	}
	sb_str(doc, "}");
}

static void add_string(struct sb *doc, const char *key, const char *value, struct sb *bad)
{
	sb_printf(doc, ",\"%s\":", key);
	if (!sb_json_string(doc, value)) {
		sb_str(bad, bad->len ? ",\"" : "\"");
		sb_str(bad, key);
		sb_str(bad, "\"");
	}
}

/* A hand-off that was due and is not written is counted in <spool>/dropped, for the agent to report as a
 * loss. The reason is logged for the 1st, 2nd, 4th, 8th, ... drop only (or always, when `always`). */
static void drop(int dirfd, bool always, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void drop(int dirfd, bool always, const char *fmt, ...)
{
	char why[600], error[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	unsigned long long count;
	if (count_dropped(dirfd, &count, error, sizeof(error)) != 0) {
		log_line("no hand-off: %s; and it could not be counted: %s", why, error);
		return;
	}
	if (always || dropped_worth_logging(count))
		log_line("no hand-off: %s (%llu dropped so far, counted in %s/%s)", why, count, cfg.handoff_dir,
			 DROPPED_NAME);
	if (dropped_sweep_due(count))
		spool_sweep(dirfd, cfg.spool_max_files);
}

static void hand_off(int status)
{
	char error[512];
	if (!inv.id) {
		log_line("no hand-off: no container id on the command line");
		return;
	}
	int dirfd = spool_open(cfg.handoff_dir, error, sizeof(error));
	if (dirfd < 0) {
		log_line("no hand-off: %s", error);
		return;
	}
	/* No agent: nobody would read the hand-off, and a flood of them would fill /run. One fstatat (and a
	 * statx of the spool when there is no heartbeat at all). */
	long long age_ms = 0, spool_ms = 0;
	bool beating = heartbeat_age(dirfd, &age_ms);
	bool new_spool = !beating && cfg.agent_absent_ms > 0 && spool_age(dirfd, &spool_ms) &&
			 spool_ms <= cfg.agent_absent_ms;
	enum agent_state agent =
	    agent_state_of(beating, age_ms, new_spool, cfg.agent_stale_ms, cfg.agent_absent_ms);
	if (agent == AGENT_ABSENT) {
		if (beating)
			drop(dirfd, false, "the agent is absent: its heartbeat is %lld s old (agent_absent_ms %ld)",
			     age_ms / 1000, cfg.agent_absent_ms);
		else
			drop(dirfd, false, "the agent is absent: no heartbeat %s/%s", cfg.handoff_dir, HEARTBEAT_NAME);
		close(dirfd);
		return;
	}
	/* The agent accepts absolute paths in normal form only; `--root rel/` is what runc was given, not that. */
	char root[PATH_MAX];
	const char *root_path = inv.root;
	if (inv.root && realpath(inv.root, root))
		root_path = root;
	char bundle[PATH_MAX];
	const char *bundle_path = NULL;
	if (inv.verb == VERB_CREATE || inv.verb == VERB_RUN) {
		/* runc's default bundle is the working directory; the agent wants an absolute path. */
		if (!realpath(inv.bundle ? inv.bundle : ".", bundle))
			snprintf(bundle, sizeof(bundle), "%s", inv.bundle ? inv.bundle : ".");
		bundle_path = bundle;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);

	struct sb doc, bad;
	sb_init(&doc);
	sb_init(&bad);
	sb_printf(&doc, "{\"version\":%d", HANDOFF_VERSION);
	add_string(&doc, "verb", inv.verb_name, &bad);
	sb_printf(&doc, ",\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
		  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
	add_string(&doc, "id", inv.id, &bad);
	add_string(&doc, "root", root_path, &bad);
	add_string(&doc, "bundle", bundle_path, &bad);
	long pid = read_pid_file(inv.pid_file);
	if (pid > 0)
		sb_printf(&doc, ",\"pid\":%ld", pid);
	else
		sb_str(&doc, ",\"pid\":null");
	sb_printf(&doc, ",\"exitCode\":%d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	sb_printf(&doc, ",\"wrapperPid\":%d", (int)getpid());
	if (inv.verb == VERB_EXEC)
		add_process(&doc, inv.process);
	if (bad.len) {
		sb_str(&doc, ",\"notUtf8\":[");
		sb_raw(&doc, bad.buf, bad.len);
		sb_str(&doc, "]");
	}
	sb_str(&doc, "}\n");
	if (inv.verb == VERB_CREATE && inv.id)
		forget_ack(dirfd, inv.id); /* an old container's acknowledgement must not release this one */
	const struct spool_bound bound = {.max_files = cfg.spool_max_files, .max_bytes = cfg.spool_max_bytes};
	int written = -1;
	if (doc.failed)
		drop(dirfd, true, "out of memory");
	else if (doc.len > MAX_HANDOFF_DOC)
		drop(dirfd, true, "the hand-off would be %zu bytes, more than the agent accepts (%d)", doc.len,
		     MAX_HANDOFF_DOC);
	else if ((written = spool_write(dirfd, inv.verb_name, doc.buf, doc.len, &bound, error, sizeof(error))) != 0)
		drop(dirfd, written < 0, "%s", error); /* a full spool is logged now and then, a failure always */
	if (written == 0 && inv.verb == VERB_CREATE && inv.id && cfg.ack_timeout_ms > 0 && agent == AGENT_ALIVE) {
		/* The container's init is stopped before its first instruction until `start`: hold the shim here
		 * until the agent has attached, so not even the first command of the first shell is missed. */
		int r = wait_for_ack(dirfd, cfg.handoff_dir, inv.id, cfg.ack_timeout_ms, error, sizeof(error));
		if (r == 1)
			log_line("agent did not acknowledge within %ld ms; starting the container anyway",
				 cfg.ack_timeout_ms);
		else if (r < 0)
			log_line("not waiting for the agent: %s", error);
	}
	sb_free(&doc);
	sb_free(&bad);
	close(dirfd);
}

int main(int argc, char *argv[])
{
	config_load(&cfg);
	parse_invocation(argc, argv, &inv);
	if (cfg.problem[0])
		log_line("%s", cfg.problem);

	char found[PATH_MAX];
	const char *runc = find_runc(found, sizeof(found));
	if (!runc) {
		/* The one message of our own on stderr: without runc there is no output to keep clean. */
		log_line("cannot find the real runc (set runc= in %s)", DEFAULT_CONFIG_FILE);
		fprintf(stderr, "container-auditor-runc: cannot find the real runc (set runc= in %s)\n",
			DEFAULT_CONFIG_FILE);
		return 127;
	}
	if (!verb_hands_off(inv.verb)) {
		execv(runc, argv);
		log_line("cannot exec %s: %s", runc, strerror(errno));
		return 127;
	}
	int status = run_child(runc, argv);
	if (status == RUN_FORK_FAILED) {
		/* Could not even start runc as a child: run it in our place, without a hand-off. */
		log_line("cannot run %s as a child (%s); handing over without a hand-off", runc, strerror(errno));
		execv(runc, argv);
		return 127;
	}
	if (status == RUN_WAIT_FAILED) {
		/* runc ran; running it again could create or exec twice. Report failure, hand off nothing. */
		log_line("lost the exit status of %s (%s); no hand-off", runc, strerror(errno));
		return 1;
	}
	/* create, run and exec are reported when they succeeded; delete always (the container may be gone). */
	if (inv.verb == VERB_DELETE || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
		hand_off(status);
	exit_like(status);
}

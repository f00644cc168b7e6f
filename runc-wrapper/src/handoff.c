#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int spool_open(const char *dir, char *error, size_t error_len)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(error, error_len, "cannot open spool %s: %s", dir, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
		snprintf(error, error_len,
			 "spool %s is not owned by uid %u or is writable by group or others: refusing to write there",
			 dir, (unsigned)geteuid());
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int spool_write(int dirfd, const char *verb, const char *json, size_t len, char *error, size_t error_len)
{
	long long t = now_ns(CLOCK_REALTIME);
	char tmp[96], final[96];
	/* Zero-padded time first: the agent reads hand-offs in name order, which is the order they were made. */
	snprintf(tmp, sizeof(tmp), ".tmp-%019lld-%d-%s", t, (int)getpid(), verb);
	snprintf(final, sizeof(final), "%019lld-%d-%s.json", t, (int)getpid(), verb);

	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(error, error_len, "cannot create %s in the spool: %s", tmp, strerror(errno));
		return -1;
	}
	if (write_all(fd, json, len) != 0 || fsync(fd) != 0) {
		snprintf(error, error_len, "cannot write %s in the spool: %s", tmp, strerror(errno));
		close(fd);
		unlinkat(dirfd, tmp, 0);
		return -1;
	}
	close(fd);
	/* rename never follows a symlink planted at the final name: it replaces the entry itself. */
	if (renameat(dirfd, tmp, dirfd, final) != 0) {
		snprintf(error, error_len, "cannot rename %s to %s in the spool: %s", tmp, final, strerror(errno));
		unlinkat(dirfd, tmp, 0);
		return -1;
	}
	return 0;
}

bool agent_alive(int dirfd, long stale_ms)
{
	struct stat st;
	if (fstatat(dirfd, HEARTBEAT_NAME, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
		return false;
	long long mtime = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	long long age_ms = (now_ns(CLOCK_REALTIME) - mtime) / 1000000LL;
	return age_ms <= stale_ms; /* a heartbeat from the future (clock step) still counts as alive */
}

static bool acked(int ackfd, const char *id)
{
	struct stat st;
	return fstatat(ackfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void forget_ack(int dirfd, const char *id)
{
	if (strchr(id, '/') || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
		return;
	int ackfd = openat(dirfd, ACK_DIR_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ackfd < 0)
		return;
	unlinkat(ackfd, id, 0); /* removes the entry itself, never what a symlink points to */
	close(ackfd);
}

int wait_for_ack(int dirfd, const char *dir, const char *id, long timeout_ms, char *error, size_t error_len)
{
	if (strchr(id, '/') || strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
		snprintf(error, error_len, "container id is not a file name: not waiting for an acknowledgement");
		return -1;
	}
	int ackfd = openat(dirfd, ACK_DIR_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ackfd < 0) {
		snprintf(error, error_len, "cannot open %s/%s: %s", dir, ACK_DIR_NAME, strerror(errno));
		return -1;
	}
	/* Watch first, then look: an acknowledgement written in between is seen either way. */
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, ACK_DIR_NAME);
	if (in < 0 || inotify_add_watch(in, path, IN_CREATE | IN_MOVED_TO | IN_DONT_FOLLOW | IN_ONLYDIR) < 0) {
		snprintf(error, error_len, "cannot watch %s: %s", path, strerror(errno));
		if (in >= 0)
			close(in);
		close(ackfd);
		return -1;
	}
	long long deadline = now_ns(CLOCK_MONOTONIC) + (long long)timeout_ms * 1000000LL;
	int result = 1;
	for (;;) {
		if (acked(ackfd, id)) {
			result = 0;
			break;
		}
		long long left_ms = (deadline - now_ns(CLOCK_MONOTONIC)) / 1000000LL;
		if (left_ms <= 0)
			break;
		struct pollfd p = {.fd = in, .events = POLLIN};
		int r = poll(&p, 1, (int)left_ms + 1);
		if (r < 0 && errno != EINTR)
			break;
		char drain[4096];
		while (read(in, drain, sizeof(drain)) > 0) {
		}
	}
	close(in);
	close(ackfd);
	return result;
}

#include "handoff.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "bound.h"

/* A .tmp- file this old is not being written any more (its wrapper was killed): a scan removes it. */
#define STALE_WRITING_S 60
/* A scan gives up (and the hand-off is not written) after this many entries beyond spool_max_files. */
#define SCAN_SLACK 64
/* The drop counter's lock: tries, and the pause between them (at most 20 ms in all). */
#define LOCK_TRIES 100
#define LOCK_PAUSE_NS 200000L

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

/* True (and the file removed) when `name` is a .tmp- file its wrapper stopped writing long ago. */
static bool removed_if_stale(int dirfd, const char *name, const struct stat *st, const struct timespec *now)
{
	if (now->tv_sec - st->st_mtim.tv_sec <= STALE_WRITING_S)
		return false;
	unlinkat(dirfd, name, 0); /* the entry itself, never what a symlink points to */
	return true;
}

static DIR *open_spool_listing(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir && fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return dir;
}

void spool_sweep(int dirfd, long max_files)
{
	long limit = max_files + SCAN_SLACK;
	DIR *dir = open_spool_listing(dirfd);
	if (!dir)
		return;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct dirent *e;
	for (long visited = 0; visited < limit && (e = readdir(dir)) != NULL; visited++) {
		struct stat st;
		if (entry_kind_of(e->d_name) == ENTRY_WRITING &&
		    fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			removed_if_stale(dirfd, e->d_name, &st, &now);
	}
	closedir(dir);
}

/*
 * Is the spool, the caller's new file included, over the bound? 0: no; 1: yes (*error says which bound);
 * -1: cannot tell (*error says why). On tmpfs one fstat gives the number of entries: while that number is
 * small, the spool is within both bounds (every hand-off is at most MAX_HANDOFF_DOC bytes); once it is over
 * spool_max_files (four fstatat tell the agent's own files from hand-offs), it is over. In between, and on
 * other file systems, one readdir of the spool counts hand-offs and their bytes, stopping once it is over.
 *
 * Writers check after their own file exists: of two wrappers racing for the last place, the one that checks
 * second sees both files, so the spool never holds more than the bound (both may give up: never more).
 */
static int over_bound(int dirfd, const struct spool_bound *b, char *error, size_t error_len)
{
	struct stat st;
	struct statfs sf;
	bool need_bytes = true;
	if (fstat(dirfd, &st) == 0 && fstatfs(dirfd, &sf) == 0 && sf.f_type == TMPFS_MAGIC) {
		long long entries = tmpfs_dir_entries(st.st_size);
		if (bound_surely_within(entries, b->max_files, b->max_bytes, MAX_HANDOFF_DOC))
			return 0;
		long long free_names = 0;
		for (size_t k = 0; k < sizeof(FREE_NAMES) / sizeof(FREE_NAMES[0]); k++) {
			struct stat entry;
			free_names += fstatat(dirfd, FREE_NAMES[k], &entry, AT_SYMLINK_NOFOLLOW) == 0;
		}
		if (bound_over_files(entries, free_names, b->max_files)) {
			snprintf(error, error_len, "the spool is full: it holds spool_max_files (%ld) hand-offs",
				 b->max_files);
			return 1;
		}
		need_bytes = entries > b->max_bytes / MAX_HANDOFF_DOC;
	}
	DIR *dir = open_spool_listing(dirfd);
	if (!dir) {
		snprintf(error, error_len, "cannot read the spool to check its bound: %s", strerror(errno));
		return -1;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	long files = 0, visited = 0;
	long long bytes = 0;
	int result = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (++visited > b->max_files + SCAN_SLACK) {
			snprintf(error, error_len, "the spool is full: it holds more than %ld entries (spool_max_files %ld)",
				 b->max_files + SCAN_SLACK, b->max_files);
			result = 1;
			break;
		}
		enum entry_kind kind = entry_kind_of(e->d_name);
		if (kind == ENTRY_FREE)
			continue;
		if (kind == ENTRY_WRITING || need_bytes) {
			struct stat entry;
			if (fstatat(dirfd, e->d_name, &entry, AT_SYMLINK_NOFOLLOW) != 0)
				continue; /* consumed meanwhile */
			if (kind == ENTRY_WRITING && removed_if_stale(dirfd, e->d_name, &entry, &now))
				continue; /* left by a wrapper killed while writing */
			bytes += entry.st_size;
		}
		files++;
		if (files > b->max_files) {
			snprintf(error, error_len, "the spool is full: it holds spool_max_files (%ld) hand-offs",
				 b->max_files);
			result = 1;
			break;
		}
		if (bytes > b->max_bytes) {
			snprintf(error, error_len, "the spool is full: its hand-offs would exceed spool_max_bytes (%lld)",
				 b->max_bytes);
			result = 1;
			break;
		}
	}
	closedir(dir);
	return result;
}

int spool_write(int dirfd, const char *verb, const char *json, size_t len, const struct spool_bound *bound,
		char *error, size_t error_len)
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
	int over = over_bound(dirfd, bound, error, error_len);
	if (over != 0) {
		unlinkat(dirfd, tmp, 0);
		return over;
	}
	/* rename never follows a symlink planted at the final name: it replaces the entry itself. */
	if (renameat(dirfd, tmp, dirfd, final) != 0) {
		snprintf(error, error_len, "cannot rename %s to %s in the spool: %s", tmp, final, strerror(errno));
		unlinkat(dirfd, tmp, 0);
		return -1;
	}
	return 0;
}

bool heartbeat_age(int dirfd, long long *age_ms)
{
	struct stat st;
	if (fstatat(dirfd, HEARTBEAT_NAME, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
		return false;
	long long mtime = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	*age_ms = (now_ns(CLOCK_REALTIME) - mtime) / 1000000LL;
	return true;
}

bool spool_age(int dirfd, long long *age_ms)
{
	struct statx stx;
	if (statx(dirfd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME, &stx) != 0 ||
	    !(stx.stx_mask & STATX_BTIME))
		return false;
	long long born = (long long)stx.stx_btime.tv_sec * 1000000000LL + stx.stx_btime.tv_nsec;
	*age_ms = (now_ns(CLOCK_REALTIME) - born) / 1000000LL;
	return true;
}

/* Exclusive among wrappers (the agent only reads the counter, and a rename is atomic for it). Bounded: a
 * wrapper stopped while holding the lock must not stall every other container start. */
static int lock_spool(int dirfd)
{
	for (int k = 0;; k++) {
		if (flock(dirfd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if ((errno != EWOULDBLOCK && errno != EINTR) || k >= LOCK_TRIES)
			return -1;
		struct timespec pause = {.tv_sec = 0, .tv_nsec = LOCK_PAUSE_NS};
		nanosleep(&pause, NULL);
	}
}

int count_dropped(int dirfd, unsigned long long *count, char *error, size_t error_len)
{
	if (lock_spool(dirfd) != 0) {
		snprintf(error, error_len, "cannot lock the spool to count it: %s",
			 errno == EWOULDBLOCK ? "busy for 20 ms" : strerror(errno));
		return -1;
	}
	/* An unreadable or malformed counter starts again from 0: a count too low beats none at all. */
	unsigned long long n = 0;
	int fd = openat(dirfd, DROPPED_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd >= 0) {
		struct stat st;
		char buf[32];
		ssize_t got = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, buf, sizeof(buf)) : -1;
		if (got < 0 || !dropped_parse(buf, (size_t)got, &n))
			n = 0;
		close(fd);
	}
	n = dropped_next(n);
	char text[32];
	int len = snprintf(text, sizeof(text), "%llu\n", n);
	int result = -1;
	unlinkat(dirfd, DROPPED_TMP_NAME, 0); /* left by a wrapper killed here; we hold the lock */
	fd = openat(dirfd, DROPPED_TMP_NAME, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(error, error_len, "cannot create %s in the spool: %s", DROPPED_TMP_NAME, strerror(errno));
	} else if (write_all(fd, text, (size_t)len) != 0) {
		snprintf(error, error_len, "cannot write %s in the spool: %s", DROPPED_TMP_NAME, strerror(errno));
		close(fd);
		unlinkat(dirfd, DROPPED_TMP_NAME, 0);
	} else {
		close(fd);
		if (renameat(dirfd, DROPPED_TMP_NAME, dirfd, DROPPED_NAME) != 0) {
			snprintf(error, error_len, "cannot rename %s to %s in the spool: %s", DROPPED_TMP_NAME,
				 DROPPED_NAME, strerror(errno));
			unlinkat(dirfd, DROPPED_TMP_NAME, 0);
		} else {
			*count = n;
			result = 0;
		}
	}
	flock(dirfd, LOCK_UN);
	return result;
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

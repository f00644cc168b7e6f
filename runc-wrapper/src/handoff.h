/* The spool: hand-off files for the agent, its heartbeat, and its acknowledgements. Everything here is
 * fail-open: errors are returned as text for the log, never as a different runc result. */
#ifndef CA_HANDOFF_H
#define CA_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>

#define HANDOFF_VERSION 1
#define HEARTBEAT_NAME "agent.alive"
#define ACK_DIR_NAME "ack"
#define MAX_PROCESS_FILE 1048576 /* runc's process.json; env can be large, we keep only four members */

/* Opens the spool directory without following symlinks and checks that only its owner (root) can write
 * it. Returns a directory fd, or -1 with *error set. */
int spool_open(const char *dir, char *error, size_t error_len);

/* How much the spool may hold: hand-off files (and files being written), and their bytes. */
struct spool_bound {
	long max_files;
	long long max_bytes;
};

/* Writes one hand-off document atomically: a dot-file created with O_EXCL|O_NOFOLLOW, then renamed to
 * `<time ns>-<pid>-<verb>.json`, unless the spool, this file included, would then be over the bound.
 * Returns 0 when written; 1 when over the bound (nothing left behind, *error says which bound); -1 with
 * *error set on a failure (nothing left behind). len must not exceed MAX_HANDOFF_DOC (bound.h). */
int spool_write(int dirfd, const char *verb, const char *json, size_t len, const struct spool_bound *bound,
		char *error, size_t error_len);

/* The agent's heartbeat: false when there is no heartbeat file (or it is not a regular file); else true,
 * with *age_ms how old its mtime is (negative when it is in the future). */
bool heartbeat_age(int dirfd, long long *age_ms);

/* Removes the .tmp- files of wrappers killed while writing (older than a minute), reading no more entries
 * of the spool than a scan for the bound would (max_files and a few). */
void spool_sweep(int dirfd, long max_files);

/* How long ago the spool directory was made (its birth time, statx): false when the file system does not
 * say. */
bool spool_age(int dirfd, long long *age_ms);

/* Adds one to the drop counter <spool>/dropped (bound.h), atomically for its readers (write, then rename)
 * and for other wrappers (an exclusive flock on the spool, waited for at most a few milliseconds). Returns 0
 * with *count the new value, or -1 with *error set. */
int count_dropped(int dirfd, unsigned long long *count, char *error, size_t error_len);

/* Removes ack/<id> if it is there (left by an earlier container with the same id). */
void forget_ack(int dirfd, const char *id);

/* Waits until the agent acknowledges container `id` (file ack/<id> appears), at most timeout_ms.
 * Returns 0 when acknowledged, 1 on timeout, -1 with *error set when it cannot watch. */
int wait_for_ack(int dirfd, const char *dir, const char *id, long timeout_ms, char *error, size_t error_len);

#endif

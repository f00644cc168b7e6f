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

/* Writes one hand-off document atomically: a dot-file created with O_EXCL|O_NOFOLLOW, then renamed to
 * `<time ns>-<pid>-<verb>.json`. Returns 0, or -1 with *error set (and nothing left behind). */
int spool_write(int dirfd, const char *verb, const char *json, size_t len, char *error, size_t error_len);

/* True when the agent's heartbeat file in the spool is fresher than stale_ms. */
bool agent_alive(int dirfd, long stale_ms);

/* Removes ack/<id> if it is there (left by an earlier container with the same id). */
void forget_ack(int dirfd, const char *id);

/* Waits until the agent acknowledges container `id` (file ack/<id> appears), at most timeout_ms.
 * Returns 0 when acknowledged, 1 on timeout, -1 with *error set when it cannot watch. */
int wait_for_ack(int dirfd, const char *dir, const char *id, long timeout_ms, char *error, size_t error_len);

#endif

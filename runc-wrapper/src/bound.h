/* The spool's bound, the agent's presence and the drop counter: the decisions, without I/O (unit-tested).
 *
 * The spool lives in /run, that is in memory. Without a bound, a flood of execs while the agent is down or
 * stuck fills it, and with it what containerd and runc keep in /run. So the wrapper writes a hand-off only
 * while the agent is not known to be absent, and only while the spool holds fewer than a configured number
 * of files and bytes; every hand-off it does not write is counted in <spool>/dropped for the agent. */
#ifndef CA_BOUND_H
#define CA_BOUND_H

#include <stdbool.h>
#include <stddef.h>

/* The largest hand-off the agent accepts (MAX_HANDOFF_BYTES in api/handoff/v1.ts): the wrapper writes none
 * larger, so that this is also a bound on every hand-off file in the spool. */
#define MAX_HANDOFF_DOC 1048576

/* What the heartbeat says about the agent. */
enum agent_state {
	AGENT_ALIVE,  /* fresh heartbeat: write, and after `create` wait for the acknowledgement */
	AGENT_QUIET,  /* a heartbeat, but not fresh enough to wait for: write, do not wait */
	AGENT_ABSENT, /* no heartbeat, or one older than absent_ms: write nothing (count it), do not wait */
};

/* present: the heartbeat file exists (a regular file); age_ms: how old its mtime is (negative: from the
 * future after a clock step, which counts as fresh). new_spool: the spool itself was made at most absent_ms
 * ago, so a missing heartbeat may be an agent still starting (it makes the spool, then finds the containers
 * it knew, then beats): not absent yet. absent_ms 0 turns the absence check off: then the agent is never
 * absent, only alive or quiet. */
enum agent_state agent_state_of(bool present, long long age_ms, bool new_spool, long stale_ms, long absent_ms);

/* tmpfs gives a directory the size 20 bytes per entry, plus 40 (its BOGO_DIRENT_SIZE, for `.` and `..`):
 * the number of entries for the price of an fstat. Elsewhere the size means nothing of the kind. */
#define TMPFS_DIRENT_SIZE 20
long long tmpfs_dir_entries(long long dir_size);

/* True when a spool of `entries` entries (any kind, ours included) is surely within both bounds, knowing
 * that no hand-off file is larger than max_doc: then no scan is needed. */
bool bound_surely_within(long long entries, long max_files, long long max_bytes, long long max_doc);

/* True when a spool of `entries` entries (any kind, ours included), `free` of them free (below: the caller
 * looked which of those names are there), is over the bound on files. Then no scan is needed either. */
bool bound_over_files(long long entries, long long free, long max_files);

/* How an entry of the spool counts against the bound. */
enum entry_kind {
	ENTRY_FREE,    /* ., .., and FREE_NAMES: agent.alive, ack/, dropped and the counter's temporary */
	ENTRY_HANDOFF, /* anything else: hand-offs, what the agent would refuse and remove, other dot-files */
	ENTRY_WRITING, /* .tmp-*: a hand-off being written (counted; removed by a scan once stale) */
};
extern const char *const FREE_NAMES[4];
enum entry_kind entry_kind_of(const char *name);

/* The drop counter file: a decimal number and a newline, at most DROPPED_MAX so that the agent (JavaScript)
 * reads it exactly. Parsing accepts exactly that (the newline optional); anything else is not a count. */
#define DROPPED_NAME "dropped"
#define DROPPED_TMP_NAME ".dropped.tmp"
#define DROPPED_MAX 9007199254740991ULL /* 2^53 - 1, Number.MAX_SAFE_INTEGER */
bool dropped_parse(const char *buf, size_t len, unsigned long long *count);
unsigned long long dropped_next(unsigned long long count); /* count + 1, saturating at DROPPED_MAX */
/* Drops are logged, but not each: the 1st, 2nd, 4th, 8th, ... so that a flood costs a few lines, not one
 * per exec. */
bool dropped_worth_logging(unsigned long long count);
/* A spool over spool_max_files is not read (tmpfs counts its entries), so .tmp- files left by wrappers killed
 * while writing would count for ever: the 1st, 65th, 129th, ... drop sweeps them (spool_sweep). */
#define SWEEP_EVERY 64
bool dropped_sweep_due(unsigned long long count);

#endif

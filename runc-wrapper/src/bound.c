#include "bound.h"

#include <string.h>

#include "handoff.h"

enum agent_state agent_state_of(bool present, long long age_ms, bool new_spool, long stale_ms, long absent_ms)
{
	if (!present)
		return absent_ms > 0 && !new_spool ? AGENT_ABSENT : AGENT_QUIET;
	if (age_ms <= stale_ms)
		return AGENT_ALIVE; /* a heartbeat from the future (clock step) counts as fresh */
	if (absent_ms > 0 && age_ms > absent_ms)
		return AGENT_ABSENT;
	return AGENT_QUIET;
}

long long tmpfs_dir_entries(long long dir_size)
{
	long long n = dir_size / TMPFS_DIRENT_SIZE - 2;
	return n > 0 ? n : 0;
}

bool bound_surely_within(long long entries, long max_files, long long max_bytes, long long max_doc)
{
	return entries <= max_files && max_doc > 0 && entries <= max_bytes / max_doc;
}

bool bound_over_files(long long entries, long long free, long max_files)
{
	return entries - free > max_files;
}

const char *const FREE_NAMES[4] = {HEARTBEAT_NAME, ACK_DIR_NAME, DROPPED_NAME, DROPPED_TMP_NAME};

enum entry_kind entry_kind_of(const char *name)
{
	if (strncmp(name, ".tmp-", 5) == 0)
		return ENTRY_WRITING;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return ENTRY_FREE;
	for (size_t k = 0; k < sizeof(FREE_NAMES) / sizeof(FREE_NAMES[0]); k++) {
		if (strcmp(name, FREE_NAMES[k]) == 0)
			return ENTRY_FREE;
	}
	return ENTRY_HANDOFF; /* a stray dot-file too: nobody removes it, and it takes memory all the same */
}

bool dropped_parse(const char *buf, size_t len, unsigned long long *count)
{
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len == 0 || len > 16 || (len > 1 && buf[0] == '0'))
		return false;
	unsigned long long n = 0;
	for (size_t k = 0; k < len; k++) {
		if (buf[k] < '0' || buf[k] > '9')
			return false;
		n = n * 10 + (unsigned long long)(buf[k] - '0');
	}
	if (n > DROPPED_MAX)
		return false;
	*count = n;
	return true;
}

unsigned long long dropped_next(unsigned long long count)
{
	return count >= DROPPED_MAX ? DROPPED_MAX : count + 1;
}

bool dropped_worth_logging(unsigned long long count)
{
	return count > 0 && (count & (count - 1)) == 0;
}

bool dropped_sweep_due(unsigned long long count)
{
	return count % SWEEP_EVERY == 1;
}

/* Where things are: the real runc, the spool, the log, the bounds. Environment first, then the config file,
 * then built-in defaults. On a node the file is what counts: it is read on every invocation, whereas the
 * environment a runtime binary gets depends on how containerd and its shims were started (and has been
 * seen not to reach it at all). */
#ifndef CA_CONFIG_H
#define CA_CONFIG_H

#include <limits.h>

#define DEFAULT_CONFIG_FILE "/etc/container-auditor/runc-wrapper.conf"
#define DEFAULT_HANDOFF_DIR "/run/container-auditor/handoff"
#define DEFAULT_LOG_FILE "/var/log/container-auditor-runc.log"
#define DEFAULT_ACK_TIMEOUT_MS 2000
#define DEFAULT_AGENT_STALE_MS 5000
#define DEFAULT_AGENT_ABSENT_MS 120000
#define DEFAULT_SPOOL_MAX_FILES 1024
#define DEFAULT_SPOOL_MAX_BYTES (16LL * 1024 * 1024)

struct config {
	char runc[PATH_MAX];        /* empty: search PATH */
	char handoff_dir[PATH_MAX];
	char log_file[PATH_MAX];    /* empty: syslog */
	long ack_timeout_ms;        /* how long `create` waits for the agent's acknowledgement */
	long agent_stale_ms;        /* a heartbeat older than this means no live agent */
	long agent_absent_ms;       /* no heartbeat, or one older than this: no agent at all (0: never) */
	long spool_max_files;       /* at most this many hand-offs in the spool (and being written) */
	long long spool_max_bytes;  /* and at most this many bytes of them */
	char problem[256];          /* first problem met while reading the config, logged later */
};

void config_load(struct config *cfg);

#endif

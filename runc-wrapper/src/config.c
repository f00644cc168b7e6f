#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((format(printf, 2, 3))) static void note(struct config *cfg, const char *fmt, ...)
{
	if (cfg->problem[0])
		return; /* the first problem is the one worth logging */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cfg->problem, sizeof(cfg->problem), fmt, ap);
	va_end(ap);
}

static void set_path(struct config *cfg, char *dst, const char *key, const char *value)
{
	if (value[0] != '/') {
		note(cfg, "config: %s must be an absolute path, ignoring '%s'", key, value);
		return;
	}
	if (strlen(value) >= PATH_MAX) {
		note(cfg, "config: %s is too long", key);
		return;
	}
	strcpy(dst, value);
}

/* A whole number from min to max (decimal digits only), else the setting is left as it was. */
static bool number(struct config *cfg, long long *dst, const char *key, const char *value, long long min,
		   long long max, const char *unit)
{
	char *end;
	errno = 0;
	long long v = strtoll(value, &end, 10);
	if (errno || end == value || *end || value[0] == '-' || value[0] == '+' || v < min || v > max) {
		note(cfg, "config: %s must be %lld to %lld %s, ignoring '%s'", key, min, max, unit, value);
		return false;
	}
	*dst = v;
	return true;
}

static void set_long(struct config *cfg, long *dst, const char *key, const char *value, long min, long max,
		     const char *unit)
{
	long long v;
	if (number(cfg, &v, key, value, min, max, unit))
		*dst = (long)v;
}

static void set(struct config *cfg, const char *key, const char *value)
{
	if (strcmp(key, "runc") == 0)
		set_path(cfg, cfg->runc, key, value);
	else if (strcmp(key, "handoff_dir") == 0)
		set_path(cfg, cfg->handoff_dir, key, value);
	else if (strcmp(key, "log_file") == 0)
		value[0] ? set_path(cfg, cfg->log_file, key, value) : (void)(cfg->log_file[0] = '\0');
	else if (strcmp(key, "ack_timeout_ms") == 0)
		set_long(cfg, &cfg->ack_timeout_ms, key, value, 0, 60000, "milliseconds");
	else if (strcmp(key, "agent_stale_ms") == 0)
		set_long(cfg, &cfg->agent_stale_ms, key, value, 0, 60000, "milliseconds");
	else if (strcmp(key, "agent_absent_ms") == 0)
		set_long(cfg, &cfg->agent_absent_ms, key, value, 0, 86400000, "milliseconds");
	else if (strcmp(key, "spool_max_files") == 0)
		set_long(cfg, &cfg->spool_max_files, key, value, 1, 100000, "files");
	else if (strcmp(key, "spool_max_bytes") == 0)
		number(cfg, &cfg->spool_max_bytes, key, value, 1024, 1073741824LL, "bytes");
	else
		note(cfg, "config: unknown key '%s'", key);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static void read_file(struct config *cfg, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno != ENOENT)
			note(cfg, "config: cannot read %s: %s", path, strerror(errno));
		return;
	}
	char buf[8192];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		note(cfg, "config: cannot read %s: %s", path, strerror(errno));
		return;
	}
	buf[n] = '\0';
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *eq = strchr(line, '=');
		char *t = trim(line);
		if (!*t)
			continue;
		if (!eq) {
			note(cfg, "config: line without '=' in %s: %s", path, t);
			continue;
		}
		*eq = '\0';
		set(cfg, trim(line), trim(eq + 1));
	}
}

void config_load(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->handoff_dir, DEFAULT_HANDOFF_DIR);
	strcpy(cfg->log_file, DEFAULT_LOG_FILE);
	cfg->ack_timeout_ms = DEFAULT_ACK_TIMEOUT_MS;
	cfg->agent_stale_ms = DEFAULT_AGENT_STALE_MS;
	cfg->agent_absent_ms = DEFAULT_AGENT_ABSENT_MS;
	cfg->spool_max_files = DEFAULT_SPOOL_MAX_FILES;
	cfg->spool_max_bytes = DEFAULT_SPOOL_MAX_BYTES;

	const char *file = getenv("CONTAINER_AUDITOR_RUNC_CONFIG");
	read_file(cfg, file && file[0] ? file : DEFAULT_CONFIG_FILE);

	/* The environment overrides the file (tests; hand-run debugging). */
	char tmp[PATH_MAX];
	const struct {
		const char *env, *key;
	} overrides[] = {
	    {"CONTAINER_AUDITOR_RUNC", "runc"},
	    {"CONTAINER_AUDITOR_HANDOFF_DIR", "handoff_dir"},
	    {"CONTAINER_AUDITOR_WRAPPER_LOG", "log_file"},
	    {"CONTAINER_AUDITOR_ACK_TIMEOUT_MS", "ack_timeout_ms"},
	    {"CONTAINER_AUDITOR_AGENT_STALE_MS", "agent_stale_ms"},
	    {"CONTAINER_AUDITOR_AGENT_ABSENT_MS", "agent_absent_ms"},
	    {"CONTAINER_AUDITOR_SPOOL_MAX_FILES", "spool_max_files"},
	    {"CONTAINER_AUDITOR_SPOOL_MAX_BYTES", "spool_max_bytes"},
	};
	for (size_t k = 0; k < sizeof(overrides) / sizeof(overrides[0]); k++) {
		const char *v = getenv(overrides[k].env);
		if (!v)
			continue;
		snprintf(tmp, sizeof(tmp), "%s", v);
		set(cfg, overrides[k].key, tmp);
	}
}

/* Unit tests of the wrapper's pure parts: runc command-line parsing, JSON, the config, the spool's bound.
 * Run by the unit tier (runc-wrapper/unit.test.ts) through `make -C runc-wrapper test/unit-tests`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "bound.h"
#include "config.h"
#include "json.h"

static int passed, failed;

#define CHECK(cond)                                                                                      \
	do {                                                                                             \
		if (cond) {                                                                              \
			passed++;                                                                        \
		} else {                                                                                 \
			failed++;                                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);        \
		}                                                                                        \
	} while (0)

static int streq(const char *a, const char *b) { return a && b ? strcmp(a, b) == 0 : a == b; }

static void parse(struct invocation *inv, char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	parse_invocation(argc, argv, inv);
}

static void test_args(void)
{
	struct invocation inv;

	/* what containerd's runc shim runs for a container start */
	char *create[] = {"runc", "--root", "/run/containerd/runc/k8s.io", "--log", "/x/log.json", "--log-format",
			  "json", "create", "--bundle", "/b/c1", "--pid-file", "/b/c1/init.pid", "--console-socket",
			  "/tmp/pty.sock", "c1", NULL};
	parse(&inv, create);
	CHECK(inv.verb == VERB_CREATE);
	CHECK(streq(inv.root, "/run/containerd/runc/k8s.io"));
	CHECK(streq(inv.bundle, "/b/c1"));
	CHECK(streq(inv.pid_file, "/b/c1/init.pid"));
	CHECK(streq(inv.id, "c1"));

	/* and for kubectl exec */
	char *exec[] = {"runc", "--root=/r", "exec", "--process", "/tmp/p.json", "--detach", "--pid-file", "/tmp/e.pid",
			"c1", NULL};
	parse(&inv, exec);
	CHECK(inv.verb == VERB_EXEC);
	CHECK(streq(inv.root, "/r"));
	CHECK(streq(inv.process, "/tmp/p.json"));
	CHECK(inv.detach);
	CHECK(streq(inv.id, "c1"));

	/* exec with a command after the id, short and = forms */
	char *exec2[] = {"runc", "exec", "-t", "-u", "1000", "--cwd=/tmp", "-e", "A=1", "c2", "sh", "-c", "id", NULL};
	parse(&inv, exec2);
	CHECK(streq(inv.id, "c2"));
	CHECK(inv.process == NULL);

	char *del[] = {"runc", "--root", "/r", "delete", "--force", "c3", NULL};
	parse(&inv, del);
	CHECK(inv.verb == VERB_DELETE && streq(inv.id, "c3"));

	char *run[] = {"runc", "run", "-d", "-b", "/bundle", "c4", NULL};
	parse(&inv, run);
	CHECK(inv.verb == VERB_RUN && inv.detach && streq(inv.bundle, "/bundle") && streq(inv.id, "c4"));

	char *state[] = {"runc", "--debug", "state", "c5", NULL};
	parse(&inv, state);
	CHECK(inv.verb == VERB_OTHER && streq(inv.verb_name, "state") && !verb_hands_off(inv.verb));

	char *version[] = {"runc", "--version", NULL};
	parse(&inv, version);
	CHECK(inv.verb_name == NULL && inv.id == NULL);

	char *missing_value[] = {"runc", "create", "--bundle", NULL};
	parse(&inv, missing_value);
	CHECK(inv.verb == VERB_CREATE && inv.id == NULL);
}

static void test_json_strings(void)
{
	struct sb sb;
	sb_init(&sb);
	CHECK(sb_json_string(&sb, "a\"b\\c\n\x01\x7f é"));
	CHECK(streq(sb.buf, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f é\""));
	sb_free(&sb);

	sb_init(&sb);
	CHECK(!sb_json_string(&sb, "bad \xff byte"));
	CHECK(streq(sb.buf, "null"));
	sb_free(&sb);

	CHECK(utf8_valid("\xe2\x82\xac \xf0\x9f\x98\x80", 8));
	CHECK(!utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
	CHECK(!utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
	CHECK(!utf8_valid("\xe2\x82", 2));         /* cut short */
	CHECK(!utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
}

static void test_json_members(void)
{
	static const char *const keys[] = {"args", "cwd", "user", "terminal"};
	struct json_span out[4];
	const char *error = NULL;
	const char *doc = "{\"terminal\":true,\"env\":[\"SECRET=1\"],\"args\":[\"sh\",\"-c\",\"echo \\\"}\\\"\"],"
			  "\"user\":{\"uid\":0,\"gid\":0,\"additionalGids\":[1,2]},\"cwd\":\"/\"}";
	CHECK(json_object_members(doc, strlen(doc), keys, 4, out, &error) == 0);
	CHECK(out[0].start && strncmp(out[0].start, "[\"sh\",\"-c\",\"echo \\\"}\\\"\"]", out[0].len) == 0);
	CHECK(out[1].start && strncmp(out[1].start, "\"/\"", out[1].len) == 0);
	CHECK(out[2].start && out[2].len == strlen("{\"uid\":0,\"gid\":0,\"additionalGids\":[1,2]}"));
	CHECK(out[3].start && strncmp(out[3].start, "true", out[3].len) == 0);

	const char *bad[] = {
	    "",
	    "[]",
	    "{\"args\":[1,2}",
	    "{\"args\":\"unterminated}",
	    "{\"a\":1}x",
	    "{\"a\":01}",
	    "{\"a\":tru}",
	    "{\"a\":\"\\x\"}",
	    "{\"a\":\"ctl\x01\"}",
	    "{\"a\":\"\xff\"}",
	    "{\"a\" 1}",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		error = NULL;
		int r = json_object_members(bad[k], strlen(bad[k]), keys, 4, out, &error);
		CHECK(r == -1 && error != NULL);
		if (r != -1)
			fprintf(stderr, "  accepted bad JSON #%zu: %s\n", k, bad[k]);
	}

	/* nesting is bounded, not recursive without limit */
	char deep[400];
	size_t n = 0;
	n += (size_t)sprintf(deep, "{\"a\":");
	for (int k = 0; k < 100; k++)
		deep[n++] = '[';
	for (int k = 0; k < 100; k++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = '\0';
	CHECK(json_object_members(deep, n, keys, 4, out, &error) == -1);
}

static void test_agent_state(void)
{
	/* stale 5 s, absent 120 s: the defaults */
	CHECK(agent_state_of(true, 0, false, 5000, 120000) == AGENT_ALIVE);
	CHECK(agent_state_of(true, 5000, false, 5000, 120000) == AGENT_ALIVE);
	CHECK(agent_state_of(true, -30000, false, 5000, 120000) == AGENT_ALIVE); /* from the future: clock step */
	CHECK(agent_state_of(true, 5001, false, 5000, 120000) == AGENT_QUIET);   /* write, but do not wait */
	CHECK(agent_state_of(true, 120000, false, 5000, 120000) == AGENT_QUIET);
	CHECK(agent_state_of(true, 120001, false, 5000, 120000) == AGENT_ABSENT);
	CHECK(agent_state_of(true, 120001, true, 5000, 120000) == AGENT_ABSENT); /* a new spool: no matter */
	CHECK(agent_state_of(false, 0, false, 5000, 120000) == AGENT_ABSENT);    /* no heartbeat at all */
	CHECK(agent_state_of(false, 0, true, 5000, 120000) == AGENT_QUIET);      /* an agent starting */
	/* agent_absent_ms 0: never absent */
	CHECK(agent_state_of(false, 0, false, 5000, 0) == AGENT_QUIET);
	CHECK(agent_state_of(true, 86400000LL * 365, false, 5000, 0) == AGENT_QUIET);
	CHECK(agent_state_of(true, 10, false, 5000, 0) == AGENT_ALIVE);
	/* absent sooner than stale: a heartbeat is then either fresh or absent */
	CHECK(agent_state_of(true, 3000, false, 5000, 2000) == AGENT_ALIVE);
	CHECK(agent_state_of(true, 6000, false, 5000, 2000) == AGENT_ABSENT);
}

static void test_bound(void)
{
	/* tmpfs: 40 bytes for an empty directory, 20 more per entry */
	CHECK(tmpfs_dir_entries(40) == 0);
	CHECK(tmpfs_dir_entries(40 + 20 * 7) == 7);
	CHECK(tmpfs_dir_entries(0) == 0);
	CHECK(tmpfs_dir_entries(4096) == 202); /* what ext4 says: never taken for a count (f_type decides) */

	const long long mib = 1048576;
	CHECK(bound_surely_within(3, 1024, 16 * mib, mib));
	CHECK(bound_surely_within(16, 1024, 16 * mib, mib));
	CHECK(!bound_surely_within(17, 1024, 16 * mib, mib)); /* 17 files of up to 1 MiB: could be over */
	CHECK(bound_surely_within(5, 5, 1LL << 40, mib));
	CHECK(!bound_surely_within(6, 5, 1LL << 40, mib));
	CHECK(!bound_surely_within(1, 1024, 4096, mib)); /* one big hand-off could exceed a small byte bound */
	CHECK(bound_surely_within(0, 1024, 4096, mib));
	CHECK(!bound_surely_within(0, 1024, 4096, 0)); /* no per-file bound: always look */

	/* entries include the caller's own new file: over once more than max_files are not free names */
	CHECK(!bound_over_files(1027, 3, 1024)); /* 1023 others + ours: the 1024th place */
	CHECK(bound_over_files(1028, 3, 1024));  /* 1024 others + ours */
	CHECK(!bound_over_files(1028, 4, 1024));
	CHECK(!bound_over_files(5, 0, 5) && bound_over_files(6, 0, 5));
	CHECK(!bound_over_files(0, 0, 1));

	CHECK(entry_kind_of(".") == ENTRY_FREE && entry_kind_of("..") == ENTRY_FREE);
	CHECK(entry_kind_of("agent.alive") == ENTRY_FREE);
	CHECK(entry_kind_of("ack") == ENTRY_FREE);
	CHECK(entry_kind_of("dropped") == ENTRY_FREE);
	CHECK(entry_kind_of(".dropped.tmp") == ENTRY_FREE);
	CHECK(entry_kind_of("1795916762729649108-29622-exec.json") == ENTRY_HANDOFF);
	CHECK(entry_kind_of("junk") == ENTRY_HANDOFF); /* the agent consumes (refuses and removes) it too */
	CHECK(entry_kind_of("agent.alive2") == ENTRY_HANDOFF);
	CHECK(entry_kind_of(".hidden") == ENTRY_HANDOFF); /* counted: nobody would ever remove it */
	CHECK(entry_kind_of(".tmp-1795916762801234567-29640-create") == ENTRY_WRITING);
}

static void test_dropped_counter(void)
{
	unsigned long long n = 42;
	CHECK(dropped_parse("0\n", 2, &n) && n == 0);
	CHECK(dropped_parse("17\n", 3, &n) && n == 17);
	CHECK(dropped_parse("17", 2, &n) && n == 17);
	CHECK(dropped_parse("9007199254740991\n", 17, &n) && n == DROPPED_MAX);
	n = 42;
	const char *bad[] = {"", "\n", "-1\n", "+1", "01\n", "1 \n", "1\n\n", "x", "9007199254740992",
			     "18446744073709551616", "1e3"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		bool parsed = dropped_parse(bad[k], strlen(bad[k]), &n);
		CHECK(!parsed);
		if (parsed)
			fprintf(stderr, "  accepted bad counter #%zu: %s\n", k, bad[k]);
	}
	CHECK(n == 42); /* untouched */
	CHECK(dropped_next(0) == 1);
	CHECK(dropped_next(41) == 42);
	CHECK(dropped_next(DROPPED_MAX - 1) == DROPPED_MAX);
	CHECK(dropped_next(DROPPED_MAX) == DROPPED_MAX); /* saturates, never wraps */

	int logged = 0;
	for (unsigned long long k = 1; k <= 1000000; k++)
		logged += dropped_worth_logging(k);
	CHECK(logged == 20); /* 1, 2, 4, ..., 524288: a million drops, twenty log lines */
	CHECK(!dropped_worth_logging(0) && dropped_worth_logging(1) && dropped_worth_logging(1024));
	CHECK(!dropped_worth_logging(1023) && !dropped_worth_logging(3));
	CHECK(dropped_sweep_due(1) && dropped_sweep_due(65) && dropped_sweep_due(129));
	CHECK(!dropped_sweep_due(0) && !dropped_sweep_due(2) && !dropped_sweep_due(64));
}

/* config_load with a config file and the environment: the bound's keys, their defaults and their limits. */
static void test_config(void)
{
	static const char *const VARS[] = {"CONTAINER_AUDITOR_RUNC", "CONTAINER_AUDITOR_HANDOFF_DIR",
					   "CONTAINER_AUDITOR_WRAPPER_LOG", "CONTAINER_AUDITOR_ACK_TIMEOUT_MS",
					   "CONTAINER_AUDITOR_AGENT_STALE_MS", "CONTAINER_AUDITOR_AGENT_ABSENT_MS",
					   "CONTAINER_AUDITOR_SPOOL_MAX_FILES", "CONTAINER_AUDITOR_SPOOL_MAX_BYTES"};
	for (size_t k = 0; k < sizeof(VARS) / sizeof(VARS[0]); k++)
		unsetenv(VARS[k]);
	char path[] = "/tmp/ca-wrapper-unit-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	setenv("CONTAINER_AUDITOR_RUNC_CONFIG", path, 1);
	struct config cfg;

	config_load(&cfg); /* empty file: defaults */
	CHECK(cfg.agent_absent_ms == DEFAULT_AGENT_ABSENT_MS && cfg.agent_absent_ms == 120000);
	CHECK(cfg.spool_max_files == 1024 && cfg.spool_max_bytes == 16LL * 1048576);
	CHECK(cfg.problem[0] == '\0');

	const char *file = "agent_absent_ms = 30000\nspool_max_files = 5 # a comment\n"
			   "spool_max_bytes = 1073741824\n";
	CHECK(write(fd, file, strlen(file)) == (ssize_t)strlen(file));
	config_load(&cfg);
	CHECK(cfg.agent_absent_ms == 30000 && cfg.spool_max_files == 5 && cfg.spool_max_bytes == 1073741824LL);
	CHECK(cfg.problem[0] == '\0');

	setenv("CONTAINER_AUDITOR_AGENT_ABSENT_MS", "0", 1); /* the environment wins; 0 turns the check off */
	setenv("CONTAINER_AUDITOR_SPOOL_MAX_FILES", "100000", 1);
	setenv("CONTAINER_AUDITOR_SPOOL_MAX_BYTES", "1024", 1);
	config_load(&cfg);
	CHECK(cfg.agent_absent_ms == 0 && cfg.spool_max_files == 100000 && cfg.spool_max_bytes == 1024);

	/* out of range or not a number: ignored (the file's value stays), and the first problem is noted */
	const char *const BAD[][2] = {
	    {"CONTAINER_AUDITOR_SPOOL_MAX_FILES", "0"},        {"CONTAINER_AUDITOR_SPOOL_MAX_FILES", "100001"},
	    {"CONTAINER_AUDITOR_SPOOL_MAX_FILES", "-5"},       {"CONTAINER_AUDITOR_SPOOL_MAX_FILES", "5k"},
	    {"CONTAINER_AUDITOR_SPOOL_MAX_BYTES", "1023"},     {"CONTAINER_AUDITOR_SPOOL_MAX_BYTES", "1073741825"},
	    {"CONTAINER_AUDITOR_SPOOL_MAX_BYTES", ""},         {"CONTAINER_AUDITOR_AGENT_ABSENT_MS", "86400001"},
	    {"CONTAINER_AUDITOR_AGENT_ABSENT_MS", "+1"},       {"CONTAINER_AUDITOR_ACK_TIMEOUT_MS", "60001"},
	    {"CONTAINER_AUDITOR_AGENT_STALE_MS", "99999999999999999999"},
	};
	for (size_t k = 0; k < sizeof(BAD) / sizeof(BAD[0]); k++) {
		unsetenv("CONTAINER_AUDITOR_AGENT_ABSENT_MS");
		unsetenv("CONTAINER_AUDITOR_SPOOL_MAX_FILES");
		unsetenv("CONTAINER_AUDITOR_SPOOL_MAX_BYTES");
		setenv(BAD[k][0], BAD[k][1], 1);
		config_load(&cfg);
		bool kept = cfg.agent_absent_ms == 30000 && cfg.spool_max_files == 5 &&
			    cfg.spool_max_bytes == 1073741824LL && cfg.ack_timeout_ms == DEFAULT_ACK_TIMEOUT_MS &&
			    cfg.agent_stale_ms == DEFAULT_AGENT_STALE_MS;
		CHECK(kept && strstr(cfg.problem, "config: ") == cfg.problem && strstr(cfg.problem, " must be "));
		if (!kept || !cfg.problem[0])
			fprintf(stderr, "  %s=%s: %s\n", BAD[k][0], BAD[k][1], cfg.problem);
		unsetenv(BAD[k][0]);
	}
	config_load(&cfg);
	CHECK(strcmp(cfg.problem, "") == 0);
	unsetenv("CONTAINER_AUDITOR_RUNC_CONFIG");
	close(fd);
	unlink(path);
}

int main(void)
{
	test_args();
	test_json_strings();
	test_json_members();
	test_agent_state();
	test_bound();
	test_dropped_counter();
	test_config();
	printf("runc-wrapper unit: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

/* Unit tests of the wrapper's pure parts: runc command-line parsing and JSON. Run by the unit tier
 * (runc-wrapper/unit.test.ts) through `make -C runc-wrapper test/unit-tests`. */
#include <stdio.h>
#include <string.h>

#include "args.h"
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

int main(void)
{
	test_args();
	test_json_strings();
	test_json_members();
	printf("runc-wrapper unit: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

#include "args.h"

#include <string.h>

/* Options that take a value, for the parts of the command line we walk. runc's CLI (urfave/cli) also
 * accepts `--opt=value` and single-dash long names (`-root`), which match_opt handles. */
static const char *const GLOBAL_VALUE_OPTS[] = {"root", "log", "log-format", "criu", "rootless", NULL};
static const char *const CREATE_VALUE_OPTS[] = {"bundle", "b", "console-socket", "pid-file", "preserve-fds", NULL};
static const char *const EXEC_VALUE_OPTS[] = {
    "console-socket", "cwd",	 "env", "e",	   "user",	   "u",	     "additional-gids", "g",
    "process",	      "p",	 "pid-file", "process-label", "apparmor", "cap", "c",		    "preserve-fds",
    "cgroup",	      "console", NULL};

/* If arg is option `name` ("-name", "--name" or either with "=value"), returns the text after the dashes;
 * otherwise NULL. */
static const char *option_name(const char *arg)
{
	if (arg[0] != '-' || arg[1] == '\0')
		return NULL;
	return arg[1] == '-' ? arg + 2 : arg + 1;
}

static bool name_is(const char *opt, const char *name)
{
	size_t n = strlen(name);
	return strncmp(opt, name, n) == 0 && (opt[n] == '\0' || opt[n] == '=');
}

static bool in_list(const char *opt, const char *const *list)
{
	for (; *list; list++)
		if (name_is(opt, *list))
			return true;
	return false;
}

/* Value of option at argv[*i]: "--x=v" or "--x v" (then *i advances). NULL if missing. */
static const char *take_value(int argc, char *const argv[], int *i, const char *opt)
{
	const char *eq = strchr(opt, '=');
	if (eq)
		return eq + 1;
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static enum verb verb_of(const char *word)
{
	if (strcmp(word, "create") == 0)
		return VERB_CREATE;
	if (strcmp(word, "run") == 0)
		return VERB_RUN;
	if (strcmp(word, "exec") == 0)
		return VERB_EXEC;
	if (strcmp(word, "delete") == 0)
		return VERB_DELETE;
	return VERB_OTHER;
}

bool verb_hands_off(enum verb verb) { return verb != VERB_OTHER; }

void parse_invocation(int argc, char *const argv[], struct invocation *inv)
{
	memset(inv, 0, sizeof(*inv));
	int i = 1;
	/* global options */
	for (; i < argc; i++) {
		const char *opt = option_name(argv[i]);
		if (!opt)
			break;
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (in_list(opt, GLOBAL_VALUE_OPTS)) {
			const char *v = take_value(argc, argv, &i, opt);
			if (name_is(opt, "root"))
				inv->root = v;
		}
	}
	if (i >= argc)
		return;
	inv->verb_name = argv[i];
	inv->verb = verb_of(argv[i]);
	if (inv->verb == VERB_OTHER)
		return;
	const char *const *value_opts = inv->verb == VERB_EXEC ? EXEC_VALUE_OPTS : CREATE_VALUE_OPTS;
	/* verb options, then the container id (the first positional argument) */
	for (i++; i < argc; i++) {
		const char *opt = option_name(argv[i]);
		if (!opt) {
			inv->id = argv[i];
			return;
		}
		if (strcmp(argv[i], "--") == 0) {
			if (i + 1 < argc)
				inv->id = argv[i + 1];
			return;
		}
		if (name_is(opt, "detach") || name_is(opt, "d")) {
			inv->detach = true;
			continue;
		}
		if (!in_list(opt, value_opts))
			continue; /* a boolean option */
		const char *v = take_value(argc, argv, &i, opt);
		if (name_is(opt, "bundle") || name_is(opt, "b"))
			inv->bundle = v;
		else if (name_is(opt, "pid-file"))
			inv->pid_file = v;
		else if (inv->verb == VERB_EXEC && (name_is(opt, "process") || name_is(opt, "p")))
			inv->process = v;
	}
}

/* What the wrapper needs to know about one runc command line. Pure: no I/O. */
#ifndef CA_ARGS_H
#define CA_ARGS_H

#include <stdbool.h>

enum verb { VERB_OTHER = 0, VERB_CREATE, VERB_RUN, VERB_EXEC, VERB_DELETE };

struct invocation {
	enum verb verb;
	const char *verb_name; /* as typed; NULL when there is no verb (e.g. `runc --version`) */
	const char *root;      /* --root, or NULL for runc's default */
	const char *id;        /* container id, or NULL if none was found */
	const char *bundle;    /* --bundle/-b for create and run, or NULL (runc then uses the cwd) */
	const char *pid_file;  /* --pid-file */
	const char *process;   /* --process/-p for exec */
	bool detach;           /* --detach/-d (run, exec): runc returns once the process started */
};

/* Parses argv the way runc's CLI does (global options, verb, verb options, positional arguments).
 * Never fails: what it cannot recognise it leaves NULL, and the wrapper then only passes through. */
void parse_invocation(int argc, char *const argv[], struct invocation *inv);

/* Verbs after which the agent is told something. */
bool verb_hands_off(enum verb verb);

#endif

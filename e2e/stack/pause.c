/*
 * The pod sandbox's "pause" process, as Kubernetes' own (build/pause/linux/pause.c) does it: it holds the
 * pod's namespaces, exits 0 on SIGINT or SIGTERM (containerd stops a sandbox with SIGTERM, then SIGKILL), and
 * reaps the children that get re-parented to it as the pod's init. Built with `gcc -static` by stack.ts, so the
 * image needs nothing else.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int signum)
{
	(void)signum;
	_exit(0);
}

static void on_child(int signum)
{
	(void)signum;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("container-auditor pause 1");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not pid 1, so not the reaper of orphans\n");

	struct sigaction stop = {.sa_handler = on_stop};
	struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
	sigemptyset(&stop.sa_mask);
	sigemptyset(&child.sa_mask);
	if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
	    sigaction(SIGCHLD, &child, NULL) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;)
		pause();
}

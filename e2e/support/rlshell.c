/*
 * rlshell: the smallest "shell" that takes readline from libreadline.so, standing in for a bash built that
 * way (Alpine's, for one) in tests of the agent. It reads lines with readline("$ ") and does nothing with
 * them; it prints nothing but what readline itself does (the prompt and the echo), and exits 0 at the end
 * of input (readline returns NULL: Ctrl-D on an empty line). Built by e2e/support/shells.ts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <readline/readline.h>

int main(void) {
  char *line;
  while ((line = readline("$ ")) != NULL) free(line);
  return 0;
}

/*
 * rlflood: readline() returning one line again and again, as fast as readline can, for the agent's hostile
 * tests. An image that takes readline from libreadline.so (Alpine's bash does) can ship a program like this
 * to make the agent's uprobe on that library fire without a keyboard, a terminal or a shell: its input comes
 * from memory (rl_getc_function) and nothing is displayed (rl_redisplay_function), so a readline() costs it
 * microseconds while each line reaches the agent whole.
 *
 *   rlflood LINE [PER_SECOND]    until killed, PER_SECOND lines a second (default, or 0: as fast as it can)
 *
 * Built by e2e/support/hostile-roots.ts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <readline/readline.h>

static const char *text;
static size_t length, at;

static int next_char(FILE *stream) {
  (void)stream;
  if (at == length) {
    at = 0;
    return '\n';
  }
  return (unsigned char)text[at++];
}

static void no_display(void) {}
static int nothing_waiting(void) { return 0; }
static void no_terminal(int meta) { (void)meta; }
static void no_terminal_back(void) {}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: rlflood LINE [PER_SECOND]\n");
    return 2;
  }
  text = argv[1];
  length = strlen(text);
  long rate = argc > 2 ? atol(argv[2]) : 0;
  rl_getc_function = next_char;
  rl_redisplay_function = no_display;
  rl_prep_term_function = no_terminal;
  rl_deprep_term_function = no_terminal_back;
  rl_catch_signals = 0;
  // Else readline polls its input for typeahead after every character (a pselect each).
  rl_input_available_hook = nothing_waiting;
  rl_outstream = fopen("/dev/null", "w");
  // Paced from the end of each line, never catching up in a burst: the rate is a ceiling.
  const struct timespec period = {rate > 0 ? (rate == 1 ? 1 : 0) : 0, rate > 1 ? 1000000000L / rate : 0};
  for (;;) {
    free(readline(""));
    if (rate > 0) nanosleep(&period, NULL);
  }
  return 0;
}

/**
 * Secrets in the words of commands, found by what the words are rather than by how they are written: the
 * lexer (shell-words.ts) has already removed the quoting, so a value is simply a word or the rest of one. Each
 * command is read twice:
 *
 * - word by word, for what any program may be given: `--password x`, `--db-pass=x`, `-storepass x` (single
 *   dash, where the program is not known to cluster short options), `NAME=x` with a secret-looking NAME
 *   (`PASS`, `DB_PASS`, `API_KEY`, `-Dtrust.password`, `?access_token=` in a URL, `password=` in a mount
 *   option list), headers (`X-Api-Key:x`, `Authorization: Basic x`, `Cookie: x`), `user:password@host`
 *   with or without a scheme, openssl's `pass:x`, and `config [set] NAME VALUE` with a secret NAME;
 * - program by program, from each word that names a program in programs.ts to the end of the command (or the
 *   program's next mention): its options, clusters of short options, positional arguments;
 *
 * and pipelines: `echo x | chpasswd`, `printf x | docker login --password-stdin` and here-strings given to a
 * program that reads a secret on its input. Names and options are compared in ASCII lower case. Pure, no
 * regular expressions on the command (the few here run on option names), linear in the words but for the
 * program table's size.
 */
import { type Part, type ProgramRule, STDIN_WORDS, programRules } from './programs.js';
import type { ShellWord, SimpleCommand } from './shell-words.js';

/** Characters [start, end) of a word's text that are secret. */
export interface WordSpan {
  word: ShellWord;
  start: number;
  end: number;
}

const STRONG_NAME_WORDS = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'apikey',
  'api_key',
  'api-key',
  'accesskey',
  'access_key',
  'access-key',
  'privatekey',
  'private_key',
  'private-key',
  'credential',
  '_pwd',
];
/** Whole parts of a name (split at anything but letters and digits) that make it secret as its last part. */
const LAST_PARTS = new Set([
  'pass',
  'pw',
  'pwd',
  'key',
  'auth',
  'creds',
  'cred',
  'sig',
  'psk',
  'dsn',
  'otp',
  'pin',
]);
const NOT_PASS = new Set([
  'bypass',
  'compass',
  'surpass',
  'trespass',
  'overpass',
  'underpass',
  'impass',
  'encompass',
]);

/**
 * Whether a variable, parameter or key name (`DB_PASS`, `keyStorePassword`, `api_key`) names a secret:
 * `strong` when it holds a word such as password or token, `weak` when only its last part says so (`PASS`,
 * `PW`, `KEY`, `AUTH`), which is trusted only where a name can start (not in `--from-file=key=./path`).
 */
export function isSecretName(name: string): 'strong' | 'weak' | false {
  const lower = name.toLowerCase();
  if (lower === 'pwd' || lower === 'oldpwd') return false;
  if (STRONG_NAME_WORDS.some((w) => lower.includes(w))) return 'strong';
  const parts = lower.split(/[^a-z0-9]+/).filter((p) => p !== '');
  const last = parts.at(-1) ?? '';
  return LAST_PARTS.has(last) || (last.endsWith('pass') && !NOT_PASS.has(last)) ? 'weak' : false;
}

/** First parts of option names that say the option is not the secret itself (`--no-password`, `--ask-pass`). */
const NOT_A_VALUE = new Set([
  'no',
  'ask',
  'prompt',
  'show',
  'print',
  'generate',
  'random',
  'reset',
  'require',
  'skip',
  'allow',
  'disable',
  'enable',
  'with',
  'without',
  'use',
  'read',
  'save',
  'store',
]);
const OPTION_LAST = new Set([
  'password',
  'passwd',
  'pass',
  'passphrase',
  'pw',
  'token',
  'secret',
  'apikey',
  'creds',
  'credential',
  'credentials',
  'auth',
  'otp',
  'psk',
]);
const OPTION_LAST_TWO = new Set([
  'api-key',
  'secret-key',
  'auth-key',
  'account-key',
  'master-key',
  'encryption-key',
  'access-key',
  'shared-key',
  'secret-string',
  'secret-value',
  'secret-binary',
]);

/** Whether an option name (without its dashes) takes a secret: `password`, `db-pass`, `storepass`, `api-key`. */
export function isSecretOption(name: string): boolean {
  if (!MAY_BE_SECRET.test(name)) return false;
  const parts = name
    .toLowerCase()
    .split(/[-_.]+/)
    .filter((p) => p !== '');
  const first = parts[0] ?? '';
  const last = parts.at(-1) ?? '';
  if (parts.length > 1 && NOT_A_VALUE.has(first)) return false;
  if (OPTION_LAST.has(last) || OPTION_LAST_TWO.has(parts.slice(-2).join('-'))) return true;
  return (
    last.length > 4 &&
    ((last.endsWith('pass') && !NOT_PASS.has(last)) ||
      last.endsWith('password') ||
      last.endsWith('passwd') ||
      last.endsWith('auth') ||
      last.endsWith('token'))
  );
}

/** Every secret option name holds one of these (a quick test before the parts are looked at). */
const MAY_BE_SECRET = /pas|pw|tok|sec|key|aut|cred|otp|psk/i;

const HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);
const HEADER_LAST = new Set([...OPTION_LAST, 'key', 'signature', 'session', 'cookie']);

function isSecretHeader(lower: string): boolean {
  if (HEADERS.has(lower)) return true;
  const parts = lower.split(/[-_]+/);
  return HEADER_LAST.has(parts.at(-1) ?? '') || lower.includes('token') || lower.includes('secret');
}

/** Letters, digits, `_` and `-`: header names; with `.`, parameter names. */
const isHeaderCode = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) ||
  (c >= 0x41 && c <= 0x5a) ||
  (c >= 0x30 && c <= 0x39) ||
  c === 0x5f ||
  c === 0x2d;
const isNameCode = (c: number): boolean => isHeaderCode(c) || c === 0x2e;

/** The secret part of `value` (a word's text from `from` on), as [start, end) of the word's text. */
function partOf(text: string, from: number, part: Part = 'all'): [number, number] | undefined {
  let start = from;
  let end = text.length;
  const after = (sep: string): boolean => {
    const at = text.indexOf(sep, from);
    if (at < 0) return false;
    start = at + 1;
    return true;
  };
  switch (part) {
    case 'all':
      break;
    case 'after-colon':
      if (!after(':')) return undefined;
      break;
    case 'after-percent':
      if (!after('%')) return undefined;
      break;
    case 'after-comma':
      if (!after(',')) return undefined;
      break;
    case 'after-equals':
      if (!after('=')) return undefined;
      break;
    case 'after-slash': {
      if (!after('/')) return undefined;
      const at = text.indexOf('@', start);
      if (at >= 0) end = at;
      break;
    }
  }
  return end > start ? [start, end] : undefined;
}

class Collector {
  readonly spans: WordSpan[] = [];

  add(word: ShellWord | undefined, from: number, part: Part = 'all'): void {
    if (word === undefined) return;
    const range = partOf(word.text, from, part);
    if (range !== undefined) this.spans.push({ word, start: range[0], end: range[1] });
  }

  addRange(word: ShellWord, start: number, end: number): void {
    if (end > start) this.spans.push({ word, start, end });
  }
}

/** What the word rules make of a script's commands. */
export interface CommandsRead {
  /** The secret spans of their words. */
  spans: WordSpan[];
  /** Their words that are scripts themselves (see scriptArguments). */
  scripts: ShellWord[];
}

/** Reads a script's simple commands (in order): the secrets in their words, and which words are scripts. */
export function readCommands(commands: readonly SimpleCommand[]): CommandsRead {
  const out = new Collector();
  const scripts: ShellWord[] = [];
  commands.forEach((command, i) => {
    const { words } = command;
    const names = words.map((w) => programName(w.text));
    const styles = programStyles(names);
    words.forEach((word, j) => wordRules(words, j, styles[j], out));
    configRule(words, out);
    scripts.push(...scriptArguments(command, names));
    let readsSecret = words.some(
      (w, j) => STDIN_WORDS.has(w.text) && (w.text !== '--passphrase-fd' || words[j + 1]?.text === '0'),
    );
    names.forEach((name, j) => {
      const rules = programRules(name);
      if (rules.length === 0) return;
      // A program's words run to its next mention, which takes over (so the work is bounded by the table).
      let stop = names.indexOf(name, j + 1);
      if (stop < 0) stop = words.length;
      for (const rule of rules) if (programRule(rule, words, j + 1, stop, out)) readsSecret = true;
    });
    if (readsSecret) {
      for (const r of command.redirections) if (r.op.endsWith('<<<')) out.add(r.target, 0);
      const before = commands[i - 1];
      if (before?.pipesTo) feederSecrets(before, out);
    }
  });
  return { spans: out.spans, scripts };
}

/** The secret spans of the words of `commands` (a script's simple commands, in order). */
export const commandSecrets = (commands: readonly SimpleCommand[]): WordSpan[] =>
  readCommands(commands).spans;

/**
 * The program a word names, if it can be a command: a bare name, or a path in a `bin` or `sbin` directory or
 * the current one (`/usr/bin/mysql`, `./mysql`; not `/etc/htpasswd`, a file argument). '' otherwise.
 */
export function programName(word: string): string {
  if (word.startsWith('-') || word.includes('=')) return '';
  const slash = word.lastIndexOf('/');
  if (slash < 0) return word;
  const dir = word.slice(0, slash);
  return dir === '.' || dir.endsWith('/bin') || dir.endsWith('/sbin') || dir === 'bin' || dir === 'sbin'
    ? word.slice(slash + 1)
    : '';
}

/** What `echo x |` gives a program that reads a secret: echo's, printf's or yes's words, here-strings. */
function feederSecrets(command: SimpleCommand, out: Collector): void {
  for (const r of command.redirections) if (r.op.endsWith('<<<')) out.add(r.target, 0);
  const { words } = command;
  let at = words.findIndex((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w.text));
  if (at < 0) return;
  const program = programName(words[at]!.text);
  if (program === 'echo') {
    at++;
    while (at < words.length && /^-[neE]+$/.test(words[at]!.text)) at++;
  } else if (program === 'printf') {
    at++;
    if (words[at]?.text === '-v') at += 2;
    if (words[at]?.text === '--') at++;
  } else if (program === 'yes') at++;
  else return;
  for (; at < words.length; at++) out.add(words[at], 0);
}

/** For each word, the option style of the program whose arguments it is, if that program is known. */
function programStyles(names: readonly string[]): ('getopt' | 'single' | undefined)[] {
  let style: 'getopt' | 'single' | undefined;
  return names.map((name) => {
    const current = style;
    const rules = name === '' ? [] : programRules(name);
    if (rules.length > 0) style = rules[0]!.style;
    return current;
  });
}

/** The rules any word is read with, whatever the program. */
function wordRules(
  words: readonly ShellWord[],
  j: number,
  style: 'getopt' | 'single' | undefined,
  out: Collector,
): void {
  const word = words[j]!;
  const { text } = word;
  const next = words[j + 1];
  // --password x, --password=x; -storepass x, -token=x where options are words of their own.
  const dashes = text.startsWith('--') ? 2 : text.startsWith('-') && style !== 'getopt' ? 1 : 0;
  if (dashes > 0 && text.length > dashes + 1 && /^[A-Za-z]/.test(text.slice(dashes))) {
    const eq = text.indexOf('=');
    const name = text.slice(dashes, eq < 0 ? undefined : eq);
    if ((dashes === 2 || name.length >= 3) && isSecretOption(name)) {
      if (eq >= 0) out.add(word, eq + 1);
      else if (next !== undefined && !next.text.startsWith('-')) out.add(next, 0);
    }
  }
  assignments(word, out);
  header(word, out);
  userinfo(word, out);
  if (text.startsWith('pass:')) out.add(word, 5);
}

/** NAME=value anywhere in a word, with a secret NAME. */
function assignments(word: ShellWord, out: Collector): void {
  const { text } = word;
  // Where each list separator next occurs, searched once per separator and position (linear in the word).
  const next = new Map<string, number>();
  const nextOf = (separator: string, from: number): number => {
    const known = next.get(separator);
    if (known !== undefined && (known >= from || known === text.length)) return Math.max(known, from);
    let at = from;
    if (separator === ' ') while (at < text.length && !/\s/.test(text[at]!)) at++;
    else {
      at = text.indexOf(separator, from);
      if (at < 0) at = text.length;
    }
    next.set(separator, at);
    return at;
  };
  for (let eq = text.indexOf('='); eq > 0; eq = text.indexOf('=', eq + 1)) {
    // httpie's raw JSON fields: password:=x.
    const nameEnd = text[eq - 1] === ':' ? eq - 1 : eq;
    let start = nameEnd;
    while (start > 0 && isNameCode(text.charCodeAt(start - 1))) start--;
    const name = text.slice(start, nameEnd);
    const before = text[start - 1] ?? '';
    const secret = name.startsWith('--') ? false : isSecretName(name.replace(/^-+/, ''));
    if (secret === false || (secret === 'weak' && before === '=')) continue;
    // The value runs to the end of the word, or to the separator of the list the name is in.
    const separator =
      before === '?' || before === '&' || before === '#'
        ? '&'
        : before === ',' || before === ';'
          ? before
          : /^\s$/.test(before)
            ? ' '
            : undefined;
    out.addRange(word, eq + 1, separator === undefined ? text.length : nextOf(separator, eq + 1));
  }
}

/** `Name: value` at the start of a word, for secret headers (`X-Api-Key:x`, `Authorization: Basic x`). */
function header(word: ShellWord, out: Collector): void {
  const { text } = word;
  if (text.indexOf(':') <= 0) return;
  let colon = 0;
  while (colon < text.length && isHeaderCode(text.charCodeAt(colon))) colon++;
  if (colon === 0 || text[colon] !== ':' || text[colon + 1] === '/' || text[colon + 1] === '=') return;
  const name = text.slice(0, colon).toLowerCase();
  if (!isSecretHeader(name)) return;
  const spaced = text[colon + 1] === ' ' || text[colon + 1] === '\t';
  // `secret:latest` is an image; a header has a space after its colon, or a dash in its name.
  if (!spaced && !name.includes('-') && !HEADERS.has(name)) return;
  let start = colon + 1;
  while (start < text.length && /\s/.test(text[start]!)) start++;
  if (name.endsWith('authorization')) {
    // The scheme (Basic, Bearer, token) is kept when a credential follows it.
    const scheme = /^[A-Za-z][A-Za-z0-9_-]*\s+(?=\S)/.exec(text.slice(start));
    if (scheme) start += scheme[0].length;
  }
  out.addRange(word, start, text.length);
}

/**
 * `scheme://user:password@host` (a word may hold blanks that the raw text's shape stops at), and
 * `user:password@host` without a scheme (impacket's `domain/user:password@host`, lftp's `user:pw@host`).
 */
function userinfo(word: ShellWord, out: Collector): void {
  const { text } = word;
  if (text.indexOf('@') < 0) return;
  const scheme = text.indexOf('://');
  if (scheme >= 0) {
    let end = scheme + 3;
    while (end < text.length && text[end] !== '/' && text[end] !== '?' && text[end] !== '#') end++;
    const at = text.lastIndexOf('@', end - 1);
    const colon = text.indexOf(':', scheme + 3);
    if (at > scheme && colon >= 0 && colon < at) out.addRange(word, colon + 1, at);
    return;
  }
  const at = text.lastIndexOf('@');
  if (text.startsWith('-')) return;
  const colon = text.indexOf(':');
  if (colon <= 0 || colon > at - 1) return;
  if (!/^[A-Za-z0-9._\\/-]+$/.test(text.slice(0, colon))) return;
  // image@sha256:... is a digest; user@host:path has its colon after the @.
  if (/^sha(?:1|256|384|512):/.test(text.slice(at + 1)) || text.slice(colon + 1, at).includes('/')) return;
  out.addRange(word, colon + 1, at);
}

/** `git config user.password x`, `npm config set //r/:_authToken x`, `redis-cli CONFIG SET requirepass x`. */
function configRule(words: readonly ShellWord[], out: Collector): void {
  const config = words.findIndex(
    (w) => (w.text.length === 6 || w.text.length === 9) && /^config(?:ure)?$/i.test(w.text),
  );
  if (config < 0) return;
  for (let j = config + 1; j + 1 < words.length; j++) {
    const { text } = words[j]!;
    if (text.startsWith('-') || text.includes('=')) continue;
    const last = text.split(/[.:/]/).at(-1) ?? '';
    const lower = last.toLowerCase();
    if (isSecretName(last) !== false || /(?:pass|auth|token)$/.test(lower)) {
      const value = words[j + 1]!;
      if (!value.text.startsWith('-')) out.add(value, 0);
      j++;
    }
  }
}

/**
 * One program's rule over its words [from, stop): options, clusters, positional arguments. Returns whether
 * the program reads a secret from its standard input.
 */
function programRule(
  rule: ProgramRule,
  words: readonly ShellWord[],
  from: number,
  stop: number,
  out: Collector,
): boolean {
  const options = rule.options ?? {};
  const positional: { index: number; text: string }[] = [];
  const flags = new Set<string>();
  let active = rule.after === undefined;
  let optionsDone = false;
  /** The value of an option: attached from `at` on, or the next word. Returns how many words it took. */
  const value = (j: number, at: number, option: (typeof options)[string]): number => {
    const text = words[j]!.text;
    if (at < text.length) {
      if (active) out.add(words[j], at, option.part);
      return 0;
    }
    if (option.attached) return 0;
    const next = words[j + 1];
    if (next === undefined || j + 1 >= stop) return 0;
    if (option.optional && next.text.startsWith('-')) return 0;
    if (active) out.add(next, 0, option.part);
    return 1;
  };
  for (let j = from; j < stop; j++) {
    const text = words[j]!.text;
    const optionLike = text.startsWith('-') || (rule.style === 'single' && text.startsWith('/'));
    if (optionsDone || !optionLike || text === '-') {
      positional.push({ index: j, text: text.toLowerCase() });
      if (text.toLowerCase() === rule.after) active = true;
      continue;
    }
    if (text === '--') {
      optionsDone = rule.style === 'getopt';
      continue;
    }
    if (rule.style === 'single' || text.startsWith('--')) {
      const eq = text.indexOf('=');
      const name = eq < 0 ? text : text.slice(0, eq);
      let matched = false;
      for (const [spelling, option] of Object.entries(options)) {
        if (option.attached && text.startsWith(spelling) && text.length > spelling.length) {
          if (active) out.add(words[j], spelling.length, option.part);
          matched = true;
        } else if (name === spelling) {
          if (eq >= 0) {
            if (active) out.add(words[j], eq + 1, option.part);
          } else j += value(j, text.length, option);
          matched = true;
        }
        if (matched) break;
      }
      if (!matched && eq < 0 && rule.valuedWords?.includes(text)) j++;
      else if (!matched && text.startsWith('/')) positional.push({ index: j, text: text.toLowerCase() });
      continue;
    }
    // A cluster of short options: flags until one that takes a value, which is the rest or the next word.
    for (let k = 1; k < text.length; k++) {
      const letter = text[k]!;
      flags.add(letter);
      const option = options[`-${letter}`];
      if (option !== undefined) {
        // -p=secret (pflag) and -psecret both give the rest.
        j += value(j, k + 1, option);
        break;
      }
      if (rule.valued?.includes(letter)) {
        if (k + 1 === text.length && j + 1 < stop) j++;
        break;
      }
    }
  }
  if (active && rule.positional !== undefined) {
    const args = positional.map((p) => p.text);
    for (const { index, part } of rule.positional(args, flags))
      if (positional[index] !== undefined) out.add(words[positional[index].index], 0, part);
  }
  return rule.stdin?.(words.slice(from, stop).map((w) => w.text)) ?? false;
}

const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'busybox', 'fish']);
/** Programs whose arguments are commands for a shell: `ssh host 'mysql -pX'`, `eval "..."`, `watch '...'`. */
const SCRIPT_TAKERS = new Set(['eval', 'ssh', 'watch', 'trap', 'tmux', 'screen', 'parallel', 'sshpass']);

/**
 * Words of a command that are themselves scripts: the word after `-c` (`bash -c`, `su -c`, `sh -lc`,
 * `kubectl exec pod -- sh -c`), the arguments of eval, ssh, watch, trap, tmux, screen and parallel, and
 * here-strings given to a shell.
 */
export function scriptArguments(
  command: SimpleCommand,
  names: readonly string[] = command.words.map((w) => programName(w.text)),
): ShellWord[] {
  const { words } = command;
  const out = new Set<ShellWord>();
  let taker = false;
  let shell = false;
  words.forEach((word, j) => {
    const { text } = word;
    const name = names[j]!;
    if (SCRIPT_TAKERS.has(name)) taker = true;
    if (SHELLS.has(name)) shell = true;
    if (text[0] === '-' && text.endsWith('c') && /^-[A-Za-z]*c$/.test(text) && words[j + 1] !== undefined)
      out.add(words[j + 1]!);
    else if (taker && j > 0 && text[0] !== '-') out.add(word);
  });
  if (shell)
    for (const r of command.redirections)
      if (r.op.endsWith('<<<') && r.target !== undefined) out.add(r.target);
  return [...out];
}

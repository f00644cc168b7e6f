/**
 * A small Dockerfile reader: enough of the format to read images/<name>/Dockerfile without an engine (the
 * pins and the image config images.node.test.ts checks) and its .dockerignore (the context images/build.sh
 * hashes, checked in dockerfile.test.ts). Pure: text in, structures out.
 *
 *   parseDockerfile   instructions, line continuations and comments as BuildKit reads them, grouped by stage
 *   evaluate          what each stage is after its ARG/ENV scoping: expanded words, ENV, LABELs, USER,
 *                     WORKDIR, ENTRYPOINT/CMD
 *   parseDockerignore, isIgnored   which context files a build sees (moby/patternmatcher's rules)
 *   parseImageRef, pinProblem      whether a base image is pinned to a full version
 *
 * Not supported, and refused rather than misread: heredocs, ONBUILD triggers, SHELL.
 */
import { posix } from 'node:path';

export class DockerfileError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(line > 0 ? `line ${line}: ${message}` : message);
  }
}

export interface Flag {
  name: string;
  /** '' for a flag without a value (--link). */
  value: string;
}

export interface Instruction {
  /** Upper case: FROM, COPY, RUN, ... */
  keyword: string;
  /** 1-based line where it starts. */
  line: number;
  /** The --name[=value] flags before the arguments, unexpanded. */
  flags: Flag[];
  /** The arguments after the flags, continuation lines joined, unexpanded. */
  text: string;
  /** Exec form (a JSON array of strings): its elements. */
  json?: string[];
}

export interface Stage {
  index: number;
  /** The `AS name` (lower case: stage names are case-insensitive). */
  name?: string;
  from: Instruction;
  /** The instructions after FROM. */
  instructions: Instruction[];
}

export interface Dockerfile {
  /** Parser directives at the top (`# syntax=...`, `# escape=...`), keys in lower case. */
  directives: Record<string, string>;
  /** ARGs before the first FROM: they apply to FROM lines only (and to stages that declare them again). */
  globalArgs: Instruction[];
  stages: Stage[];
}

const DIRECTIVES = new Set(['syntax', 'escape', 'check']);
/** Instructions whose arguments may start with --flags. */
const FLAGGED = new Set(['FROM', 'COPY', 'ADD', 'RUN', 'HEALTHCHECK']);
/** Instructions that take the exec (JSON) form. */
const JSON_FORM = new Set(['RUN', 'CMD', 'ENTRYPOINT', 'COPY', 'ADD', 'VOLUME', 'SHELL']);
const UNSUPPORTED = new Set(['ONBUILD', 'SHELL']);
const KNOWN = new Set([
  'FROM',
  'RUN',
  'CMD',
  'LABEL',
  'MAINTAINER',
  'EXPOSE',
  'ENV',
  'ADD',
  'COPY',
  'ENTRYPOINT',
  'VOLUME',
  'USER',
  'WORKDIR',
  'ARG',
  'ONBUILD',
  'STOPSIGNAL',
  'HEALTHCHECK',
  'SHELL',
]);

/** Reads a Dockerfile. Throws DockerfileError (with the line) on what it does not understand. */
export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split(/\r?\n/);
  const directives: Record<string, string> = {};
  let i = 0;
  for (; i < lines.length; i++) {
    const m = /^#\s*([A-Za-z]+)\s*=\s*(.*?)\s*$/.exec(lines[i]!);
    if (!m || !DIRECTIVES.has(m[1]!.toLowerCase()) || m[1]!.toLowerCase() in directives) break;
    directives[m[1]!.toLowerCase()] = m[2]!;
  }
  const escape = directives.escape ?? '\\';
  if (escape !== '\\' && escape !== '`') throw new DockerfileError(0, `invalid escape directive ${escape}`);
  const continuation = new RegExp(`${escapeRegExp(escape)}[ \\t]*$`);

  const logical: { line: number; text: string }[] = [];
  let current: { line: number; text: string } | undefined;
  for (; i < lines.length; i++) {
    const line = lines[i]!;
    // Comment lines and empty lines are dropped, also in the middle of a continued instruction.
    if (/^\s*(#|$)/.test(line)) continue;
    current ??= { line: i + 1, text: '' };
    const m = continuation.exec(line);
    if (m) {
      current.text += line.slice(0, m.index);
      continue;
    }
    current.text += line;
    logical.push(current);
    current = undefined;
  }
  if (current) logical.push(current);

  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  for (const { line, text: lineText } of logical) {
    const instruction = parseInstruction(line, lineText);
    if (instruction.keyword === 'FROM') {
      const words = lexWords(instruction.text, { escape });
      let name: string | undefined;
      if (words.length === 3 && words[1]!.toUpperCase() === 'AS') name = words[2]!.toLowerCase();
      else if (words.length !== 1) throw new DockerfileError(line, 'FROM takes IMAGE [AS NAME]');
      if (name !== undefined && !/^[a-z][a-z0-9._-]*$/.test(name))
        throw new DockerfileError(line, `invalid stage name ${JSON.stringify(name)}`);
      if (name !== undefined && stages.some((s) => s.name === name))
        throw new DockerfileError(line, `duplicate stage name ${name}`);
      stages.push({ index: stages.length, ...(name ? { name } : {}), from: instruction, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG')
        throw new DockerfileError(
          line,
          `${instruction.keyword} before the first FROM (only ARG may be there)`,
        );
      globalArgs.push(instruction);
    } else {
      stages[stages.length - 1]!.instructions.push(instruction);
    }
  }
  if (stages.length === 0) throw new DockerfileError(0, 'no FROM');
  return { directives, globalArgs, stages };
}

function parseInstruction(line: number, text: string): Instruction {
  const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(text);
  if (!m) throw new DockerfileError(line, `not an instruction: ${text.trim()}`);
  const keyword = m[1]!.toUpperCase();
  if (!KNOWN.has(keyword)) throw new DockerfileError(line, `unknown instruction ${keyword}`);
  if (UNSUPPORTED.has(keyword)) throw new DockerfileError(line, `${keyword} is not supported by this reader`);
  let rest = (m[2] ?? '').trim();
  const flags: Flag[] = [];
  if (FLAGGED.has(keyword)) {
    for (let f; (f = /^--([A-Za-z][\w-]*)(?:=(\S*))?(?:\s+|$)/.exec(rest)); rest = rest.slice(f[0].length))
      flags.push({ name: f[1]!, value: f[2] ?? '' });
  }
  if (/^(RUN|COPY|ADD)$/.test(keyword) && /<<-?\s*["']?[A-Za-z_]/.test(rest))
    throw new DockerfileError(line, 'heredocs are not supported by this reader');
  const instruction: Instruction = { keyword, line, flags, text: rest };
  if (JSON_FORM.has(keyword) && rest.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(rest);
      if (Array.isArray(parsed) && parsed.every((e) => typeof e === 'string')) instruction.json = parsed;
    } catch {
      // Not JSON: BuildKit takes it as the shell form, and so do we.
    }
  }
  return instruction;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export interface LexOptions {
  /** Expands $NAME, ${NAME}, ${NAME:-word}, ${NAME:+word} from here; without it, `$` is kept as text. */
  lookup?: (name: string) => string | undefined;
  escape?: string;
}

/**
 * Splits text into words the way BuildKit's shell lexer does for COPY, ENV, LABEL, USER, ...: whitespace
 * separates words, quotes group and are removed ('...' literally, "..." with \" \\ \$ escapes and
 * expansion), the escape character makes the next character literal. Expanded values are not split again.
 */
export function lexWords(text: string, options: LexOptions = {}): string[] {
  const escape = options.escape ?? '\\';
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === escape) {
      if (i + 1 < text.length) word += text[++i];
      else word += c;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new DockerfileError(0, `unmatched ' in ${text}`);
      word += text.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        const d = text[j]!;
        if (d === escape && j + 1 < text.length && ['"', '$', escape].includes(text[j + 1]!)) {
          word += text[++j];
        } else if (d === '$' && options.lookup) {
          const { value, end } = expandAt(text, j, options.lookup, escape);
          word += value;
          j = end - 1;
        } else word += d;
      }
      if (j >= text.length) throw new DockerfileError(0, `unmatched " in ${text}`);
      i = j;
    } else if (c === '$' && options.lookup) {
      const { value, end } = expandAt(text, i, options.lookup, escape);
      word += value;
      i = end - 1;
    } else word += c;
  }
  if (inWord) words.push(word);
  return words;
}

/** Expands the variable reference at text[start] ('$'): its value and the index after it. */
function expandAt(
  text: string,
  start: number,
  lookup: (name: string) => string | undefined,
  escape: string,
): { value: string; end: number } {
  const simple = /^\$([A-Za-z_][A-Za-z0-9_]*)/.exec(text.slice(start));
  if (simple) return { value: lookup(simple[1]!) ?? '', end: start + simple[0].length };
  if (text[start + 1] !== '{') return { value: '$', end: start + 1 };
  const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(start + 2))?.[0];
  if (!name) throw new DockerfileError(0, `bad substitution in ${text}`);
  const i = start + 2 + name.length;
  // The end of ${...}: the matching brace, counting nested ${.
  let depth = 1;
  let j = i;
  for (; j < text.length && depth > 0; j++) {
    if (text[j] === escape) j++;
    else if (text[j] === '$' && text[j + 1] === '{') depth++;
    else if (text[j] === '}') depth--;
  }
  if (depth > 0) throw new DockerfileError(0, `missing } in ${text}`);
  const end = j;
  const modifier = text.slice(i, end - 1);
  const value = lookup(name);
  if (modifier === '') return { value: value ?? '', end };
  const m = /^(:?[-+])([\s\S]*)$/.exec(modifier);
  if (!m) throw new DockerfileError(0, `unsupported substitution \${${name}${modifier}} in ${text}`);
  const word = () => lexWords(m[2]!, { lookup, escape }).join(' ');
  const set = m[1]!.startsWith(':') ? value !== undefined && value !== '' : value !== undefined;
  if (m[1]!.endsWith('-')) return { value: set ? value! : word(), end };
  return { value: set ? word() : '', end };
}

export interface ResolvedInstruction extends Instruction {
  /** Flags with variables expanded (the last one of each name). */
  flag: Record<string, string>;
  /**
   * The arguments: for COPY, ADD, ENV, LABEL, ARG, USER, WORKDIR, EXPOSE, VOLUME, STOPSIGNAL the expanded
   * words; for RUN, CMD, ENTRYPOINT in shell form the text as written (a shell expands it), in exec form the
   * elements.
   */
  args: string[];
  /** The ARGs and ENV in scope here (what a RUN's process sees), ENV winning over ARG. */
  env: Record<string, string>;
}

export interface ResolvedStage {
  index: number;
  name?: string;
  /** The base image reference, expanded; or the name of an earlier stage (then baseStage is its index). */
  base: string;
  baseStage?: number;
  /** FROM --platform, expanded. */
  platform?: string;
  /** The stages this one copies from (COPY --from), by index. */
  dependsOn: number[];
  instructions: ResolvedInstruction[];
  /** At the end of the stage. Values inherited from an external base image are not known here. */
  env: Record<string, string>;
  args: Record<string, string>;
  labels: Record<string, string>;
  user?: string;
  workdir: string;
  entrypoint?: string[];
  cmd?: string[];
}

export interface EvaluateOptions {
  /** --build-arg values (only declared ARGs take them). */
  buildArgs?: Record<string, string>;
  /** The platform built for, and the one building (BuildKit's automatic TARGETPLATFORM, BUILDPLATFORM). */
  targetPlatform?: string;
  buildPlatform?: string;
}

/** BuildKit's automatic platform ARGs for a platform `os/arch[/variant]`. */
export function platformArgs(prefix: 'TARGET' | 'BUILD', platform: string): Record<string, string> {
  const [os = '', arch = '', variant = ''] = platform.split('/');
  return {
    [`${prefix}PLATFORM`]: platform,
    [`${prefix}OS`]: os,
    [`${prefix}ARCH`]: arch,
    [`${prefix}VARIANT`]: variant,
  };
}

const EXPANDED = new Set([
  'ADD',
  'COPY',
  'ENV',
  'EXPOSE',
  'LABEL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
]);

/** Each stage as BuildKit would see it: ARG scoping (global ARGs for FROM only), ENV, expansion. */
export function evaluate(dockerfile: Dockerfile, options: EvaluateOptions = {}): ResolvedStage[] {
  const escape = dockerfile.directives.escape ?? '\\';
  const buildArgs = options.buildArgs ?? {};
  const automatic = {
    ...platformArgs('TARGET', options.targetPlatform ?? 'linux/amd64'),
    ...platformArgs('BUILD', options.buildPlatform ?? options.targetPlatform ?? 'linux/amd64'),
  };
  const global: Record<string, string> = { ...automatic };
  const globalDefaults: Record<string, string | undefined> = {};
  for (const arg of dockerfile.globalArgs) {
    for (const [name, value] of argDeclarations(arg, escape, (n) => global[n])) {
      const v = buildArgs[name] ?? value;
      globalDefaults[name] = v;
      if (v !== undefined) global[name] = v;
      else delete global[name];
    }
  }

  const resolved: ResolvedStage[] = [];
  for (const stage of dockerfile.stages) {
    const fromWords = lexWords(stage.from.text, { escape, lookup: (n) => global[n] });
    const base = fromWords[0]!;
    const platformFlag = stage.from.flags.findLast((f) => f.name === 'platform');
    const baseStage = resolved.find((s) => s.name !== undefined && s.name === base.toLowerCase());
    const out: ResolvedStage = {
      index: stage.index,
      ...(stage.name ? { name: stage.name } : {}),
      base,
      ...(baseStage ? { baseStage: baseStage.index } : {}),
      ...(platformFlag
        ? { platform: lexWords(platformFlag.value, { escape, lookup: (n) => global[n] }).join(' ') }
        : {}),
      dependsOn: [],
      instructions: [],
      env: { ...(baseStage?.env ?? {}) },
      args: {},
      labels: { ...(baseStage?.labels ?? {}) },
      ...(baseStage?.user !== undefined ? { user: baseStage.user } : {}),
      workdir: baseStage?.workdir ?? '/',
      ...(baseStage?.entrypoint ? { entrypoint: baseStage.entrypoint } : {}),
      ...(baseStage?.cmd ? { cmd: baseStage.cmd } : {}),
    };
    let cmdHere = false;
    const lookup = (n: string) => out.env[n] ?? out.args[n];
    for (const instruction of stage.instructions) {
      const flag: Record<string, string> = {};
      for (const f of instruction.flags) flag[f.name] = lexWords(f.value, { escape, lookup }).join(' ');
      let args: string[];
      if (instruction.json)
        args = EXPANDED.has(instruction.keyword)
          ? instruction.json.map((e) => expandText(e, lookup, escape))
          : instruction.json;
      else if (EXPANDED.has(instruction.keyword)) args = lexWords(instruction.text, { escape, lookup });
      else args = [instruction.text];
      const env = { ...out.args, ...out.env };
      out.instructions.push({ ...instruction, flag, args, env });
      const exec = instruction.json ?? ['/bin/sh', '-c', instruction.text];
      switch (instruction.keyword) {
        case 'ARG':
          for (const [name, value] of argDeclarations(instruction, escape, lookup)) {
            const v =
              buildArgs[name] ?? value ?? (name in automatic ? automatic[name] : globalDefaults[name]);
            if (v !== undefined) out.args[name] = v;
          }
          break;
        case 'ENV':
          Object.assign(out.env, keyValues(instruction, args, escape, lookup));
          break;
        case 'LABEL':
          Object.assign(out.labels, keyValues(instruction, args, escape, lookup));
          break;
        case 'USER':
          if (args.length !== 1) throw new DockerfileError(instruction.line, 'USER takes one argument');
          out.user = args[0]!;
          break;
        case 'WORKDIR':
          if (args.length !== 1) throw new DockerfileError(instruction.line, 'WORKDIR takes one path');
          out.workdir = posix.resolve(out.workdir, args[0]!);
          break;
        case 'ENTRYPOINT':
          out.entrypoint = exec;
          // Setting ENTRYPOINT drops a CMD inherited from the base; one set in this stage stays.
          if (!cmdHere) delete out.cmd;
          break;
        case 'CMD':
          out.cmd = exec;
          cmdHere = true;
          break;
        case 'COPY':
        case 'ADD':
          if (flag.from !== undefined) {
            const from = resolved.find(
              (s) => s.name === flag.from!.toLowerCase() || String(s.index) === flag.from,
            );
            if (!from)
              throw new DockerfileError(
                instruction.line,
                `--from=${flag.from} names no earlier stage (images are not supported by this reader)`,
              );
            if (!out.dependsOn.includes(from.index)) out.dependsOn.push(from.index);
          }
          if (args.length < 2)
            throw new DockerfileError(instruction.line, `${instruction.keyword} needs SRC... DEST`);
          break;
      }
    }
    resolved.push(out);
  }
  return resolved;
}

function expandText(text: string, lookup: (name: string) => string | undefined, escape: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '$') {
      const { value, end } = expandAt(text, i, lookup, escape);
      out += value;
      i = end - 1;
    } else out += text[i];
  }
  return out;
}

/** ARG NAME[=default] ...: names and defaults (expanded with what is in scope before the line). */
function argDeclarations(
  instruction: Instruction,
  escape: string,
  lookup: (name: string) => string | undefined,
): [string, string | undefined][] {
  const out: [string, string | undefined][] = [];
  for (const word of lexWords(instruction.text, { escape, lookup })) {
    const eq = word.indexOf('=');
    const name = eq < 0 ? word : word.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new DockerfileError(instruction.line, `invalid ARG name ${JSON.stringify(name)}`);
    out.push([name, eq < 0 ? undefined : word.slice(eq + 1)]);
  }
  return out;
}

/** ENV / LABEL: key=value words, or the legacy `KEY the rest is the value`. */
function keyValues(
  instruction: Instruction,
  words: string[],
  escape: string,
  lookup: (name: string) => string | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (words.length === 0)
    throw new DockerfileError(instruction.line, `${instruction.keyword} needs arguments`);
  if (!words[0]!.includes('=')) {
    const m = /^\S+\s+([\s\S]*)$/.exec(instruction.text);
    if (!m) throw new DockerfileError(instruction.line, `${instruction.keyword} ${words[0]} needs a value`);
    out[words[0]!] = lexWords(m[1]!, { escape, lookup }).join(' ');
    return out;
  }
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq <= 0)
      throw new DockerfileError(instruction.line, `${instruction.keyword}: ${word} is not KEY=VALUE`);
    out[word.slice(0, eq)] = word.slice(eq + 1);
  }
  return out;
}

/** The stage a build makes without --target: the last one. */
export function finalStage(stages: ResolvedStage[]): ResolvedStage {
  return stages[stages.length - 1]!;
}

/** The stages `target` needs, itself included, in build order. */
export function stagesNeeded(stages: ResolvedStage[], target: number): number[] {
  const needed = new Set<number>();
  const visit = (i: number) => {
    if (needed.has(i)) return;
    const stage = stages[i]!;
    if (stage.baseStage !== undefined) visit(stage.baseStage);
    stage.dependsOn.forEach(visit);
    needed.add(i);
  };
  visit(target);
  return [...needed].sort((a, b) => a - b);
}

export interface IgnoreRule {
  pattern: string;
  exclusion: boolean;
  regex: RegExp;
}

/** A .dockerignore: one pattern a line, # comments, ! exceptions; later lines win. */
export function parseDockerignore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const exclusion = line.startsWith('!');
    if (exclusion) line = line.slice(1).trim();
    line = posix.normalize(line.replace(/^\/+/, '')).replace(/\/+$/, '');
    if (line === '' || line === '.') continue;
    rules.push({ pattern: line, exclusion, regex: patternRegExp(line) });
  }
  return rules;
}

/** moby/patternmatcher's translation: * within a path element, ** across them, ? one character. */
function patternRegExp(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') i++;
        re += i + 1 >= pattern.length ? '.*' : '(.*/)?';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < pattern.length) re += escapeRegExp(pattern[++i]!);
    else if (c === '[' || c === ']') re += c;
    else re += escapeRegExp(c);
  }
  return new RegExp(`${re}$`);
}

/**
 * Whether the build context leaves out `path` (relative, with /): the last rule matching the path or one of
 * its parent directories decides (MatchesOrParentMatches in moby/patternmatcher).
 */
export function isIgnored(rules: IgnoreRule[], path: string): boolean {
  const parts = posix.normalize(path).split('/');
  let matched = false;
  for (const rule of rules) {
    if (rule.exclusion !== matched) continue;
    let match = rule.regex.test(parts.join('/'));
    for (let i = 1; !match && i < parts.length; i++) match = rule.regex.test(parts.slice(0, i).join('/'));
    if (match) matched = !rule.exclusion;
  }
  return matched;
}

export interface ImageRef {
  /** As written before the tag: [registry/]path. */
  repository: string;
  tag?: string;
  digest?: string;
}

export function parseImageRef(ref: string): ImageRef {
  const at = ref.indexOf('@');
  const digest = at >= 0 ? ref.slice(at + 1) : undefined;
  const name = at >= 0 ? ref.slice(0, at) : ref;
  const colon = name.lastIndexOf(':');
  const hasTag = colon > name.lastIndexOf('/');
  return {
    repository: hasTag ? name.slice(0, colon) : name,
    ...(hasTag ? { tag: name.slice(colon + 1) } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/**
 * Why a base image reference is not pinned to a full version, or undefined when it is. A tag must name a full
 * release: major.minor.patch (node:24.22.3-bookworm-slim), or for Debian, whose releases are major.minor, a
 * point release (debian:12.11-slim) or a dated build (debian:bookworm-20250520-slim). A digest may follow.
 */
export function pinProblem(ref: string): string | undefined {
  const { repository, tag, digest } = parseImageRef(ref);
  if (digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(digest)) return `${ref}: malformed digest`;
  if (tag === undefined) return `${ref}: no tag (that means latest)`;
  const debian = repository === 'debian' || repository.endsWith('/debian');
  if (debian && /^(\d+\.\d+|[a-z]+-\d{8})(-slim)?$/.test(tag)) return undefined;
  if (!debian && /^\d+\.\d+\.\d+(?![.\d])/.test(tag)) return undefined;
  return `${ref}: tag ${tag} is not a full version`;
}

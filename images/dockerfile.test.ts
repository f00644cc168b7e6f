/**
 * The Dockerfile reader (dockerfile.ts), and images/build.sh's view of the build context, which keys its cache:
 * the files it lists for an image must be those dockerfile.ts's reading of the image's ignore file leaves in.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../e2e/support/paths.js';
import {
  DockerfileError,
  evaluate,
  isIgnored,
  lexWords,
  parseDockerfile,
  parseDockerignore,
  parseImageRef,
  pinProblem,
  stagesNeeded,
} from './dockerfile.js';

describe('parseDockerfile', () => {
  it('joins continuation lines, dropping comment and empty lines inside them', () => {
    const df = parseDockerfile(
      [
        '# syntax=docker/dockerfile:1',
        '# a comment, not a directive: directives end here',
        'FROM node:24.22.3-bookworm-slim AS Build',
        'RUN apt-get update \\',
        '# dropped',
        '',
        ' && apt-get install -y make \\   ',
        '    gcc',
        'CMD ["node", "x.js"]',
      ].join('\n'),
    );
    expect(df.directives).toEqual({ syntax: 'docker/dockerfile:1' });
    expect(df.stages).toHaveLength(1);
    const [stage] = df.stages;
    expect(stage!.name).toBe('build');
    expect(stage!.from.line).toBe(3);
    expect(stage!.instructions.map((i) => [i.keyword, i.line, i.text])).toEqual([
      ['RUN', 4, 'apt-get update  && apt-get install -y make     gcc'],
      ['CMD', 9, '["node", "x.js"]'],
    ]);
    expect(stage!.instructions[1]!.json).toEqual(['node', 'x.js']);
  });

  it('reads flags before the arguments, and the JSON form only when it is a JSON array of strings', () => {
    const df = parseDockerfile(
      [
        'FROM --platform=$BUILDPLATFORM base:1.2.3 AS a',
        'COPY --from=a --chmod=0755 --link /x /y',
        'RUN --mount=type=cache,target=/root/.npm npm ci',
        'CMD [not json]',
        'ENTRYPOINT ["a", 1]',
      ].join('\n'),
    );
    const [stage] = df.stages;
    expect(stage!.from.flags).toEqual([{ name: 'platform', value: '$BUILDPLATFORM' }]);
    const [copy, runLine, cmd, entrypoint] = stage!.instructions;
    expect(copy!.flags).toEqual([
      { name: 'from', value: 'a' },
      { name: 'chmod', value: '0755' },
      { name: 'link', value: '' },
    ]);
    expect(copy!.text).toBe('/x /y');
    expect(runLine!.flags).toEqual([{ name: 'mount', value: 'type=cache,target=/root/.npm' }]);
    expect(runLine!.text).toBe('npm ci');
    expect(cmd!.json).toBeUndefined();
    expect(entrypoint!.json).toBeUndefined();
  });

  it('keeps ARGs before the first FROM apart, and refuses anything else there', () => {
    const df = parseDockerfile('ARG A=1\nARG B\nFROM x:1.0.0\nARG A\n');
    expect(df.globalArgs.map((a) => a.text)).toEqual(['A=1', 'B']);
    expect(df.stages[0]!.instructions.map((i) => i.keyword)).toEqual(['ARG']);
    expect(() => parseDockerfile('RUN true\nFROM x:1.0.0')).toThrow('line 1: RUN before the first FROM');
  });

  it('refuses what it would misread: heredocs, unknown instructions, a bad FROM, no FROM', () => {
    expect(() => parseDockerfile('FROM x:1.0.0\nRUN <<EOF\necho\nEOF')).toThrow('heredocs');
    expect(() => parseDockerfile('FROM x:1.0.0\nFETCH y')).toThrow('line 2: unknown instruction FETCH');
    expect(() => parseDockerfile('FROM x:1.0.0\nONBUILD RUN true')).toThrow(DockerfileError);
    expect(() => parseDockerfile('FROM x:1.0.0 AS a b')).toThrow('FROM takes IMAGE [AS NAME]');
    expect(() => parseDockerfile('FROM a AS x\nFROM b AS X')).toThrow('duplicate stage name x');
    expect(() => parseDockerfile('# just a comment\n')).toThrow('no FROM');
  });

  it('honours the escape directive', () => {
    const df = parseDockerfile('# escape=`\nFROM x:1.0.0\nRUN a `\n  b\nCOPY c:\\d e');
    expect(df.stages[0]!.instructions.map((i) => i.text)).toEqual(['a   b', 'c:\\d e']);
  });
});

describe('lexWords', () => {
  const vars: Record<string, string> = { A: 'one', B: 'two words', EMPTY: '' };
  const lookup = (n: string) => vars[n];

  it('splits on whitespace, removes quotes, and honours escapes', () => {
    expect(lexWords(`a "b c" 'd e' f\\ g "h\\"i" 'j\\k'`)).toEqual(['a', 'b c', 'd e', 'f g', 'h"i', 'j\\k']);
  });

  it('expands $NAME, ${NAME} and the :- and :+ forms, but not in single quotes', () => {
    expect(lexWords('$A ${A}x "$B" \'$A\' \\$A', { lookup })).toEqual([
      'one',
      'onex',
      'two words',
      '$A',
      '$A',
    ]);
    expect(
      lexWords('${NONE:-dflt} ${EMPTY:-dflt} ${EMPTY-dflt} ${A:+set} ${NONE:+set}x', { lookup }),
    ).toEqual(['dflt', 'dflt', '', 'set', 'x']);
    expect(lexWords('${NONE:-${A}}', { lookup })).toEqual(['one']);
    expect(lexWords('$A', {})).toEqual(['$A']);
  });

  it('refuses what it does not know', () => {
    expect(() => lexWords('${A%suffix}', { lookup })).toThrow('unsupported substitution');
    expect(() => lexWords('"open', { lookup })).toThrow('unmatched "');
  });
});

describe('evaluate', () => {
  it('expands FROM with global ARGs (and build args), which stages see only when they declare them', () => {
    const stages = evaluate(
      parseDockerfile(
        [
          'ARG BASE=node:1.2.3',
          'ARG TAG=${BASE}-slim',
          'FROM --platform=$BUILDPLATFORM ${TAG} AS one',
          'LABEL seen="[${BASE}]"',
          'ARG BASE',
          'LABEL now="[${BASE}]"',
          'FROM one',
        ].join('\n'),
      ),
      { buildArgs: { BASE: 'node:9.9.9' }, buildPlatform: 'linux/arm64' },
    );
    expect(stages[0]!.base).toBe('node:9.9.9-slim');
    expect(stages[0]!.platform).toBe('linux/arm64');
    expect(stages[0]!.labels).toEqual({ seen: '[]', now: '[node:9.9.9]' });
    expect(stages[1]!.baseStage).toBe(0);
    expect(stages[1]!.labels).toEqual({ seen: '[]', now: '[node:9.9.9]' });
  });

  it('tracks ENV (over ARG), USER, WORKDIR, and what RUN sees', () => {
    const [stage] = evaluate(
      parseDockerfile(
        [
          'FROM x:1.0.0',
          'ARG V=arg',
          'ENV V=env W="a b" X=$V',
          'ENV Y legacy form $W',
          'WORKDIR /app',
          'WORKDIR sub/../src',
          'USER ${V}:1',
          'RUN echo $V',
        ].join('\n'),
      ),
    );
    expect(stage!.env).toEqual({ V: 'env', W: 'a b', X: 'arg', Y: 'legacy form a b' });
    expect(stage!.workdir).toBe('/app/src');
    expect(stage!.user).toBe('env:1');
    const runLine = stage!.instructions[stage!.instructions.length - 1]!;
    expect(runLine.args).toEqual(['echo $V']);
    expect(runLine.env).toMatchObject({ V: 'env', W: 'a b' });
  });

  it('takes ENTRYPOINT and CMD in both forms; ENTRYPOINT drops an inherited CMD', () => {
    const stages = evaluate(
      parseDockerfile(
        [
          'FROM x:1.0.0 AS a',
          'CMD ["serve"]',
          'FROM a AS b',
          'ENTRYPOINT ["node", "main.js"]',
          'FROM a AS c',
          'CMD ["again"]',
          'ENTRYPOINT exec node',
        ].join('\n'),
      ),
    );
    expect(stages[0]!.cmd).toEqual(['serve']);
    expect(stages[1]!.entrypoint).toEqual(['node', 'main.js']);
    expect(stages[1]!.cmd).toBeUndefined();
    expect(stages[2]!.cmd).toEqual(['again']);
    expect(stages[2]!.entrypoint).toEqual(['/bin/sh', '-c', 'exec node']);
  });

  it('knows which stages a stage copies from, and refuses --from of an unknown stage', () => {
    const text = [
      'FROM x:1.0.0 AS deps',
      'FROM x:1.0.0 AS unused',
      'FROM x:1.0.0 AS build',
      'FROM x:1.0.0',
      'COPY --from=deps /a /a',
      'COPY --from=BUILD /b /b',
    ].join('\n');
    const stages = evaluate(parseDockerfile(text));
    expect(stages[3]!.dependsOn).toEqual([0, 2]);
    expect(stagesNeeded(stages, 3)).toEqual([0, 2, 3]);
    expect(() => evaluate(parseDockerfile('FROM x:1.0.0\nCOPY --from=alpine:3 /a /a'))).toThrow(
      'names no earlier stage',
    );
  });
});

describe('dockerignore', () => {
  const rules = parseDockerignore(
    ['# comment', '*', '!bin/', '!src', 'src/**/*.test.ts', '**/testdata', '!/keep.txt', '', 'a?c'].join(
      '\n',
    ),
  );

  it('excludes by the last matching rule, applied to the path and each parent directory', () => {
    expect(isIgnored(rules, 'package.json')).toBe(true);
    expect(isIgnored(rules, 'node_modules/x/index.js')).toBe(true);
    expect(isIgnored(rules, 'bin/cli.js')).toBe(false);
    expect(isIgnored(rules, 'src/a/b.ts')).toBe(false);
    expect(isIgnored(rules, 'src/a/b.test.ts')).toBe(true);
    expect(isIgnored(rules, 'src/b.test.ts')).toBe(true);
    expect(isIgnored(rules, 'src/a/testdata/x.ts')).toBe(true);
    expect(isIgnored(rules, 'keep.txt')).toBe(false);
    expect(isIgnored(rules, 'abc')).toBe(true);
    expect(isIgnored(rules, 'srcx/file')).toBe(true);
  });

  it('includes everything when there are no rules', () => {
    expect(isIgnored([], 'anything/at/all')).toBe(false);
  });
});

describe('image references', () => {
  it('splits repository, tag and digest (a registry port is not a tag)', () => {
    expect(parseImageRef('node:24.22.3-bookworm-slim')).toEqual({
      repository: 'node',
      tag: '24.22.3-bookworm-slim',
    });
    expect(parseImageRef('registry:5000/team/app')).toEqual({ repository: 'registry:5000/team/app' });
    expect(parseImageRef(`debian:12.11-slim@sha256:${'a'.repeat(64)}`)).toEqual({
      repository: 'debian',
      tag: '12.11-slim',
      digest: `sha256:${'a'.repeat(64)}`,
    });
  });

  it('calls pinned only a full version: major.minor.patch, or a Debian point release or dated build', () => {
    for (const ok of [
      'node:24.22.3-bookworm-slim',
      'node:24.22.3',
      'docker.io/library/debian:12.11-slim',
      'debian:bookworm-20250520-slim',
      `node:24.22.3-bookworm-slim@sha256:${'0'.repeat(64)}`,
    ])
      expect(pinProblem(ok)).toBeUndefined();
    for (const bad of [
      'node',
      'node:latest',
      'node:24',
      'node:24.22-bookworm-slim',
      'node:lts-bookworm-slim',
      'debian:12-slim',
      'debian:bookworm-slim',
      'debian@sha256:abc',
    ])
      expect(pinProblem(bad)).toMatch(/./);
  });
});

describe("images/build.sh's build context (what its cache key hashes)", () => {
  /** Every file under the repository that the ignore file leaves in, walked without shortcuts but .git. */
  function contextFiles(ignoreFile: string): string[] {
    const rules = parseDockerignore(readFileSync(ignoreFile, 'utf8'));
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(join(REPO_ROOT, dir), { withFileTypes: true })) {
        const rel = dir ? `${dir}/${entry.name}` : entry.name;
        if (rel === '.git') continue;
        if (entry.isDirectory()) walk(rel);
        else if (!isIgnored(rules, rel)) files.push(rel);
      }
    };
    walk('');
    return files.sort();
  }

  it.each(['operator', 'agent'])(
    'lists for %s the files its ignore file leaves in, and only those',
    (name) => {
      const listed = spawnSync('bash', [join(REPO_ROOT, 'images', 'build.sh'), 'context', name], {
        encoding: 'utf8',
        maxBuffer: 16 << 20,
      });
      expect(listed.stderr).toBe('');
      expect(listed.status).toBe(0);
      const files = listed.stdout.split('\n').filter(Boolean);
      expect(files).toEqual(contextFiles(join(REPO_ROOT, 'images', name, 'Dockerfile.dockerignore')));
      // What the Dockerfiles copy is there; tests, node_modules and dist are not.
      expect(files).toContain('package-lock.json');
      expect(files).toContain('cli/container-auditor.js');
      expect(files.some((f) => f.startsWith('operator/'))).toBe(true);
      expect(files.filter((f) => /\.test\.ts$|^node_modules\/|^dist\/|\/testdata\//.test(f))).toEqual([]);
      if (name === 'agent') expect(files).toContain('agent/capture/exec/bpftrace-tracefs.sh');
      else expect(files.some((f) => /\.bt\.tpl$|bpftrace-tracefs\.sh$|^runc-wrapper\//.test(f))).toBe(false);
    },
  );
});

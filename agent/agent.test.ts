import { cutArgv } from './agent.js';

const args = (...a: string[]) => a.map((s) => Buffer.from(s));
const text = (r: { args: Buffer[] }) => r.args.map((b) => b.toString());

describe('cutting argv to a container’s limit', () => {
  it('keeps argv whole when it fits with its NULs', () => {
    expect(cutArgv(args('ls', '-l'), 6)).toEqual({ args: args('ls', '-l'), cut: false });
  });

  it('cuts as the exec probe does: the string that straddles the bound in the middle, the rest left out', () => {
    const cut = cutArgv(args('curl', '--data', 'secretvalue', 'http://x'), 15);
    expect(text(cut)).toEqual(['curl', '--data', 'sec']);
    expect(cut.cut).toBe(true);
    // A string that fills the bound but for its NUL is cut too (it may go on).
    expect(cutArgv(args('abcd', 'e'), 4)).toEqual({ args: args('abcd'), cut: true });
    expect(cutArgv(args('ab', 'cd'), 3)).toEqual({ args: args('ab'), cut: true });
  });
});

import { Readable } from 'node:stream';
import { parseReport, readBody } from './server.js';
import { BOOT, command } from './testdata/fakes.js';

describe('readBody', () => {
  it('reads a body within the cap', async () => {
    await expect(readBody(Readable.from([Buffer.from('ab'), Buffer.from('cd')]), 4)).resolves.toEqual({
      ok: true,
      body: Buffer.from('abcd'),
    });
  });

  it('stops at the first byte past the cap', async () => {
    let pulled = 0;
    const endless = new Readable({
      read() {
        pulled++;
        this.push(Buffer.alloc(1024));
      },
    });
    await expect(readBody(endless, 4096)).resolves.toEqual({ ok: false, reason: 'too-large' });
    // The cap plus what the stream buffers ahead (its high-water mark: 16 KiB up to Node.js 20, 64 KiB
    // since 22), not the endless rest.
    const chunksAhead = endless.readableHighWaterMark / 1024;
    expect(pulled).toBeLessThanOrEqual(4096 / 1024 + chunksAhead + 1);
    endless.destroy();
  });

  it('refuses a declared length past the cap without reading', async () => {
    await expect(readBody(Readable.from([]), 10, 11)).resolves.toEqual({ ok: false, reason: 'too-large' });
  });

  it('says when the client went away', async () => {
    const stream = new Readable({ read() {} });
    const result = readBody(stream, 100);
    stream.destroy(new Error('reset'));
    await expect(result).resolves.toEqual({ ok: false, reason: 'aborted' });
  });
});

describe('parseReport', () => {
  const report = { node: 'node-a', boot: BOOT, records: [command(1, 'ls')] };

  it('accepts a valid report', () => {
    expect(parseReport(Buffer.from(JSON.stringify(report)))).toEqual({ ok: true, report });
  });

  const detail = (text: string): string => {
    const result = parseReport(Buffer.from(text));
    return result.ok ? 'accepted' : result.detail;
  };

  it('says what is wrong with JSON that is not a report', () => {
    expect(detail('{"node":')).toMatch(/^not JSON/);
    expect(
      detail(JSON.stringify({ ...report, records: [{ ...command(1, 'ls'), node: 'node-b' }] })),
    ).toContain('a record must carry the node and boot of its report');
    expect(detail(JSON.stringify({ ...report, extra: 1 }))).toContain('extra');
  });
});

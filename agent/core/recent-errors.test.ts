import { FakeClock } from '../../test-support/fake-clock.js';
import { RecentErrors } from './recent-errors.js';

describe('RecentErrors', () => {
  it('keeps the newest few, oldest first, each dated by the clock', async () => {
    const clock = new FakeClock(1_000);
    const errors = new RecentErrors(2, clock);
    errors.add('one');
    await clock.advance(10);
    errors.add('two');
    await clock.advance(10);
    errors.add('three');
    expect(errors.list()).toEqual([
      { time: new Date(1_010), message: 'two' },
      { time: new Date(1_020), message: 'three' },
    ]);
  });
});

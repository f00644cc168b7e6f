import { type Clock, realClock } from '../../common/clock.js';

/**
 * Problems worth telling the operator (AgentState.errors): the newest few, each with its time. The capture
 * engine, the plan client, the reporter and the queue each keep theirs; the state merges them by time.
 */
export class RecentErrors {
  private readonly entries: { time: Date; message: string }[] = [];

  constructor(
    private readonly keep = 16,
    private readonly clock: Clock = realClock,
  ) {}

  add(message: string): void {
    this.entries.push({ time: new Date(this.clock.now()), message });
    if (this.entries.length > this.keep) this.entries.splice(0, this.entries.length - this.keep);
  }

  list(): readonly { time: Date; message: string }[] {
    return this.entries;
  }
}

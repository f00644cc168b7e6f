/** Problems worth telling the operator (AgentState.errors): the newest few, each with its time. */
export class RecentErrors {
  private readonly entries: { time: Date; message: string }[] = [];

  constructor(
    private readonly keep = 16,
    private readonly now: () => Date = () => new Date(),
  ) {}

  add(message: string): void {
    this.entries.push({ time: this.now(), message });
    if (this.entries.length > this.keep) this.entries.splice(0, this.entries.length - this.keep);
  }

  list(): readonly { time: Date; message: string }[] {
    return this.entries;
  }
}

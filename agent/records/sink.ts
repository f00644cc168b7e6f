/**
 * Where records go. The sink stamps each one with the agent's node, boot and the next sequence number, in
 * the order written, so seq is the order of capture.
 */
import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import type { AgentRecord, UnstampedRecord } from '../../api/records/v1.js';

export interface RecordSink {
  write(record: UnstampedRecord): AgentRecord;
}

export class StampingSink implements RecordSink {
  private seq = 0;
  readonly boot: string;

  constructor(
    private readonly node: string,
    private readonly deliver: (record: AgentRecord) => void,
    boot: string = randomUUID(),
  ) {
    this.boot = boot;
  }

  write(record: UnstampedRecord): AgentRecord {
    const stamped: AgentRecord = { seq: ++this.seq, boot: this.boot, node: this.node, ...record };
    this.deliver(stamped);
    return stamped;
  }

  get written(): number {
    return this.seq;
  }
}

/** One JSON object per line on a stream (stdout or a file), in order. */
export function jsonLines(stream: Writable): (record: AgentRecord) => void {
  return (record) => {
    stream.write(`${JSON.stringify(record)}\n`);
  };
}

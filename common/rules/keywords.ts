/**
 * Which of a fixed set of keywords occur in a text, ASCII case-insensitively, in one pass: an Aho-Corasick
 * automaton compiled to a table (state x ASCII code), so the cost is one lookup per character however many
 * keywords there are. The built-in shapes' gates (builtins.ts) are checked with it: a shape runs only when
 * its gate's keywords occur, and with some 150 keywords a substring search per keyword per line would cost
 * more than the shapes it saves. Keywords are ASCII; any other character restarts the match.
 */
export class Keywords {
  private readonly ids = new Map<string, number>();
  /** next[state * 128 + code]: the state after reading `code` (lower case) in `state`. */
  private readonly next: Int32Array;
  /** The keywords (ids) that end at each state, its failure chain included. */
  private readonly out: number[][];
  /** Whether any keyword ends at each state (most states: none). */
  private readonly ends: Uint8Array;
  /** seen[id] === stamp: the keyword was found in the current text. */
  private readonly seen: Uint32Array;
  private stamp = 0;

  constructor(words: Iterable<string>) {
    const children: Map<number, number>[] = [new Map<number, number>()];
    const ends: number[][] = [[]];
    for (const word of words) {
      const lower = word.toLowerCase();
      if (this.ids.has(lower) || lower === '') continue;
      if (!/^[\x20-\x7e]+$/.test(lower))
        throw new Error(`keyword ${JSON.stringify(word)} is not printable ASCII`);
      const id = this.ids.size;
      this.ids.set(lower, id);
      let state = 0;
      for (const c of lower) {
        const code = c.charCodeAt(0);
        let child = children[state]!.get(code);
        if (child === undefined) {
          child = children.length;
          children.push(new Map<number, number>());
          ends.push([]);
          children[state]!.set(code, child);
        }
        state = child;
      }
      ends[state]!.push(id);
    }
    this.seen = new Uint32Array(this.ids.size);
    // Breadth first: each state's failure link is a state of a shorter depth, already complete.
    this.next = new Int32Array(children.length * 128);
    this.out = ends.map((e) => [...e]);
    this.ends = new Uint8Array(children.length);
    const fail = new Int32Array(children.length);
    const queue: number[] = [];
    for (let code = 0; code < 128; code++) {
      const child = children[0]!.get(code);
      if (child !== undefined) {
        this.next[code] = child;
        queue.push(child);
      }
    }
    for (let head = 0; head < queue.length; head++) {
      const state = queue[head]!;
      this.out[state]!.push(...this.out[fail[state]!]!);
      if (this.out[state]!.length > 0) this.ends[state] = 1;
      for (let code = 0; code < 128; code++) {
        const child = children[state]!.get(code);
        const viaFail = this.next[fail[state]! * 128 + code]!;
        if (child === undefined) this.next[state * 128 + code] = viaFail;
        else {
          this.next[state * 128 + code] = child;
          fail[child] = viaFail;
          queue.push(child);
        }
      }
    }
  }

  /** The id of a keyword given to the constructor. */
  id(word: string): number {
    const id = this.ids.get(word.toLowerCase());
    if (id === undefined) throw new Error(`unknown keyword ${JSON.stringify(word)}`);
    return id;
  }

  /** Which keywords occur in `text`: their ids, each once, in no particular order. */
  find(text: string): number[] {
    const { next, out, ends, seen } = this;
    const found: number[] = [];
    const stamp = ++this.stamp;
    let state = 0;
    for (let i = 0; i < text.length; i++) {
      let code = text.charCodeAt(i);
      if (code >= 128) {
        state = 0;
        continue;
      }
      if (code >= 0x41 && code <= 0x5a) code += 0x20;
      state = next[(state << 7) | code]!;
      if (ends[state] === 1)
        for (const id of out[state]!)
          if (seen[id] !== stamp) {
            seen[id] = stamp;
            found.push(id);
          }
    }
    return found;
  }
}

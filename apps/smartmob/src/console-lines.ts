/**
 * A process's console as lines: its output (stdout, with stderr sent into it)
 * cut at `\n`, one WebSocket text frame each. Lines are numbered from the
 * first line the process ever wrote, across restarts of the process and of
 * the agent; a client resumes with `?cursor=N` (the number of lines it has).
 * A line longer than the cap is cut into several lines.
 */

/** Longest line sent as one frame; longer ones are cut. */
export const MAX_LINE_BYTES = 64 * 1024;

/** Every this many lines, the byte offset where a line starts is remembered. */
export const CHECKPOINT_LINES = 256;

const NEWLINE = 0x0a;

/** One line, with the byte offset just after it (where the next line starts). */
export interface ConsoleLine {
  text: Buffer;
  endOffset: number;
}

/** Cuts a byte stream into lines; the same cuts whoever reads from the same line start. */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Offset of the first pending byte. */
  private offset: number;

  constructor(
    startOffset: number,
    private readonly maxLineBytes = MAX_LINE_BYTES,
  ) {
    this.offset = startOffset;
  }

  /** Offset the next pushed byte must have (data before a gap is dropped by starting anew). */
  get nextOffset(): number {
    return this.offset + this.pendingBytes;
  }

  /** Lines completed by `data` (which starts where the previous data ended). */
  push(data: Buffer): ConsoleLine[] {
    const lines: ConsoleLine[] = [];
    let start = 0;
    while (start < data.length) {
      const room = this.maxLineBytes - this.pendingBytes;
      const newline = data.indexOf(NEWLINE, start);
      const end = newline === -1 ? data.length : newline + 1;
      if (end - start > room) {
        // Too long: cut at the cap.
        this.pending.push(data.subarray(start, start + room));
        this.pendingBytes += room;
        lines.push(this.take(false));
        start += room;
        continue;
      }
      this.pending.push(data.subarray(start, end));
      this.pendingBytes += end - start;
      start = end;
      if (newline !== -1) lines.push(this.take(true));
    }
    return lines;
  }

  /** The unfinished last line, if any (when the output has ended). */
  flush(): ConsoleLine | undefined {
    return this.pendingBytes === 0 ? undefined : this.take(false);
  }

  private take(endsWithNewline: boolean): ConsoleLine {
    const whole =
      this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
    this.offset += whole.length;
    this.pending = [];
    this.pendingBytes = 0;
    let text = endsWithNewline ? whole.subarray(0, whole.length - 1) : whole;
    if (endsWithNewline && text.length > 0 && text[text.length - 1] === 0x0d) {
      text = text.subarray(0, text.length - 1);
    }
    return { text, endOffset: this.offset };
  }
}

/**
 * Where lines start, every {@link CHECKPOINT_LINES} lines: a reader that
 * wants line N starts at the checkpoint before it and skips the rest.
 */
export class LineIndex {
  /** `checkpoints[k]` = byte offset where line `k * CHECKPOINT_LINES` starts. */
  private readonly checkpoints: number[] = [0];
  /** Lines counted so far. */
  lines = 0;

  /** Record a line that ended at `endOffset`. */
  add(endOffset: number): void {
    this.lines += 1;
    if (this.lines % CHECKPOINT_LINES === 0) this.checkpoints.push(endOffset);
  }

  /** Where to start reading to reach line `cursor`: the offset and the line number found there. */
  seek(cursor: number): { offset: number; line: number } {
    const index = Math.min(Math.floor(cursor / CHECKPOINT_LINES), this.checkpoints.length - 1);
    return { offset: this.checkpoints[index] as number, line: index * CHECKPOINT_LINES };
  }
}

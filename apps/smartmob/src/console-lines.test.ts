import { describe, expect, it } from 'vitest';
import { CHECKPOINT_LINES, LineIndex, LineSplitter } from './console-lines.js';

const texts = (lines: { text: Buffer }[]) => lines.map((line) => line.text.toString());

describe('LineSplitter', () => {
  it('cuts at newlines across chunks, drops \\r\\n endings, tracks offsets', () => {
    const splitter = new LineSplitter(0);
    expect(texts(splitter.push(Buffer.from('one\ntw')))).toEqual(['one']);
    const lines = splitter.push(Buffer.from('o\r\nthree\n\nfour'));
    expect(texts(lines)).toEqual(['two', 'three', '']);
    expect(lines.map((line) => line.endOffset)).toEqual([9, 15, 16]);
    expect(splitter.flush()?.text.toString()).toBe('four');
    expect(splitter.flush()).toBeUndefined();
  });

  it('cuts a line longer than the cap into pieces, the same way whatever the chunking', () => {
    const data = Buffer.from(`${'a'.repeat(25)}\nbb\n`);
    const whole = texts(new LineSplitter(0, 10).push(data));
    expect(whole).toEqual(['a'.repeat(10), 'a'.repeat(10), 'a'.repeat(5), 'bb']);
    const bytewise = new LineSplitter(0, 10);
    const pieces: string[] = [];
    for (const byte of data) pieces.push(...texts(bytewise.push(Buffer.from([byte]))));
    expect(pieces).toEqual(whole);
  });
});

describe('LineIndex', () => {
  it('finds the checkpoint at or before a cursor', () => {
    const index = new LineIndex();
    for (let line = 1; line <= CHECKPOINT_LINES * 3 + 5; line += 1) index.add(line * 10);
    expect(index.lines).toBe(CHECKPOINT_LINES * 3 + 5);
    expect(index.seek(0)).toEqual({ offset: 0, line: 0 });
    expect(index.seek(CHECKPOINT_LINES - 1)).toEqual({ offset: 0, line: 0 });
    expect(index.seek(CHECKPOINT_LINES + 7)).toEqual({
      offset: CHECKPOINT_LINES * 10,
      line: CHECKPOINT_LINES,
    });
    // Past what is counted: the last checkpoint, the reader skips the rest.
    expect(index.seek(10 ** 9)).toEqual({
      offset: CHECKPOINT_LINES * 3 * 10,
      line: CHECKPOINT_LINES * 3,
    });
  });
});

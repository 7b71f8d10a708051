// The message in DATA form, built in one buffer from the lines Haraka stored, instead of piping Haraka's
// message stream: that pipe sends every line through two Transform streams as its own chunk (about
// 0.3–0.5 ms for a 4 KB message, most of the forwarder's per-message CPU). The bytes are the ones
// `message_stream.pipe(dest, { dot_stuffed: false, ending_dot: true })` produces (haraka-message-stream
// 2.x, checked line for line by test/unit/wire-message.test.ts against the real pipe):
//   - the headers Haraka holds now (with the Received line and any plugin's changes), CRLF line ends,
//     a leading dot doubled, then an empty line;
//   - the stored message after its own header block (the first empty line), as received: still
//     dot-stuffed;
//   - ".\r\n".
// Large messages (over the capture limit) and anything unusual fall back to the pipe.

/** The parts of Haraka's message stream this relies on: `add_line` (called for every stored line,
 * once DATA starts), `headers` (the transaction's live header list) and `spooling`. */
export interface CapturableStream {
  add_line(line: Buffer | string): unknown;
  headers?: unknown;
  spooling?: unknown;
  /** Bytes the stream was given by add_line (its own count). */
  bytes_read?: unknown;
}

export interface Capture {
  stream: CapturableStream;
  /** The stored lines copied end to end (one buffer per message: a reference per line would keep a
   * ~100-byte Buffer object per line alive, 13 MB for a 256 KB message of empty lines). */
  buffer: Buffer;
  bytes: number;
  /** False once the message outgrew the limit: the copy is dropped and the pipe is used. */
  usable: boolean;
}

const FIRST_CAPACITY = 16 * 1024;

/** Copies every line Haraka stores in this stream, up to limitBytes. */
export function captureLines(stream: CapturableStream, limitBytes: number): Capture {
  const capture: Capture = { stream, buffer: Buffer.allocUnsafe(0), bytes: 0, usable: true };
  const addLine = stream.add_line;
  stream.add_line = function addAndCapture(this: CapturableStream, line: Buffer | string) {
    if (capture.usable) {
      const buffer = typeof line === 'string' ? Buffer.from(line) : line;
      const bytes = capture.bytes + buffer.length;
      if (bytes > limitBytes) {
        capture.usable = false;
        capture.buffer = Buffer.allocUnsafe(0);
      } else {
        if (bytes > capture.buffer.length) {
          const grown = Buffer.allocUnsafe(Math.min(limitBytes, Math.max(FIRST_CAPACITY, capture.buffer.length * 2, bytes)));
          capture.buffer.copy(grown, 0, 0, capture.bytes);
          capture.buffer = grown;
        }
        buffer.copy(capture.buffer, capture.bytes);
        capture.bytes = bytes;
      }
    }
    return addLine.call(this, line);
  };
  return capture;
}

const CRLF = Buffer.from('\r\n');
const ENDING_DOT = Buffer.from('.\r\n');

/** Offset just past the first empty line (CRLF or LF alone), or -1. */
function afterHeaderBlock(raw: Buffer): number {
  let lineStart = 0;
  for (;;) {
    const lf = raw.indexOf(0x0a, lineStart);
    if (lf === -1) return -1;
    const length = lf + 1 - lineStart;
    if (length === 1 || (length === 2 && raw[lineStart] === 0x0d)) return lf + 1;
    lineStart = lf + 1;
  }
}

/**
 * The whole DATA payload (ending dot included), or null when the pipe must be used: the capture is not
 * this stream's or missed a line (the stream counted other bytes), the stream went to disk, or the
 * transaction discards its data (nothing stored: the pipe would never finish, so neither may we).
 */
export function wireMessage(transaction: { discard_data?: unknown }, stream: CapturableStream, capture: Capture): Buffer | null {
  if (transaction.discard_data !== false || capture.stream !== stream || !capture.usable) return null;
  if (stream.bytes_read !== capture.bytes || stream.spooling !== false || !Array.isArray(stream.headers)) return null;
  const headers = stream.headers as unknown[];
  if (!headers.every((header) => typeof header === 'string')) return null;
  const raw = capture.buffer.subarray(0, capture.bytes);
  if (headers.length === 0) return Buffer.concat([raw, ENDING_DOT]);
  const parts: Buffer[] = (headers as string[]).map((header) => Buffer.from(header.replace(/\r?\n/g, '\r\n').replace(/(^|\n)\./g, '$1..')));
  parts.push(CRLF);
  const bodyStart = afterHeaderBlock(raw);
  // No empty line at all: the pipe sends no stored bytes (headers-only message).
  if (bodyStart !== -1) parts.push(raw.subarray(bodyStart));
  parts.push(ENDING_DOT);
  return Buffer.concat(parts);
}

import { DATA_LINE_LIMIT } from '../haraka/data-line';

// The message exactly as the client sent it in DATA, for the next hop: both instances hand on these bytes
// (still dot-stuffed, as stored) after only their own trace header, never the header Haraka rebuilds from
// its parsed copy. That copy decodes header bytes to strings (U+FFFD for invalid UTF-8 under EHLO, Latin-1
// re-encoded as UTF-8 under HELO), keeps at most headers.max_lines lines, and adds an empty line to a
// message that has none: each of them breaks a DKIM signature made before this hop.
//
// The lines come from Haraka's own message stream: `add_line` is wrapped from MAIL on (before Haraka stores
// its Received line at DATA), and each line is copied as the stream gets it, until the transaction's
// end_data: for a message without an empty line after its header, end_data stores an empty line and the
// lines it takes for the body a second time, which the client never sent. A message up to
// `messageLimit` is kept whole in one buffer (one write to the next hop); of a larger one only the header
// block is kept (up to `headerLimit`), and the rest streams from Haraka's store with `skip_headers`,
// which drops the stored header block and nothing else. A header block over `headerLimit` cannot be
// handed on that way: the message must be refused before it is accepted (552 5.3.4).

/** The parts of Haraka's message stream (haraka-message-stream 2.x) this relies on. */
export interface RawStream {
  add_line(line: Buffer | string): unknown;
  /** Bytes the stream was given by add_line (its own count). */
  bytes_read?: unknown;
  pipe(destination: NodeJS.WritableStream, options: RawPipeOptions): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
}

export interface RawPipeOptions {
  dot_stuffed?: boolean;
  ending_dot?: boolean;
  skip_headers?: boolean;
  end?: boolean;
}

/** The parts of Haraka's transaction this relies on. */
export interface RawTransaction {
  message_stream: RawStream;
  end_data(cb: () => void): unknown;
}

export interface RawCapture {
  stream: RawStream;
  /** Bytes the stream was given up to end_data, stored or not; null until end_data. */
  clientBytes: number | null;
  /** Bytes the stream counted itself when end_data began. */
  storedAtEnd: number | null;
  /** Captured bytes are buffer[0, bytes). */
  buffer: Buffer;
  bytes: number;
  /** Offset just past the header block's empty line, or -1 while none has been seen. */
  headerEnd: number;
  /** The whole message is in buffer. */
  whole: boolean;
  /** The header block outgrew headerLimit: nothing is kept, and the message cannot be handed on. */
  headerOverflow: boolean;
}

export interface RawLimits {
  /** Largest message kept whole in memory. */
  messageLimit: number;
  /** Largest header block (haraka-message-stream's header skipper refuses more than 1 MB). */
  headerLimit: number;
}

/** A message that cannot be handed on unchanged, and the reply that refuses it before 250. */
export interface Refusal {
  code: 451 | 552;
  /** The reply text, enhanced status code first. */
  text: string;
}

/** haraka-message-stream's HeaderSkipper gives up on a header block over 1 MB. */
export const MAX_HEADER_BYTES = 1024 * 1024;

const FIRST_CAPACITY = 16 * 1024;
const ENDING_DOT = Buffer.from('.\r\n');

function isEmptyLine(line: Buffer): boolean {
  return (line.length === 2 && line[0] === 0x0d && line[1] === 0x0a) || (line.length === 1 && line[0] === 0x0a);
}

function append(capture: RawCapture, line: Buffer, cap: number): void {
  const bytes = capture.bytes + line.length;
  if (bytes > capture.buffer.length) {
    const grown = Buffer.allocUnsafe(Math.min(cap, Math.max(FIRST_CAPACITY, capture.buffer.length * 2, bytes)));
    capture.buffer.copy(grown, 0, 0, capture.bytes);
    capture.buffer = grown;
  }
  line.copy(capture.buffer, capture.bytes);
  capture.bytes = bytes;
}

// Kept beside the transaction, never in its notes: Haraka's outbound queue writes a transaction's notes into
// the queue file (JSON, a Buffer as one number per byte) and keeps them in memory with every queued message.
const captures = new WeakMap<RawTransaction, RawCapture>();

/** The capture captureRaw made for this transaction, if any. */
export function captureOf(transaction: RawTransaction): RawCapture | undefined {
  return captures.get(transaction);
}

/**
 * Copies every line Haraka stores in the transaction's stream until end_data: the whole message up to
 * messageLimit, else its header block.
 */
export function captureRaw(transaction: RawTransaction, limits: RawLimits): RawCapture {
  const stream = transaction.message_stream;
  const capture: RawCapture = {
    stream,
    clientBytes: null,
    storedAtEnd: null,
    buffer: Buffer.allocUnsafe(0),
    bytes: 0,
    headerEnd: -1,
    whole: true,
    headerOverflow: false,
  };
  captures.set(transaction, capture);
  const cap = Math.max(limits.messageLimit, limits.headerLimit);
  let seen = 0;
  const endData = transaction.end_data;
  transaction.end_data = function endAndStopCapture(this: RawTransaction, cb: () => void) {
    capture.clientBytes ??= seen;
    capture.storedAtEnd ??= Number(stream.bytes_read);
    return endData.call(this, cb);
  };
  const addLine = stream.add_line;
  stream.add_line = function addAndCapture(this: RawStream, line: Buffer | string) {
    if (capture.clientBytes !== null) return addLine.call(this, line);
    const buffer = typeof line === 'string' ? Buffer.from(line) : line;
    seen += buffer.length;
    const inHeader = capture.headerEnd === -1;
    if (capture.whole && capture.bytes + buffer.length > limits.messageLimit) {
      capture.whole = false;
      // Of a message too large to keep, only its header block stays.
      if (!inHeader) capture.bytes = capture.headerEnd;
    }
    if (inHeader && !capture.headerOverflow) {
      if (capture.bytes + buffer.length > limits.headerLimit) {
        capture.headerOverflow = true;
        capture.whole = false;
        capture.buffer = Buffer.allocUnsafe(0);
        capture.bytes = 0;
      } else {
        append(capture, buffer, cap);
        if (isEmptyLine(buffer)) capture.headerEnd = capture.bytes;
      }
    } else if (capture.whole) {
      append(capture, buffer, cap);
    }
    return addLine.call(this, line);
  };
  return capture;
}

/** Every line the stream got until end_data went through the capture. */
function complete(capture: RawCapture): boolean {
  return capture.clientBytes !== null && capture.clientBytes === capture.storedAtEnd;
}

/** The capture holds every byte the client sent: a message kept whole, or one that is all header lines. */
function holdsAll(capture: RawCapture): boolean {
  return complete(capture) && !capture.headerOverflow && capture.bytes === capture.clientBytes && (capture.whole || capture.headerEnd === -1);
}

/** Why these captured bytes cannot stand for the stored message, or null when they can. */
export function rawProblem(stream: RawStream, capture: RawCapture | undefined): string | null {
  if (!capture || capture.stream !== stream) return 'the message was not captured from MAIL on';
  if (capture.headerOverflow) return `its header is over ${MAX_HEADER_BYTES} bytes`;
  if (!complete(capture)) return 'the capture missed a line';
  // Streamed from Haraka's store past the header block: only for a message that has one, to which
  // end_data added nothing.
  if (holdsAll(capture) || (!capture.whole && capture.headerEnd !== -1)) return null;
  return 'the capture missed a line';
}

/** The whole message (after `prefix`) in one buffer, with the ending dot when asked; null when it is not held whole. */
export function rawPayload(stream: RawStream, capture: RawCapture, prefix: Buffer, endingDot: boolean): Buffer | null {
  if (capture.stream !== stream || !holdsAll(capture)) return null;
  const parts = [prefix, capture.buffer.subarray(0, capture.bytes)];
  if (endingDot) parts.push(ENDING_DOT);
  return Buffer.concat(parts);
}

/**
 * Writes `prefix` and the message as stored to `destination`: from the capture when it holds it whole,
 * else the captured header block and then Haraka's stored body (`skip_headers`). Throws when the capture
 * cannot stand for the message (rawProblem): the caller refuses it rather than hand on other bytes.
 */
export function pipeRaw(stream: RawStream, capture: RawCapture, destination: NodeJS.WritableStream, prefix: Buffer, options: RawPipeOptions): void {
  const problem = rawProblem(stream, capture);
  if (problem) throw new Error(`cannot hand the message on unchanged: ${problem}`);
  const whole = rawPayload(stream, capture, prefix, options.ending_dot === true);
  if (whole) {
    destination.write(whole);
    if (options.end !== false) destination.end();
    return;
  }
  destination.write(Buffer.concat([prefix, capture.buffer.subarray(0, capture.headerEnd)]));
  stream.pipe(destination, { ...options, skip_headers: true });
}

/**
 * The stream as Haraka's outbound queue pipes it (`todo.message_stream.pipe(ws, { dot_stuffed: false })`,
 * once for each recipient domain): every pipe() writes `prefix` and the stored message unchanged
 * (pipeRaw). Everything else reaches the real stream, bound to it (its private fields need that).
 */
export function rawView<T extends RawStream>(stream: T, capture: RawCapture, prefix: Buffer): T {
  return new Proxy(stream, {
    get(target, property) {
      if (property === 'pipe') {
        return (destination: NodeJS.WritableStream, options: RawPipeOptions = {}) => {
          pipeRaw(target, capture, destination, prefix, options);
          return destination;
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * Why this transaction's message cannot be handed on exactly as received, as the reply that refuses it:
 * a header block over MAX_HEADER_BYTES or a line Haraka folded (over DATA_LINE_LIMIT) is permanent (552
 * 5.3.4: the same message would fail again); a capture that cannot stand for the message, or data a
 * plugin discarded, is temporary (451). Null when it can be handed on.
 */
export function unchangedRefusal(transaction: RawTransaction & { discard_data?: boolean; notes: Record<string, unknown> }): Refusal | null {
  const capture = captureOf(transaction);
  if (transaction.notes.data_line_length_exceeded) {
    return { code: 552, text: `5.3.4 Message has a line over ${DATA_LINE_LIMIT} bytes; lines must be shorter (RFC 5322: 998)` };
  }
  const problem = transaction.discard_data === false ? rawProblem(transaction.message_stream, capture) : 'the message was discarded';
  if (!problem) return null;
  if (capture?.headerOverflow) return { code: 552, text: `5.3.4 Message header too large: over ${MAX_HEADER_BYTES} bytes` };
  return { code: 451, text: `4.3.0 Message could not be handed on unchanged (${problem}), try again later` };
}

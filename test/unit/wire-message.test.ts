// wireMessage must produce exactly the bytes Haraka's own pipe produces for DATA. Each case runs a real
// Haraka transaction (header parsing, dot handling, the busted-message repair in end_data) and compares
// the captured payload with `message_stream.pipe(..., { dot_stuffed: false, ending_dot: true })`.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { captureLines, wireMessage, type CapturableStream } from '../../src/plugins/forward/wire-message';
import { useTempDirs } from '../helpers/tmp';

interface HarakaTransaction {
  discard_data: boolean;
  message_stream: CapturableStream & { pipe(destination: Writable, options: object): void };
  add_data(line: Buffer): void;
  end_data(cb: () => void): void;
  add_header(key: string, value: string): void;
  add_leading_header(key: string, value: string): void;
  remove_header(key: string): void;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTransaction } = require('haraka/transaction') as { createTransaction(uuid: string, cfg: object): HarakaTransaction };

const CFG = { main: { spool_after: 1024 * 1024, spool_dir: '/nonexistent' }, headers: { max_lines: 1000 } };

function pipeOutput(transaction: HarakaTransaction): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    });
    sink.on('finish', () => resolve(Buffer.concat(chunks)));
    sink.on('error', reject);
    transaction.message_stream.pipe(sink, { dot_stuffed: false, ending_dot: true });
  });
}

/** Lines as Haraka's connection hands them to add_data: split after each LF, dot-stuffing kept. */
function linesOf(text: string): Buffer[] {
  return (text.match(/[^\n]*\n|[^\n]+$/g) ?? []).map((line) => Buffer.from(line, 'latin1'));
}

async function bothWays(data: string, edit?: (transaction: HarakaTransaction) => void, limit = 1 << 20, cfg: object = CFG) {
  const transaction = createTransaction(`test-${Math.random()}`, cfg);
  const capture = captureLines(transaction.message_stream, limit);
  transaction.add_data(Buffer.from('Received: from client.test ([127.0.0.9])\r\n\tby mx.demo.test; Mon, 23 Nov 2026 16:00:00 +0000\r\n'));
  for (const line of linesOf(data)) transaction.add_data(line);
  await new Promise<void>((resolve) => transaction.end_data(resolve));
  edit?.(transaction);
  const fast = wireMessage(transaction, transaction.message_stream, capture);
  const piped = await pipeOutput(transaction);
  return { fast: fast?.toString('latin1') ?? null, piped: piped.toString('latin1') };
}

async function captured(prepare: (transaction: HarakaTransaction) => void) {
  const transaction = createTransaction(`test-${Math.random()}`, CFG);
  const capture = captureLines(transaction.message_stream, 1 << 20);
  prepare(transaction);
  for (const line of linesOf('Subject: y\r\n\r\nbody\r\n')) transaction.add_data(line);
  await new Promise<void>((resolve) => {
    transaction.end_data(resolve);
    setTimeout(resolve, 50); // end_data never calls back when data is discarded
  });
  return wireMessage(transaction, transaction.message_stream, capture);
}

const CASES: [string, string, ((transaction: HarakaTransaction) => void)?][] = [
  ['a plain message', 'From: a@example.net\r\nTo: b@demo.test\r\nSubject: hi\r\n\r\nHello\r\nworld\r\n'],
  ['dot-stuffed body lines', 'Subject: dots\r\n\r\n..leading dot\r\n...two\r\n.\x20\r\nend\r\n'],
  ['folded headers', 'Subject: a long\r\n subject line\r\nX-Folded: one\r\n\ttwo\r\n\r\nbody\r\n'],
  ['no empty line between headers and body', 'Subject: busted\r\nThis is not a header\r\nmore body\r\n'],
  ['headers only, no body', 'Subject: only headers\r\nX-A: b\r\n'],
  ['an empty body', 'Subject: empty\r\n\r\n'],
  // haraka-in's connection refuses bare LF before add_data; the transaction itself still takes it.
  ['bare LF line endings', 'Subject: lf\n\nline one\nline two\n'],
  ['a last line without line end', 'Subject: tail\r\n\r\nno newline at the end'],
  ['8-bit bytes', 'Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\ncaf\xc3\xa9 \xff\xfe\r\n'],
  ['a header added after data', 'Subject: added\r\n\r\nbody\r\n', (t) => t.add_header('X-Added', 'yes')],
  ['a leading header added after data', 'Subject: lead\r\n\r\nbody\r\n', (t) => t.add_leading_header('Authentication-Results', 'mx.demo.test; none')],
  ['a header removed after data', 'Subject: removed\r\nX-Remove: me\r\n\r\nbody\r\n', (t) => t.remove_header('X-Remove')],
  ['a header value starting with a dot on a folded line', 'Subject: x\r\nX-Dot: a\r\n\t.b\r\n\r\nbody\r\n'],
  ['a MIME message', 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\npart\r\n--b1--\r\n'],
];

describe('wireMessage', () => {
  const tempDir = useTempDirs('mailproxy-wire-');

  for (const [name, data, edit] of CASES) {
    it(`gives the bytes Haraka's pipe gives: ${name}`, async () => {
      const { fast, piped } = await bothWays(data, edit);
      expect(fast).not.toBeNull();
      expect(fast).toBe(piped);
    });
  }

  it('gives up (null) when the message went to disk', async () => {
    const { fast, piped } = await bothWays(`Subject: spooled\r\n\r\n${'x'.repeat(70)}\r\n`.repeat(40), undefined, 1 << 20, { ...CFG, main: { ...CFG.main, spool_after: 1024, spool_dir: tempDir() } });
    expect(fast).toBeNull();
    expect(piped).toContain('Subject: spooled');
  });

  it('gives up (null) when the transaction discards its data', async () => {
    expect(await captured((transaction) => void (transaction.discard_data = true))).toBeNull();
  });

  it('gives up (null) when the transaction got another message stream after MAIL', async () => {
    expect(
      await captured((transaction) => {
        const Stream = transaction.message_stream.constructor as new (cfg: object, id: string, headers: unknown) => HarakaTransaction['message_stream'];
        transaction.message_stream = new Stream(CFG, 'replaced', transaction.message_stream.headers);
      }),
    ).toBeNull();
    // and the capture works when nothing of that happened
    expect((await captured(() => undefined))?.toString('latin1')).toMatch(/\r\n\r\nbody\r\n\.\r\n$/);
  });

  it('gives up (null) past the capture limit, so the pipe is used', async () => {
    const { fast, piped } = await bothWays(`Subject: big\r\n\r\n${'x'.repeat(70)}\r\n`.repeat(10), undefined, 200);
    expect(fast).toBeNull();
    expect(piped).toContain('Subject: big');
  });
});

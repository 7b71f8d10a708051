// What both instances hand on is the message as the client sent it: each case runs a real Haraka
// transaction (its header parsing, its message stream, spooling to disk) and compares the bytes that
// raw-message.ts produces, in one buffer and streamed, with the bytes given to Haraka.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { captureOf, captureRaw, MAX_HEADER_BYTES, pipeRaw, rawPayload, rawProblem, rawView, unchangedRefusal, type RawStream } from '../../src/plugins/raw-message';
import { useTempDirs } from '../helpers/tmp';

interface HarakaTransaction {
  discard_data: boolean;
  notes: Record<string, unknown>;
  message_stream: RawStream & { headers: unknown[] };
  header: { header_list: string[] };
  add_data(line: Buffer): void;
  end_data(cb: () => void): void;
  add_header(key: string, value: string): void;
  add_leading_header(key: string, value: string): void;
  remove_header(key: string): void;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTransaction } = require('haraka/transaction') as { createTransaction(uuid: string, cfg: object): HarakaTransaction };

const CFG = { main: { spool_after: 1024 * 1024, spool_dir: '/nonexistent' }, headers: { max_lines: 1000 } };
const RECEIVED = 'Received: from client.test ([127.0.0.9])\r\n\tby mx.demo.test; Mon, 23 Nov 2026 16:00:00 +0000\r\n';
const LIMITS = { messageLimit: 256 * 1024, headerLimit: MAX_HEADER_BYTES };

function collect(pipe: (sink: Writable) => void): Promise<Buffer> {
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
    pipe(sink);
  });
}

/** Lines as Haraka's connection hands them to add_data: split after each LF, dot-stuffing kept. */
function linesOf(data: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let lf = data.indexOf(0x0a); lf !== -1; lf = data.indexOf(0x0a, start)) {
    lines.push(data.subarray(start, lf + 1));
    start = lf + 1;
  }
  if (start < data.length) lines.push(data.subarray(start));
  return lines;
}

async function transactionOf(data: Buffer, cfg: object = CFG, limits = LIMITS, edit?: (transaction: HarakaTransaction) => void) {
  const transaction = createTransaction(`test-${Math.random()}`, cfg);
  const capture = captureRaw(transaction, limits);
  transaction.add_data(Buffer.from(RECEIVED));
  for (const line of linesOf(data)) transaction.add_data(line);
  await new Promise<void>((resolve) => transaction.end_data(resolve));
  edit?.(transaction);
  return { transaction, capture };
}

const latin1 = (text: string) => Buffer.from(text, 'latin1');

const CASES: [string, Buffer][] = [
  ['a plain message', latin1('From: a@example.net\r\nTo: b@demo.test\r\nSubject: hi\r\n\r\nHello\r\nworld\r\n')],
  ['dot-stuffed lines in header and body', latin1('Subject: dots\r\nX-Dot: a\r\n\t..b\r\n\r\n..leading dot\r\n...two\r\n.. \r\nend\r\n')],
  ['folded headers with trailing whitespace', latin1('Subject: a long  \r\n subject line\t\r\nX-Folded: one\r\n\ttwo \r\n\r\nbody  \r\n')],
  ['Latin-1 header bytes (not UTF-8)', latin1('Subject: caf\xe9 cr\xe8me\r\nX-Name: M\xfcller\r\n\r\ncaf\xe9\r\n')],
  ['UTF-8 header bytes', Buffer.from('Subject: café ☕ naïve\r\nFrom: Jürgen <j@example.net>\r\n\r\nbody é\r\n')],
  ['no empty line between headers and body', latin1('Subject: busted\r\nThis is not a header\r\nmore body\r\n')],
  ['headers only, no body', latin1('Subject: only headers\r\nX-A: b\r\n')],
  ['an empty body', latin1('Subject: empty\r\n\r\n')],
  ['a last line without line end', latin1('Subject: tail\r\n\r\nno newline at the end')],
  ['more than 1,000 header lines', latin1(`${Array.from({ length: 1200 }, (_, i) => `X-Line-${i}: ${i}\r\n`).join('')}Subject: many\r\n\r\nbody\r\n`)],
  ['a MIME message', latin1('Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\npart\r\n--b1--\r\n')],
];

describe('the message as received (raw-message.ts)', () => {
  const tempDir = useTempDirs('mailproxy-raw-');

  for (const [name, data] of CASES) {
    it(`hands on exactly the bytes received, in one buffer and streamed: ${name}`, async () => {
      const { transaction, capture } = await transactionOf(data);
      const expected = Buffer.concat([Buffer.from(RECEIVED), data, Buffer.from('.\r\n')]);
      expect(rawProblem(transaction.message_stream, capture)).toBeNull();
      expect(rawPayload(transaction.message_stream, capture, Buffer.alloc(0), true)?.equals(expected)).toBe(true);
      const streamed = await collect((sink) => pipeRaw(transaction.message_stream, capture, sink, Buffer.alloc(0), { dot_stuffed: false, ending_dot: true }));
      expect(streamed.toString('latin1')).toBe(expected.toString('latin1'));
    });
  }

  it('keeps only the header block of a large message and streams the rest from Haraka’s spool file, unchanged', async () => {
    const body = `${'x\xe9'.repeat(35)}\r\n`.repeat(5000);
    const data = latin1(`Subject: caf\xe9 spooled\r\nX-Raw: \xff\r\n\r\n${body}`);
    const cfg = { ...CFG, main: { spool_after: 1024, spool_dir: tempDir() } };
    const { transaction, capture } = await transactionOf(data, cfg, { messageLimit: 4096, headerLimit: MAX_HEADER_BYTES });
    expect(capture.whole).toBe(false);
    expect(capture.bytes).toBe(capture.headerEnd);
    expect(rawPayload(transaction.message_stream, capture, Buffer.alloc(0), true)).toBeNull();
    const prefix = Buffer.from('Received: by mx.demo.test with ESMTP id x;\r\n\tMon, 23 Nov 2026 16:00:00 +0000\r\n');
    const streamed = await collect((sink) => pipeRaw(transaction.message_stream, capture, sink, prefix, { dot_stuffed: false }));
    expect(streamed.equals(Buffer.concat([prefix, Buffer.from(RECEIVED), data]))).toBe(true);
  });

  it('holds a header-only message over the whole-message limit in full', async () => {
    const data = latin1(`${'X-Long: y\r\n'.repeat(500)}`);
    const { transaction, capture } = await transactionOf(data, CFG, { messageLimit: 1024, headerLimit: MAX_HEADER_BYTES });
    const expected = Buffer.concat([Buffer.from(RECEIVED), data, Buffer.from('.\r\n')]);
    expect(rawPayload(transaction.message_stream, capture, Buffer.alloc(0), true)?.equals(expected)).toBe(true);
  });

  it('ignores what plugins change in Haraka’s parsed header', async () => {
    const data = latin1('Subject: edited\r\nX-Remove: me\r\n\r\nbody\r\n');
    const { transaction, capture } = await transactionOf(data, CFG, LIMITS, (t) => {
      t.add_header('X-Added', 'yes');
      t.add_leading_header('Authentication-Results', 'mx.demo.test; none');
      t.remove_header('X-Remove');
    });
    const payload = rawPayload(transaction.message_stream, capture, Buffer.alloc(0), false);
    expect(payload?.toString('latin1')).toBe(`${RECEIVED}${data.toString('latin1')}`);
  });

  it('says a header block over the limit cannot be handed on (the caller refuses it with 552)', async () => {
    const data = latin1(`${'X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(100)}\r\nbody\r\n`);
    const { transaction, capture } = await transactionOf(data, CFG, { messageLimit: 1024, headerLimit: 2048 });
    expect(capture.headerOverflow).toBe(true);
    expect(rawProblem(transaction.message_stream, capture)).toMatch(/header is over/);
    expect(unchangedRefusal(transaction)).toEqual({ code: 552, text: '5.3.4 Message header too large: over 1048576 bytes' });
    expect(() => pipeRaw(transaction.message_stream, capture, new Writable(), Buffer.alloc(0), {})).toThrow(/cannot hand the message on unchanged/);
  });

  it('says when the capture cannot stand for the message (another stream, or started too late)', async () => {
    const { transaction, capture } = await transactionOf(latin1('Subject: y\r\n\r\nbody\r\n'));
    const Stream = transaction.message_stream.constructor as new (cfg: object, id: string, headers: unknown) => HarakaTransaction['message_stream'];
    expect(rawProblem(new Stream(CFG, 'replaced', []), capture)).toMatch(/not captured/);
    const late = createTransaction('late', CFG);
    late.add_data(Buffer.from(RECEIVED));
    const lateCapture = captureRaw(late, LIMITS);
    late.add_data(latin1('Subject: y\r\n\r\nbody\r\n'));
    await new Promise<void>((resolve) => late.end_data(resolve));
    expect(rawProblem(late.message_stream, lateCapture)).toBe('the capture missed a line');
  });

  it('keeps the capture beside the transaction, out of its notes (which Haraka’s queue writes to disk)', async () => {
    const { transaction, capture } = await transactionOf(latin1('Subject: y\r\n\r\nbody\r\n'));
    expect(captureOf(transaction)).toBe(capture);
    expect(JSON.stringify(transaction.notes)).not.toMatch(/buffer|Subject: y/i);
    expect(unchangedRefusal(transaction)).toBeNull();
    transaction.notes.data_line_length_exceeded = true;
    expect(unchangedRefusal(transaction)?.code).toBe(552);
  });

  it('gives Haraka’s outbound queue the prefix and the raw message on every pipe, and the real stream everything else', async () => {
    const data = latin1('Subject: caf\xe9\r\n\r\nbody\r\n');
    const { transaction, capture } = await transactionOf(data);
    const prefix = Buffer.from('Received: by mx.demo.test;\r\n\tMon, 23 Nov 2026 16:00:00 +0000\r\n');
    const view = rawView(transaction.message_stream, capture, prefix);
    const expected = `${prefix.toString('latin1')}${RECEIVED}${data.toString('latin1')}`;
    for (let round = 0; round < 2; round++) {
      const queued = await collect((sink) => view.pipe(sink, { dot_stuffed: false }));
      expect(queued.toString('latin1')).toBe(expected);
    }
    expect(view.bytes_read).toBe(transaction.message_stream.bytes_read);
    expect(view.headers).toBe(transaction.message_stream.headers);
  });
});

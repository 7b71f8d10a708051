// A scripted backend for the forwarder tests: a strict SMTP state machine (a second MAIL without RSET gets
// 503) whose every step can misbehave on cue: drop or 421 at a given RCPT, greet late, close idle
// sessions as Postfix's smtpd_timeout does, answer the end of data late, stop reading inside DATA. It
// records the verbs of each connection, every delivered message with its recipients, and how many
// connections are open.
import net from 'node:net';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { takeLines } from './smtp-lines';
import { withTopology } from './topology';

export interface Delivery {
  rcpts: string[];
  data: string;
}

export interface ScriptedBackendOptions {
  /** The EHLO capability naming XCLIENT, or null for none. */
  xclient?: string | null;
  /** Refuse XCLIENT before EHLO, as some MTAs do. */
  ehloFirst?: boolean;
  /** The reply to the n-th XCLIENT command of the whole run (0-based); 'silent': none, ever. */
  xclientReply?: (n: number) => string | null;
  /** The reply to the n-th DATA command of the whole run (0-based); 354 by default. */
  dataReply?: (n: number) => string;
  /** What to do at the n-th RCPT of the whole run (0-based): 'drop' closes the connection without a
   * reply, any other string is sent as the reply ('421 ...' then closes). */
  rcpt?: (n: number) => 'drop' | string | null;
  /** Wait this long before the banner. */
  bannerDelayMs?: number;
  /** Close a session that sends nothing for this long with 421, as Postfix's smtpd_timeout does. */
  idleTimeoutMs?: number;
  /** Answer the end of data this late. */
  endOfDataDelayMs?: number;
  /** The reply to the end of data; 250 by default. '421 ...' then closes. */
  endOfDataReply?: (n: number) => string;
  /** Inside DATA stop reading the socket; close it this many ms later (null: never). */
  stallInData?: { closeAfterMs: number | null };
  /** Answer NOOP this late. A command that arrives before that answer is improper pipelining (RFC 2920:
   * NOOP ends a group), and DATA is then refused with 503 for the rest of the session, as Postfix does
   * with reject_unauth_pipelining (Mailcow's smtpd_data_restrictions). */
  noopDelayMs?: number;
  /** Answer these commands this late, in ms, by verb ('MAIL', 'RCPT', 'DATA', ...): a slow backend. */
  replyDelayMs?: Partial<Record<string, number>>;
  /** Inside the n-th DATA of the whole run (0-based), close the connection at the first body line. */
  dropInData?: (n: number) => boolean;
}

export interface ScriptedBackend {
  commands: string[][];
  deliveries: Delivery[];
  delivered(): number;
  /** Connections open right now. */
  open(): number;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

const DEFAULT_XCLIENT = 'XCLIENT NAME ADDR PORT PROTO HELO';

export async function startScriptedBackend(host: string, port: number, options: ScriptedBackendOptions = {}): Promise<ScriptedBackend> {
  const commands: string[][] = [];
  const deliveries: Delivery[] = [];
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  let dataCommands = 0;
  let rcptCommands = 0;
  let xclientCommands = 0;
  let endOfData = 0;
  const xclient = options.xclient === undefined ? DEFAULT_XCLIENT : options.xclient;

  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const seen: string[] = [];
    commands.push(seen);
    let inData = false;
    let noopPending = false;
    let improperPipelining = false;
    let rcpts: string[] | null = null;
    let dropThisData = false;
    let body: string[] = [];
    let buffer = '';
    if (options.idleTimeoutMs) {
      socket.setTimeout(options.idleTimeoutMs, () => socket.end('421 4.4.2 scripted.test Error: timeout exceeded\r\n'));
    }
    const replyNow = (line: string) => {
      if (socket.destroyed) return;
      if (line.startsWith('421')) socket.end(`${line}\r\n`);
      else socket.write(`${line}\r\n`);
    };
    const finishMessage = () => {
      const n = endOfData++;
      const answer = options.endOfDataReply?.(n) ?? '250 2.0.0 queued';
      const done = () => {
        if (answer.startsWith('250')) deliveries.push({ rcpts: rcpts ?? [], data: body.join('\r\n') });
        rcpts = null;
        body = [];
        replyNow(answer);
      };
      if (options.endOfDataDelayMs) setTimeout(done, options.endOfDataDelayMs);
      else done();
    };
    const onLine = (line: string) => {
      if (inData) {
        if (line === '.') {
          inData = false;
          finishMessage();
        } else {
          body.push(line);
          if (dropThisData) socket.destroy();
        }
        return;
      }
      const verb = line.split(' ')[0]!.toUpperCase();
      const delay = options.replyDelayMs?.[verb];
      const reply = delay ? (text: string) => void setTimeout(() => replyNow(text), delay) : replyNow;
      seen.push(verb);
      if (noopPending) improperPipelining = true;
      if (verb === 'NOOP' && options.noopDelayMs) {
        noopPending = true;
        setTimeout(() => {
          noopPending = false;
          reply('250 2.0.0 Ok');
        }, options.noopDelayMs);
      } else if (verb === 'EHLO') {
        reply(['250-scripted.test', '250-PIPELINING', xclient ? `250 ${xclient}` : '250 8BITMIME'].join('\r\n'));
      } else if (verb === 'XCLIENT') {
        const scripted = options.xclientReply?.(xclientCommands);
        xclientCommands += 1;
        // A backend gone quiet without closing (the tunnel down): no reply ever.
        if (scripted === 'silent') return;
        reply(scripted ?? (options.ehloFirst && !seen.includes('EHLO') ? '503 5.5.1 Error: send HELO/EHLO first' : '220 scripted.test ESMTP'));
      } else if (verb === 'MAIL') {
        reply(rcpts ? '503 5.5.1 Error: nested MAIL command' : '250 2.1.0 ok');
        rcpts ??= [];
      } else if (verb === 'RCPT') {
        const scripted = options.rcpt?.(rcptCommands);
        rcptCommands += 1;
        if (scripted === 'drop') return void socket.destroy();
        if (scripted) return reply(scripted);
        if (!rcpts) return reply('503 5.5.1 Error: need MAIL command');
        rcpts.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
        reply('250 2.1.5 ok');
      } else if (verb === 'RSET') {
        rcpts = null;
        reply('250 2.0.0 ok');
      } else if (verb === 'DATA') {
        const answer = improperPipelining
          ? '503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining'
          : (options.dataReply?.(dataCommands) ?? '354 go ahead');
        dropThisData = options.dropInData?.(dataCommands) ?? false;
        dataCommands += 1;
        inData = answer.startsWith('354');
        reply(answer);
        if (inData && options.stallInData) {
          socket.pause();
          const { closeAfterMs } = options.stallInData;
          if (closeAfterMs !== null) setTimeout(() => socket.destroy(), closeAfterMs);
        }
      } else if (verb === 'QUIT') {
        socket.end('221 bye\r\n');
      } else {
        reply('250 ok');
      }
    };
    const greet = () => replyNow('220 scripted.test ESMTP');
    if (options.bannerDelayMs) setTimeout(greet, options.bannerDelayMs);
    else greet();
    socket.on('data', (chunk: Buffer) => {
      buffer = takeLines(buffer + chunk.toString('latin1'), (line) => {
        onLine(line);
        // Stop reading once the socket is gone or the server stalls in DATA.
        return !socket.destroyed && !(inData && options.stallInData);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    commands,
    deliveries,
    delivered: () => deliveries.length,
    open: () => sockets.size,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** haraka-in alone (its config changed by `tweak`), forwarding to a scripted backend on the backend's address
 * and port, which is closed after `body` whatever happened. */
export async function withScriptedBackend(
  options: ScriptedBackendOptions,
  tweak: Parameters<typeof withTopology>[0]['tweak'],
  body: (t: Topology, backend: ScriptedBackend) => Promise<void>,
): Promise<void> {
  await withTopology({ instances: ['haraka-in'], backend: false, ...(tweak ? { tweak } : {}) }, async (t) => {
    const backend = await startScriptedBackend(LOOPBACK.backend, t.config.backend.port, options);
    try {
      await body(t, backend);
    } finally {
      await backend.close();
    }
  });
}

// Which certificate a TLS listener serves: banner, EHLO, STARTTLS, a TLS handshake (not verified: only
// the fingerprint matters here), QUIT. And the polling that waits, with a deadline, until every listener
// serves the expected one.
import net from 'node:net';
import tls from 'node:tls';
import type { HostPort } from '../../config/net';
import { formatHostPort } from '../../config/net';

/** How one listener answered: the leaf fingerprint it served, or why there is none. */
export interface Served {
  fingerprint: string | null;
  error: string | null;
  /** True when nothing listens at all (connection refused): the instance is not running. */
  refused: boolean;
}

export type Probe = (target: HostPort, hostname: string, timeoutMs: number) => Promise<Served>;

/** Reads one SMTP reply (multi-line included) from `socket`. */
function reply(socket: net.Socket, timeoutMs: number, what: string): Promise<{ code: number; text: string }> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const done = (err: Error | null, value?: { code: number; text: string }) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(value as { code: number; text: string });
    };
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      if (buffer.length > 64 * 1024) return done(new Error('a reply longer than 64 KB: not an SMTP server'));
      const lines = buffer.split('\r\n');
      const last = lines.slice(0, -1).find((line) => /^\d{3}( |$)/.test(line));
      if (last) done(null, { code: Number(last.slice(0, 3)), text: lines.slice(0, -1).join(' | ') });
    };
    const onError = (err: Error) => done(err);
    const onClose = () => done(new Error(`connection closed before the ${what}`));
    const timer = setTimeout(() => done(new Error(`no ${what} within ${timeoutMs / 1000} s`)), timeoutMs);
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

export const probeServedCertificate: Probe = async (target, hostname, timeoutMs) => {
  const socket = net.connect({ host: target.host, port: target.port });
  socket.on('error', () => undefined);
  let secure: tls.TLSSocket | null = null;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs / 1000} s`)), timeoutMs);
      socket.once('connect', () => (clearTimeout(timer), resolve()));
      socket.once('error', (err) => (clearTimeout(timer), reject(err)));
    });
    const banner = await reply(socket, timeoutMs, 'banner');
    if (banner.code !== 220) throw new Error(`banner: ${banner.text}`);
    socket.write(`EHLO ${hostname}\r\n`);
    const ehlo = await reply(socket, timeoutMs, 'EHLO reply');
    if (ehlo.code !== 250) throw new Error(`EHLO refused: ${ehlo.text}`);
    if (!/(^|\| )250[ -]STARTTLS\b/i.test(ehlo.text)) throw new Error('STARTTLS is not offered (no usable certificate loaded)');
    socket.write('STARTTLS\r\n');
    const go = await reply(socket, timeoutMs, 'STARTTLS reply');
    if (go.code !== 220) throw new Error(`STARTTLS refused: ${go.text}`);
    const upgraded = tls.connect({ socket, servername: hostname, rejectUnauthorized: false });
    secure = upgraded;
    upgraded.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no TLS handshake within ${timeoutMs / 1000} s`)), timeoutMs);
      upgraded.once('secureConnect', () => (clearTimeout(timer), resolve()));
      upgraded.once('error', (err) => (clearTimeout(timer), reject(new Error(`TLS handshake failed: ${err.message}`))));
      upgraded.once('close', () => (clearTimeout(timer), reject(new Error('connection closed during the TLS handshake'))));
    });
    const peer = upgraded.getPeerX509Certificate();
    if (!peer) throw new Error('the server presented no certificate');
    upgraded.end('QUIT\r\n');
    return { fingerprint: peer.fingerprint256, error: null, refused: false };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { fingerprint: null, error: (err as Error).message, refused: code === 'ECONNREFUSED' };
  } finally {
    const last = secure ?? socket;
    setTimeout(() => last.destroy(), 1000).unref();
    if (!secure) socket.end('QUIT\r\n');
  }
};

export interface WaitOptions {
  hostname: string;
  /** Per step of one probe (connect, banner, EHLO, STARTTLS, handshake). */
  stepTimeoutMs: number;
  deadlineMs: number;
  intervalMs: number;
  probe: Probe;
  log: (line: string) => void;
}

export interface WaitResult {
  ok: boolean;
  /** One line per listener that did not serve the expected certificate in time, with what it served. */
  failures: string[];
}

/** Polls every listener until it serves `fingerprint`, each on its own, all within one deadline. */
export async function waitUntilServed(targets: readonly HostPort[], fingerprint: string, options: WaitOptions): Promise<WaitResult> {
  const started = Date.now();
  const deadline = started + options.deadlineMs;
  const failures: string[] = [];
  await Promise.all(
    targets.map(async (target) => {
      const address = formatHostPort(target);
      let last: Served = { fingerprint: null, error: 'not probed', refused: false };
      for (;;) {
        last = await options.probe(target, options.hostname, Math.max(100, Math.min(options.stepTimeoutMs, deadline - Date.now())));
        if (last.fingerprint === fingerprint) {
          options.log(`  ${address} serves ${short(fingerprint)} (after ${((Date.now() - started) / 1000).toFixed(1)} s)`);
          return;
        }
        if (Date.now() + options.intervalMs >= deadline) break;
        await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
      }
      failures.push(
        `${address} did not serve ${short(fingerprint)} within ${options.deadlineMs / 1000} s: ${
          last.fingerprint ? `it serves ${short(last.fingerprint)}` : (last.error ?? 'no answer')
        }`,
      );
    }),
  );
  return { ok: failures.length === 0, failures };
}

/** The first 8 bytes of a fingerprint: enough to tell certificates apart in output. */
export function short(fingerprint: string): string {
  return `${fingerprint.split(':').slice(0, 8).join(':')}…`;
}

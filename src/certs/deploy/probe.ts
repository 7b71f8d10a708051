// Which certificate a TLS listener serves: banner, EHLO, STARTTLS, a TLS handshake (not verified: only
// the fingerprint matters here), QUIT. And the polling that waits, with a deadline, until every listener
// serves the expected one.
import type { HostPort } from '../../config/net';
import { formatHostPort } from '../../config/net';
import { SmtpClient, SmtpClientError } from '../../smtp/client';
import { hasExtension } from '../../smtp/reply';

/** How one listener answered: the leaf fingerprint it served, or why there is none. */
export interface Served {
  fingerprint: string | null;
  error: string | null;
  /** True when nothing listens at all (connection refused): the instance is not running. */
  refused: boolean;
}

export type Probe = (target: HostPort, hostname: string, timeoutMs: number) => Promise<Served>;

export const probeServedCertificate: Probe = async (target, hostname, timeoutMs) => {
  let session: SmtpClient | null = null;
  try {
    session = await SmtpClient.connect(target, {
      timeoutMs,
      closed: (what) => new SmtpClientError(`connection closed before the ${what}`),
      notSmtp: () => new SmtpClientError('a reply longer than 64 KB: not an SMTP server'),
      tlsFailed: (message) => `TLS handshake failed: ${message}`,
    });
    const banner = await session.reply('banner');
    if (banner.code !== 220) throw new SmtpClientError(`banner: ${banner.lines.join(' | ')}`);
    const ehlo = await session.command(`EHLO ${hostname}`, timeoutMs, 'EHLO reply');
    if (ehlo.code !== 250) throw new SmtpClientError(`EHLO refused: ${ehlo.lines.join(' | ')}`);
    if (!hasExtension(ehlo, 'STARTTLS')) throw new SmtpClientError('STARTTLS is not offered (no usable certificate loaded)');
    const go = await session.command('STARTTLS', timeoutMs, 'STARTTLS reply');
    if (go.code !== 220) throw new SmtpClientError(`STARTTLS refused: ${go.lines.join(' | ')}`);
    const secure = await session.upgrade({ servername: hostname, rejectUnauthorized: false });
    const peer = secure.getPeerX509Certificate();
    if (!peer) throw new SmtpClientError('the server presented no certificate');
    return { fingerprint: peer.fingerprint256, error: null, refused: false };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { fingerprint: null, error: (err as Error).message, refused: code === 'ECONNREFUSED' };
  } finally {
    session?.quit();
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

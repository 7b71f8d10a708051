// The effectful edge of `mailproxy health`: SMTP sessions (plain, STARTTLS, from a chosen source address),
// external commands (systemctl, wg) run with the caller's environment, the queue directory, haraka-in's
// store-and-forward spool and recipient cache, and statfs.
// Probes measure and report facts; they never decide (checks.ts does) and never throw for a failed probe.
import { execFile } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { listQueue } from '../queue/tools';
import { keptFigures } from '../plugins/store-forward/spool-admin';
import { readSavedVerifyCache } from '../plugins/store-forward/verify-cache-file';
import type { VerifySettings } from '../plugins/store-forward/verify-cache';
import { SmtpClient, SmtpClientError } from '../smtp/client';
import { hasExtension } from '../smtp/reply';
import type { BackendFacts, BannerFacts, CommandOutcome, DiskFacts, QueueFacts, TlsFacts, WireguardFacts } from './checks';
import type { KeptFacts, RecipientCacheFacts } from './kept';

// A reply longer than this is not SMTP (RFC 5321 §4.5.3.1.5: 512 octets a line); never buffer unbounded
// input from whatever answers on the port.
const MAX_REPLY_BYTES = 64 * 1024;
// systemctl can hang on a wedged D-Bus, wg on a wedged netlink; a health check must still finish.
export const COMMAND_TIMEOUT_MS = 10_000;

interface Target {
  host: string;
  port: number;
  localAddress?: string;
}

/** A session as health opens it: a line that is no reply line ends a reply (with code 0). */
function connect(target: Target, timeoutMs: number): Promise<SmtpClient> {
  return SmtpClient.connect(target, {
    ...(target.localAddress ? { localAddress: target.localAddress } : {}),
    timeoutMs,
    parser: { garbage: 'end', maxBytes: MAX_REPLY_BYTES },
    notSmtp: () => new SmtpClientError(`a reply longer than ${MAX_REPLY_BYTES} bytes: not an SMTP server`),
    tlsFailed: (message) => `TLS handshake failed: ${message}`,
  });
}

const formatTarget = (target: Target) => (net.isIPv6(target.host) ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`);

/** Connects and reads the greeting; `ms` is the time from connecting to the whole greeting. */
export async function probeBanner(target: Target, timeoutMs: number): Promise<BannerFacts> {
  const started = performance.now();
  const address = formatTarget(target);
  let session: SmtpClient | null = null;
  try {
    session = await connect(target, timeoutMs);
    const banner = await session.reply('banner');
    return { address, banner, error: null, ms: performance.now() - started };
  } catch (err) {
    return { address, banner: null, error: (err as Error).message, ms: performance.now() - started };
  } finally {
    session?.quit();
  }
}

// Not verified here: judgeTls reads validity and names; the chain is the sender's business.
const tlsOptions = (servername: string): tls.ConnectionOptions => ({ ...(net.isIP(servername) ? {} : { servername }), rejectUnauthorized: false });

/** Banner, EHLO, STARTTLS, the TLS handshake, and the certificate the server presented. */
export async function probeStarttls(target: Target, hostname: string, timeoutMs: number): Promise<TlsFacts> {
  const address = formatTarget(target);
  let session: SmtpClient | null = null;
  try {
    session = await connect(target, timeoutMs);
    const banner = await session.reply('banner');
    if (banner.code !== 220) throw new SmtpClientError(`refused: ${banner.lines.join(' | ')}`);
    const ehlo = await session.command(`EHLO ${hostname}`);
    if (ehlo.code !== 250) throw new SmtpClientError(`EHLO refused: ${ehlo.lines.join(' | ')}`);
    if (!hasExtension(ehlo, 'STARTTLS')) throw new SmtpClientError('STARTTLS is not offered after EHLO: is tls.ini rendered and the certificate readable?');
    const go = await session.command('STARTTLS');
    if (go.code !== 220) throw new SmtpClientError(`STARTTLS refused: ${go.lines.join(' | ')}`);
    const secure = await session.upgrade(tlsOptions(hostname));
    const peer = secure.getPeerCertificate();
    if (!peer?.valid_to) throw new SmtpClientError('the server presented no certificate');
    const name = (entity: tls.Certificate | undefined) => {
      const cn = entity?.CN;
      return (Array.isArray(cn) ? cn[0] : cn) ?? '(no CN)';
    };
    return {
      address,
      error: null,
      protocol: secure.getProtocol(),
      cert: {
        subject: `CN=${name(peer.subject)}`,
        issuer: `CN=${name(peer.issuer)}`,
        validFrom: new Date(peer.valid_from),
        validTo: new Date(peer.valid_to),
        namesHost: tls.checkServerIdentity(hostname, peer) === undefined,
      },
    };
  } catch (err) {
    return { address, error: (err as Error).message, protocol: null, cert: null };
  } finally {
    session?.quit();
  }
}

/**
 * A session to the backend from `from` (wireguard.address) as haraka-in opens it: banner, EHLO, and with
 * `starttls` STARTTLS and EHLO again (the EHLO that counts for XCLIENT is the last one), then QUIT.
 */
export async function probeBackend(target: Target & { localAddress: string }, hostname: string, timeoutMs: number, starttls: boolean): Promise<BackendFacts> {
  const facts: BackendFacts = { from: target.localAddress, to: formatTarget(target), error: null, errorCode: null, banner: null, ehlo: null, starttls: null };
  let session: SmtpClient | null = null;
  try {
    session = await connect(target, timeoutMs);
    facts.banner = await session.reply('banner');
    if (facts.banner.code !== 220) return facts;
    facts.ehlo = await session.command(`EHLO ${hostname}`);
    if (!starttls || facts.ehlo.code !== 250) return facts;
    if (!hasExtension(facts.ehlo, 'STARTTLS')) {
      facts.starttls = 'not offered';
      return facts;
    }
    const go = await session.command('STARTTLS');
    if (go.code !== 220) {
      facts.starttls = `refused: ${go.lines.join(' | ')}`;
      return facts;
    }
    try {
      await session.upgrade(tlsOptions(hostname));
    } catch (err) {
      facts.starttls = (err as Error).message;
      return facts;
    }
    facts.starttls = 'ok';
    facts.ehlo = await session.command(`EHLO ${hostname}`);
  } catch (err) {
    facts.error = (err as Error).message;
    facts.errorCode = err instanceof SmtpClientError ? err.code : null;
  } finally {
    session?.quit();
  }
  return facts;
}

/**
 * Runs `file args` found on env.PATH, in the C locale (the checks read its messages). A missing command
 * is `missing`, a timeout or other spawn error `failed`; any exit code is `ran`.
 */
export function runCommand(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = COMMAND_TIMEOUT_MS): Promise<CommandOutcome> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...env, LC_ALL: 'C' }, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve({ kind: 'ran', code: 0, stdout, stderr });
      const failure = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean };
      if (failure.code === 'ENOENT') return resolve({ kind: 'missing' });
      if (failure.killed) return resolve({ kind: 'failed', error: `no answer within ${timeoutMs / 1000} s` });
      if (typeof failure.code === 'number') return resolve({ kind: 'ran', code: failure.code, stdout, stderr });
      resolve({ kind: 'failed', error: failure.message });
    });
  });
}

export function probeUnit(unit: string, env: NodeJS.ProcessEnv): Promise<CommandOutcome> {
  return runCommand('systemctl', ['is-active', unit], env);
}

export async function probeWireguard(iface: string, env: NodeJS.ProcessEnv): Promise<WireguardFacts> {
  const handshakes = await runCommand('wg', ['show', iface, 'latest-handshakes'], env);
  const allowedIps: CommandOutcome =
    handshakes.kind === 'ran' && handshakes.code === 0 ? await runCommand('wg', ['show', iface, 'allowed-ips'], env) : { kind: 'failed', error: 'not asked' };
  return { interface: iface, handshakes, allowedIps };
}

export async function probeQueue(queueDir: string): Promise<QueueFacts> {
  try {
    return { listing: await listQueue(queueDir) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

export async function probeDisk(dir: string): Promise<DiskFacts> {
  try {
    const stats = await statfs(dir);
    return { path: dir, freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize };
  } catch (err) {
    return { path: dir, error: (err as Error).message };
  }
}

/** The backup MX's spool, read from this process while haraka-in runs (listings and sizes only). */
export async function probeKept(spoolRoot: string): Promise<KeptFacts> {
  try {
    return { figures: await keptFigures(spoolRoot) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** The saved recipient cache, read without touching it. */
export async function probeRecipientCache(file: string, settings: VerifySettings, now: Date): Promise<RecipientCacheFacts> {
  const saved = await readSavedVerifyCache(file, settings, now.getTime());
  if (saved.kind !== 'loaded') return saved;
  return { kind: 'loaded', accepted: saved.cache.good.size, refused: saved.cache.bad.size };
}

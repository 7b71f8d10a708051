// Answering the CA's challenges: HTTP-01 from a listener of our own (standalone) or from files in a web
// server's document root (webroot), DNS-01 through a DNS provider. Each responder is prepared before the
// order is placed (a busy port, a missing webroot or an unknown zone fails before the CA is asked for
// anything), answers and withdraws one challenge at a time (acme-client calls them in parallel, one per
// name), and is closed afterwards whatever happened.
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Config } from '../../config/schema';
import { authoritativeServers, makeDnsProvider, waitForTxt, type DnsProvider, type TxtRecord } from './dns-provider';

export interface Challenge {
  type: string;
  token: string;
}

export interface Responder {
  readonly type: 'http-01' | 'dns-01';
  /** Opens the listener, checks the webroot, or asks the DNS provider for the zones. */
  prepare(names: readonly string[]): Promise<void>;
  /** Makes the answer to one challenge available (and, for DNS-01, waits until the nameservers have it). */
  create(identifier: string, challenge: Challenge, keyAuthorization: string): Promise<void>;
  /** Withdraws that answer. */
  remove(identifier: string, challenge: Challenge, keyAuthorization: string): Promise<void>;
  /** Closes the listener and withdraws whatever `remove` did not get to. */
  close(): Promise<void>;
}

const TOKEN = /^[A-Za-z0-9_-]+$/;
const WELL_KNOWN = '/.well-known/acme-challenge/';

function checkToken(challenge: Challenge): string {
  // The token names a file (webroot) and a URL path: only base64url characters, nothing like `../`.
  if (!TOKEN.test(challenge.token)) throw new Error(`refusing a challenge token with characters outside base64url: ${JSON.stringify(challenge.token)}`);
  return challenge.token;
}

/** HTTP-01 answered by our own listener on acme.http_01.address:port, open only while the order runs. */
class StandaloneHttp implements Responder {
  readonly type = 'http-01';
  private readonly answers = new Map<string, string>();
  private server: http.Server | null = null;

  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly log: (line: string) => void,
  ) {}

  private listen(host: string): Promise<http.Server> {
    const server = http.createServer((request, response) => {
      const url = request.url ?? '';
      const token = url.startsWith(WELL_KNOWN) ? url.slice(WELL_KNOWN.length) : '';
      const answer = request.method === 'GET' || request.method === 'HEAD' ? this.answers.get(token) : undefined;
      if (answer === undefined) {
        response.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
        return;
      }
      this.log(`http-01: ${request.socket.remoteAddress ?? '?'} fetched the token ${token}`);
      response.writeHead(200, { 'Content-Type': 'application/octet-stream' }).end(answer);
    });
    // A slow or idle client must not keep the listener (and the run) alive.
    server.requestTimeout = 10_000;
    server.headersTimeout = 10_000;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: this.port, ipv6Only: false }, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  }

  async prepare(): Promise<void> {
    try {
      this.server = await this.listen(this.address);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A host without IPv6 cannot bind `::`; every IPv4 address is what `::` meant there.
      if (this.address === '::' && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
        this.server = await this.listen('0.0.0.0').catch((again: unknown) => {
          throw this.explain(again);
        });
        return;
      }
      throw this.explain(err);
    }
  }

  private explain(err: unknown): Error {
    const code = (err as NodeJS.ErrnoException).code;
    const where = `${this.address.includes(':') ? `[${this.address}]` : this.address}:${this.port}`;
    if (code === 'EADDRINUSE') {
      return new Error(`http-01: ${where} is in use (a web server?): stop it, or set acme.http_01.mode: webroot and acme.http_01.webroot to its document root`);
    }
    if (code === 'EACCES') return new Error(`http-01: no permission to listen on ${where} (port 80 needs root or CAP_NET_BIND_SERVICE)`);
    return new Error(`http-01: cannot listen on ${where}: ${(err as Error).message}`);
  }

  async create(_identifier: string, challenge: Challenge, keyAuthorization: string): Promise<void> {
    this.answers.set(checkToken(challenge), keyAuthorization);
  }

  async remove(_identifier: string, challenge: Challenge): Promise<void> {
    this.answers.delete(challenge.token);
  }

  async close(): Promise<void> {
    this.answers.clear();
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** HTTP-01 answered by the web server that owns port 80: token files in its document root. */
class WebrootHttp implements Responder {
  readonly type = 'http-01';
  private readonly written = new Set<string>();
  private readonly dir: string;

  constructor(
    private readonly webroot: string,
    private readonly log: (line: string) => void,
  ) {
    this.dir = path.join(webroot, '.well-known', 'acme-challenge');
  }

  async prepare(): Promise<void> {
    try {
      if (!(await fs.stat(this.webroot)).isDirectory()) throw new Error('not a directory');
    } catch (err) {
      throw new Error(`http-01: acme.http_01.webroot ${this.webroot} is not a directory: ${(err as Error).message}`);
    }
    // World-readable: the web server runs as another user.
    await fs.mkdir(this.dir, { recursive: true, mode: 0o755 });
  }

  async create(_identifier: string, challenge: Challenge, keyAuthorization: string): Promise<void> {
    const file = path.join(this.dir, checkToken(challenge));
    await fs.writeFile(file, keyAuthorization, { mode: 0o644, flag: 'wx' });
    this.written.add(file);
    this.log(`http-01: wrote ${file}`);
  }

  async remove(_identifier: string, challenge: Challenge): Promise<void> {
    const file = path.join(this.dir, checkToken(challenge));
    if (!this.written.has(file)) return;
    await fs.rm(file, { force: true });
    this.written.delete(file);
  }

  async close(): Promise<void> {
    for (const file of this.written) await fs.rm(file, { force: true }).catch(() => undefined);
    this.written.clear();
  }
}

/** DNS-01 through a provider: one TXT record per challenge, visible at the nameservers before the CA looks. */
class Dns01 implements Responder {
  readonly type = 'dns-01';
  private readonly records = new Map<string, TxtRecord>();
  private provider: DnsProvider | null = null;

  constructor(
    private readonly config: Config,
    private readonly log: (line: string) => void,
    private readonly makeProvider: () => DnsProvider,
  ) {}

  async prepare(names: readonly string[]): Promise<void> {
    this.provider = this.makeProvider();
    await this.provider.preflight(names);
  }

  private key(identifier: string, keyAuthorization: string): string {
    return `${identifier} ${keyAuthorization}`;
  }

  async create(identifier: string, _challenge: Challenge, keyAuthorization: string): Promise<void> {
    if (!this.provider) throw new Error('dns-01: not prepared');
    const name = `_acme-challenge.${identifier.replace(/^\*\./, '')}`;
    const record = await this.provider.addTxt(name, keyAuthorization);
    this.records.set(this.key(identifier, keyAuthorization), record);
    this.log(`dns-01: added TXT ${name} through ${this.provider.name}`);
    const settings = this.config.acme.dns_01;
    if (settings.propagation_timeout === 0) return;
    const servers = settings.resolvers.length ? settings.resolvers : await authoritativeServers(record.zone, this.config.dns.servers);
    await waitForTxt({ name, value: keyAuthorization, servers, timeoutMs: settings.propagation_timeout * 1000, log: this.log });
    this.log(`dns-01: ${name} is visible at ${servers.join(', ')}`);
  }

  async remove(identifier: string, _challenge: Challenge, keyAuthorization: string): Promise<void> {
    const key = this.key(identifier, keyAuthorization);
    const record = this.records.get(key);
    if (!record || !this.provider) return;
    await this.provider.removeTxt(record);
    this.records.delete(key);
    this.log(`dns-01: removed TXT ${record.name}`);
  }

  async close(): Promise<void> {
    // What remove() could not take away (it threw): one more try each, then say what is left.
    const left: string[] = [];
    for (const [key, record] of this.records) {
      try {
        await this.provider?.removeTxt(record);
        this.records.delete(key);
        this.log(`dns-01: removed TXT ${record.name}`);
      } catch (err) {
        left.push(`${record.name} (${(err as Error).message})`);
      }
    }
    if (left.length) throw new Error(`dns-01: could not remove the TXT record(s) ${left.join('; ')}: remove them in the IONOS panel`);
  }
}

export function makeResponder(config: Config, log: (line: string) => void, warn: (line: string) => void): Responder {
  const { acme } = config;
  if (acme.challenge === 'dns-01') return new Dns01(config, log, () => makeDnsProvider(config, warn));
  if (acme.http_01.mode === 'webroot') return new WebrootHttp(acme.http_01.webroot, log);
  return new StandaloneHttp(acme.http_01.address, acme.http_01.port, log);
}

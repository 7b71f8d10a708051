// Test peers for native ACME: Debian's `pebble` (a local ACME CA) and `pebble-challtestsrv` (the DNS
// server pebble asks, fed over its management API), both on 127.0.0.1 on free ports, in a temp dir of
// their own. pebble's HTTPS endpoint gets a certificate from a throwaway CA made here (Debian ships no
// test certificates); its issuing root is fetched from the management API after start.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { makeTestCa } from '../../src/certs/testca';
import { missingPeers } from './peers';
import { freePort } from './ports';

export const PEBBLE = '/usr/bin/pebble';
export const CHALLTESTSRV = '/usr/bin/pebble-challtestsrv';

export function missingPebble(): string | null {
  return missingPeers([PEBBLE, CHALLTESTSRV]);
}

export interface Pebble {
  directoryUrl: string;
  /** PEM files to trust: the CA of pebble's HTTPS endpoint, then pebble's issuing root (acme.trusted_cas). */
  httpsCaFile: string;
  rootFile: string;
  rootPem: string;
  /** challtestsrv: its DNS server (for acme.dns_01.resolvers) and management API (`/set-txt`, `/clear-txt`). */
  dnsAddress: string;
  challtestsrvUrl: string;
  /** The port pebble connects to for HTTP-01 (the test's listener must be there). */
  httpPort: number;
  /** Orders pebble has received (counted from its log). */
  orders(): number;
  /** Accounts pebble has registered (a known key's newAccount registers none). */
  accounts(): number;
  log(): string;
  stop(): Promise<void>;
}

function get(url: string, ca: string | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = (url.startsWith('https:') ? https : http).request(url, { method: 'GET', ...(ca ? { ca } : {}), timeout: 2000 }, (response: http.IncomingMessage) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', reject);
    request.end();
  });
}

export async function challtestsrvPost(baseUrl: string, route: string, body: unknown): Promise<void> {
  const response = await fetch(`${baseUrl}${route}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(5000) });
  if (!response.ok) throw new Error(`challtestsrv ${route}: HTTP ${response.status}`);
}

function watch(child: ChildProcess, sink: string[]): void {
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => sink.push(chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => sink.push(chunk));
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

async function waitUntil(what: string, probe: () => Promise<boolean>, context: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context().slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Starts challtestsrv and pebble; `httpPort` is where pebble will connect for HTTP-01. */
export async function startPebble(dir: string, httpPort: number): Promise<Pebble> {
  mkdirSync(dir, { recursive: true });
  // pebble's HTTPS certificate: for the address 127.0.0.1, from a CA of this run.
  const ca = makeTestCa(path.join(dir, 'https-ca'));
  const caDir = path.dirname(ca.caPath);
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: caDir, stdio: 'pipe' });
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=pebble', '-keyout', 'pebble-key.pem', '-out', 'pebble.csr']);
  writeFileSync(path.join(caDir, 'pebble.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl(['x509', '-req', '-in', 'pebble.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-set_serial', '77', '-days', '2', '-extfile', 'pebble.ext', '-out', 'pebble.pem']);

  const output: string[] = [];
  const children: ChildProcess[] = [];
  const stop = async () => {
    for (const child of children.splice(0).reverse()) await stopChild(child);
  };
  try {
    const dnsPort = await freePort('127.0.0.1');
    const challMgmt = await freePort('127.0.0.1');
    const challtestsrv = spawn(
      CHALLTESTSRV,
      ['-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${challMgmt}`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(challtestsrv);
    watch(challtestsrv, output);
    const challtestsrvUrl = `http://127.0.0.1:${challMgmt}`;
    // Any management call answers once it listens; clear-txt of a name nobody set is harmless.
    await waitUntil(
      'pebble-challtestsrv',
      async () => (await fetch(`${challtestsrvUrl}/clear-txt`, { method: 'POST', body: '{"host":"ready.test."}' })).ok,
      () => output.join(''),
    );

    const listen = await freePort('127.0.0.1');
    const management = await freePort('127.0.0.1');
    const configFile = path.join(dir, 'pebble-config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${listen}`,
          managementListenAddress: `127.0.0.1:${management}`,
          certificate: path.join(caDir, 'pebble.pem'),
          privateKey: path.join(caDir, 'pebble-key.pem'),
          httpPort,
          tlsPort: await freePort('127.0.0.1'),
          ocspResponderURL: '',
          externalAccountBindingRequired: false,
        },
      }),
    );
    const pebble = spawn(PEBBLE, ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        // No artificial sleeps, real validation, no rejected nonces, no reused authorizations: every
        // test's challenge is really answered and checked.
        PEBBLE_VA_NOSLEEP: '1',
        PEBBLE_VA_ALWAYS_VALID: '0',
        PEBBLE_WFE_NONCEREJECT: '0',
        PEBBLE_AUTHZREUSE: '0',
      },
    });
    children.push(pebble);
    watch(pebble, output);
    const directoryUrl = `https://127.0.0.1:${listen}/dir`;
    await waitUntil(
      'pebble',
      async () => (await get(directoryUrl, ca.caPem)).status === 200,
      () => output.join(''),
    );
    const root = await get(`https://127.0.0.1:${management}/roots/0`, ca.caPem);
    if (root.status !== 200 || !root.body.includes('BEGIN CERTIFICATE')) throw new Error(`pebble's root: HTTP ${root.status}`);
    const rootFile = path.join(dir, 'pebble-root.pem');
    writeFileSync(rootFile, root.body);
    return {
      directoryUrl,
      httpsCaFile: ca.caPath,
      rootFile,
      rootPem: root.body,
      dnsAddress: `127.0.0.1:${dnsPort}`,
      challtestsrvUrl,
      httpPort,
      orders: () => (output.join('').match(/POST \/order-plz/g) ?? []).length,
      accounts: () => (output.join('').match(/There are now \d+ accounts in memory/g) ?? []).length,
      log: () => output.join(''),
      stop,
    };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${output.join('').slice(-3000)}`);
  }
}

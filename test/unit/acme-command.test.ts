// `mailproxy cert issue|renew` without a CA: what it does when native ACME is off, the one-run-at-a-time
// lock, the account key's file, and the messages for a CA that cannot be reached or trusted.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadOrCreateAccountKey, probeDirectory } from '../../src/certs/acme/issue';
import { makeTestCa } from '../../src/certs/testca';
import { runCli } from '../helpers/cli';
import { writeSmallConfig } from '../helpers/config-file';
import { freePort } from '../helpers/ports';
import { useTempDirs } from '../helpers/tmp';

const tempDir = useTempDirs('mailproxy-acme-cmd-');

async function writeConfig(dir: string, acme: Record<string, unknown>): Promise<string> {
  return writeSmallConfig(dir, { acme: { http_01: { address: '127.0.0.1', port: await freePort('127.0.0.1') }, jitter: 0, ...acme } });
}

describe('mailproxy cert issue|renew', () => {
  it('renew with acme.enabled false does nothing and exits 0 (the timer runs it whoever provides the certificate)', async () => {
    const dir = tempDir();
    const run = await runCli(['cert', 'renew', '--config', await writeConfig(dir, {})]);
    expect(run.code).toBe(0);
    expect(run.out).toContain('acme.enabled is false: native ACME is off, nothing to renew');
    expect(existsSync(path.join(dir, 'state'))).toBe(false);
  });

  it('issue with acme.enabled false refuses (exit 1) and says which key to set', async () => {
    const run = await runCli(['cert', 'issue', '--config', await writeConfig(tempDir(), {})]);
    expect(run.code).toBe(1);
    expect(run.err).toContain('acme.enabled is false: set acme.enabled: true');
  });

  it('usage errors exit 2', async () => {
    const run = await runCli(['cert', 'issue', 'extra-word', '--config', await writeConfig(tempDir(), {})]);
    expect(run.code).toBe(2);
    expect(run.text).toContain('usage: mailproxy cert issue|renew');
  });

  it('refuses while another run holds the lock, takes over a dead run’s lock, and removes its own', async () => {
    const dir = tempDir();
    const closed = await freePort('127.0.0.1');
    const config = await writeConfig(dir, { enabled: true, directory: `https://127.0.0.1:${closed}/dir` });
    const lock = path.join(dir, 'state', 'acme', 'lock');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.dirname(lock), { recursive: true });
    writeFileSync(lock, `${process.pid}\n`);
    const busy = await runCli(['cert', 'issue', '--config', config]);
    expect(busy.code).toBe(1);
    expect(busy.err).toContain(`another cert issue or renew (pid ${process.pid}) is running (${lock})`);

    // A pid that no longer runs: the lock is stale and taken over; the run then fails on the CA (nobody
    // listens there) and leaves no lock behind.
    writeFileSync(lock, '2147483646\n');
    const stale = await runCli(['cert', 'issue', '--config', config]);
    expect(stale.code).toBe(1);
    expect(stale.err).toContain(`cannot reach the ACME server https://127.0.0.1:${closed}/dir: ECONNREFUSED`);
    expect(existsSync(lock)).toBe(false);
  });
});

describe('the ACME account key', () => {
  it('is made once with mode 0600 in a 0700 directory and read back afterwards', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'acme', 'account.key');
    const lines: string[] = [];
    const log = { info: (line: string) => lines.push(line), warn: (line: string) => lines.push(line) };
    const made = await loadOrCreateAccountKey(file, log);
    expect(made.created).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(made.key.toString()).toContain('PRIVATE KEY');
    const again = await loadOrCreateAccountKey(file, log);
    expect(again.created).toBe(false);
    expect(again.key.equals(readFileSync(file))).toBe(true);
    expect(lines).toEqual([`made a new ACME account key: ${file} (mode 0600; it is reused from now on)`]);
  });
});

describe('probeDirectory', () => {
  it('names an unreachable CA and an untrusted HTTPS certificate, and passes a trusted one', async () => {
    const closed = await freePort('127.0.0.1');
    await expect(probeDirectory(`https://127.0.0.1:${closed}/dir`, undefined)).rejects.toThrow(`cannot reach the ACME server https://127.0.0.1:${closed}/dir: ECONNREFUSED`);

    const dir = tempDir();
    const ca = makeTestCa(dir);
    const { execFileSync } = await import('node:child_process');
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=acme', '-keyout', 'k.pem', '-out', 'c.csr'], {
      cwd: dir,
      stdio: 'pipe',
    });
    writeFileSync(path.join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
    execFileSync('openssl', ['x509', '-req', '-in', 'c.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-set_serial', '9', '-days', '1', '-extfile', 'ext', '-out', 'c.pem'], {
      cwd: dir,
      stdio: 'pipe',
    });
    const server = https.createServer({ key: readFileSync(path.join(dir, 'k.pem')), cert: readFileSync(path.join(dir, 'c.pem')) }, (request, response) => {
      response.writeHead(request.url === '/dir' ? 200 : 404).end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      await expect(probeDirectory(`https://127.0.0.1:${port}/dir`, undefined)).rejects.toThrow(/not trusted: a test CA or staging needs its CA in acme\.trusted_cas/);
      const agent = new https.Agent({ ca: ca.caPem });
      await expect(probeDirectory(`https://127.0.0.1:${port}/dir`, agent)).resolves.toBeUndefined();
      await expect(probeDirectory(`https://127.0.0.1:${port}/nothing`, agent)).rejects.toThrow('HTTP 404 for the directory (is acme.directory right?)');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

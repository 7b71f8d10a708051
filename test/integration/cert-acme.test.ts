// Native ACME (`mailproxy cert issue|renew`) against Debian's pebble and pebble-challtestsrv on loopback:
// HTTP-01 (standalone listener and webroot) and DNS-01 through an IONOS API stand-in that feeds
// challtestsrv. What is checked is what a CA really issued: the files, their modes, the chain up to
// pebble's root, the names; and for DNS-01, the API calls the provider made.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { tlsIniCertPath } from '../../src/certs/acme/plan';
import { deployCertificate } from '../../src/certs/deploy/deploy';
import { runCli } from '../helpers/cli';
import { startIonosStandIn, type IonosStandIn } from '../helpers/ionos-standin';
import { requirePeers } from '../helpers/peers';
import { missingPebble, startPebble, type Pebble } from '../helpers/pebble';
import { freePort } from '../helpers/ports';
import { servedCertificate } from '../helpers/starttls-cert';
import { useTopology } from '../helpers/topology';
import { useTempDirs } from '../helpers/tmp';

const runnable = requirePeers('native ACME against pebble', missingPebble());

const HOST = 'mx.example.test';
const EXTRA = 'mail.example.test';
const API_KEY = 'publicprefix.secretpart';

/** The PEM certificates of a full chain, leaf first. */
function chainOf(file: string): X509Certificate[] {
  return (readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((pem) => new X509Certificate(pem));
}

function mode(file: string): number {
  return statSync(file).mode & 0o777;
}

describe.runIf(runnable)('mailproxy cert issue|renew against pebble', () => {
  const tempDir = useTempDirs('mailproxy-acme-');
  let pebble: Pebble;
  let pebbleDir: string;

  beforeAll(async () => {
    const { mkdtempSync } = await import('node:fs');
    const os = await import('node:os');
    pebbleDir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-pebble-'));
    pebble = await startPebble(pebbleDir, await freePort('127.0.0.1'));
  });
  afterAll(async () => {
    await pebble?.stop();
    if (pebbleDir) (await import('node:fs')).rmSync(pebbleDir, { recursive: true, force: true });
  });

  /** A config file for HOST with native ACME pointed at pebble; `acme` overrides the acme section. */
  function writeConfig(dir: string, acme: Record<string, unknown>, extra: Partial<ConfigInput> = {}): string {
    const input: ConfigInput = {
      version: 1,
      hostname: HOST,
      public_ipv4: '192.0.2.25',
      domains: ['example.test'],
      state_dir: path.join(dir, 'state'),
      system: { instances_dir: path.join(dir, 'instances') },
      tls: { key: path.join(dir, 'tls', 'privkey.pem'), cert: path.join(dir, 'tls', 'fullchain.pem') },
      ...extra,
      acme: {
        enabled: true,
        directory: pebble.directoryUrl,
        email: 'hostmaster@example.test',
        extra_names: [EXTRA],
        http_01: { address: '127.0.0.1', port: pebble.httpPort },
        jitter: 0,
        trusted_cas: [pebble.httpsCaFile, pebble.rootFile],
        ...acme,
      } as ConfigInput['acme'],
    };
    const file = path.join(dir, 'mailproxy.yaml');
    writeFileSync(file, stringify(input));
    return file;
  }

  /** The full chain holds the leaf for both names, signed by the intermediate, signed by pebble's root. */
  function expectPebbleChain(certFile: string, keyFile: string): X509Certificate {
    const chain = chainOf(certFile);
    expect(chain.length).toBeGreaterThanOrEqual(2);
    const [leaf, intermediate] = chain as [X509Certificate, X509Certificate];
    expect(leaf.subjectAltName?.split(', ').sort()).toEqual([`DNS:${EXTRA}`, `DNS:${HOST}`]);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    const root = new X509Certificate(pebble.rootPem);
    expect(intermediate.verify(root.publicKey)).toBe(true);
    expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(keyFile)))).toBe(true);
    return leaf;
  }

  async function portClosed(port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => (socket.destroy(), resolve(false)));
      socket.once('error', () => resolve(true));
    });
  }

  it('issues over HTTP-01 with its own listener: key 0600, chain to pebble’s root, both names; the account key is made once (0600) and reused', async () => {
    const dir = tempDir();
    const config = writeConfig(dir, {});
    const accounts = pebble.accounts();
    const first = await runCli(['cert', 'issue', '--config', config, '--no-deploy']);
    const accountsAfterFirst = pebble.accounts();
    expect(accountsAfterFirst).toBe(accounts + 1);
    expect(first.text).toContain('issued:');
    expect(first.code, first.text).toBe(0);
    expect(first.out).toMatch(/made a new ACME account key: .*account\.key \(mode 0600/);
    expect(first.out).toContain(`ordering a certificate for ${HOST}, ${EXTRA}`);

    const acmeDir = path.join(dir, 'state', 'acme');
    const accountKey = path.join(acmeDir, 'account.key');
    const keyFile = path.join(acmeDir, HOST, 'privkey.pem');
    const certFile = path.join(acmeDir, HOST, 'fullchain.pem');
    expect(mode(accountKey)).toBe(0o600);
    expect(mode(keyFile)).toBe(0o600);
    expect(mode(acmeDir)).toBe(0o700);
    const leaf = expectPebbleChain(certFile, keyFile);
    // Nobody else may be left on the port once the run is over.
    expect(await portClosed(pebble.httpPort)).toBe(true);
    expect(existsSync(path.join(acmeDir, 'lock'))).toBe(false);

    const accountBefore = readFileSync(accountKey, 'utf8');
    const second = await runCli(['cert', 'issue', '--config', config, '--no-deploy']);
    expect(second.code, second.text).toBe(0);
    expect(second.out).not.toContain('made a new ACME account key');
    expect(readFileSync(accountKey, 'utf8')).toBe(accountBefore);
    const again = expectPebbleChain(certFile, keyFile);
    expect(again.fingerprint256).not.toBe(leaf.fingerprint256);
    // pebble registered the account once: the second run's key found the same account.
    expect(pebble.accounts()).toBe(accountsAfterFirst);
  });

  it('tightens an account key someone left readable to 0600 and keeps using it', async () => {
    const dir = tempDir();
    const config = writeConfig(dir, {});
    expect((await runCli(['cert', 'issue', '--config', config, '--no-deploy'])).code).toBe(0);
    const accountKey = path.join(dir, 'state', 'acme', 'account.key');
    const { chmodSync } = await import('node:fs');
    chmodSync(accountKey, 0o644);
    const before = readFileSync(accountKey, 'utf8');
    const run = await runCli(['cert', 'issue', '--config', config, '--no-deploy']);
    expect(run.code, run.text).toBe(0);
    expect(run.err).toContain('was readable by others (mode 644): now 0600');
    expect(mode(accountKey)).toBe(0o600);
    expect(readFileSync(accountKey, 'utf8')).toBe(before);
  });

  it('issues over HTTP-01 through a webroot when a web server owns the port, and removes its token files', async () => {
    const dir = tempDir();
    const webroot = path.join(dir, 'www');
    mkdirSync(webroot);
    const served: string[] = [];
    // The "web server already on port 80": serves files from the webroot, nothing else.
    const web = http.createServer((request, response) => {
      const file = path.join(webroot, path.normalize(decodeURIComponent(request.url ?? '/')).replace(/^(\.\.[/\\])+/, ''));
      if (!file.startsWith(webroot) || !existsSync(file) || !statSync(file).isFile()) return void response.writeHead(404).end();
      served.push(request.url ?? '');
      response.writeHead(200).end(readFileSync(file));
    });
    await new Promise<void>((resolve) => web.listen(pebble.httpPort, '127.0.0.1', resolve));
    try {
      const config = writeConfig(dir, { http_01: { mode: 'webroot', webroot, port: pebble.httpPort } });
      const run = await runCli(['cert', 'issue', '--config', config, '--no-deploy']);
      expect(run.code, run.text).toBe(0);
      expect(served.filter((url) => url.startsWith('/.well-known/acme-challenge/')).length).toBeGreaterThanOrEqual(2);
      expect(readdirSync(path.join(webroot, '.well-known', 'acme-challenge'))).toEqual([]);
      expectPebbleChain(path.join(dir, 'state', 'acme', HOST, 'fullchain.pem'), path.join(dir, 'state', 'acme', HOST, 'privkey.pem'));
    } finally {
      await new Promise((resolve) => web.close(resolve));
    }
  });

  it('refuses with the reason, before ordering anything, when the HTTP-01 port is taken', async () => {
    const dir = tempDir();
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(pebble.httpPort, '127.0.0.1', resolve));
    try {
      const orders = pebble.orders();
      const run = await runCli(['cert', 'issue', '--config', writeConfig(dir, {}), '--no-deploy']);
      expect(run.code).toBe(1);
      expect(run.err).toMatch(/127\.0\.0\.1:\d+ is in use \(a web server\?\).*acme\.http_01\.mode: webroot/);
      expect(pebble.orders()).toBe(orders);
      expect(existsSync(path.join(dir, 'state', 'acme', HOST, 'fullchain.pem'))).toBe(false);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  describe('DNS-01 through the IONOS provider', () => {
    let ionos: IonosStandIn | null = null;
    afterAll(async () => ionos?.close());

    function dnsConfig(dir: string, standIn: IonosStandIn, propagation: number): string {
      const keyFile = path.join(dir, 'ionos-api-key');
      writeFileSync(keyFile, `${API_KEY}\n`, { mode: 0o600 });
      return writeConfig(dir, {
        challenge: 'dns-01',
        dns_01: { api_key_file: keyFile, api_url: standIn.url, resolvers: [pebble.dnsAddress], propagation_timeout: propagation },
      });
    }

    it('adds one record per challenge with POST (both at once: acme-client runs them in parallel) and deletes each afterwards', async () => {
      const dir = tempDir();
      ionos = await startIonosStandIn({ apiKey: API_KEY, zones: ['other.test', 'example.test'], challtestsrvUrl: pebble.challtestsrvUrl, postDelayMs: 200 });
      const run = await runCli(['cert', 'issue', '--config', dnsConfig(dir, ionos, 10), '--no-deploy']);
      expect(run.code, run.text).toBe(0);
      expect(run.out).toContain('dns-01 through ionos');
      expectPebbleChain(path.join(dir, 'state', 'acme', HOST, 'fullchain.pem'), path.join(dir, 'state', 'acme', HOST, 'privkey.pem'));

      expect(ionos.posts.length).toBe(2);
      for (const body of ionos.posts) expect(body).toHaveLength(1);
      const posted = ionos.posts.map((body) => (body[0] as { name: string; type: string }).name).sort();
      expect(posted).toEqual([`_acme-challenge.${EXTRA}`, `_acme-challenge.${HOST}`]);
      expect(ionos.posts.every((body) => (body[0] as { type: string }).type === 'TXT')).toBe(true);
      expect(ionos.maxRecords()).toBe(2);
      expect(ionos.records.size).toBe(0);
      expect(ionos.requests.filter((line) => line.startsWith('DELETE ')).length).toBe(2);
      expect(ionos.requests.filter((line) => /^(PATCH|PUT) /.test(line))).toEqual([]);
      await ionos.close();
      ionos = null;
    });

    it('removes its records also when the CA refuses the challenge, and writes no certificate', async () => {
      const dir = tempDir();
      // The records reach no nameserver, so pebble finds no TXT record and fails the authorizations.
      ionos = await startIonosStandIn({ apiKey: API_KEY, zones: ['example.test'], challtestsrvUrl: null });
      const run = await runCli(['cert', 'issue', '--config', dnsConfig(dir, ionos, 0), '--no-deploy']);
      expect(run.code).toBe(1);
      expect(run.err).toMatch(/the ACME order at https:\/\/127\.0\.0\.1:\d+\/dir failed: .*(TXT|DNS|dns)/);
      expect(ionos.posts.length).toBe(2);
      expect(ionos.records.size).toBe(0);
      expect(ionos.requests.filter((line) => line.startsWith('DELETE ')).length).toBe(2);
      expect(existsSync(path.join(dir, 'state', 'acme', HOST, 'fullchain.pem'))).toBe(false);
      await ionos.close();
      ionos = null;
    });

    it('gives up waiting for propagation with the servers it asked, and still removes its records', async () => {
      const dir = tempDir();
      ionos = await startIonosStandIn({ apiKey: API_KEY, zones: ['example.test'], challtestsrvUrl: null });
      const orders = pebble.orders();
      const run = await runCli(['cert', 'issue', '--config', dnsConfig(dir, ionos, 1), '--no-deploy']);
      expect(run.code).toBe(1);
      expect(run.err).toMatch(
        new RegExp(
          `TXT record _acme-challenge\\.(mx|mail)\\.example\\.test did not show up within 1 s \\(acme\\.dns_01\\.propagation_timeout\\): ${pebble.dnsAddress.replace(/\./g, '\\.')}`,
        ),
      );
      expect(ionos.records.size).toBe(0);
      expect(pebble.orders()).toBe(orders + 1);
      await ionos.close();
      ionos = null;
    });

    it('fails before ordering when the key is refused or no zone holds the name', async () => {
      const dir = tempDir();
      ionos = await startIonosStandIn({ apiKey: 'another.key', zones: ['example.test'], challtestsrvUrl: null });
      const orders = pebble.orders();
      const refused = await runCli(['cert', 'issue', '--config', dnsConfig(dir, ionos, 0), '--no-deploy']);
      expect(refused.code).toBe(1);
      expect(refused.err).toContain('IONOS API GET /v1/zones: HTTP 401 (is the key in acme.dns_01.api_key_file right, as <prefix>.<secret>?)');
      expect(refused.err).not.toContain(API_KEY);
      await ionos.close();
      ionos = await startIonosStandIn({ apiKey: API_KEY, zones: ['example.org'], challtestsrvUrl: null });
      const noZone = await runCli(['cert', 'issue', '--config', dnsConfig(dir, ionos, 0), '--no-deploy']);
      expect(noZone.code).toBe(1);
      expect(noZone.err).toContain(`no IONOS zone holds _acme-challenge.${HOST} (the account has example.org)`);
      expect(pebble.orders()).toBe(orders);
      expect(ionos.posts).toEqual([]);
      await ionos.close();
      ionos = null;
    });
  });

  describe('cert renew', () => {
    /** A config whose tls.cert is a self-signed certificate for HOST with `days` left; extra_names as given. */
    function withCurrentCert(dir: string, days: number, extraNames: string[] = []): string {
      const pair = makeSelfSigned(path.join(dir, 'tls'), HOST, days);
      return writeConfig(dir, { extra_names: extraNames }, { tls: { key: pair.keyPath, cert: pair.certPath } });
    }

    it('does nothing, exit 0, while more than renew_days are left', async () => {
      const dir = tempDir();
      const config = withCurrentCert(dir, 60);
      const orders = pebble.orders();
      const run = await runCli(['cert', 'renew', '--config', config, '--no-deploy']);
      expect(run.code, run.text).toBe(0);
      expect(run.out).toMatch(/fullchain\.pem: 59 days left; renews when fewer than 30 remain \(acme\.renew_days\); nothing to do/);
      expect(pebble.orders()).toBe(orders);
      expect(existsSync(path.join(dir, 'state', 'acme', HOST))).toBe(false);
    });

    it('orders a new certificate when fewer than renew_days are left, or a name is missing; --force always', async () => {
      const dir = tempDir();
      const config = withCurrentCert(dir, 20);
      const run = await runCli(['cert', 'renew', '--config', config, '--no-deploy']);
      expect(run.code, run.text).toBe(0);
      expect(run.out).toContain('19 days left, fewer than acme.renew_days (30)');
      const leaf = chainOf(path.join(dir, 'state', 'acme', HOST, 'fullchain.pem'))[0]!;
      expect(leaf.subjectAltName).toBe(`DNS:${HOST}`);
      expect(leaf.verify(chainOf(path.join(dir, 'state', 'acme', HOST, 'fullchain.pem'))[1]!.publicKey)).toBe(true);

      // The self-signed certificate names HOST only: EXTRA missing is a reason on its own.
      const dir2 = tempDir();
      const missing = await runCli(['cert', 'renew', '--config', withCurrentCert(dir2, 80, [EXTRA]), '--no-deploy']);
      expect(missing.code, missing.text).toBe(0);
      expect(missing.out).toContain(`it does not cover ${EXTRA}`);

      expectPebbleChain(path.join(dir2, 'state', 'acme', HOST, 'fullchain.pem'), path.join(dir2, 'state', 'acme', HOST, 'privkey.pem'));

      const forced = await runCli(['cert', 'renew', '--config', withCurrentCert(tempDir(), 80), '--no-deploy', '--force']);
      expect(forced.code, forced.text).toBe(0);
      expect(forced.out).toContain('79 days left; renews when fewer than 30 remain (acme.renew_days), renewing anyway (--force)');
    });
  });

  describe('handing over to the deploy path: running haraka-in and haraka-out', () => {
    let ionos: IonosStandIn;
    beforeAll(async () => {
      ionos = await startIonosStandIn({ apiKey: API_KEY, zones: ['demo.test'], challtestsrvUrl: pebble.challtestsrvUrl });
    });
    afterAll(async () => ionos?.close());

    // The loopback topology (hostname mx.demo.test) with its 30-day self-signed certificate, and native
    // ACME pointed at pebble.
    const topology = useTopology({
      tweak: (input) => {
        input.acme = {
          enabled: true,
          directory: pebble.directoryUrl,
          http_01: { address: '127.0.0.1', port: pebble.httpPort },
          jitter: 0,
          trusted_cas: [pebble.httpsCaFile, pebble.rootFile],
        };
      },
    });

    /** The leaf in a tls.ini's cert= file (what the instance loads). */
    function loadedBy(role: 'haraka-in' | 'haraka-out'): X509Certificate {
      const ini = readFileSync(path.join(topology().instancesDir, role, 'config', 'tls.ini'), 'utf8');
      return chainOf(tlsIniCertPath(ini)!)[0]!;
    }

    it('cert renew: the 29-day certificate is renewed over HTTP-01, deployed, and served over STARTTLS; the next run has nothing to do', async () => {
      const { configPath, instancesDir, inbound, config, haraka } = topology();
      const before = await servedCertificate(inbound.host, inbound.port);
      const run = await runCli(['cert', 'renew', '--config', configPath, '--instances', instancesDir]);
      expect(run.code, run.text).toBe(0);
      expect(run.out).toContain('29 days left, fewer than acme.renew_days (30)');
      const issued = chainOf(path.join(config.state_dir, 'acme', 'mx.demo.test', 'fullchain.pem'))[0]!;
      expect(run.out).toContain(`deployed: SHA-256 ${issued.fingerprint256}`);

      const served = await servedCertificate(inbound.host, inbound.port);
      expect(served.fingerprint256).toBe(issued.fingerprint256);
      expect(served.fingerprint256).not.toBe(before.fingerprint256);
      expect(served.issuer).toMatch(/Pebble Intermediate CA/);
      // haraka-out (no STARTTLS listener: it uses the certificate as a client) names the same files and runs.
      expect(loadedBy('haraka-out').fingerprint256).toBe(issued.fingerprint256);
      expect(haraka['haraka-out']?.child.exitCode).toBeNull();
      expect(haraka['haraka-in']?.child.exitCode).toBeNull();

      const again = await runCli(['cert', 'renew', '--config', configPath, '--instances', instancesDir]);
      expect(again.code, again.text).toBe(0);
      expect(again.out).toMatch(/: 18\d\d days left; renews when fewer than 30 remain \(acme\.renew_days\); nothing to do/);
      expect(again.out).toContain(path.join(config.state_dir, 'tls'));
    });

    it('cert issue over DNS-01 (IONOS stand-in): deployed and served over STARTTLS, the records gone', async () => {
      const { configPath, instancesDir, inbound, config } = topology();
      const keyFile = path.join(path.dirname(configPath), 'ionos-api-key');
      writeFileSync(keyFile, `${API_KEY}\n`, { mode: 0o600 });
      const input = parse(readFileSync(configPath, 'utf8')) as ConfigInput;
      input.acme = { ...input.acme, challenge: 'dns-01', dns_01: { api_key_file: keyFile, api_url: ionos.url, resolvers: [pebble.dnsAddress], propagation_timeout: 10 } };
      const dnsConfig = path.join(path.dirname(configPath), 'mailproxy-dns01.yaml');
      writeFileSync(dnsConfig, stringify(input));

      const before = await servedCertificate(inbound.host, inbound.port);
      const run = await runCli(['cert', 'issue', '--config', dnsConfig, '--instances', instancesDir]);
      expect(run.code, run.text).toBe(0);
      const issued = chainOf(path.join(config.state_dir, 'acme', 'mx.demo.test', 'fullchain.pem'))[0]!;
      expect(issued.fingerprint256).not.toBe(before.fingerprint256);
      expect((await servedCertificate(inbound.host, inbound.port)).fingerprint256).toBe(issued.fingerprint256);
      expect(loadedBy('haraka-out').fingerprint256).toBe(issued.fingerprint256);
      expect(ionos.posts.map((body) => (body[0] as { name: string }).name)).toEqual(['_acme-challenge.mx.demo.test']);
      expect(ionos.records.size).toBe(0);
    });

    it('a renewal whose deploy failed is deployed by the next run without ordering again', async () => {
      const { configPath, instancesDir, inbound, config } = topology();
      // Put a certificate with 20 days left in place through the deploy path itself.
      const short = makeSelfSigned(path.join(path.dirname(configPath), 'short'), 'mx.demo.test', 21);
      await deployCertificate({ config, keyFile: short.keyPath, certFile: short.certPath, chainFile: short.certPath, instancesDir, log: () => undefined });
      const shortLeaf = chainOf(short.certPath)[0]!;
      expect((await servedCertificate(inbound.host, inbound.port)).fingerprint256).toBe(shortLeaf.fingerprint256);

      // The deploy fails (no rendered instances there): the new certificate stays issued, not deployed.
      const nowhere = tempDir();
      const failed = await runCli(['cert', 'renew', '--config', configPath, '--instances', nowhere]);
      expect(failed.code).toBe(1);
      expect(failed.err).toContain('tls.ini does not exist');
      const issued = chainOf(path.join(config.state_dir, 'acme', 'mx.demo.test', 'fullchain.pem'))[0]!;
      expect((await servedCertificate(inbound.host, inbound.port)).fingerprint256).toBe(shortLeaf.fingerprint256);

      const orders = pebble.orders();
      const next = await runCli(['cert', 'renew', '--config', configPath, '--instances', instancesDir]);
      expect(next.code, next.text).toBe(0);
      expect(next.out).toContain('20 days left, fewer than acme.renew_days (30)');
      expect(next.out).toContain('did not deploy it; deploying that instead of ordering again');
      expect(pebble.orders()).toBe(orders);
      expect((await servedCertificate(inbound.host, inbound.port)).fingerprint256).toBe(issued.fingerprint256);
    });
  });
});

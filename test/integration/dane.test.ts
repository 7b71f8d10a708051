// DANE in haraka-out (RFC 7672) against real DNSSEC: zones signed with ldns-signzone, served by NSD, validated
// by unbound with the zones' keys as trust anchors. Each case counts what its MX received: delivered over
// TLS, delivered opportunistically, or deferred with nothing ever sent in plaintext.
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { makeTestCa, type TestCa } from '../../src/certs/testca';
import type { Topology } from '../../src/demo/topology';
import { DNSSEC_TOOLS, startDnssecPeers, type DnssecPeers } from '../../src/testpeers/dnssec';
import { freePort } from '../../src/testpeers/ports';
import { startSmtpSink, type SmtpSink } from '../../src/testpeers/smtp-sink';
import { runCli } from '../helpers/cli';
import { missingPeers, requirePeers } from '../helpers/peers';
import { eventually } from '../helpers/poll';
import { relayOut } from '../helpers/send';
import { daneOutbound, spkiSha256, startPolicyHost } from '../helpers/dane-rig';
import { withTopology } from '../helpers/topology';

const certSha256 = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');

/** One recipient domain per case, each with its MX on its own loopback address. */
const CASES = {
  ee: { domain: 'dane-ee.test', address: '127.0.0.31' },
  mismatch: { domain: 'dane-mismatch.test', address: '127.0.0.32' },
  ta: { domain: 'dane-ta.test', address: '127.0.0.33' },
  bogus: { domain: 'dane-bogus.test', address: '127.0.0.34' },
  unsigned: { domain: 'unsigned.test', address: '127.0.0.35' },
  noStarttls: { domain: 'dane-nostarttls.test', address: '127.0.0.36' },
  unusable: { domain: 'dane-unusable.test', address: '127.0.0.37' },
} as const;
type Case = keyof typeof CASES;
const mxOf = (name: Case) => `mx.${CASES[name].domain}`;
const POLICY_HOST = '127.0.0.5';
/** Two MX hosts: the preferred one's certificate does not match its TLSA record, the second one's does. */
/** A DANE domain whose second MX has no TLSA record, under an MTA-STS enforce policy: that MX gets PKIX-verified TLS, not opportunistic. */
const MIXED = { domain: 'dane-mixed.test', first: { name: 'mx1.dane-mixed.test', address: '127.0.0.40' }, second: { name: 'mx2.dane-mixed.test', address: '127.0.0.41' } };
const FAILOVER = {
  domain: 'dane-failover.test',
  first: { name: 'mx1.dane-failover.test', address: '127.0.0.38' },
  second: { name: 'mx2.dane-failover.test', address: '127.0.0.39' },
};

const run = requirePeers('DANE against NSD and unbound', missingPeers([...DNSSEC_TOOLS, '/usr/bin/openssl']));

describe.runIf(run)('DANE in haraka-out', () => {
  let dir = '';
  let port = 0;
  let peers: DnssecPeers;
  let pkix: TestCa;
  let policyServer: https.Server;
  const sinks = new Map<Case, SmtpSink>();
  const failoverSinks: SmtpSink[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-dane-'));
    port = await freePort(CASES.ee.address);
    pkix = makeTestCa(path.join(dir, 'pkix-ca'));
    const daneCa = makeTestCa(path.join(dir, 'dane-ca'));
    const selfSigned = (name: Case) => {
      const pair = makeSelfSigned(path.join(dir, name), mxOf(name));
      return { key: readFileSync(pair.keyPath, 'utf8'), cert: readFileSync(pair.certPath, 'utf8') };
    };
    const tls: Partial<Record<Case, { key: string; cert: string }>> = {
      ee: selfSigned('ee'),
      // A certificate every PKIX check would accept, for the name the MTA-STS policy names too.
      mismatch: pkix.issue([mxOf('mismatch')]),
      // Issued by a CA no one trusts but the TLSA record; the chain goes with it.
      ta: (() => {
        const issued = daneCa.issue([mxOf('ta')]);
        return { key: issued.key, cert: `${issued.cert}${daneCa.caPem}` };
      })(),
      bogus: selfSigned('bogus'),
      unusable: selfSigned('unusable'),
    };
    const someOtherKey = selfSigned('noStarttls');
    const failoverPairs = [FAILOVER.first, FAILOVER.second].map((host) => {
      const pair = makeSelfSigned(path.join(dir, host.name), host.name);
      return { key: readFileSync(pair.keyPath, 'utf8'), cert: readFileSync(pair.certPath, 'utf8') };
    });
    const tlsa = (_name: Case, record: string) => `_${port}._tcp.mx IN TLSA ${record}`;
    const twoMxZone = (zone: typeof FAILOVER, keyHashes: string[]) => ({
      name: zone.domain,
      records: [
        '@ IN MX 10 mx1',
        '@ IN MX 20 mx2',
        `mx1 IN A ${zone.first.address}`,
        `mx2 IN A ${zone.second.address}`,
        ...keyHashes.map((hash, index) => `_${port}._tcp.mx${index + 1} IN TLSA 3 1 1 ${hash}`),
      ],
    });
    const mxRecords = (name: Case) => ['@ IN MX 10 mx', `mx IN A ${CASES[name].address}`];
    peers = await startDnssecPeers({
      dir: path.join(dir, 'dns'),
      zones: [
        { name: CASES.ee.domain, records: [...mxRecords('ee'), tlsa('ee', `3 1 1 ${spkiSha256(tls.ee!.cert)}`)] },
        { name: CASES.mismatch.domain, records: [...mxRecords('mismatch'), tlsa('mismatch', `3 1 1 ${spkiSha256(someOtherKey.cert)}`)] },
        { name: CASES.ta.domain, records: [...mxRecords('ta'), tlsa('ta', `2 0 1 ${certSha256(daneCa.caPem)}`)] },
        {
          name: CASES.bogus.domain,
          records: [...mxRecords('bogus'), tlsa('bogus', `3 1 1 ${spkiSha256(tls.bogus!.cert)}`)],
          // The TLSA record changed after signing: its signature no longer verifies.
          tamper: (zone) => zone.replace(/(TLSA\s+3 1 1 )([0-9a-f])/i, (_, head: string, digit: string) => `${head}${digit === '0' ? '1' : '0'}`),
        },
        { name: CASES.unsigned.domain, records: mxRecords('unsigned'), signed: false },
        { name: CASES.noStarttls.domain, records: [...mxRecords('noStarttls'), tlsa('noStarttls', `3 1 1 ${spkiSha256(someOtherKey.cert)}`)] },
        // The first MX's record matches some other key; the second MX's matches its own, or it has none.
        twoMxZone(FAILOVER, [spkiSha256(someOtherKey.cert), spkiSha256(failoverPairs[1]!.cert)]),
        twoMxZone(MIXED, [spkiSha256(someOtherKey.cert)]),
        // PKIX-EE (usage 1) is unusable for SMTP: TLS without authentication.
        { name: CASES.unusable.domain, records: [...mxRecords('unusable'), tlsa('unusable', `1 1 1 ${spkiSha256(someOtherKey.cert)}`)] },
      ],
    });
    for (const name of Object.keys(CASES) as Case[]) {
      const options = tls[name];
      sinks.set(name, await startSmtpSink({ host: CASES[name].address, port, name: mxOf(name), ...(options ? { tls: options } : {}) }));
    }
    const mixedPair = makeSelfSigned(path.join(dir, MIXED.second.name), MIXED.second.name);
    const mixedTls = { key: readFileSync(mixedPair.keyPath, 'utf8'), cert: readFileSync(mixedPair.certPath, 'utf8') };
    failoverSinks.push(await startSmtpSink({ host: MIXED.second.address, port, name: MIXED.second.name, tls: mixedTls }));
    for (const [index, host] of [FAILOVER.first, FAILOVER.second].entries()) {
      failoverSinks.push(await startSmtpSink({ host: host.address, port, name: host.name, tls: failoverPairs[index]! }));
    }
    policyServer = await startPolicyHost(pkix, [`mta-sts.${CASES.mismatch.domain}`, `mta-sts.${MIXED.domain}`], POLICY_HOST, (domain) => `*.${domain}`);
  }, 60_000);

  afterAll(async () => {
    for (const sink of [...sinks.values(), ...failoverSinks]) await sink.close();
    await new Promise((resolve) => policyServer?.close(resolve));
    await peers?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const relay = (t: Topology, name: Case) => relayOut(t, `bob@${CASES[name].domain}`, `dane ${name}`);

  it('delivers where the TLSA records match, defers where they do not, and never falls back to plaintext', async () => {
    await withTopology(daneOutbound({ port, peers, ca: pkix, policyHost: policyServer }), async (t) => {
      // The MTA-STS policy of the mismatch domain is valid, and its MX's certificate passes it.
      t.dns.zone.TXT = { ...t.dns.zone.TXT, [`_mta-sts.${CASES.mismatch.domain}`]: ['v=STSv1; id=1;'] };
      t.dns.zone.A = { ...t.dns.zone.A, [`mta-sts.${CASES.mismatch.domain}`]: [POLICY_HOST], [`mta-sts.${MIXED.domain}`]: [POLICY_HOST] };
      t.dns.zone.TXT = { ...t.dns.zone.TXT, [`_mta-sts.${MIXED.domain}`]: ['v=STSv1; id=1;'] };
      // A domain DANE does not cover is routed as before, through dns.servers (the rig's DNS server).
      t.dns.zone.MX = { ...t.dns.zone.MX, [CASES.unsigned.domain]: [{ exchange: mxOf('unsigned'), preference: 10 }] };
      t.dns.zone.A = { ...t.dns.zone.A, [mxOf('unsigned')]: [CASES.unsigned.address] };
      for (const name of Object.keys(CASES) as Case[]) await relay(t, name);

      const log = () => t.haraka['haraka-out']?.output() ?? '';
      const context = () => `${log().slice(-6000)}\n--- dns ---\n${peers.logs().slice(-2000)}`;
      const delivered = async (name: Case) => (await sinks.get(name)!.waitForMessages(1, 30_000))[0]!;
      const deferred = (name: string, why: RegExp) =>
        eventually(`${name} deferred: ${why}`, () => new RegExp(`Temp failing \\S+ for \\d+ seconds: ${why.source}`).test(log()), { timeoutMs: 30_000, context });
      // A DANE mismatch defers quietly: the lines of its delivery are ours, and no CRIT (Haraka once wrote
      // EHLO into the connection the check had destroyed: "Socket write failed unexpectedly").
      const critAfterMismatch = (mx: string) => {
        const mismatch = new RegExp(`^\\[WARN\\] \\[([^\\]]+)\\] \\[outbound\\] DANE: the certificate of ${mx.replace(/\./g, '\\.')}, `, 'gm');
        const ids = [...log().matchAll(mismatch)].map((match) => `[${match[1]}]`);
        expect(ids, `no DANE mismatch logged for ${mx}`).not.toHaveLength(0);
        return log()
          .split('\n')
          .filter((line) => line.startsWith('[CRIT]') && ids.some((id) => line.includes(id)));
      };

      // DANE-EE 3 1 1 matches a self-signed certificate: delivered over TLS.
      expect((await delivered('ee')).secure).toBe(true);
      expect(log()).toMatch(new RegExp(`DANE ${mxOf('ee')}: certificate matches TLSA 3 1 1 `));
      // DANE-TA 2 0 1 with the CA in the chain the server sends: delivered over TLS, no PKIX trust needed.
      expect((await delivered('ta')).secure).toBe(true);
      // No usable record (PKIX-EE only): encrypted without authentication.
      expect((await delivered('unusable')).secure).toBe(true);
      // A mismatch on the preferred MX moves on to the next one, as for a failed handshake.
      await relayOut(t, `bob@${FAILOVER.domain}`, 'dane failover');
      expect((await failoverSinks[2]!.waitForMessages(1, 30_000))[0]!.secure).toBe(true);
      expect(failoverSinks[1]!.messages).toHaveLength(0);
      expect(log()).toContain(`DANE: the certificate of ${FAILOVER.first.name}, an MX host of ${FAILOVER.domain}, does not match its DNSSEC-signed TLSA records`);
      expect(critAfterMismatch(FAILOVER.first.name)).toEqual([]);
      // The DANE host of the mixed domain is down; its other MX has no TLSA record, and the domain's
      // MTA-STS policy (enforce) still governs it: its self-signed certificate fails, nothing is sent.
      await relayOut(t, `bob@${MIXED.domain}`, 'dane mixed');
      await deferred(
        'mixed',
        /MTA-STS policy of dane-mixed\.test \(enforce\) requires TLS with a certificate valid for the MX host name, but the TLS handshake with 127\.0\.0\.41 failed/,
      );
      expect(failoverSinks[0]!.messages).toHaveLength(0);
      expect(log()).toContain(
        `TLS policy for ${MIXED.domain}: dane (${MIXED.first.name} dane, ${MIXED.second.name} may; MTA-STS enforce for the hosts DANE does not authenticate)`,
      );
      // Unsigned zone: opportunistic as before (this MX offers no STARTTLS).
      expect((await delivered('unsigned')).secure).toBe(false);
      expect(log()).toContain(`TLS policy for ${CASES.unsigned.domain}: opportunistic`);

      await deferred('mismatch', /DANE: the certificate of mx\.dane-mismatch\.test, an MX host of dane-mismatch\.test, does not match its DNSSEC-signed TLSA records/);
      expect(critAfterMismatch(mxOf('mismatch'))).toEqual([]);
      await deferred('bogus', /DANE: a DNSSEC lookup for dane-bogus\.test failed \([^)]*TLSA[^)]*SERVFAIL/);
      await deferred(
        'noStarttls',
        /DANE: mx\.dane-nostarttls\.test, an MX host of dane-nostarttls\.test, publishes DNSSEC-signed TLSA records, so TLS is required, but it did not offer STARTTLS/,
      );
      for (const name of ['mismatch', 'bogus', 'noStarttls'] as const) {
        expect(sinks.get(name)!.messages, name).toHaveLength(0);
        expect(log()).toContain(`TLS policy for ${CASES[name].domain}: dane`);
      }
      // DANE came first: the mismatch domain's MTA-STS policy was never asked for.
      expect(log()).not.toContain(`MTA-STS ${CASES.mismatch.domain}`);

      // `mailproxy dane check` shows what haraka-out applied.
      const check = (name: Case) => runCli(['dane', 'check', CASES[name].domain, '--resolver', `${peers.resolver.host}:${peers.resolver.port}`, '--port', String(port)]);
      const ee = await check('ee');
      expect(ee.code, ee.text).toBe(0);
      expect(ee.out).toMatch(
        /^dane-ee\.test: DANE applies .*\n {2}mx\.dane-ee\.test \(preference 10; 127\.0\.0\.31\): dane: STARTTLS required, the certificate must match TLSA 3 1 1 /,
      );
      expect((await check('unusable')).out).toContain('encrypt: STARTTLS required without authentication');
      expect((await check('unsigned')).out).toMatch(/^unsigned\.test: DANE does not apply \(the MX records of unsigned\.test are not DNSSEC-signed\)/);
      const bogus = await check('bogus');
      expect(bogus.code).toBe(1);
      expect(bogus.out).toMatch(/^dane-bogus\.test: DANE lookups failed \(mx\.dane-bogus\.test: TLSA lookup failed: .*SERVFAIL/);

      // `queue list` names the policy and the reason of each deferred message.
      const logFile = path.join(dir, 'haraka-out.log');
      writeFileSync(logFile, log());
      const listing = await runCli(['queue', 'list', '--config', t.configPath, '--log', logFile]);
      expect(listing.code, listing.text).toBe(0);
      for (const name of ['mismatch', 'noStarttls'] as const) {
        expect(listing.out).toMatch(new RegExp(`${CASES[name].domain.replace(/\./g, '\\.')}\\s.*\\sdane\\s+DANE: `));
      }
    });
  }, 120_000);

  describe('the resolver check (`mailproxy dane resolver`, and health when outbound.dane is on)', () => {
    let root: DnssecPeers;
    beforeAll(async () => {
      root = await startDnssecPeers({ dir: path.join(dir, 'root'), zones: [{ name: '.', records: [] }], authoritativeHost: '127.0.0.23', resolverHost: '127.0.0.24' });
    }, 60_000);
    afterAll(() => root?.close());

    it('passes a validating resolver, and fails one without the AD bit or without an answer', async () => {
      const ask = (address: string) => runCli(['dane', 'resolver', '--resolver', address]);
      const validating = await ask(`${root.resolver.host}:${root.resolver.port}`);
      expect(validating.code, validating.text).toBe(0);
      expect(validating.out).toContain('the resolver validates DNSSEC (the root SOA came with the AD bit)');
      const authoritative = await ask(`${root.authoritative.host}:${root.authoritative.port}`);
      expect(authoritative.code).toBe(1);
      expect(authoritative.err).toContain('the resolver answers without the AD bit: it does not validate DNSSEC, so DANE cannot work');
      const nobody = await ask(`127.0.0.24:${await freePort('127.0.0.24')}`);
      expect(nobody.code).toBe(1);
      expect(nobody.err).toMatch(/ECONNREFUSED|no answer from the DNSSEC resolver/);
    }, 30_000);

    it('`mailproxy health` has a haraka-out.dane check when DANE is on: OK when the resolver validates, CRITICAL when not', async () => {
      for (const [resolver, verdict] of [
        [root.resolver, /\nOK\s+haraka-out\.dane\s+DANE resolver [\d.:]+: the resolver validates DNSSEC/],
        [
          root.authoritative,
          /\nCRITICAL\s+haraka-out\.dane\s+DANE resolver [\d.:]+: the resolver answers without the AD bit.*haraka-out keeps mail to the internet queued until it validates/,
        ],
      ] as const) {
        await withTopology(
          {
            instances: ['haraka-out'],
            internet: false,
            tweak: (config) => void (config.outbound = { ...config.outbound, dane: true, dane_resolver: `${resolver.host}:${resolver.port}` }),
          },
          async (t) => {
            const health = await runCli(['health', '--config', t.configPath]);
            expect(health.out).toMatch(verdict);
          },
        );
      }
    }, 60_000);
  });
});

// The DANE rules on their own: which TLSA records are usable, which certificates match (real certificates
// made with openssl), how a validating resolver's answers classify, and which TLS each MX host is owed.
import { createHash, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import dnsPacket from 'dns-packet';
import { afterAll, describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { makeTestCa } from '../../src/certs/testca';
import type { DnssecResolver, RecordType } from '../../src/dane/resolver';
import { daneRoute } from '../../src/dane/route';
import { answerStatus, type DnssecAnswer } from '../../src/dane/status';
import { isUsable, verifyAgainstTlsa, type TlsaRecord } from '../../src/dane/tlsa';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-dane-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha = (algorithm: string, data: Buffer) => createHash(algorithm).update(data).digest();
const spki = (cert: X509Certificate) => cert.publicKey.export({ type: 'spki', format: 'der' });
const record = (usage: number, selector: number, matchingType: number, data: Buffer): TlsaRecord => ({ usage, selector, matchingType, data });
const pemCerts = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((text) => new X509Certificate(text));

const MX = 'mx.example.org';
const selfSigned = makeSelfSigned(path.join(dir, 'ee'), MX);
const leaf = new X509Certificate(readFileSync(selfSigned.certPath));
const ca = makeTestCa(path.join(dir, 'ca'));
const caCert = new X509Certificate(ca.caPem);
const issued = pemCerts(ca.issue([MX]).cert)[0]!;
const otherName = pemCerts(ca.issue(['mx.attacker.example']).cert)[0]!;
const now = new Date();

describe('usable TLSA records (RFC 7672 §3.1)', () => {
  it('takes DANE-TA and DANE-EE with selector 0/1 and matching 0/1/2 of the right length', () => {
    expect(isUsable(record(3, 1, 1, Buffer.alloc(32)))).toBe(true);
    expect(isUsable(record(2, 0, 2, Buffer.alloc(64)))).toBe(true);
    expect(isUsable(record(3, 0, 0, Buffer.alloc(300)))).toBe(true);
    expect(isUsable(record(1, 1, 1, Buffer.alloc(32)))).toBe(false); // PKIX-EE
    expect(isUsable(record(0, 0, 1, Buffer.alloc(32)))).toBe(false); // PKIX-TA
    expect(isUsable(record(3, 2, 1, Buffer.alloc(32)))).toBe(false);
    expect(isUsable(record(3, 1, 3, Buffer.alloc(32)))).toBe(false);
    expect(isUsable(record(3, 1, 1, Buffer.alloc(31)))).toBe(false);
    expect(isUsable(record(3, 0, 0, Buffer.alloc(0)))).toBe(false);
  });
});

describe('matching the certificate chain against TLSA records', () => {
  it('DANE-EE matches the key or the whole certificate, whatever its names and issuer', () => {
    expect(verifyAgainstTlsa([leaf], [record(3, 1, 1, sha('sha256', spki(leaf)))], 'some.other.name', now)).toMatchObject({ ok: true });
    expect(verifyAgainstTlsa([leaf], [record(3, 0, 2, sha('sha512', leaf.raw))], MX, now)).toMatchObject({ ok: true });
    expect(verifyAgainstTlsa([leaf], [record(3, 0, 0, leaf.raw)], MX, now)).toMatchObject({ ok: true });
  });

  it('refuses a certificate no record matches, and ignores unusable records', () => {
    expect(verifyAgainstTlsa([leaf], [record(3, 1, 1, sha('sha256', spki(issued)))], MX, now)).toEqual({ ok: false, why: 'the certificate matches no DANE-EE record' });
    // A PKIX-EE record that matches is still no authentication for SMTP.
    expect(verifyAgainstTlsa([leaf], [record(1, 1, 1, sha('sha256', spki(leaf)))], MX, now)).toEqual({ ok: false, why: 'no usable TLSA record' });
    expect(verifyAgainstTlsa([], [record(3, 1, 1, sha('sha256', spki(leaf)))], MX, now)).toEqual({ ok: false, why: 'the server sent no certificate' });
  });

  it('DANE-TA needs the anchor on a verified path from the leaf, the MX name in the leaf, and the leaf valid now', () => {
    const anchor = record(2, 0, 1, sha('sha256', caCert.raw));
    expect(verifyAgainstTlsa([issued, caCert], [anchor], MX, now)).toMatchObject({ ok: true });
    expect(verifyAgainstTlsa([issued, caCert], [record(2, 1, 1, sha('sha256', spki(caCert)))], MX, now)).toMatchObject({ ok: true });
    // The anchor is public: appended to a chain it did not sign, it proves nothing.
    expect(verifyAgainstTlsa([leaf, caCert], [anchor], MX, now)).toMatchObject({ ok: false });
    // Not sent along: not found (RFC 7671 §5.2.2 asks servers to include it).
    expect(verifyAgainstTlsa([issued], [anchor], MX, now)).toMatchObject({ ok: false });
    expect(verifyAgainstTlsa([otherName, caCert], [anchor], MX, now)).toEqual({
      ok: false,
      why: `the certificate chains to a DANE-TA record but does not name ${MX}`,
    });
    // A leaf of that CA (CA:FALSE) has a key that can sign, but no authority to issue.
    const leafIssued = (() => {
      const caDir = path.join(dir, 'ca');
      const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: caDir, stdio: 'pipe' });
      const pem = ca.issue(['mx.other.example']);
      writeFileSync(path.join(caDir, 'sub.pem'), pem.cert);
      writeFileSync(path.join(caDir, 'sub-key.pem'), pem.key);
      openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${MX}`, '-keyout', 'forged-key.pem', '-out', 'forged.csr']);
      writeFileSync(path.join(caDir, 'forged.ext'), `subjectAltName=DNS:${MX}\n`);
      openssl(['x509', '-req', '-in', 'forged.csr', '-CA', 'sub.pem', '-CAkey', 'sub-key.pem', '-set_serial', '99', '-days', '2', '-extfile', 'forged.ext', '-out', 'forged.pem']);
      return { forged: new X509Certificate(readFileSync(path.join(caDir, 'forged.pem'))), sub: new X509Certificate(pem.cert) };
    })();
    expect(leafIssued.forged.verify(leafIssued.sub.publicKey)).toBe(true);
    expect(verifyAgainstTlsa([leafIssued.forged, leafIssued.sub, caCert], [anchor], MX, now)).toMatchObject({ ok: false });
    // Expired (the leaf, and here its CA too): refused.
    expect(verifyAgainstTlsa([issued, caCert], [anchor], MX, new Date(Date.now() + 30 * 86400_000))).toMatchObject({ ok: false });
  });
});

describe('what a validating resolver answer says', () => {
  const response = (flags: number, rcode: number, answers: dnsPacket.Answer[] = []) =>
    dnsPacket.decode(dnsPacket.encode({ type: 'response', id: 1, flags: flags | rcode, questions: [{ type: 'TLSA', name: '_25._tcp.mx.example.org' }], answers }));
  const tlsa: dnsPacket.Answer = { type: 'TLSA', name: '_25._tcp.mx.example.org', data: { usage: 3, selector: 1, matchingType: 1, certificate: Buffer.alloc(32) } };

  it('reads the AD bit, NODATA, NXDOMAIN and SERVFAIL', () => {
    expect(answerStatus(response(dnsPacket.AUTHENTIC_DATA, 0, [tlsa]), 'n', 'TLSA')).toMatchObject({ kind: 'records', security: 'secure' });
    expect(answerStatus(response(0, 0, [tlsa]), 'n', 'TLSA')).toMatchObject({ kind: 'records', security: 'insecure' });
    expect(answerStatus(response(dnsPacket.AUTHENTIC_DATA, 0), 'n', 'TLSA')).toEqual({ kind: 'nodata', security: 'secure' });
    expect(answerStatus(response(dnsPacket.AUTHENTIC_DATA, 3), 'n', 'TLSA')).toEqual({ kind: 'nxdomain', security: 'secure' });
    expect(answerStatus(response(0, 2), 'n', 'TLSA')).toMatchObject({ kind: 'failed', why: expect.stringContaining('SERVFAIL') });
    expect(answerStatus(response(0, 5), 'n', 'TLSA')).toMatchObject({ kind: 'failed', why: expect.stringContaining('REFUSED') });
  });
});

/** A resolver that answers from a table; anything not in it is secure NXDOMAIN. */
function resolverOf(table: Record<string, DnssecAnswer>): DnssecResolver {
  return { query: async (name: string, type: RecordType) => table[`${name} ${type}`] ?? { kind: 'nxdomain', security: 'secure' } };
}
const secure = (type: string, ...data: unknown[]): DnssecAnswer => ({
  kind: 'records',
  security: 'secure',
  records: data.map((value) => ({ type, name: 'x', data: value }) as dnsPacket.Answer),
});
const insecure = (type: string, ...data: unknown[]): DnssecAnswer => ({
  kind: 'records',
  security: 'insecure',
  records: data.map((value) => ({ type, name: 'x', data: value }) as dnsPacket.Answer),
});
const noData: DnssecAnswer = { kind: 'nodata', security: 'secure' };
const servfail: DnssecAnswer = { kind: 'failed', why: 'SERVFAIL' };
const tlsaData = (usage: number) => ({ usage, selector: 1, matchingType: 1, certificate: Buffer.alloc(32, 7) });

describe('the TLS each MX host is owed (RFC 7672 §2.2)', () => {
  const mx = (...hosts: [string, number][]) => secure('MX', ...hosts.map(([exchange, preference]) => ({ exchange, preference })));
  const host = (name: string, address: string, tlsa: DnssecAnswer) => ({
    [`${name} A`]: secure('A', address),
    [`${name} AAAA`]: noData,
    [`_25._tcp.${name} TLSA`]: tlsa,
  });

  it('is not DANE when the MX records are unsigned, even if the hosts publish TLSA records', async () => {
    const resolver = resolverOf({
      'example.org MX': insecure('MX', { exchange: 'mx.example.org', preference: 10 }),
      ...host('mx.example.org', '192.0.2.1', secure('TLSA', tlsaData(3))),
    });
    expect(await daneRoute(resolver, 'example.org', 25)).toMatchObject({ kind: 'insecure' });
  });

  it('gives each host its level: dane, encrypt for unusable records only, may without records or with unsigned addresses', async () => {
    const resolver = resolverOf({
      'example.org MX': mx(['a.example.org', 10], ['b.example.org', 20], ['c.example.org', 30], ['d.example.org', 40]),
      ...host('a.example.org', '192.0.2.1', secure('TLSA', tlsaData(3), tlsaData(1))),
      ...host('b.example.org', '192.0.2.2', secure('TLSA', tlsaData(1))),
      ...host('c.example.org', '192.0.2.3', noData),
      'd.example.org A': insecure('A', '192.0.2.4'),
      'd.example.org AAAA': noData,
    });
    const route = await daneRoute(resolver, 'example.org', 25);
    expect(route.kind).toBe('dane');
    if (route.kind !== 'dane') return;
    expect(route.hosts.map((h) => [h.name, h.tls.level, h.addresses])).toEqual([
      ['a.example.org', 'dane', ['192.0.2.1']],
      ['b.example.org', 'encrypt', ['192.0.2.2']],
      ['c.example.org', 'may', ['192.0.2.3']],
      ['d.example.org', 'may', ['192.0.2.4']],
    ]);
    // Only the usable record is kept for matching.
    expect(route.hosts[0]!.tls).toMatchObject({ records: [{ usage: 3 }] });
  });

  it('skips a host whose TLSA lookup failed, and defers when no host is left', async () => {
    const both = resolverOf({
      'example.org MX': mx(['a.example.org', 10], ['b.example.org', 20]),
      ...host('a.example.org', '192.0.2.1', servfail),
      ...host('b.example.org', '192.0.2.2', secure('TLSA', tlsaData(3))),
    });
    const route = await daneRoute(both, 'example.org', 25);
    expect(route).toMatchObject({ kind: 'dane', hosts: [{ name: 'b.example.org' }], skipped: [{ name: 'a.example.org', tls: { level: 'unusable', signalsDane: true } }] });
    const only = resolverOf({ 'example.org MX': mx(['a.example.org', 10]), ...host('a.example.org', '192.0.2.1', servfail) });
    expect(await daneRoute(only, 'example.org', 25)).toMatchObject({ kind: 'failed', why: expect.stringContaining('a.example.org: TLSA lookup failed') });
  });

  it('defers on a failed MX lookup, but a failed address lookup alone does not make a domain DANE', async () => {
    expect(await daneRoute(resolverOf({ 'example.org MX': servfail }), 'example.org', 25)).toMatchObject({ kind: 'failed' });
    const flaky = resolverOf({ 'example.org MX': mx(['a.example.org', 10]), 'a.example.org A': servfail, 'a.example.org AAAA': noData });
    expect(await daneRoute(flaky, 'example.org', 25)).toMatchObject({ kind: 'insecure' });
  });

  it('keeps a domain DANE when a bogus address answer hides a host that publishes TLSA records', async () => {
    const bogusAaaa = resolverOf({
      'example.org MX': mx(['a.example.org', 10]),
      'a.example.org A': secure('A', '192.0.2.1'),
      'a.example.org AAAA': servfail,
      '_25._tcp.a.example.org TLSA': secure('TLSA', tlsaData(3)),
    });
    expect(await daneRoute(bogusAaaa, 'example.org', 25)).toMatchObject({ kind: 'failed', why: expect.stringContaining('a.example.org: address lookup failed') });
  });

  it('uses the domain itself without MX records, leaves NXDOMAIN and null MX to Haraka, and asks TLSA at the port given', async () => {
    const implicit = resolverOf({
      'example.org MX': noData,
      'example.org A': secure('A', '192.0.2.9'),
      'example.org AAAA': noData,
      '_2500._tcp.example.org TLSA': secure('TLSA', tlsaData(3)),
    });
    expect(await daneRoute(implicit, 'example.org', 2500)).toMatchObject({ kind: 'dane', hosts: [{ name: 'example.org', tls: { level: 'dane' } }] });
    expect(await daneRoute(resolverOf({}), 'example.org', 25)).toMatchObject({ kind: 'insecure', why: 'example.org does not exist' });
    expect(await daneRoute(resolverOf({ 'example.org MX': mx(['', 0]) }), 'example.org', 25)).toMatchObject({ kind: 'insecure', why: 'example.org has a null MX' });
  });
});

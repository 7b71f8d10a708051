// haraka-in's TLS policy (item 5) as a client on the internet and a grader see it after
// STARTTLS. Node's own client checks the exact TLS 1.2 suites, the server's order, the protocol versions
// and the refused client-initiated renegotiation, for an ECDSA and for an RSA certificate (the suites
// differ by key type). Debian's testssl.sh then grades the RSA instance (the one where static-RSA and
// ROBOT checks apply) and must find nothing VULNERABLE or NOT ok but the test certificate's own chain
// (self-signed) and lifetime.
import { execFile, execFileSync } from 'node:child_process';
import { constants } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { INBOUND_TLS_CIPHERS, SSL_OP_NO_RENEGOTIATION } from '../../src/render/haraka';
import { missingPeers, requirePeers } from '../helpers/peers';
import { useTopology } from '../helpers/topology';

/** The TLS 1.2 suites haraka-in may negotiate, by certificate key type: ECDHE with AES-GCM or ChaCha20. */
const POLICY_TLS12 = {
  ecdsa: ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'],
  rsa: ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305'],
};

const TESTSSL = '/usr/bin/testssl';
/** testssl.sh findings that belong to the test certificate, not to the TLS policy. */
const CERTIFICATE_OWN = ['Chain of trust', 'Certificate Validity (UTC)'];

type Outcome = { ok: true; socket: tls.TLSSocket } | { ok: false; error: string };

/** Banner, EHLO, STARTTLS, then a TLS handshake with `options`; a refused handshake is an outcome, not a throw. */
async function starttls(host: string, port: number, options: tls.ConnectionOptions): Promise<Outcome> {
  const plain = net.connect({ host, port });
  plain.setTimeout(10_000, () => plain.destroy(new Error(`no answer from ${host}:${port}`)));
  let buffer = '';
  const reply = () =>
    new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        buffer += chunk.toString('latin1');
        const last = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buffer);
        if (!last) return;
        plain.off('data', onData);
        plain.off('error', reject);
        const text = buffer;
        buffer = '';
        resolve(text);
      };
      plain.on('data', onData);
      plain.once('error', reject);
    });
  try {
    expect(await reply()).toMatch(/^220 /);
    plain.write('EHLO policy.test\r\n');
    expect(await reply()).toMatch(/^250[ -]STARTTLS\r$/m);
    plain.write('STARTTLS\r\n');
    expect(await reply()).toMatch(/^220 /);
  } catch (err) {
    plain.destroy();
    throw err;
  }
  plain.setTimeout(0);
  return new Promise<Outcome>((resolve) => {
    let secure: tls.TLSSocket;
    try {
      secure = tls.connect({ socket: plain, rejectUnauthorized: false, ...options });
    } catch (err) {
      // This Node's OpenSSL does not know the suite at all: nothing was offered.
      plain.destroy();
      resolve({ ok: false, error: (err as Error).message });
      return;
    }
    secure.once('secureConnect', () => resolve({ ok: true, socket: secure }));
    secure.once('error', (err: NodeJS.ErrnoException) => {
      secure.destroy();
      resolve({ ok: false, error: err.code ?? err.message });
    });
  });
}

/** Every TLS 1.2-and-older suite OpenSSL has, weak ones included (security level 0). */
function everyTls12Suite(): string[] {
  return execFileSync('openssl', ['ciphers', 'ALL:COMPLEMENTOFALL:@SECLEVEL=0'], { encoding: 'utf8' })
    .trim()
    .split(':')
    .filter((name) => name && !name.startsWith('TLS_'));
}

function makeRsaCertificate(dir: string, hostname: string): { key: string; cert: string } {
  // A CA's certificate carries where its revocation list is (Let's Encrypt's do); without one testssl
  // says "NOT ok -- neither CRL nor OCSP URI provided" about the certificate, not about the policy.
  // testssl never fetches it (that needs --phone-out).
  const pair = makeSelfSigned(dir, hostname, 90, { rsa: true, extensions: ['crlDistributionPoints=URI:http://127.0.0.1/mailproxy-test.crl'] });
  return { key: pair.keyPath, cert: pair.certPath };
}

function policyChecks(keyType: 'ecdsa' | 'rsa', topology: () => { inbound: { host: string; port: number } }) {
  it(`TLS 1.2 negotiates only the policy's forward-secret AEAD suites (${keyType} certificate)`, async () => {
    const { host, port } = topology().inbound;
    const accepted: string[] = [];
    for (const suite of everyTls12Suite()) {
      const outcome = await starttls(host, port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.2', ciphers: `${suite}:@SECLEVEL=0` });
      if (!outcome.ok) continue;
      accepted.push(outcome.socket.getCipher().name);
      outcome.socket.destroy();
    }
    expect(accepted.sort()).toEqual([...POLICY_TLS12[keyType]].sort());
  });

  it(`TLS 1.2 follows the server's order, not the client's (${keyType} certificate)`, async () => {
    const { host, port } = topology().inbound;
    const clientFavourite = [...POLICY_TLS12[keyType]].reverse().join(':');
    const outcome = await starttls(host, port, { maxVersion: 'TLSv1.2', ciphers: clientFavourite });
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    expect(outcome.socket.getCipher().name).toBe(POLICY_TLS12[keyType][0]);
    outcome.socket.destroy();
  });

  it(`TLS 1.0 and 1.1 are refused, TLS 1.3 is offered (${keyType} certificate)`, async () => {
    const { host, port } = topology().inbound;
    for (const version of ['TLSv1', 'TLSv1.1'] as const) {
      const old = await starttls(host, port, { minVersion: version, maxVersion: version, ciphers: 'ALL:@SECLEVEL=0' });
      expect(old.ok, version).toBe(false);
    }
    const modern = await starttls(host, port, { minVersion: 'TLSv1.3' });
    expect(modern.ok).toBe(true);
    if (modern.ok) {
      expect(modern.socket.getProtocol()).toBe('TLSv1.3');
      modern.socket.destroy();
    }
  });

  it(`a client cannot renegotiate a TLS 1.2 session (${keyType} certificate)`, async () => {
    const { host, port } = topology().inbound;
    const outcome = await starttls(host, port, { maxVersion: 'TLSv1.2' });
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    const secure = outcome.socket;
    const result = await new Promise<string>((resolve) => {
      secure.once('error', (err: NodeJS.ErrnoException) => resolve(`refused: ${err.code ?? err.message}`));
      secure.once('close', () => resolve('closed'));
      const started = secure.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ? `refused: ${(err as NodeJS.ErrnoException).code ?? err.message}` : 'renegotiated'));
      if (!started) resolve('not started');
    });
    secure.destroy();
    // OpenSSL's SSL_OP_NO_RENEGOTIATION answers with a no_renegotiation alert.
    expect(result).toBe('refused: ERR_SSL_NO_RENEGOTIATION');
  });
}

describe('the rendered TLS policy', () => {
  it("is haraka-in's tls.ini: OpenSSL's no-renegotiation bit, the suites above", () => {
    expect(SSL_OP_NO_RENEGOTIATION).toBe(constants.SSL_OP_NO_RENEGOTIATION);
    const tls12 = INBOUND_TLS_CIPHERS.split(':').filter((suite) => !suite.startsWith('TLS_'));
    expect(tls12.sort()).toEqual([...POLICY_TLS12.ecdsa, ...POLICY_TLS12.rsa].sort());
  });
});

describe('haraka-in TLS policy, ECDSA certificate (the demo and test topology default)', () => {
  const topology = useTopology({ instances: ['haraka-in'], internet: false });
  policyChecks('ecdsa', topology);
});

describe('haraka-in TLS policy, RSA certificate', () => {
  const topology = useTopology({
    instances: ['haraka-in'],
    internet: false,
    tweak: (input) => {
      // Next to the topology's state dir, in its temp root (removed with it).
      input.tls = { ...input.tls, ...makeRsaCertificate(path.join(path.dirname(String(input.state_dir)), 'tls-rsa'), String(input.hostname)) };
    },
  });
  policyChecks('rsa', topology);

  interface Finding {
    label: string;
    text: string;
  }

  /** testssl's plain output as findings: "label  value" lines, continuation lines keep their label. */
  function parseTestssl(output: string): Finding[] {
    const findings: Finding[] = [];
    let label = '';
    for (const line of output.split('\n')) {
      const labelled = /^ (\S.*?)(?:\s{2,}(\S.*))?\s*$/.exec(line);
      const continued = /^\s{3,}(\S.*?)\s*$/.exec(line);
      if (labelled) {
        label = labelled[1] ?? '';
        findings.push({ label, text: labelled[2] ?? '' });
      } else if (continued && label) {
        findings.push({ label, text: continued[1] ?? '' });
      }
    }
    return findings;
  }

  const flagged = (finding: Finding) => /VULNERABLE|NOT ok/.test(finding.text);

  if (requirePeers('testssl.sh grading of haraka-in', missingPeers([TESTSSL]))) {
    it('testssl.sh --starttls smtp finds nothing VULNERABLE or NOT ok but the test certificate', async () => {
      const { host, port } = topology().inbound;
      // Protocols (-p), cipher categories (-s), every vulnerability check (-U: renegotiation, LUCKY13,
      // ROBOT, ...) and the server defaults with the certificate (-S). -f and -P (forward secrecy, cipher
      // order) are left to the exact checks above: each adds about a third to the run time. No DNS (the
      // tests never use the system resolver), time limits so that nothing hangs.
      const args = [
        '--starttls',
        'smtp',
        '--quiet',
        '--color',
        '0',
        '--warnings',
        'batch',
        '--nodns',
        'none',
        '--connect-timeout',
        '10',
        '--openssl-timeout',
        '10',
        '-p',
        '-s',
        '-U',
        '-S',
        `${host}:${port}`,
      ];
      const started = Date.now();
      const output = await new Promise<string>((resolve, reject) => {
        execFile(TESTSSL, args, { encoding: 'utf8', timeout: 900_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
          // testssl's exit status counts findings in some versions: judge the output, not the status.
          if (err?.killed) reject(new Error(`testssl.sh did not finish: ${err.message}\n${stdout}\n${stderr}`));
          else resolve(`${stdout}${stderr}`);
        });
      });
      const seconds = ((Date.now() - started) / 1000).toFixed(0);
      console.log(`testssl.sh ${args.slice(0, -1).join(' ')}: ${seconds} s`);

      const findings = parseTestssl(output);
      const value = (label: string) => findings.find((finding) => finding.label === label)?.text;
      // What the policy is for, each line as the grader words it (all listed at once when some differ).
      const wanted: [label: string, value: RegExp][] = [
        ['TLS 1', /^not offered/],
        ['TLS 1.1', /^not offered/],
        ['TLS 1.2', /^offered \(OK\)/],
        ['TLS 1.3', /^offered \(OK\)/],
        ['Obsolete CBC ciphers (AES, ARIA etc.)', /^not offered/],
        ['Secure Client-Initiated Renegotiation', /^not vulnerable \(OK\)/],
        ['LUCKY13 (CVE-2013-0169), experimental', /^not vulnerable \(OK\)/],
      ];
      const problems = wanted
        .filter(([label, pattern]) => !pattern.test(value(label) ?? ''))
        .map(([label, pattern]) => `${label}: ${value(label) ?? '(no such line)'} (wanted ${pattern})`);
      for (const finding of findings) {
        if (flagged(finding) && !CERTIFICATE_OWN.includes(finding.label)) problems.push(`${finding.label}: ${finding.text}`);
      }
      expect(output, output).toMatch(/Done .* -->> 127\./);
      expect(problems, output).toEqual([]);
      // The parser does see NOT ok lines: the self-signed test certificate's own one is there.
      expect(findings.filter(flagged).map((finding) => finding.label)).toContain('Chain of trust');
    }, 1_000_000);
  }
});

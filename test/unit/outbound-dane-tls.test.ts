// dane.ts's certificate check inside Haraka's own STARTTLS upgrade (tls_socket.js), without Haraka's queue:
// an MX's TLS handshake is judged before anything Haraka listens for hears of it. A mismatch must leave the
// connection with nothing written to it after the handshake (hmail.js sends EHLO on the 'secure' that
// tls_socket's pluggable stream relays, and a write into the destroyed socket was a CRIT in Haraka's log).
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import type { TlsaRecord } from '../../src/dane/tlsa';
import { harakaOutboundTls, installDaneTls, rememberMx } from '../../src/plugins/haraka/patches/outbound-tls';
import type { HMail } from '../../src/plugins/haraka/hmail';
import { stateOf, type DeliveryState } from '../../src/plugins/outbound/delivery';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tlsSocket = require('haraka/tls_socket') as {
  connect(options: { host: string; port: number }): HarakaSocket;
};

interface HarakaSocket extends NodeJS.EventEmitter {
  upgrade(options: object, cb: (authorized: boolean, verifyError: unknown) => void): void;
  write(data: string, encoding: string, cb: (err?: Error | null) => void): boolean;
  destroy(): void;
}

const MX = 'mx.example.org';
const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-dane-tls-'));
const pair = (name: string) => {
  const made = makeSelfSigned(path.join(dir, name), MX);
  return { key: readFileSync(made.keyPath, 'utf8'), cert: readFileSync(made.certPath, 'utf8') };
};
const spkiRecord = (pem: string): TlsaRecord => ({
  usage: 3,
  selector: 1,
  matchingType: 1,
  data: createHash('sha256')
    .update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }))
    .digest(),
});

/** What an MX saw after its TLS handshake, and what Haraka's side of the connection heard. */
interface Outcome {
  upgraded: boolean;
  authorized?: boolean;
  secureHeard: number;
  writeErrors: string[];
  error?: Error & { source?: string };
  serverReceived: string;
  logs: string[];
  state: DeliveryState;
}

let server: net.Server;
let serverTls: { key: string; cert: string };
const received: string[] = [];

beforeAll(async () => {
  serverTls = pair('server');
  // An MX that speaks TLS at once (the STARTTLS exchange is not what is tested) and keeps what it is sent.
  server = net.createServer((raw) => {
    const secured = new tls.TLSSocket(raw, { isServer: true, ...serverTls });
    let text = '';
    received.push(text);
    const index = received.length - 1;
    secured.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      received[index] = text;
    });
    secured.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  expect(installDaneTls()).toBe(true);
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

/** One upgrade as hmail.js does it for a forced TLS: rejectUnauthorized, and EHLO on 'secure'. */
async function upgradeWith(records: TlsaRecord[]): Promise<Outcome> {
  const logs: string[] = [];
  const log = (msg: string) => void logs.push(msg);
  const hmail: HMail = { num_failures: 0, todo: { domain: 'example.org' }, loginfo: log, lognotice: log, logwarn: log, logerror: log };
  const state = stateOf(hmail);
  const port = (server.address() as AddressInfo).port;
  state.attempt.daneHosts = new Map([[MX, { level: 'dane', records }]]);
  state.attempt.mx = { name: MX, address: '127.0.0.1' };
  const mx = { exchange: '127.0.0.1', from_dns: MX, port };
  rememberMx(mx, state);
  const before = received.length;
  const outcome: Outcome = { upgraded: false, secureHeard: 0, writeErrors: [], serverReceived: '', logs, state };
  const socket = tlsSocket.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve) => {
    socket.once('connect', () => {
      const options = (harakaOutboundTls() as unknown as { get_tls_options(mx: object): Record<string, unknown> }).get_tls_options(mx);
      options.rejectUnauthorized = true;
      socket.once('secure', () => {
        outcome.secureHeard++;
        socket.write('EHLO client.example\r\n', 'utf8', (err) => {
          if (err) outcome.writeErrors.push(String(err));
          setTimeout(resolve, 100);
        });
      });
      socket.on('error', (err: Error & { source?: string }) => {
        outcome.error ??= err;
        setTimeout(resolve, 100);
      });
      socket.upgrade(options, (authorized) => {
        outcome.upgraded = true;
        outcome.authorized = authorized;
      });
    });
  });
  socket.destroy();
  outcome.serverReceived = received.slice(before).join('');
  return outcome;
}

describe('the DANE check inside Haraka STARTTLS (dane.ts)', () => {
  it('hands a matching certificate on as authorized, and the client goes on over TLS', async () => {
    const outcome = await upgradeWith([spkiRecord(serverTls.cert)]);
    expect(outcome.error).toBeUndefined();
    expect(outcome).toMatchObject({ upgraded: true, authorized: true, secureHeard: 1, writeErrors: [] });
    expect(outcome.serverReceived).toBe('EHLO client.example\r\n');
    expect(outcome.logs.join('\n')).toContain(`DANE ${MX}: certificate matches TLSA 3 1 1 `);
  });

  it('fails a mismatch with a TLS error before anything hears the handshake: nothing is written, nothing fails to be', async () => {
    const outcome = await upgradeWith([spkiRecord(pair('other').cert)]);
    expect(outcome.error?.message).toMatch(/^DANE: the certificate of mx\.example\.org, an MX host of example\.org, does not match its DNSSEC-signed TLSA records/);
    expect(outcome.error?.source).toBe('tls');
    // Neither tls_socket's upgrade callback nor the 'secure' hmail.js sends EHLO on: no write at all.
    expect(outcome).toMatchObject({ upgraded: false, secureHeard: 0, writeErrors: [], serverReceived: '' });
    expect(outcome.state.attempt.tlsFailure?.text).toBe(outcome.error?.message);
  });
});

// A TLS report counts every session held to a policy, including one whose handshake never ends: an MX that
// takes STARTTLS and then says nothing until Haraka's socket timeout ends the delivery (the TLS socket is
// destroyed without an error of its own). Through Haraka's own STARTTLS upgrade (tls_socket.js), once for a DANE host and once
// for an MTA-STS one (the two paths of ../../src/plugins/haraka/patches/outbound-tls.ts), into a real
// recorder's day file.
import { mkdtempSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HMail } from '../../src/plugins/haraka/hmail';
import { harakaOutboundTls, installDaneTls, rememberMx } from '../../src/plugins/haraka/patches/outbound-tls';
import { stateOf, type DeliveryState } from '../../src/plugins/outbound/delivery';
import { closeTlsRpt, configureTlsRpt, stsApplied, tlsReporting } from '../../src/plugins/outbound/tls-sessions';
import { readDay, savedDays } from '../../src/tlsrpt/store';
import type { PolicyDay } from '../../src/tlsrpt/types';
import { eventually } from '../helpers/poll';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tlsSocket = require('haraka/tls_socket') as {
  connect(options: { host: string; port: number }): HarakaSocket;
};

interface HarakaSocket extends NodeJS.EventEmitter {
  upgrade(options: object, cb: (authorized: boolean) => void): void;
  setTimeout(ms: number): void;
  destroy(): void;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-tlsrpt-handshake-'));
const log = { info: () => undefined, error: (message: string) => console.error(message) };
/** An MX that takes the connection and never answers the ClientHello. */
let silent: net.Server;
const held: net.Socket[] = [];

beforeAll(async () => {
  silent = net.createServer((socket) => {
    held.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  expect(installDaneTls()).toBe(true);
  configureTlsRpt({ enabled: true, dir, sending_ip: '192.0.2.25', sending_ipv6: '' }, log);
  await eventually('the recorder is open', () => tlsReporting());
});

afterAll(async () => {
  closeTlsRpt();
  for (const socket of held) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

/** A delivery of a message to `domain` whose STARTTLS handshake to `mx` gets no answer, ended as Haraka ends
 * it: the socket timeout client_pool.js sets (connect_timeout; 300 ms here) becomes an 'error' on which
 * hmail.js releases the socket (listeners removed, destroyed without an error). */
async function stalledHandshake(domain: string, mx: string, prepare: (state: DeliveryState) => void): Promise<{ upgraded: boolean; errors: string[] }> {
  const noop = () => undefined;
  const hmail: HMail = { num_failures: 0, todo: { domain }, loginfo: noop, lognotice: noop, logwarn: noop, logerror: noop };
  const state = stateOf(hmail);
  state.attempt.mx = { name: mx, address: '127.0.0.1' };
  prepare(state);
  const port = (silent.address() as AddressInfo).port;
  const harakaMx = { exchange: '127.0.0.1', from_dns: mx, port };
  rememberMx(harakaMx, state);
  const socket = tlsSocket.connect({ host: '127.0.0.1', port });
  socket.setTimeout(300);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  let upgraded = false;
  const errors: string[] = [];
  const released = new Promise<void>((resolve) => {
    socket.once('timeout', () => socket.emit('error', 'socket timeout waiting on starttls'));
    socket.on('error', (error) => {
      errors.push(String(error));
      socket.removeAllListeners();
      socket.destroy();
      resolve();
    });
  });
  const options = (harakaOutboundTls() as unknown as { get_tls_options(mx: object): Record<string, unknown> }).get_tls_options(harakaMx);
  socket.upgrade(options, () => void (upgraded = true));
  await released;
  return { upgraded, errors };
}

/** The policy rows of every saved day for `domain` (a run across midnight UTC saves two days). */
async function daysOf(domain: string): Promise<PolicyDay[]> {
  const days = await Promise.all((await savedDays(dir)).map((day) => readDay(dir, day)));
  return days.flatMap((day) => day.policies).filter((entry) => entry.policy.domain === domain);
}

const NOT_COMPLETED = {
  resultType: 'validation-failure',
  receivingMxHostname: '',
  receivingIp: '127.0.0.1',
  sendingMtaIp: '192.0.2.25',
  reasonCode: 'TLS handshake not completed (timed out or closed)',
  count: 1,
};

describe('a TLS handshake that never ends, in the TLS report', () => {
  it('counts one failed session for a DANE host (the connection checked by dane.ts)', async () => {
    const mx = 'mx.dane-stall.test';
    const outcome = await stalledHandshake('dane-stall.test', mx, (state) => {
      state.attempt.daneHosts = new Map([[mx, { level: 'dane', records: [{ usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32, 1) }] }]]);
    });
    expect(outcome).toEqual({ upgraded: false, errors: ['socket timeout waiting on starttls'] });
    await eventually('the session is saved', async () => (await daysOf('dane-stall.test')).length === 1, { timeoutMs: 15_000 });
    const [day] = await daysOf('dane-stall.test');
    expect(day).toMatchObject({ successes: 0, failures: 1, rows: [{ ...NOT_COMPLETED, receivingMxHostname: mx }] });
    expect(day?.policy.type).toBe('tlsa');
  });

  it('counts one failed session for an MTA-STS host (Node checks the certificate)', async () => {
    const mx = 'mx.sts-stall.test';
    const outcome = await stalledHandshake('sts-stall.test', mx, (state) => {
      state.attempt.stsPolicy = stsApplied('sts-stall.test', { version: 'STSv1', mode: 'enforce', mx: [mx], maxAge: 86400 });
    });
    expect(outcome).toEqual({ upgraded: false, errors: ['socket timeout waiting on starttls'] });
    await eventually('the session is saved', async () => (await daysOf('sts-stall.test')).length === 1, { timeoutMs: 15_000 });
    const [day] = await daysOf('sts-stall.test');
    expect(day).toMatchObject({ successes: 0, failures: 1, rows: [{ ...NOT_COMPLETED, receivingMxHostname: mx }] });
    expect(day?.policy.type).toBe('sts');
  });
});

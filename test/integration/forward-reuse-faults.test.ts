// Reused backend sessions (backend.reuse_sessions) when things go wrong around them, against a scripted
// backend and a real haraka-in: a kept session whose backend went quiet without closing costs the next client
// seconds, not the whole reply timeout; a session a client held across a reload that moved the backend is
// never kept, so the next client's mail goes to the new backend.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { freePort } from '../helpers/ports';
import { startScriptedBackend, withScriptedBackend } from '../helpers/scripted-backend';
import type { withTopology } from '../helpers/topology';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One message from `address` with HELO `helo`: the final code and how long the RCPT took. */
async function deliverAs(t: Topology, address: string, helo: string, subject: string): Promise<{ code: number; rcptMs: number }> {
  const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: address, helo });
  try {
    expect((await session.command('MAIL FROM:<s@example.net>')).code).toBe(250);
    const started = Date.now();
    const rcpt = await session.command('RCPT TO:<alice@demo.test>', 90_000);
    const rcptMs = Date.now() - started;
    if (rcpt.code !== 250) return { code: rcpt.code, rcptMs };
    expect((await session.command('DATA')).code).toBe(354);
    session.write(dataPayload(message(subject, 'body')));
    const final = await session.reply(30_000);
    await session.command('QUIT');
    return { code: final.code, rcptMs };
  } finally {
    session.close();
    // The client's disconnect, after which its backend session is kept.
    await sleep(300);
  }
}

const reuse: NonNullable<Parameters<typeof withTopology>[0]['tweak']> = (config) => void (config.backend = { ...config.backend, reuse_sessions: true });

describe('reused backend sessions when things go wrong', () => {
  it('a kept session that went quiet without closing costs the next client seconds, then a fresh connection delivers', async () => {
    // The second XCLIENT of the run is the kept session's: never answered.
    await withScriptedBackend({ xclientReply: (n) => (n === 1 ? 'silent' : null) }, reuse, async (t, backend) => {
      expect((await deliverAs(t, '127.0.0.9', 'a.example.net', 'a')).code).toBe(250);
      const b = await deliverAs(t, '127.0.0.10', 'b.example.net', 'b');
      expect(b.code).toBe(250);
      expect(backend.delivered()).toBe(2);
      // The kept session's XCLIENT waits 3 s, not backend.timeout (30 s here).
      expect(b.rcptMs).toBeLessThan(8_000);
    });
  }, 120_000);

  it('a session a client held across a reload that moved the backend is not kept: the next client reaches the new backend', async () => {
    await withScriptedBackend({}, reuse, async (t, oldBackend) => {
      const newPort = await freePort(LOOPBACK.backend);
      const newBackend = await startScriptedBackend(LOOPBACK.backend, newPort, {});
      try {
        const a = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9', helo: 'a.example.net' });
        expect((await a.command('MAIL FROM:<s@example.net>')).code).toBe(250);
        expect((await a.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
        expect((await a.command('DATA')).code).toBe(354);
        a.write(dataPayload(message('a', 'body')));
        expect((await a.reply()).code).toBe(250);
        const ini = path.join(t.instancesDir, 'haraka-in', 'config', 'mailproxy-forward.ini');
        writeFileSync(ini, readFileSync(ini, 'utf8').replace(/^port=\d+$/m, `port=${newPort}`));
        // Haraka reloads a changed file 5 s after it last changed (haraka-config's watch).
        await sleep(7_000);
        await a.command('QUIT');
        a.close();
        await sleep(300);
        expect((await deliverAs(t, '127.0.0.10', 'b.example.net', 'b')).code).toBe(250);
        expect(oldBackend.delivered()).toBe(1);
        expect(newBackend.delivered()).toBe(1);
      } finally {
        await newBackend.close();
      }
    });
  }, 120_000);
});

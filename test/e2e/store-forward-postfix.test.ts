// The backup MX outage drill against the real Postfix backend: haraka-in learns two users from live
// deliveries, the backend goes down, mail for the known users is stored (250), an unknown user gets 450
// and a refused one 550; haraka-in is killed with SIGKILL while mail is stored and started again; the
// backend comes back and every stored message arrives once, within a minute, as the original client
// (Postfix's own `client=` and `helo=<...>` log lines); the one message Postfix refuses with 5xx at the
// end of data, from a sender without SPF pass, is held in the spool and nobody is sent a bounce.
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { openSession } from '../../src/smtp/script';
import { parseMeta } from '../../src/plugins/store-forward/spool-meta';
import { storePathsFor } from '../../src/plugins/store-forward/store-dir';
import { postfixUnavailableReason, startPostfix, type PostfixInstance } from '../fixtures/postfix';
import { missingPeers, requirePeers } from '../helpers/peers';
import { eventually } from '../helpers/poll';
import { sendVia } from '../helpers/send';
import { withTopology } from '../helpers/topology';

const runnable = requirePeers('the backup MX outage drill against real Postfix', missingPeers(['/usr/sbin/postfix'], [postfixUnavailableReason()]));

// The backend's content filter: it refuses this subject at the end of data (as rspamd's reject would).
const REFUSED_SUBJECT = 'drill refuse me';
// The default probe_interval: the drill runs the configuration an operator gets.
const PROBE_INTERVAL_S = 5;

interface Client {
  address: string;
  helo: string;
  /** What Postfix's `client=` line says for it: the forward-confirmed name, or unknown. */
  seenAs: string;
}

const CLIENT9: Client = { address: '127.0.0.9', helo: 'client9.example.net', seenAs: 'client9.example.net[127.0.0.9]' };
// 127.0.0.10's PTR name does not resolve back to it: XCLIENT NAME=[UNAVAILABLE], Postfix says unknown.
const CLIENT10: Client = { address: '127.0.0.10', helo: 'second.example.net', seenAs: 'unknown[127.0.0.10]' };
const CLIENT12: Client = { address: '127.0.0.12', helo: 'nospf.example.org', seenAs: 'unknown[127.0.0.12]' };

/** A message each stored transaction must deliver: its subject, recipients and original client. */
interface Expected {
  subject: string;
  rcpts: string[];
  client: Client;
}

const escapeRe = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * What Postfix logged for the session that made queue file `queueId`: its `client=` value and the HELO of
 * its first accepted RCPT (logged before the queue file exists, as NOQUEUE, by the same smtpd process).
 */
function sessionOf(log: string, queueId: string): { client: string; helo: string } | null {
  const lines = log.split('\n');
  const at = lines.findIndex((line) => line.includes(`: ${queueId}: client=`));
  const match = /(smtpd\[\d+\]): [0-9A-F]+: client=(\S+)$/.exec(lines[at] ?? '');
  if (!match) return null;
  const [, smtpd, client] = match;
  const permit = lines
    .slice(0, at)
    .reverse()
    .find((line) => line.includes(`${smtpd}: `) && line.includes(': permit: RCPT from '));
  const helo = / helo=<([^>]*)>$/.exec(permit ?? '')?.[1];
  return helo === undefined ? null : { client: client as string, helo };
}

describe.runIf(runnable)('backup MX outage drill against a real Postfix', () => {
  let postfix: PostfixInstance;
  let filters = '';

  beforeAll(async () => {
    filters = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-drill-filters-'));
    chmodSync(filters, 0o755); // Postfix's cleanup (user postfix) reads the table
    writeFileSync(path.join(filters, 'header_checks'), `/^Subject: ${REFUSED_SUBJECT}$/ REJECT 5.7.1 Refused by the content filter\n`, { mode: 0o644 });
    postfix = await startPostfix({
      listenHost: LOOPBACK.backend,
      port: 0,
      domains: ['demo.test'],
      // carol exists at the backend, but haraka-in has never seen her accepted.
      users: ['alice', 'bob', 'carol'],
      xclientHosts: [LOOPBACK.wireguard],
      extraMainCf: {
        header_checks: `regexp:${path.join(filters, 'header_checks')}`,
        // An accepted RCPT is logged with the client's HELO (`helo=<...>`), as a refused one always is.
        smtpd_recipient_restrictions: 'reject_unlisted_recipient, permit',
        smtpd_log_access_permit_actions: 'static:all',
      },
    });
  });
  afterAll(async () => {
    await postfix?.stop();
    if (filters) rmSync(filters, { recursive: true, force: true });
  });

  const withDrillTopology = <T>(body: (t: Topology) => Promise<T>) =>
    withTopology(
      {
        instances: ['haraka-in', 'haraka-out'],
        backend: false,
        // The sender's domain (example.net) has its MX here: a bounce from the proxy would land in it.
        tweak: (config) => {
          config.backend = { ...config.backend, port: postfix.port };
          config.inbound = { ...config.inbound, store_and_forward: { enabled: true, probe_interval: PROBE_INTERVAL_S } };
        },
      },
      body,
    );

  it('stores for known users while Postfix is down, survives kill -9, delivers each message once as its original client, and holds the refused one', async () => {
    await withDrillTopology(async (t) => {
      const store = storePathsFor(t.config);
      const metas = (area: string) => {
        const dir = path.join(store.spool, area);
        return existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.json')) : [];
      };
      const harakaOutput = () => t.haraka['haraka-in']?.output() ?? '';
      const send = async (client: Client, rcpts: string[], subject: string, from?: string) => {
        const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: client.address, helo: client.helo });
        try {
          return await sendVia(session, rcpts, subject, from);
        } finally {
          session.close();
        }
      };

      // 1. Live: the cache learns alice and bob (250) and nobody (550 5.1.1) from Postfix's own replies.
      const live = await send(CLIENT9, ['alice@demo.test', 'bob@demo.test', 'nobody@demo.test'], 'drill live');
      expect(live.replies.map((reply) => reply.code)).toEqual([250, 250, 550]);
      expect(live.final?.code).toBe(250);
      await postfix.waitForDelivered(2);
      // The cache reaches the disk (its saves are spaced by seconds), so it is there after the kill below.
      await eventually(
        'the recipient cache saved with all three verdicts',
        () => {
          const text = existsSync(store.recipients) ? readFileSync(store.recipients, 'utf8') : '';
          return ['alice@demo.test', 'bob@demo.test', 'nobody@demo.test'].every((address) => text.includes(`"${address}"`));
        },
        { timeoutMs: 15_000 },
      );

      // 2. The backend goes down.
      await postfix.halt();

      // 3. Known users: 250 and stored. An unknown one: 450 4.4.1. A refused one: 550 5.1.1.
      const expected: Expected[] = [];
      const kept = await send(CLIENT9, ['alice@demo.test', 'bob@demo.test'], 'drill kept 1');
      expect(kept.replies.map((reply) => reply.code)).toEqual([250, 250]);
      expect(kept.final?.code).toBe(250);
      expect(kept.final?.text).toContain('Kept for the mail server');
      expected.push({ subject: 'drill kept 1', rcpts: ['alice@demo.test', 'bob@demo.test'], client: CLIENT9 });

      const unknown = await send(CLIENT9, ['carol@demo.test'], 'drill unknown');
      expect(unknown.replies[0]?.code).toBe(450);
      expect(unknown.replies[0]?.text).toContain('4.4.1');
      expect(unknown.final).toBeNull();
      const refused = await send(CLIENT9, ['nobody@demo.test'], 'drill refused');
      expect(refused.replies[0]?.code).toBe(550);
      expect(refused.replies[0]?.text).toContain('5.1.1');

      // A transaction with a known and an unknown user: stored for the known one only.
      const mixed = await send(CLIENT10, ['alice@demo.test', 'carol@demo.test'], 'drill kept 2');
      expect(mixed.replies.map((reply) => reply.code)).toEqual([250, 450]);
      expect(mixed.final?.code).toBe(250);
      expected.push({ subject: 'drill kept 2', rcpts: ['alice@demo.test'], client: CLIENT10 });

      // From a sender whose domain publishes no SPF (SPF none): Postfix will refuse it with 5xx.
      const doomed = await send(CLIENT12, ['bob@demo.test'], REFUSED_SUBJECT, 'forged@example.net');
      expect(doomed.final?.code).toBe(250);
      expect(metas('ready')).toHaveLength(3);

      // 4. kill -9 while mail is stored, and start again (the backend still down).
      await t.restart('haraka-in', 'SIGKILL');
      expect(metas('ready')).toHaveLength(3);
      // The cache came back from disk: bob is still known, carol still not.
      const afterRestart = await send(CLIENT9, ['bob@demo.test', 'carol@demo.test'], 'drill kept 3');
      expect(afterRestart.replies.map((reply) => reply.code)).toEqual([250, 450]);
      expect(afterRestart.final?.code).toBe(250);
      expected.push({ subject: 'drill kept 3', rcpts: ['bob@demo.test'], client: CLIENT9 });
      expect(metas('ready')).toHaveLength(4);
      expect((await postfix.delivered()).length).toBe(2);

      // 5. The backend comes back: every stored message arrives once, within a minute.
      const backAt = Date.now();
      await postfix.resume();
      const wanted = expected.reduce((sum, message) => sum + message.rcpts.length, 0);
      await eventually(
        `${wanted} stored deliveries in Postfix's mailboxes, the refused message held`,
        async () => {
          const delivered = (await postfix.delivered()).filter((m) => /^Subject: drill kept/m.test(m.content));
          return delivered.length >= wanted && metas('ready').length === 0 && metas('held').length === 1;
        },
        { timeoutMs: 60_000, context: () => `spool ready=${metas('ready').length} held=${metas('held').length}\n${harakaOutput().slice(-3000)}` },
      );
      const drainedIn = Date.now() - backAt;
      // One more probe interval and then some: nothing arrives twice.
      await new Promise((resolve) => setTimeout(resolve, (PROBE_INTERVAL_S + 2) * 1000));
      const delivered = await postfix.delivered();
      const log = await postfix.log();
      for (const message of expected) {
        const copies = delivered.filter((m) => m.content.includes(`\nSubject: ${message.subject}\n`));
        expect(copies.map((m) => m.recipient).sort(), message.subject).toEqual([...message.rcpts].sort());
        for (const copy of copies) {
          // Postfix's queue id for the copy, and its smtpd's `client=` and `helo=<...>` for that session.
          const queueId = /by backend\.test \(Postfix\) with ESMTP id ([0-9A-F]+)/.exec(copy.content)?.[1];
          expect(queueId, message.subject).toBeDefined();
          expect(sessionOf(log, queueId as string), message.subject).toEqual({ client: message.client.seenAs, helo: message.client.helo });
          expect(copy.content).toMatch(new RegExp(`^Received: from ${escapeRe(message.client.helo)} \\([^\\n]*\\[${escapeRe(message.client.address)}\\]\\)`, 'm'));
        }
      }
      expect(delivered.filter((m) => /^Subject: drill (unknown|refused)$/m.test(m.content))).toEqual([]);

      // 6. The refused message: held with Postfix's reply, never delivered, never bounced.
      const [heldFile] = metas('held');
      const held = parseMeta(readFileSync(path.join(store.spool, 'held', heldFile as string), 'utf8'));
      expect(held?.envelope.mailFrom).toBe('forged@example.net');
      expect(held?.client).toMatchObject({ address: CLIENT12.address, helo: CLIENT12.helo });
      expect(held?.held?.reason).toMatch(/^refused by the backend: 5\d\d 5\.7\.1 /);
      expect(log).toMatch(
        new RegExp(
          `reject: header Subject: ${REFUSED_SUBJECT} from ${escapeRe(CLIENT12.seenAs)}; from=<forged@example\\.net> to=<bob@demo\\.test> proto=ESMTP helo=<${escapeRe(CLIENT12.helo)}>: 5\\.7\\.1 `,
        ),
      );
      expect(delivered.filter((m) => m.content.includes(REFUSED_SUBJECT))).toEqual([]);
      expect(harakaOutput()).toMatch(/mailproxy-decision .*action=hold ip=127\.0\.0\.12 check=store_and_forward/);
      // No DSN: not from the proxy (example.net's MX got nothing), not from Postfix (it refused in the session).
      expect(t.internet?.messages ?? []).toEqual([]);
      expect(log).not.toMatch(/sender non-delivery notification|from=<>/);

      console.info(
        `outage drill: ${expected.length} stored messages (${wanted} deliveries) drained ${(drainedIn / 1000).toFixed(1)} s after Postfix came back ` +
          `(probe_interval ${PROBE_INTERVAL_S} s); 1 held (${held?.held?.reason})`,
      );
      expect(drainedIn).toBeLessThan(60_000);
    });
  }, 150_000);
});

// mailproxy-edge in a real haraka-in on loopback: DNSBL/DNSWL scoring against a DNS lists server the test starts,
// early talkers, HELO sanity, the allow list, log-only mode, and one decision line per decision.
//
// Edge checks skip private clients (Haraka flags all of 127/8 as local and private), so these tests put a
// test-only plugin first in haraka-in (through the topology's file transform) that clears those flags:
// loopback clients then go through every check exactly as public ones do. It is the cheapest of the three
// ways the issue names: an IPv6 2001:db8:: address on lo changes the host and needs root, and a network
// namespace needs root, a veth pair and haraka-in reachable inside it. What it skips — Haraka's own
// is_private classification — the edge plugin only reads (`remote.is_private`).
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema';
import { dataPayload, message, SmtpScript } from '../../src/smtp/script';
import { aggregate, readDecisions } from '../../src/stats/aggregate';
import { parseDecisionLine } from '../../src/plugins/decision-log';
import { eventually } from '../helpers/poll';
import { useTopology } from '../helpers/topology';

/** Test-only Haraka plugin: every client counts as public; 127.0.0.23's banner is held 300 ms, the window in
 * which its early bytes arrive (with no pause configured, only bytes that beat the banner count). */
const PUBLIC_CLIENTS_PLUGIN = `
exports.register = function () { this.register_hook('connect_init', 'make_public') }
exports.make_public = function (next, connection) {
  connection.remote.is_private = false
  connection.remote.is_local = false
  if (connection.remote.ip === '127.0.0.23') return setTimeout(() => next(), 300)
  next()
}
`;

/** The DNS lists' server: A records for the listed names, NXDOMAIN for the rest, and no answer at all under
 * slow.test (a list that never answers in time). mailproxy-edge alone is pointed at it. */
interface ListServer {
  address: string;
  lists: Record<string, string[]>;
  queries: string[];
  close(): Promise<void>;
}

async function startListServer(lists: Record<string, string[]>): Promise<ListServer> {
  const socket = dgram.createSocket('udp4');
  const server: ListServer = { address: '', lists, queries: [], close: () => new Promise((resolve) => socket.close(() => resolve())) };
  socket.on('message', (message, remote) => {
    const query = dnsPacket.decode(message);
    const question = query.questions?.[0];
    if (!question) return;
    server.queries.push(question.name);
    if (question.name.endsWith('.slow.test')) return;
    const records = question.type === 'A' ? (server.lists[question.name] ?? []) : [];
    const answers = records.map((data) => ({ name: question.name, type: 'A' as const, ttl: 60, class: 'IN' as const, data }));
    const response = dnsPacket.encode({ id: query.id, type: 'response', flags: answers.length ? 0 : 3, questions: [question], answers });
    socket.send(response, remote.port, remote.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  server.address = `127.0.0.1:${socket.address().port}`;
  return server;
}

/** Starts the lists' server before the topology renders (register this before useTopology). */
function useListServer(lists: Record<string, string[]>): () => ListServer {
  let server: ListServer | null = null;
  beforeAll(async () => {
    server = await startListServer(lists);
  });
  afterAll(async () => server?.close());
  return () => {
    if (!server) throw new Error('list server not started');
    return server;
  };
}

function withPublicClients(files: Map<string, string>, listServer?: string): void {
  const plugins = files.get('haraka-in/config/plugins') ?? '';
  files.set('haraka-in/config/plugins', plugins.replace('mailproxy-dns\n', 'test_public_clients\nmailproxy-dns\n'));
  files.set('haraka-in/plugins/test_public_clients.js', PUBLIC_CLIENTS_PLUGIN);
  const edge = files.get('haraka-in/config/mailproxy-edge.ini');
  if (listServer && edge) files.set('haraka-in/config/mailproxy-edge.ini', edge.replace(/^dns_servers=.*$/m, `dns_servers=${listServer}`));
}

const LISTS = {
  // 127.0.0.20: on the block list (weight 2, the threshold).
  '20.0.0.127.bl.test': ['127.0.0.2'],
  // 127.0.0.21: on the block list and the allow list (weight 3): passes.
  '21.0.0.127.bl.test': ['127.0.0.2'],
  '21.0.0.127.wl.test': ['127.0.10.2'],
  // 127.0.0.22: only on the weak list (weight 1, under the threshold).
  '22.0.0.127.soft.test': ['127.0.0.3'],
  // 127.0.0.26: on the block list, with the code that means "query refused": not a listing.
  '26.0.0.127.bl.test': ['127.255.255.254'],
  // 127.0.0.60: listed, but on the allow list of the config: never asked.
  '60.0.0.127.bl.test': ['127.0.0.2'],
};

function edgeConfig(edge: NonNullable<ConfigInput['edge']>): (config: ConfigInput) => void {
  return (config) => void (config.edge = edge);
}

function decisions(output: string, ip?: string) {
  return output
    .split('\n')
    .map(parseDecisionLine)
    .filter((decision) => decision !== null && (ip === undefined || decision.ip === ip));
}

async function connect(host: string, port: number, from: string): Promise<{ session: SmtpScript; bannerMs: number; banner: number }> {
  const started = Date.now();
  const session = await SmtpScript.connect(host, port, from);
  const banner = await session.reply();
  return { session, bannerMs: Date.now() - started, banner: banner.code };
}

async function sendOne(session: SmtpScript): Promise<void> {
  expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
  expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
  expect((await session.command('DATA')).code).toBe(354);
  session.write(dataPayload(message('edge', 'through the edge')));
  expect((await session.reply()).code).toBe(250);
  await session.command('QUIT');
}

describe('edge checks in refuse mode', () => {
  const lists = useListServer(LISTS);
  const topology = useTopology({
    instances: ['haraka-in'],
    internet: false,
    transformFiles: (files) => withPublicClients(files, lists().address),
    tweak: edgeConfig({
      allow: ['127.0.0.60/32'],
      lookup_timeout: 0.9,
      early_talker: { mode: 'refuse' },
      helo: { mode: 'refuse' },
      dnsbl: {
        mode: 'refuse',
        threshold: 2,
        zones: [
          { zone: 'bl.test', weight: 2 },
          { zone: 'soft.test', weight: 1 },
          { zone: 'slow.test', weight: 2 },
        ],
        dnswl_zones: [{ zone: 'wl.test', weight: 3 }],
      },
    }),
  });
  const output = () => topology().haraka['haraka-in']!.output();

  // slow.test never answers: every client's lookup there runs into lookup_timeout.
  const ready = () => topology();

  it('refuses a listed client at EHLO with 554 5.7.1, without delaying its banner, and logs it once', async () => {
    const t = ready();
    const { session, banner, bannerMs } = await connect(t.inbound.host, t.inbound.port, '127.0.0.20');
    expect(banner).toBe(220);
    // The lists are asked when the client connects; the banner never waits for them (slow.test takes the
    // whole lookup_timeout, 0.9 s).
    expect(bannerMs).toBeLessThan(850);
    const started = Date.now();
    const refused = await session.command('EHLO client.example.net');
    expect(refused.code).toBe(554);
    expect(refused.text).toMatch(/^5\.7\.1 Service unavailable; client \[127\.0\.0\.20\] blocked using bl\.test/);
    // bl.test answered at once, slow.test ran into the lookup timeout.
    expect(Date.now() - started).toBeLessThan(2_500);
    await eventually('the connection closed', () => session.isClosed);
    const lines = await eventually('the decision line', () => decisions(output(), '127.0.0.20').length > 0 && decisions(output(), '127.0.0.20'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ action: 'refuse', check: 'dnsbl', reason: 'bl.test', code: 554, fields: { score: '2' } });
    expect(output()).toMatch(
      /\[NOTICE\] \[[0-9A-F-]+\] \[mailproxy-edge\] mailproxy-decision time=\S+ action=refuse ip=127\.0\.0\.20 check=dnsbl reason=bl\.test code=554 score=2\n/,
    );
    expect(output()).toMatch(/DNS list slow\.test not answered for 127\.0\.0\.20: timeout/);
  });

  it('passes a client that a DNSWL also lists, and one scored under the threshold; each session logged once as accepted', async () => {
    const t = ready();
    for (const ip of ['127.0.0.21', '127.0.0.22']) {
      const { session, banner } = await connect(t.inbound.host, t.inbound.port, ip);
      expect(banner).toBe(220);
      expect((await session.command('EHLO client.example.net')).code).toBe(250);
      await sendOne(session);
      const lines = await eventually(`the accept line of ${ip}`, () => decisions(output(), ip).length > 0 && decisions(output(), ip));
      expect(lines.map((line) => [line.action, line.fields.msgs])).toEqual([['accept', '1']]);
    }
    expect(t.backend!.messages.length).toBeGreaterThanOrEqual(2);
  });

  it('does not count a "query refused" answer as a listing', async () => {
    const t = ready();
    const { session } = await connect(t.inbound.host, t.inbound.port, '127.0.0.26');
    expect((await session.command('EHLO client.example.net')).code).toBe(250);
    session.close();
    // The log is another pipe than the session: its lines may arrive here a moment after the replies.
    const warning = /DNS list bl\.test not answered for 127\.0\.0\.26: refused \(127\.255\.255\.254\)/;
    await eventually('the warning logged', () => warning.test(output()));
    expect(output()).toMatch(warning);
  });

  it('never asks the lists about a client on the allow list', async () => {
    const t = ready();
    const { session } = await connect(t.inbound.host, t.inbound.port, '127.0.0.60');
    expect((await session.command('EHLO client.example.net')).code).toBe(250);
    await sendOne(session);
    expect(lists().queries.filter((name) => name.startsWith('60.0.0.127.'))).toEqual([]);
  });

  it('refuses an early talker (bytes before the banner) at its first command with 554 5.5.1, with no pause configured', async () => {
    const t = ready();
    const session = await SmtpScript.connect(t.inbound.host, t.inbound.port, '127.0.0.23');
    session.write('EHLO hasty.example.net\r\n');
    expect((await session.reply()).code).toBe(220);
    const refused = await session.reply();
    expect(refused.code).toBe(554);
    expect(refused.text).toMatch(/^5\.5\.1 /);
    await eventually('the connection closed', () => session.isClosed);
    const lines = await eventually('the decision line', () => decisions(output(), '127.0.0.23').length > 0 && decisions(output(), '127.0.0.23'));
    expect(lines.map((line) => [line.action, line.check, line.reason, line.code])).toEqual([['refuse', 'early_talker', 'pregreet', 554]]);
  });

  it('refuses a HELO that claims to be this server (550 5.7.1) and a bare address (501 5.5.2)', async () => {
    const t = ready();
    const forged = await connect(t.inbound.host, t.inbound.port, '127.0.0.24');
    const claim = await forged.session.command('EHLO mx.demo.test');
    expect([claim.code, claim.text.slice(0, 5)]).toEqual([550, '5.7.1']);
    const bare = await connect(t.inbound.host, t.inbound.port, '127.0.0.25');
    const literal = await bare.session.command('HELO 198.51.100.7');
    expect([literal.code, literal.text.slice(0, 5)]).toEqual([501, '5.5.2']);
    await eventually('both connections closed', () => forged.session.isClosed && bare.session.isClosed);
    await eventually('the decision lines', () => decisions(output(), '127.0.0.25').length > 0);
    expect(decisions(output(), '127.0.0.24').map((line) => [line.action, line.check, line.reason, line.code])).toEqual([['refuse', 'helo', 'forged', 550]]);
    expect(decisions(output(), '127.0.0.25').map((line) => [line.action, line.check, line.reason, line.code])).toEqual([['refuse', 'helo', 'bare_ip', 501]]);
  });

  it('`stats` counts what this haraka-in logged', () => {
    // Without the topology's own banner probe from 127.0.0.1.
    const summary = aggregate(readDecisions(output()).filter((decision) => decision.ip !== '127.0.0.1'));
    expect(summary.refused.byCheck).toEqual({ dnsbl: 1, early_talker: 1, helo: 2 });
    expect(summary.refused.total).toBe(4);
    // 127.0.0.21, .22, .26 and .60 passed (the last two sessions sent no message or one).
    expect(summary.accepted.sessions).toBe(4);
    expect(summary.accepted.messages).toBe(3);
  });
});

describe('edge checks in refuse mode, at every greeting', () => {
  const lists = useListServer(LISTS);
  const topology = useTopology({
    instances: ['haraka-in'],
    internet: false,
    transformFiles: (files) => withPublicClients(files, lists().address),
    tweak: edgeConfig({ lookup_timeout: 0.9, helo: { mode: 'refuse' } }),
  });

  it('refuses a forged HELO that follows a clean one', async () => {
    const t = topology();
    const { session } = await connect(t.inbound.host, t.inbound.port, '127.0.0.27');
    expect((await session.command('EHLO client27.example.net')).code).toBe(250);
    const again = await session.command('EHLO mx.demo.test');
    expect([again.code, again.text.slice(0, 5)]).toEqual([550, '5.7.1']);
    await eventually('the connection closed', () => session.isClosed);
    await eventually('the decision line', () => decisions(t.haraka['haraka-in']!.output(), '127.0.0.27').some((line) => line.action === 'refuse'));
    expect(decisions(t.haraka['haraka-in']!.output(), '127.0.0.27').map((line) => [line.action, line.check, line.reason, line.code])).toEqual([['refuse', 'helo', 'forged', 550]]);
  });
});

describe('edge checks with a banner pause, and in log mode', () => {
  const lists = useListServer({ '31.0.0.127.bl.test': ['127.0.0.2'] });
  const topology = useTopology({
    instances: ['haraka-in'],
    internet: false,
    transformFiles: (files) => withPublicClients(files, lists().address),
    tweak: edgeConfig({
      early_talker: { mode: 'refuse', pause: 1 },
      helo: { mode: 'log' },
      dnsbl: { mode: 'log', zones: [{ zone: 'bl.test', weight: 1 }] },
    }),
  });
  const output = () => topology().haraka['haraka-in']!.output();

  it('answers an early talker with 554 in place of the banner', async () => {
    const t = topology();
    const session = await SmtpScript.connect(t.inbound.host, t.inbound.port, '127.0.0.30');
    session.write('EHLO hasty.example.net\r\n');
    const refused = await session.reply();
    expect([refused.code, refused.text.slice(0, 5)]).toEqual([554, '5.5.1']);
    await eventually('the connection closed', () => session.isClosed);
    await eventually('the decision line', () => decisions(output(), '127.0.0.30').length > 0);
    expect(decisions(output(), '127.0.0.30').map((line) => [line.action, line.check, line.code])).toEqual([['refuse', 'early_talker', 554]]);
  });

  it('greets a patient client after the pause, and only logs its listing and forged HELO', async () => {
    const t = topology();
    const { session, banner, bannerMs } = await connect(t.inbound.host, t.inbound.port, '127.0.0.31');
    expect(banner).toBe(220);
    expect(bannerMs).toBeGreaterThanOrEqual(950);
    expect((await session.command('EHLO demo.test')).code).toBe(250);
    await sendOne(session);
    await eventually('the accept line', () => decisions(output(), '127.0.0.31').some((line) => line.action === 'accept'));
    expect(decisions(output(), '127.0.0.31').map((line) => [line.action, line.check, line.reason])).toEqual([
      ['log', 'helo', 'forged'],
      ['log', 'dnsbl', 'bl.test'],
      ['accept', null, null],
    ]);
  });
});

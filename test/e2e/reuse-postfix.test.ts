// backend.reuse_sessions against a real Postfix: with every client identity authorized for XCLIENT
// (smtpd_authorized_xclient_hosts=static:all, what `mailproxy notes` prints), successive client sessions
// share one backend connection and Postfix logs each message under its own client (`client=NAME[ADDR]`);
// with only the VPS authorized (the documented setup), Postfix withdraws XCLIENT after the first one, so
// haraka-in keeps nothing and every client still gets its mail through, on a connection of its own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { postfixUnavailableReason, startPostfix, type PostfixInstance } from '../fixtures/postfix';
import { eventually } from '../helpers/poll';
import { missingPeers, requirePeers } from '../helpers/peers';
import { withTopology } from '../helpers/topology';

const runnable = requirePeers('backend session reuse against real Postfix', missingPeers(['/usr/sbin/postfix'], [postfixUnavailableReason()]));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function withReuse<T>(postfix: PostfixInstance, body: (t: Topology) => Promise<T>): Promise<T> {
  return withTopology(
    {
      instances: ['haraka-in'],
      backend: false,
      internet: false,
      tweak: (config) => void (config.backend = { ...config.backend, port: postfix.port, reuse_sessions: true }),
    },
    body,
  );
}

interface Client {
  address: string;
  helo: string;
  subject: string;
  verb?: 'HELO';
}

const CLIENTS: Client[] = [
  { address: '127.0.0.9', helo: 'first.example.net', subject: 'reuse from 9' },
  { address: '127.0.0.10', helo: 'second.example.net', subject: 'reuse from 10' },
  { address: '127.0.0.11', helo: 'third.example.net', subject: 'reuse from 11' },
];

/** Clients that say HELO, as smtp-source and many bulk senders do: their HELO reply advertises nothing. */
const HELO_CLIENTS: Client[] = [
  { address: '127.0.0.12', helo: 'fourth.example.net', subject: 'reuse from 12', verb: 'HELO' },
  { address: '127.0.0.13', helo: 'fifth.example.net', subject: 'reuse from 13', verb: 'HELO' },
  { address: '127.0.0.14', helo: 'sixth.example.net', subject: 'reuse from 14', verb: 'HELO' },
];

/** One client session (EHLO or HELO, one message to alice, QUIT); the end-of-data code. */
async function deliverAs(t: Topology, client: Client): Promise<number> {
  const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: client.address, helo: client.helo, ...(client.verb ? { verb: client.verb } : {}) });
  try {
    expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    session.write(dataPayload(message(client.subject, 'body')));
    const final = (await session.reply(30_000)).code;
    await session.command('QUIT');
    return final;
  } finally {
    session.close();
    // haraka-in's disconnect hook keeps the backend session for the next client.
    await sleep(300);
  }
}

/** Postfix's smtpd process id and `client=` of the message with this subject. */
async function deliveredUnder(postfix: PostfixInstance, subject: string): Promise<{ pid: string; client: string; received: string }> {
  const delivered = await eventually(`Postfix to deliver "${subject}"`, async () => (await postfix.delivered()).find((m) => m.content.includes(`Subject: ${subject}\n`)), {
    context: () => '',
  });
  const queueId = /with E?SMTP id ([0-9A-F]+)/.exec(delivered.content)?.[1] ?? 'none';
  const line = await postfix.waitForLog(new RegExp(`smtpd\\[(\\d+)\\]: ${queueId}: client=(\\S*)$`));
  const received = /^Received: (from [^\n]*\n(?:[ \t][^\n]*\n)*)/m.exec(delivered.content)?.[1]?.replace(/\n[ \t]+/g, ' ') ?? '';
  return { pid: line[1] ?? '', client: line[2] ?? '', received };
}

/** Connections Postfix accepted from haraka-in (the WireGuard address). */
async function forwarderConnections(postfix: PostfixInstance): Promise<number> {
  return (await postfix.log()).split('\n').filter((line) => /: connect from [^\s[]*\[127\.0\.0\.3\]/.test(line)).length;
}

describe.runIf(runnable)('backend sessions reused against a Postfix that authorizes every identity (static:all)', () => {
  let postfix: PostfixInstance;
  beforeAll(async () => {
    postfix = await startPostfix({ listenHost: LOOPBACK.backend, port: 0, domains: ['demo.test'], users: ['alice'], xclientHosts: ['static:all'] });
  });
  afterAll(async () => {
    await postfix?.stop();
  });

  // smtp-source and many bulk senders say HELO, whose reply advertises nothing: the first such session asks
  // with an EHLO after its client left, and is kept when XCLIENT is offered again.
  it.each([
    ['EHLO', CLIENTS, 'ESMTP'],
    ['HELO', HELO_CLIENTS, 'SMTP'],
  ])(
    'three clients that say %s, one backend connection: each message under its own client, HELO and protocol',
    async (_verb, clients, protocol) => {
      await withReuse(postfix, async (t) => {
        const before = await forwarderConnections(postfix);
        for (const client of clients) expect(await deliverAs(t, client)).toBe(250);
        const seen = [];
        for (const client of clients) {
          const under = await deliveredUnder(postfix, client.subject);
          const address = client.address.replace(/\./g, '\\.');
          expect(under.client).toMatch(new RegExp(`\\[${address}\\]$`));
          expect(under.received).toMatch(new RegExp(`^from ${client.helo.replace(/\./g, '\\.')} \\([^)]*\\[${address}\\]\\).* with ${protocol} `));
          seen.push(under.pid);
        }
        // One smtpd process, one connection from haraka-in, carried all three.
        expect(new Set(seen).size).toBe(1);
        expect((await forwarderConnections(postfix)) - before).toBe(1);
      });
    },
    90_000,
  );
});

describe.runIf(runnable)('reuse on against a Postfix that authorizes only the VPS (the documented setup)', () => {
  let postfix: PostfixInstance;
  beforeAll(async () => {
    postfix = await startPostfix({ listenHost: LOOPBACK.backend, port: 0, domains: ['demo.test'], users: ['alice'], xclientHosts: [LOOPBACK.wireguard] });
  });
  afterAll(async () => {
    await postfix?.stop();
  });

  it('every client gets 250 and its message is logged under its own client, one backend connection each', async () => {
    await withReuse(postfix, async (t) => {
      const before = await forwarderConnections(postfix);
      for (const client of CLIENTS.slice(0, 2)) expect(await deliverAs(t, client)).toBe(250);
      for (const client of CLIENTS.slice(0, 2)) {
        const under = await deliveredUnder(postfix, client.subject);
        expect(under.client).toMatch(new RegExp(`\\[${client.address.replace(/\./g, '\\.')}\\]$`));
      }
      expect((await forwarderConnections(postfix)) - before).toBe(2);
      // No session was kept and then refused: Postfix logs no XCLIENT that a client left after (its 550
      // text does not reach the log), and haraka-in never had to connect afresh behind a kept session.
      expect(await postfix.log()).not.toMatch(/lost connection after XCLIENT/);
      expect(t.haraka['haraka-in']!.output()).not.toMatch(/kept backend session not usable/);
    });
  }, 90_000);

  it('clients that say HELO: the EHLO asking shows no XCLIENT, so every client has a connection of its own and 250', async () => {
    await withReuse(postfix, async (t) => {
      const before = await forwarderConnections(postfix);
      for (const client of HELO_CLIENTS) expect(await deliverAs(t, client)).toBe(250);
      for (const client of HELO_CLIENTS) {
        const under = await deliveredUnder(postfix, client.subject);
        expect(under.client).toMatch(new RegExp(`\\[${client.address.replace(/\./g, '\\.')}\\]$`));
      }
      expect((await forwarderConnections(postfix)) - before).toBe(HELO_CLIENTS.length);
      // No session was kept and then refused: Postfix logs no XCLIENT that a client left after (its 550
      // text does not reach the log), and haraka-in never had to connect afresh behind a kept session.
      expect(await postfix.log()).not.toMatch(/lost connection after XCLIENT/);
      expect(t.haraka['haraka-in']!.output()).not.toMatch(/kept backend session not usable/);
    });
  }, 90_000);
});

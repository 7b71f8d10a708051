// haraka-in's forwarder against a real Postfix backend (the Mailcow stand-in): what XCLIENT delivers is
// read from Postfix's own log (`client=NAME[IP]`) and from the message it delivered.
import { execFile } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { LOOPBACK } from '../../src/demo/topology';
import type { Topology } from '../../src/demo/topology';
import { freePort } from '../helpers/ports';
import { missingPeers, requirePeers } from '../helpers/peers';
import { postfixUnavailableReason, startPostfix } from '../fixtures/postfix';
import { harakaInFront, usePostfixBackend } from '../helpers/postfix-backend';
import { withTopology } from '../helpers/topology';
import { openSession } from '../../src/smtp/script';
import { foreignRelayTricks } from '../../src/relay-tricks';

const SWAKS = '/usr/bin/swaks';
const runnable = requirePeers('haraka-in against real Postfix', missingPeers([SWAKS, '/usr/sbin/postfix'], [postfixUnavailableReason()]));

interface Swaks {
  code: number;
  output: string;
}

function swaks(server: string, port: number, args: string[]): Promise<Swaks> {
  return new Promise((resolve) => {
    execFile(
      SWAKS,
      ['--server', server, '--port', String(port), '--timeout', '20', '--from', 'sender@example.net', ...args],
      { encoding: 'utf8', timeout: 40_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: `${stdout}${stderr}` });
      },
    );
  });
}

/** Every reply code swaks received for the given command, e.g. replyCodes(out, 'RCPT TO'). */
function replyAfter(output: string, command: RegExp): string[] {
  const lines = output.split('\n');
  const replies: string[] = [];
  lines.forEach((line, index) => {
    if (command.test(line)) {
      const reply = lines.slice(index + 1).find((candidate) => /^(<-|<\*\*) +\d{3}[ -]/.test(candidate.trim()) || /^\s*(<-|<\*\*)/.test(candidate));
      if (reply) replies.push(reply.trim());
    }
  });
  return replies;
}

describe.runIf(runnable)('haraka-in forwarding to a real Postfix', () => {
  const postfix = usePostfixBackend({
    users: ['alice', 'bob'],
    // The full SMTP dialog with the forwarder goes to the log, so tests can read the XCLIENT line itself.
    // inet_protocols=all: a Postfix without IPv6 refuses IPv6 XCLIENT addresses as bad syntax.
    extraMainCf: { debug_peer_list: LOOPBACK.wireguard, debug_peer_level: '2', inet_protocols: 'all' },
  });
  let inboundV6Port = 0;

  beforeAll(async () => {
    inboundV6Port = await freePort('::1');
  });

  async function withHarakaIn<T>(body: (t: Topology) => Promise<T>, port = () => postfix().port): Promise<T> {
    return withTopology(
      harakaInFront(port, (config) => {
        config.inbound = { ...config.inbound, listen: [...(config.inbound?.listen ?? []), `[::1]:${inboundV6Port}`] };
      }),
      body,
    );
  }

  it('passes the client from 127.0.0.9 with its forward-confirmed name and HELO', async () => {
    await withHarakaIn(async (t) => {
      const sent = await swaks(t.inbound.host, t.inbound.port, [
        '--local-interface',
        '127.0.0.9',
        '--ehlo',
        'client9.example.net',
        '--to',
        'alice@demo.test',
        '--header',
        'Subject: e2e ipv4',
      ]);
      expect(sent.code, sent.output).toBe(0);
      const match = await postfix().waitForLog(/smtpd\[\d+\]: ([0-9A-F]+): client=client9\.example\.net\[127\.0\.0\.9\]/);
      const [message] = (await postfix().waitForDelivered(1)).filter((m) => m.content.includes('Subject: e2e ipv4'));
      expect(message?.content).toMatch(
        new RegExp(`^Received: from client9\\.example\\.net \\(client9\\.example\\.net \\[127\\.0\\.0\\.9\\]\\)\\s+by backend\\.test \\(Postfix\\) with ESMTP id ${match[1]}`, 'm'),
      );
    });
  });

  it('sends XCLIENT straight after the banner once Postfix has advertised it, and Postfix takes it', async () => {
    await withHarakaIn(async (t) => {
      const logBefore = (await postfix().log()).length;
      for (const [address, helo] of [
        ['127.0.0.9', 'first.example.net'],
        ['127.0.0.10', 'second.example.net'],
      ] as const) {
        const sent = await swaks(t.inbound.host, t.inbound.port, ['--local-interface', address, '--ehlo', helo, '--to', 'alice@demo.test', '--header', `Subject: e2e ${helo}`]);
        expect(sent.code, sent.output).toBe(0);
      }
      const match = await postfix().waitForLog(/smtpd\[\d+\]: ([0-9A-F]+): client=[^\s[]+\[127\.0\.0\.10\]/);
      await postfix().waitForLog(new RegExp(`${match[1]}: to=<alice@demo\\.test>.*status=sent`));
      const dialog = (await postfix().log())
        .slice(logBefore)
        .split('\n')
        .filter((line) => line.includes(`< `) && line.includes(`[${LOOPBACK.wireguard}]: `));
      const commands = dialog.map((line) => line.replace(/^.*\]: /, '').split(' ')[0]);
      // The first session learns XCLIENT from EHLO; the second one sends it first.
      expect(commands.filter((command) => command === 'XCLIENT')).toHaveLength(2);
      expect(dialog.filter((line) => line.endsWith(`EHLO ${t.config.hostname}`))).toHaveLength(1);
      const delivered = (await postfix().delivered()).find((m) => m.content.includes('Subject: e2e second.example.net'));
      expect(delivered?.content).toMatch(/^Received: from second\.example\.net \([^\n]*\[127\.0\.0\.10\]\)/m);
    });
  });

  it('passes an IPv6 client (::1) with the IPV6: prefix Postfix requires', async () => {
    await withHarakaIn(async () => {
      const sent = await swaks('::1', inboundV6Port, ['--ehlo', 'v6client.example.net', '--to', 'bob@demo.test', '--header', 'Subject: e2e ipv6']);
      expect(sent.code, sent.output).toBe(0);
      const match = await postfix().waitForLog(/smtpd\[\d+\]: ([0-9A-F]+): client=[^\s[]+\[::1\]/);
      const log = await postfix().log();
      expect(log).toMatch(/XCLIENT [^\n]*ADDR=IPV6:::1/);
      await postfix().waitForLog(new RegExp(`${match[1]}: to=<bob@demo\\.test>.*status=sent`));
      const delivered = (await postfix().delivered()).find((m) => m.content.includes('Subject: e2e ipv6'));
      expect(delivered?.content).toMatch(/^Received: from v6client\.example\.net \([^\n]*\[IPv6:::1\]\)/m);
    });
  });

  it('gives a valid and an unknown recipient 250 and 550 in one transaction, and delivers only the valid one', async () => {
    await withHarakaIn(async (t) => {
      const sent = await swaks(t.inbound.host, t.inbound.port, ['--local-interface', '127.0.0.9', '--to', 'alice@demo.test,nobody@demo.test', '--header', 'Subject: e2e mixed']);
      expect(sent.code, sent.output).toBe(0);
      const rcptReplies = replyAfter(sent.output, /-> RCPT TO/);
      expect(rcptReplies[0]).toMatch(/^<- +250 /);
      expect(rcptReplies[1]).toMatch(/^<\*\* +550 5\.1\.1 <nobody@demo\.test>/);
      const delivered = (await postfix().delivered()).filter((m) => m.content.includes('Subject: e2e mixed'));
      await postfix().waitForLog(/to=<alice@demo\.test>.*status=sent/);
      const after = (await postfix().delivered()).filter((m) => m.content.includes('Subject: e2e mixed'));
      expect([...delivered, ...after].map((m) => m.recipient)).not.toContain('nobody@demo.test');
      expect(after.map((m) => m.recipient)).toEqual(['alice@demo.test']);
    });
  });

  it('sends a hostile HELO xtext-encoded inside XCLIENT, never as extra attributes', async () => {
    await withHarakaIn(async (t) => {
      const hostile = 'evil=ADDR+6.6.6.6';
      const sent = await swaks(t.inbound.host, t.inbound.port, [
        '--local-interface',
        '127.0.0.9',
        '--ehlo',
        hostile,
        '--to',
        'alice@demo.test',
        '--header',
        'Subject: e2e hostile helo',
      ]);
      expect(sent.code, sent.output).toBe(0);
      await postfix().waitForLog(/client=client9\.example\.net\[127\.0\.0\.9\]/);
      const xclientLines = (await postfix().log()).split('\n').filter((line) => /< [^:]*: XCLIENT /.test(line) && line.includes('evil'));
      expect(xclientLines.length).toBeGreaterThan(0);
      for (const line of xclientLines) {
        expect(line).toContain('HELO=evil+3DADDR+2B6.6.6.6');
        expect(line.match(/ ADDR=/g)).toHaveLength(1);
        expect(line).toMatch(/ ADDR=127\.0\.0\.9$/);
      }
    });
  });

  it('splits an XCLIENT that would be too long into several commands, ADDR last, and Postfix takes them', async () => {
    await withHarakaIn(async (t) => {
      // A client whose forward-confirmed name and HELO are both long (but within Postfix's 255).
      const longName = `${'n'.repeat(60)}.${'a'.repeat(60)}.${'m'.repeat(60)}.${'e'.repeat(40)}.example.net`;
      t.dns.zone.PTR = { ...t.dns.zone.PTR, '12.0.0.127.in-addr.arpa': [longName] };
      t.dns.zone.A = { ...t.dns.zone.A, [longName]: ['127.0.0.12'] };
      const longHelo = `${'h'.repeat(60)}.${'e'.repeat(60)}.${'l'.repeat(60)}.${'o'.repeat(50)}.example.net`;
      const sent = await swaks(t.inbound.host, t.inbound.port, [
        '--local-interface',
        '127.0.0.12',
        '--ehlo',
        longHelo,
        '--to',
        'alice@demo.test',
        '--header',
        'Subject: e2e split',
      ]);
      expect(sent.code, sent.output).toBe(0);
      await postfix().waitForLog(new RegExp(`client=${longName.replace(/\./g, '\\.')}\\[127\\.0\\.0\\.12\\]`));
      const xclientLines = (await postfix().log()).split('\n').filter((line) => /< [^:]*: XCLIENT /.test(line) && /nnnn|ADDR=127\.0\.0\.12/.test(line));
      expect(xclientLines).toHaveLength(2);
      expect(xclientLines[0]).not.toContain('ADDR=');
      expect(xclientLines[1]).toMatch(/ ADDR=127\.0\.0\.12$/);
    });
  });

  it('sends an over-long HELO as [UNAVAILABLE] instead of failing the delivery', async () => {
    await withHarakaIn(async (t) => {
      const tooLong = `${'h'.repeat(60)}.${'e'.repeat(60)}.${'l'.repeat(60)}.${'o'.repeat(60)}.${'x'.repeat(60)}.example.net`;
      const sent = await swaks(t.inbound.host, t.inbound.port, [
        '--local-interface',
        '127.0.0.9',
        '--ehlo',
        tooLong,
        '--to',
        'alice@demo.test',
        '--header',
        'Subject: e2e long helo',
      ]);
      expect(sent.code, sent.output).toBe(0);
      expect(await postfix().log()).toMatch(/XCLIENT NAME=client9\.example\.net HELO=\[UNAVAILABLE\]/);
    });
  });

  it('delivers for clients with unusual HELOs (UTF-8, a bad address literal, xtext specials)', async () => {
    await withHarakaIn(async (t) => {
      for (const [helo, subject] of [
        ['hé.example.net', 'utf8 helo'],
        ['[not-an-address]', 'bad literal helo'],
        ['a=b+c', 'xtext helo'],
      ]) {
        const sent = await swaks(t.inbound.host, t.inbound.port, [
          '--local-interface',
          '127.0.0.9',
          '--ehlo',
          helo as string,
          '--to',
          'alice@demo.test',
          '--header',
          `Subject: e2e ${subject}`,
        ]);
        expect(sent.code, `${helo}: ${sent.output}`).toBe(0);
      }
    });
  });

  it('is no open relay: address tricks get 5xx from haraka-in or from Postfix, and nothing is delivered', async () => {
    await withHarakaIn(async (t) => {
      const before = (await postfix().delivered()).length;
      const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9' });
      expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      for (const rcpt of foreignRelayTricks({ foreign: 'example.net', own: 'demo.test', ownHost: 'mx.demo.test', ipv4: '127.0.0.2', ipv6: '::1' })) {
        const reply = await session.command(`RCPT TO:<${rcpt}>`);
        expect(Math.floor(reply.code / 100), `RCPT TO:<${rcpt}>: ${reply.code} ${reply.text}`).toBe(5);
      }
      session.close();
      expect((await postfix().delivered()).length).toBe(before);
    });
  });

  it('answers 4xx when the backend does not offer XCLIENT, and delivers nothing', async () => {
    const noXclient = await startPostfix({
      listenHost: LOOPBACK.backend,
      port: 0,
      domains: ['demo.test'],
      users: ['alice'],
      xclientHosts: [LOOPBACK.wireguard],
      advertiseXclient: false,
    });
    try {
      await withHarakaIn(
        async (t) => {
          const sent = await swaks(t.inbound.host, t.inbound.port, ['--to', 'alice@demo.test']);
          expect(replyAfter(sent.output, /-> RCPT TO/)[0]).toMatch(/^<\*\* +451 4\.4\.1 /);
          expect(await noXclient.delivered()).toEqual([]);
        },
        () => noXclient.port,
      );
    } finally {
      await noXclient.stop();
    }
  });

  it('answers 4xx in under 2 s when the backend is down', async () => {
    const closedPort = await freePort(LOOPBACK.backend);
    await withHarakaIn(
      async (t) => {
        const started = Date.now();
        const sent = await swaks(t.inbound.host, t.inbound.port, ['--to', 'alice@demo.test']);
        const elapsed = Date.now() - started;
        console.info(`backend down: whole swaks session answered in ${elapsed} ms`);
        expect(replyAfter(sent.output, /-> RCPT TO/)[0]).toMatch(/^<\*\* +451 /);
        expect(elapsed).toBeLessThan(2000);
      },
      () => closedPort,
    );
  });
});

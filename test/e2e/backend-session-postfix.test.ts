// The backend session against a real Postfix: it follows the client's current identity, and a
// session Postfix closes while the client takes its time (under stress: smtpd_timeout 10 s, one junk
// command) is replayed, not kept alive with NOOPs that Postfix counts against the client.
import { describe, expect, it } from 'vitest';
import type { Topology } from '../../src/demo/topology';
import { dataPayload, message, openSession, SmtpScript } from '../../src/smtp/script';
import { postfixUnavailableReason, type PostfixInstance } from '../fixtures/postfix';
import { missingPeers, requirePeers } from '../helpers/peers';
import { harakaInFront, usePostfixBackend } from '../helpers/postfix-backend';
import { withTopology } from '../helpers/topology';

const runnable = requirePeers('backend sessions against real Postfix', missingPeers(['/usr/sbin/postfix'], [postfixUnavailableReason()]));

async function withHarakaIn<T>(postfix: PostfixInstance, body: (t: Topology) => Promise<T>): Promise<T> {
  return withTopology(
    harakaInFront(() => postfix.port),
    body,
  );
}

/** MAIL, RCPT alice, DATA and the message in an open session; the end-of-data reply. */
async function deliver(session: SmtpScript, subject: string, beforeData: () => Promise<void> = async () => undefined): Promise<number> {
  expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
  expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
  await beforeData();
  expect((await session.command('DATA')).code).toBe(354);
  session.write(dataPayload(message(subject, 'body')));
  return (await session.reply(30_000)).code;
}

async function deliveredWith(postfix: PostfixInstance, subject: string): Promise<string> {
  for (let tries = 0; tries < 100; tries++) {
    const found = (await postfix.delivered()).find((m) => m.content.includes(`Subject: ${subject}`));
    if (found) return found.content;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`"${subject}" was not delivered`);
}

/** Postfix's own Received line (the first one in the mailbox file). */
function postfixReceived(content: string): string {
  return /^Received: (from [^\n]*\n(?:[ \t][^\n]*\n)*)/m.exec(content)?.[1]?.replace(/\n[ \t]+/g, ' ') ?? '';
}

describe.runIf(runnable)('the backend session follows the client, against real Postfix', () => {
  const postfix = usePostfixBackend();

  it('a second EHLO with another name: the next message reaches Postfix under the new HELO', async () => {
    await withHarakaIn(postfix(), async (t) => {
      const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9', helo: 'first.example.net' });
      try {
        expect(await deliver(session, 'under the first helo')).toBe(250);
        expect((await session.command('EHLO second.example.net')).code).toBe(250);
        expect(await deliver(session, 'under the second helo')).toBe(250);
      } finally {
        session.close();
      }
      expect(postfixReceived(await deliveredWith(postfix(), 'under the first helo'))).toMatch(/^from first\.example\.net /);
      expect(postfixReceived(await deliveredWith(postfix(), 'under the second helo'))).toMatch(/^from second\.example\.net /);
    });
  });

  it('a HELO client stays SMTP at the backend (not ESMTP), and a HELO name that cannot go raw goes as its address literal', async () => {
    await withHarakaIn(postfix(), async (t) => {
      const helo = await SmtpScript.connect(t.inbound.host, t.inbound.port, '127.0.0.9');
      try {
        await helo.reply();
        expect((await helo.command('HELO plain.example.net')).code).toBe(250);
        expect(await deliver(helo, 'from a helo client')).toBe(250);
      } finally {
        helo.close();
      }
      expect(postfixReceived(await deliveredWith(postfix(), 'from a helo client'))).toMatch(
        /^from plain\.example\.net \(client9\.example\.net \[127\.0\.0\.9\]\) by backend\.test \(Postfix\) with SMTP id /,
      );

      const odd = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9', helo: 'caf\u00e9.example.net' });
      try {
        expect(await deliver(odd, 'from an odd helo')).toBe(250);
      } finally {
        odd.close();
      }
      expect(postfixReceived(await deliveredWith(postfix(), 'from an odd helo'))).toMatch(/^from \[127\.0\.0\.9\] \(client9\.example\.net \[127\.0\.0\.9\]\)/);
    });
  });
});

describe.runIf(runnable)('a slow client and a Postfix under stress', () => {
  // stress=yes: what Postfix's master sets when smtpd processes run out (smtpd_timeout 10 s,
  // smtpd_junk_command_limit 1, smtpd_hard_error_limit 1).
  const postfix = usePostfixBackend({ extraMainCf: { stress: 'yes' } });

  it('a client idle 14 s between RCPT and DATA gets 250, and the message is delivered once', async () => {
    await withHarakaIn(postfix(), async (t) => {
      const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9', helo: 'slow.example.net' });
      try {
        expect(await deliver(session, 'a slow client', () => new Promise((resolve) => setTimeout(resolve, 14_000)))).toBe(250);
      } finally {
        session.close();
      }
      await deliveredWith(postfix(), 'a slow client');
      const copies = (await postfix().delivered()).filter((m) => m.content.includes('Subject: a slow client'));
      expect(copies).toHaveLength(1);
      // Postfix closed the idle session itself; the message came in a new one.
      expect(await postfix().log()).toMatch(/timeout after RCPT/);
    });
  }, 60_000);
});

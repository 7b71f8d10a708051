// DKIM-signed mail through haraka-in into the real Postfix backend: what Postfix stores in the mailbox is
// its own headers, haraka-in's Received line and then the message exactly as the sender sent it (in the
// mailbox's LF line ends), and the signature verifies there.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { postfixUnavailableReason } from '../fixtures/postfix';
import { signed, verdict, type Canonicalization } from '../helpers/dkim';
import { missingPeers, requirePeers } from '../helpers/peers';
import { harakaInFront, usePostfixBackend } from '../helpers/postfix-backend';
import { useTopology } from '../helpers/topology';
import { CASES, sendRaw } from '../helpers/transparency';

const runnable = requirePeers('byte transparency into real Postfix', missingPeers(['/usr/sbin/postfix'], [postfixUnavailableReason()]));

/** A Maildir file has LF line ends where the message had CRLF. */
const asStored = (message: Buffer) => Buffer.from(message.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');

describe.runIf(runnable)('byte transparency into a real Postfix, DKIM verified in the mailbox', () => {
  const postfix = usePostfixBackend({ extraMainCf: { smtputf8_enable: 'yes' } });
  // Postfix is started before the topology's tweak runs: beforeAll hooks run in order.
  const topology = useTopology(harakaInFront(() => postfix().port));

  let counter = 0;
  for (const test of CASES) {
    for (const canonicalization of ['simple/simple', 'relaxed/relaxed'] as Canonicalization[]) {
      it(`${test.name} (${canonicalization})`, async () => {
        const t = topology();
        const id = `e2e-${counter++}`;
        const message = await signed(Buffer.concat([Buffer.from(`X-Run: ${id}\r\n`), test.message]), canonicalization);
        await sendRaw(t.inbound.host, t.inbound.port, '127.0.0.9', 'alice@demo.test', test, message);
        await postfix().waitForLog(/status=sent/, 10_000);
        let file: Buffer | undefined;
        for (let tries = 0; tries < 100 && !file; tries++) {
          const delivered = await postfix().delivered();
          const found = delivered.map((m) => readFileSync(m.file)).find((raw) => raw.includes(`X-Run: ${id}\n`));
          if (found) file = found;
          else await new Promise((resolve) => setTimeout(resolve, 100));
        }
        if (!file) throw new Error(`message ${id} was not delivered`);
        const stored = asStored(message);
        expect(file.subarray(file.length - stored.length).equals(stored), 'the message changed on the way').toBe(true);
        const added = file.subarray(0, file.length - stored.length).toString('latin1');
        // Postfix's delivery headers, its Received line, then haraka-in's: nothing else.
        expect(added).toMatch(
          /^Return-Path: <sender@example\.net>\n(?:[A-Za-z-]+: [^\n]*\n(?:[ \t][^\n]*\n)*)*Received: from client\.example\.net [^\n]*\n(?:[ \t][^\n]*\n)*Received: from client\.example\.net \(client9\.example\.net \[127\.0\.0\.9\]\)\n(?:[ \t][^\n]*\n)*$/,
        );
        expect(await verdict(file)).toBe('pass');
      }, 60_000);
    }
  }
});

// A real Postfix as the sending client (the backend relaying through haraka-out): Postfix pipelines QUIT
// right after the final dot (RFC 2920 allows a group that ends with QUIT), and haraka-out answers it
// with 221, not Haraka 3.3.4's "503 pipelined after end of DATA" false alarm.
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { INTERNET_DOMAIN, LOOPBACK } from '../../src/demo/topology';
import { postfixUnavailableReason, startPostfix } from '../fixtures/postfix';
import { missingPeers, requirePeers } from '../helpers/peers';
import { eventually } from '../helpers/poll';
import { withTopology } from '../helpers/topology';

const SWAKS = '/usr/bin/swaks';
const runnable = requirePeers('Postfix sending through haraka-out', missingPeers([SWAKS, '/usr/sbin/postfix'], [postfixUnavailableReason()]));

describe.runIf(runnable)('Postfix relaying through haraka-out', () => {
  it('delivers with QUIT pipelined after the dot and no refusal on either side', async () => {
    await withTopology({ instances: ['haraka-out'], backend: false, tweak: (config) => void (config.log_level = 'protocol') }, async (t) => {
      const postfix = await startPostfix({
        listenHost: LOOPBACK.backend,
        port: 0,
        domains: ['demo.test'],
        users: ['alice'],
        xclientHosts: [],
        advertiseXclient: false,
        extraMainCf: {
          relayhost: `[${t.outbound.host}]:${t.outbound.port}`,
          default_transport: 'smtp',
          relay_transport: 'smtp',
          smtp_bind_address: LOOPBACK.backend,
        },
      });
      try {
        const sent = await new Promise<string>((resolve) =>
          execFile(
            SWAKS,
            ['--server', postfix.host, '--port', String(postfix.port), '--from', 'alice@demo.test', '--to', `bob@${INTERNET_DOMAIN}`, '--header', 'Subject: via postfix'],
            { encoding: 'utf8' },
            (_err, stdout, stderr) => resolve(`${stdout}${stderr}`),
          ),
        );
        expect(sent).toMatch(/<- {2}250 /);
        await postfix.waitForLog(/status=sent \(250 /, 20_000);
        await eventually('the internet MX to receive it', () => t.internet!.messages.find((m) => m.subject === 'via postfix'));
        const harakaLog = t.haraka['haraka-out']!.output();
        // Postfix's client sent QUIT in the same write as the final dot, and got 221.
        expect(harakaLog).toMatch(/C: QUIT/);
        expect(harakaLog).toMatch(/S: 221 /);
        expect(harakaLog).not.toContain('pipelined after end of DATA');
        expect(await postfix.log()).not.toMatch(/503 /);
      } finally {
        await postfix.stop();
      }
    });
  });
});

// The TLS reload race and why `cert deploy` is immune to it.
//
// First the control: the naive deploy (rewrite the certificate in place, touch tls.ini, the key a moment
// later) makes Haraka build its TLS context from the new certificate and the cached old key, and Haraka
// exits. Then twenty deploys in a row, alternating two certificates, into running haraka-in and haraka-out
// while SMTP sessions run (STARTTLS and plain into haraka-in, relayed mail through haraka-out): Haraka never
// exits, every deploy ends with the new fingerprint served, and every session completes.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { deployCertificate } from '../../src/certs/deploy/deploy';
import { probeServedCertificate } from '../../src/certs/deploy/probe';
import { sendMessage } from '../../src/smtp/send';
import { makeCa } from '../helpers/cert-fixtures';
import { eventually } from '../helpers/poll';
import { withTopology } from '../helpers/topology';

const DEPLOYS = 20;

describe('the TLS reload race (about 2 minutes: 20 deploys into running Haraka)', () => {
  // The longest file of the suite, silent while it works: say so when it starts.
  beforeAll(() => console.log(`cert-deploy-soak: ${DEPLOYS} certificate deploys into a running haraka-in and haraka-out take about 2 minutes…`));

  it('is real: a certificate rewritten in place with tls.ini touched before the key makes Haraka exit', async () => {
    await withTopology({ instances: ['haraka-in'], backend: false, internet: false }, async (t) => {
      const ca = makeCa(path.join(t.config.state_dir, '..', 'race-ca'));
      const next = ca.issue({ names: ['mx.demo.test'] });
      const proc = t.haraka['haraka-in']!;
      writeFileSync(t.config.tls.cert, next.certPem);
      const ini = path.join(t.instancesDir, 'haraka-in/config/tls.ini');
      writeFileSync(ini, `${readFileSync(ini, 'utf8')}\n`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      writeFileSync(t.config.tls.key, next.keyPem);
      const code = await Promise.race([proc.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 15_000))]);
      expect(code).toBe(1);
      // The process can be seen gone before the last of its output has been read.
      await eventually('the mismatch logged', () => /key values mismatch/.test(proc.output()), { context: () => proc.output().slice(-3000) });
      expect(proc.output()).toMatch(/key values mismatch/);
    });
  }, 60_000);

  it(`cannot hit cert deploy: ${DEPLOYS} deploys alternating two certificates while SMTP sessions run`, async () => {
    await withTopology({}, async (t) => {
      const dir = path.join(t.config.state_dir, '..', 'certs');
      const root = makeCa(path.join(dir, 'ca'), 'soak root');
      const issuer = root.intermediate('soak intermediate');
      const pairs = [issuer.issue({ names: ['mx.demo.test'], fullchain: true }), issuer.issue({ names: ['mx.demo.test'], fullchain: true })];

      // Sessions: two STARTTLS and one plain client into haraka-in, one relaying client into haraka-out,
      // each sending one message after another until the deploys are done.
      let running = true;
      const counts = { completed: 0, failed: 0, relayed: 0 };
      const failures: string[] = [];
      const worker = async (name: string, send: (n: number) => Promise<{ accepted: string[] }>) => {
        for (let n = 0; running; n++) {
          try {
            const result = await send(n);
            if (result.accepted.length !== 1) throw new Error(`not accepted: ${JSON.stringify(result)}`);
            counts.completed++;
            if (name === 'relay') counts.relayed++;
          } catch (err) {
            counts.failed++;
            failures.push(`${name} #${n}: ${(err as Error).message}`);
          }
          // A short pause: the machine is shared, and a few hundred sessions span every reload anyway.
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      };
      const inbound = (starttls: boolean) => (n: number) =>
        sendMessage({ host: t.inbound.host, port: t.inbound.port, from: 'sender@example.net', to: ['alice@demo.test'], subject: `soak ${n}`, text: 'soak', starttls });
      const workers = [
        worker('starttls-1', inbound(true)),
        worker('starttls-2', inbound(true)),
        worker('plain', inbound(false)),
        worker('relay', (n) =>
          sendMessage({
            host: t.outbound.host,
            port: t.outbound.port,
            localAddress: '127.0.0.2',
            from: 'alice@demo.test',
            to: ['bob@example.net'],
            subject: `out ${n}`,
            text: 'soak',
          }),
        ),
      ];

      let restarts = 0;
      const log: string[] = [];
      const durations: number[] = [];
      try {
        for (let index = 0; index < DEPLOYS; index++) {
          const pair = pairs[index % 2]!;
          const started = Date.now();
          const outcome = await deployCertificate({
            config: t.config,
            keyFile: pair.keyPath,
            certFile: pair.certPath,
            chainFile: root.certPath,
            instancesDir: t.instancesDir,
            log: (line) => log.push(`#${index + 1} ${line}`),
            restartHarakaOut: async () => (restarts++, 'restart recorded by the test'),
          });
          durations.push((Date.now() - started) / 1000);
          expect(outcome.changed, `deploy ${index + 1}`).toBe(true);
          expect(outcome.fingerprint).toBe(pair.fingerprint);
          // Read back by an independent STARTTLS session.
          expect((await probeServedCertificate(t.inbound, t.config.hostname, 5000)).fingerprint, `deploy ${index + 1}`).toBe(pair.fingerprint);
          for (const name of ['haraka-in', 'haraka-out'] as const) {
            expect(t.haraka[name]?.child.exitCode, `${name} after deploy ${index + 1}:\n${t.haraka[name]?.output().slice(-2000)}`).toBeNull();
          }
        }
      } finally {
        running = false;
        await Promise.all(workers);
      }
      console.log(
        `${DEPLOYS} deploys of ${Math.min(...durations).toFixed(1)}–${Math.max(...durations).toFixed(1)} s; sessions completed ${counts.completed} (${counts.relayed} through haraka-out), failed ${counts.failed}`,
      );
      expect(failures).toEqual([]);
      expect(counts.failed).toBe(0);
      expect(counts.completed).toBeGreaterThan(DEPLOYS * 4);
      expect(restarts).toBe(DEPLOYS);
      // The later deploys reuse the two pairs' files (each is the other's rollback pair): nothing else is left.
      expect(log.filter((line) => line.includes('pruned'))).toEqual([]);
      for (const name of ['haraka-in', 'haraka-out'] as const) {
        expect(t.haraka[name]?.output()).not.toMatch(/key values mismatch|Caught exception/);
      }
      // Everything haraka-in accepted reached the backend, and haraka-out delivered what it relayed.
      await t.backend!.waitForMessages(counts.completed - counts.relayed, 30_000);
      await t.internet!.waitForMessages(counts.relayed, 60_000);
    });
  }, 600_000);
});

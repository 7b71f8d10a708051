// haraka-out that cannot write its queue (a full disk; here the queue directory replaced by a file) answers
// the backend 451, never 550: a 5xx would make the backend bounce mail that is only waiting for disk space.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { INTERNET_DOMAIN, LOOPBACK } from '../../src/demo/topology';
import { openSession } from '../../src/smtp/script';
import { sendVia } from '../helpers/send';
import { useTopology } from '../helpers/topology';

describe('haraka-out when its queue cannot be written', () => {
  const topology = useTopology({ instances: ['haraka-out'], backend: false });

  it('answers 451 4.3.0 and keeps serving; the next message after the disk recovers is queued and delivered', async () => {
    const t = topology();
    const queue = path.join(t.config.state_dir, 'haraka-out', 'queue');
    renameSync(queue, `${queue}.away`);
    writeFileSync(queue, 'not a directory\n');
    try {
      const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
      const { replies, final } = await sendVia(session, [`bob@${INTERNET_DOMAIN}`], 'no queue', 'alice@demo.test');
      session.close();
      expect(replies[0]?.code).toBe(250);
      expect(final?.code, final?.text).toBe(451);
      expect(final?.text).toMatch(/^4\.3\.0 Queueing failed: the queue could not be written, try again later/);
    } finally {
      rmSync(queue, { force: true });
      renameSync(`${queue}.away`, queue);
    }
    const again = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
    const { final } = await sendVia(again, [`bob@${INTERNET_DOMAIN}`], 'queue back', 'alice@demo.test');
    again.close();
    expect(final?.code).toBe(250);
    await t.internet!.waitForMessages(1, 20_000);
  });
});

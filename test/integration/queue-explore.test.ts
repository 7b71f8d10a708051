import { readdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { it } from 'vitest';
import { LOOPBACK } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { withTopology } from '../helpers/topology';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
for (const mode of ['down', 'accepting']) {
it('explore ' + mode, async () => {
  let busy = true;
  await withTopology({ instances: ['haraka-out'], backend: false, internet: mode === 'down' ? false : { rejectRecipient: () => (busy ? '450 4.2.1 mailbox busy' : null) },
    tweak: (c) => { (c.outbound as any).retry_intervals = [3600, 3600, 3600]; } }, async (t) => {
    const s = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
    await s.command('MAIL FROM:<alice@demo.test>');
    await s.command('RCPT TO:<bob@example.net>');
    await s.command('DATA');
    s.write(dataPayload(message('hello', 'body')));
    console.log(await s.reply());
    s.close();
    const dir = path.join(t.config.state_dir, 'haraka-out', 'queue');
    await sleep(2000);
    const files = readdirSync(dir);
    console.log(files);
    for (const f of files) unlinkSync(path.join(dir, f));
    busy = false;
    const out = t.haraka['haraka-out']!;
    const mark = out.output().length;
    process.kill(out.child.pid!, 'SIGHUP');
    await sleep(mode === 'down' ? 3000 : 40000);
    console.log(readdirSync(dir), t.internet?.messages.length);
    console.log(out.output().slice(mark));
    console.log('exit', out.child.exitCode);
  });
}, 120000);
}

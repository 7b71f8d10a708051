// Bad SMTP input gets the right reply code and the session (or at least the server) goes on.
import { describe, expect, it } from 'vitest';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { eventually } from '../helpers/poll';
import { useTopology } from '../helpers/topology';

describe('haraka-in answers bad commands and keeps serving', () => {
  const topology = useTopology({ instances: ['haraka-in'] });

  it('answers each bad command with its code and the session goes on', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port);
    const cases: [string, number][] = [
      ['FROBNICATE', 500],
      ['RCPT TO:<alice@demo.test>', 503],
      ['DATA', 503],
      ['MAIL FROM:not-an-address', 501],
      ['MAIL FROM:<a@b@c>', 501],
    ];
    for (const [command, code] of cases) expect((await session.command(command)).code, command).toBe(code);
    expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    // Haraka treats a second MAIL as a new transaction: the recipient above is forgotten (and the
    // backend transaction behind it is reset).
    expect((await session.command('MAIL FROM:<again@example.net>')).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(503);
    expect((await session.command('RCPT TO:<not an address>')).code).toBe(501);
    expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    expect((await session.command('NOOP')).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    session.write(dataPayload(message('after the errors', 'still fine')));
    expect((await session.reply()).code).toBe(250);
    expect((await session.command('QUIT')).code).toBe(221);
    session.close();
    const received = (await t.backend!.waitForMessages(1)).find((m) => m.subject === 'after the errors');
    expect(received?.mailFrom).toBe('again@example.net');
  });

  it('puts an RFC 3463 enhanced status code on every refusal it words itself', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port);
    const cases: [string, string][] = [
      ['FROBNICATE', '500 5.5.2 '],
      ['RCPT TO:<alice@demo.test>', '503 5.5.1 '],
      ['MAIL FROM:not-an-address', '501 5.5.4 '],
    ];
    for (const [command, line] of cases) expect((await session.command(command)).lines[0], command).toMatch(new RegExp(`^${line}`));
    expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    const foreign = await session.command('RCPT TO:<someone@elsewhere.example>');
    expect(foreign.lines[0]).toMatch(/^550 5\.7\.1 I cannot deliver mail for/);
    session.close();
  });

  it('answers a QUIT pipelined right after the final dot with 221, and refuses any other command there', async () => {
    const t = topology();
    const quit = await openSession(t.inbound.host, t.inbound.port);
    expect((await quit.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    expect((await quit.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    expect((await quit.command('DATA')).code).toBe(354);
    quit.write(`${dataPayload(message('quit after dot', 'body'))}QUIT\r\n`);
    expect((await quit.reply()).code).toBe(250);
    expect((await quit.reply()).code).toBe(221);
    quit.close();
    const rset = await openSession(t.inbound.host, t.inbound.port);
    expect((await rset.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    expect((await rset.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    expect((await rset.command('DATA')).code).toBe(354);
    rset.write(`${dataPayload(message('rset after dot', 'body'))}RSET\r\n`);
    expect((await rset.reply()).code).toBe(250);
    expect((await rset.reply()).code).toBe(503);
    // QUIT behind another command, or with a bare LF, is no lone QUIT.
    expect((await rset.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    expect((await rset.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    expect((await rset.command('DATA')).code).toBe(354);
    rset.write(`${dataPayload(message('noop quit after dot', 'body'))}NOOP\r\nQUIT\r\n`);
    expect((await rset.reply()).code).toBe(250);
    expect([(await rset.reply()).code, (await rset.reply()).code]).toEqual([503, 503]);
    rset.close();
    // The log is another pipe than the session: its lines may arrive here a moment after the replies.
    const refusals = () => t.haraka['haraka-in']!.output().match(/command pipelined after end of DATA - refused/g)?.length ?? 0;
    await eventually('two refusals logged', () => refusals() >= 2);
    expect(refusals()).toBe(2);
  });

  it('drops a client that sends an over-long command line, and serves the next one', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port);
    const reply = await session.command(`MAIL FROM:<${'a'.repeat(600)}@example.net>`);
    expect(reply.code).toBe(521);
    await expect(session.reply(2000)).rejects.toThrow();
    session.close();
    const next = await openSession(t.inbound.host, t.inbound.port);
    expect((await next.command('NOOP')).code).toBe(250);
    next.close();
  });
});

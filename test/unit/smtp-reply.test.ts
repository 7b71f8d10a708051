// The one SMTP reply parser (src/smtp/reply.ts): lines end at LF, replies across chunks, the garbage
// policies of its readers, and its bounds.
import { describe, expect, it } from 'vitest';
import { hasExtension, lineText, ReplyParser, replyText } from '../../src/smtp/reply';

describe('ReplyParser', () => {
  it('reads multi-line replies across chunks, with or without CR', () => {
    const parser = new ReplyParser();
    expect(parser.feed('250-mx.example.net\r\n250-PIPE')).toEqual({ replies: [], fault: null });
    const { replies } = parser.feed(Buffer.from('LINING\n250 STARTTLS\r\n354 go\r\n'));
    expect(replies).toEqual([
      { code: 250, lines: ['250-mx.example.net', '250-PIPELINING', '250 STARTTLS'] },
      { code: 354, lines: ['354 go'] },
    ]);
    expect(hasExtension(replies[0]!, 'STARTTLS')).toBe(true);
    expect(replyText(replies[0]!)).toBe('mx.example.net\nPIPELINING\nSTARTTLS');
  });

  it('treats a line without a code by its policy', () => {
    expect(new ReplyParser({ garbage: 'end' }).feed('hello\r\n').replies).toEqual([{ code: 0, lines: ['hello'] }]);
    expect(new ReplyParser({ garbage: 'keep' }).feed('hello\r\n220 hi\r\n').replies).toEqual([{ code: 220, lines: ['hello', '220 hi'] }]);
    expect(new ReplyParser({ garbage: 'fault' }).feed('220 hi\r\nhello\r\n')).toEqual({ replies: [{ code: 220, lines: ['220 hi'] }], fault: { kind: 'malformed', line: 'hello' } });
    expect(new ReplyParser({ garbage: 'fault' }).feed('220 a\rb\r\n').fault).toEqual({ kind: 'malformed', line: '220 a\rb' });
  });

  it('stops at its bounds, and stays stopped', () => {
    const lines = new ReplyParser({ maxLines: 2 });
    expect(lines.feed('250-a\r\n250-b\r\n250 c\r\n').fault).toEqual({ kind: 'too many lines' });
    expect(lines.feed('250 d\r\n')).toEqual({ replies: [], fault: { kind: 'too many lines' } });
    expect(new ReplyParser({ maxLine: 4 }).feed('250 ok\r\n25000').fault).toEqual({ kind: 'line too long' });
    expect(new ReplyParser({ maxBytes: 10 }).feed('250-abcdef\r\n250').fault).toEqual({ kind: 'reply too long' });
  });

  it('gives each line its text as the forwarder reads it', () => {
    expect(['250 ok', '250-ok', '250', '250x'].map(lineText)).toEqual(['ok', 'ok', '', 'x']);
  });
});

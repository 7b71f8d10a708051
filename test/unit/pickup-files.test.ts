import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dropIntoPickup, parseEnvelope } from '../../src/plugins/pickup-files';

describe('pickup directory files', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('drops the message and its envelope under one id, no temp file left', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pickup-'));
    dirs.push(dir);
    const id = await dropIntoPickup(dir, { from: '', to: ['sender@example.org'] }, Buffer.from('Subject: x\r\n\r\nbody\r\n'));
    expect(readdirSync(dir).sort()).toEqual([`${id}.eml`, `${id}.json`]);
    expect(readFileSync(path.join(dir, `${id}.eml`), 'utf8')).toBe('Subject: x\r\n\r\nbody\r\n');
    expect(parseEnvelope(readFileSync(path.join(dir, `${id}.json`), 'utf8'))).toEqual({ from: '', to: ['sender@example.org'] });
  });

  it('reads only a whole envelope: a sender string and at least one address', () => {
    expect(parseEnvelope('{"from":"","to":["a@b"]}')).toEqual({ from: '', to: ['a@b'] });
    for (const text of ['', '{"from":""', '{"to":["a@b"]}', '{"from":"","to":[]}', '{"from":"","to":["nobody"]}', 'null']) expect(parseEnvelope(text)).toBeNull();
  });
});

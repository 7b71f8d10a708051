// The unbound drop-in of the DANE resolver: rendered from the config, committed in deploy/unbound, accepted
// by unbound's own checker, and absent when DANE is off.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load';
import { renderUnbound, UNBOUND_DROP_IN } from '../../src/render/unbound';
import { MANIFEST } from '../../src/render/write';
import { runCli } from '../helpers/cli';
import { missingPeers, requirePeers } from '../helpers/peers';
import { useTempDirs } from '../helpers/tmp';

const root = path.resolve(__dirname, '../..');
const exampleText = readFileSync(path.join(root, 'mailproxy.example.yaml'), 'utf8');
const example = parseConfig(exampleText, 'mailproxy.example.yaml');
const tempDir = useTempDirs('mailproxy-unbound-');

describe('the unbound drop-in', () => {
  it('listens on outbound.dane_resolver only, validates, and is not rendered when DANE is off', () => {
    const text = renderUnbound(example, { source: 'x' }).get(UNBOUND_DROP_IN)!;
    expect(text).toContain('    interface: 127.0.0.1@53\n');
    expect(text).toContain('    module-config: "validator iterator"\n');
    expect(text).toContain('    val-permissive-mode: no\n');
    const other = parseConfig(`${exampleText}\n`.replace('dane_resolver: 127.0.0.1:53', 'dane_resolver: "[::1]:5353"'), 'x');
    expect(renderUnbound(other, { source: 'x' }).get(UNBOUND_DROP_IN)).toContain('    interface: ::1@5353\n');
    const off = parseConfig(exampleText.replace('  dane: true', '  dane: false'), 'x');
    expect(renderUnbound(off, { source: 'x' }).size).toBe(0);
  });

  it('deploy/unbound is the render of mailproxy.example.yaml, and `render --unbound DIR` writes it', async () => {
    const files = renderUnbound(example, { source: 'mailproxy.example.yaml' });
    const dir = path.join(root, 'deploy/unbound');
    expect(readdirSync(dir).filter((file) => file !== MANIFEST)).toEqual([...files.keys()]);
    for (const [file, text] of files) expect(readFileSync(path.join(dir, file), 'utf8')).toBe(text);
    const out = tempDir();
    const result = await runCli(['render', '--config', path.join(root, 'mailproxy.example.yaml'), '--out', path.join(out, 'instances'), '--unbound', path.join(out, 'unbound')]);
    expect(result.code, result.text).toBe(0);
    expect(readFileSync(path.join(out, 'unbound', UNBOUND_DROP_IN), 'utf8')).toBe(files.get(UNBOUND_DROP_IN));
  });

  describe('unbound-checkconf', () => {
    if (!requirePeers('unbound-checkconf', missingPeers(['/usr/sbin/unbound-checkconf']))) return;
    it('accepts it', () => {
      const file = path.join(tempDir(), UNBOUND_DROP_IN);
      writeFileSync(file, renderUnbound(example, { source: 'x' }).get(UNBOUND_DROP_IN)!);
      expect(execFileSync('/usr/sbin/unbound-checkconf', [file], { encoding: 'utf8' })).toContain('no errors');
    });
  });
});

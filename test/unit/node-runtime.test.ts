// The Node the units run: judged from `node --version` and from where it lies.
import { describe, expect, it } from 'vitest';
import { hiddenFromUnits, nodeProblem } from '../../src/haraka/node-runtime';

describe('system.node', () => {
  it('is fine at 22 and newer, named with the fix when older, missing or not runnable', () => {
    expect(nodeProblem('/usr/bin/node', { ok: true, version: 'v22.23.5' })).toBeNull();
    expect(nodeProblem('/usr/bin/node', { ok: true, version: 'v24.1.0' })).toBeNull();
    expect(nodeProblem('/usr/bin/node', { ok: true, version: 'v20.19.0' })).toMatch(
      /^system\.node \/usr\/bin\/node is v20\.19\.0; Haraka 3\.3\.4 needs Node\.js 22 or newer: install Node\.js 22 LTS/,
    );
    expect(nodeProblem('/nonexistent/node', { ok: false, error: 'does not exist' })).toMatch(/^system\.node \/nonexistent\/node does not exist: the units cannot start Haraka/);
  });

  it('may not lie where ProtectHome=yes hides it from the units', () => {
    for (const hidden of ['/root/.cache/node/bin/node', '/home/admin/node22/bin/node', '/run/user/0/node']) {
      expect(hiddenFromUnits(hidden)).toMatch(/which the units hide \(ProtectHome=yes\): they would fail with status=203\/EXEC/);
    }
    for (const visible of ['/usr/bin/node', '/opt/node22/bin/node', '/usr/local/bin/node', '/rootfs/node']) expect(hiddenFromUnits(visible)).toBeNull();
  });
});

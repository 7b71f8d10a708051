// scripts/install.sh into a throwaway root (--root): the same tree when run twice, an edited config kept
// (and rendered), an old Node refused with the reason.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { requirePeers } from '../helpers/peers';
import { useTempDirs } from '../helpers/tmp';

const root = path.resolve(__dirname, '../..');
const installer = path.join(root, 'scripts/install.sh');
const tempDir = useTempDirs('mailproxy-install-');

function install(target: string, node = process.execPath) {
  const result = spawnSync('bash', [installer, '--root', target, '--node', node], { encoding: 'utf8', timeout: 240_000 });
  return { code: result.status, out: result.stdout, err: result.stderr };
}

/** Every path below dir with its type, mode and content hash (or link target). */
function snapshot(dir: string, prefix = ''): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const full = path.join(dir, name);
      const relative = path.join(prefix, name);
      const stat = lstatSync(full);
      const mode = (stat.mode & 0o7777).toString(8);
      if (stat.isSymbolicLink()) return [`${relative} -> ${readlinkSync(full)}`];
      if (stat.isDirectory()) return [`${relative}/ ${mode}`, ...snapshot(full, relative)];
      return [`${relative} ${mode} ${createHash('sha256').update(readFileSync(full)).digest('hex')}`];
    });
}

describe('scripts/install.sh --root', () => {
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  const node22 = requirePeers(
    'install.sh with this Node',
    nodeMajor >= 22 ? null : `the tests run on Node ${process.versions.node}; the installer needs 22 (source scripts/node-runtime.sh)`,
  );

  it.runIf(node22)(
    'gives the same tree when run twice, and keeps and renders an edited config',
    () => {
      const target = tempDir();
      const first = install(target);
      expect(first.code, first.err).toBe(0);
      expect(first.out).toContain('from the example: edit it');
      for (const file of [
        'opt/mailproxy/node_modules/haraka/bin/haraka',
        'opt/mailproxy/bin/mailproxy.js',
        'etc/mailproxy/mailproxy.yaml',
        'etc/mailproxy/instances/haraka-in/config/smtp.ini',
        'etc/systemd/system/mailproxy-haraka-in.service',
        'etc/systemd/system/mailproxy-health.timer',
        // The DANE resolver's unbound drop-in (outbound.dane is on by default).
        'etc/unbound/unbound.conf.d/mailproxy.conf',
        'var/lib/mailproxy',
      ]) {
        expect(existsSync(path.join(target, file)), file).toBe(true);
      }
      // No dev packages on the VPS.
      expect(existsSync(path.join(target, 'opt/mailproxy/node_modules/vitest'))).toBe(false);
      expect(first.out).toContain('smtpd_authorized_xclient_hosts=10.0.0.1');
      expect(first.out).toContain('iifname "wg0" tcp dport 2526 accept');
      // The example's placeholders get no DNS records.
      expect(first.out).toContain('Not printed: hostname mx.example.com, public_ipv4 203.0.113.25, domains[0] example.com');
      expect(first.out).not.toContain('MX 10');

      const before = snapshot(target);
      const second = install(target);
      expect(second.code, second.err).toBe(0);
      expect(second.out).toContain('kept');
      expect(second.out).not.toContain('installing packages');
      expect(snapshot(target)).toEqual(before);

      const configFile = path.join(target, 'etc/mailproxy/mailproxy.yaml');
      const edited = readFileSync(configFile, 'utf8').replace(/^log_level: .*$/m, 'log_level: debug');
      expect(edited).toContain('log_level: debug');
      writeFileSync(configFile, edited);
      const third = install(target);
      expect(third.code, third.err).toBe(0);
      expect(readFileSync(configFile, 'utf8')).toBe(edited);
      expect(readFileSync(path.join(target, 'etc/mailproxy/instances/haraka-in/config/log.ini'), 'utf8')).toMatch(/^level=debug$/m);
    },
    300_000,
  );

  it.runIf(node22)(
    'runs every unit, timer and the mailproxy command with the --node it was given, not /usr/bin/node',
    () => {
      const target = tempDir();
      // A Node at a path of its own, as /opt/node22/bin/node would be on a VPS.
      const node = path.join(target, 'opt/node22/bin/node');
      mkdirSync(path.dirname(node), { recursive: true });
      symlinkSync(process.execPath, node);
      const result = install(target, node);
      expect(result.code, result.err).toBe(0);
      expect(result.out).toContain(`set system.node: ${node}`);
      const units = readdirSync(path.join(target, 'etc/systemd/system')).filter((name) => name.endsWith('.service'));
      expect(units.sort()).toEqual(['mailproxy-cert-renew.service', 'mailproxy-haraka-in.service', 'mailproxy-haraka-out.service', 'mailproxy-health.service']);
      for (const unit of units) {
        const execStart = /^ExecStart=(\S+)/m.exec(readFileSync(path.join(target, 'etc/systemd/system', unit), 'utf8'))?.[1];
        expect(execStart, unit).toBe(node);
      }
      // Each timer starts one of those services.
      for (const timer of ['mailproxy-health.timer', 'mailproxy-cert-renew.timer']) {
        expect(units).toContain(timer.replace('.timer', '.service'));
      }
      const command = path.join(target, 'usr/local/bin/mailproxy');
      expect(readFileSync(command, 'utf8')).toContain(`exec ${node} ${path.join(target, 'opt/mailproxy/bin/mailproxy.js')}`);
      const get = spawnSync(command, ['config', 'get', 'system.node'], { encoding: 'utf8' });
      expect(get.stdout.trim(), get.stderr).toBe(node);
      // The config keeps its comments: the installer changed one key.
      const config = readFileSync(path.join(target, 'etc/mailproxy/mailproxy.yaml'), 'utf8');
      expect(config).toContain(`  node: ${node}`);
      expect(config).toContain("# The VPS's public name.");
      // A later run without --node keeps it.
      const again = spawnSync('bash', [installer, '--root', target], { encoding: 'utf8', timeout: 240_000 });
      expect(again.status, again.stderr).toBe(0);
      expect(readFileSync(path.join(target, 'etc/systemd/system/mailproxy-haraka-in.service'), 'utf8')).toContain(`ExecStart=${node} `);
    },
    300_000,
  );

  it('refuses a Node older than 22 with the reason, and installs nothing', () => {
    const target = tempDir();
    const oldNode = path.join(target, 'node');
    writeFileSync(oldNode, '#!/bin/sh\ncase "$1" in --version) echo v20.19.0 ;; *) echo 20 ;; esac\n');
    chmodSync(oldNode, 0o755);
    const result = install(target, oldNode);
    expect(result.code).toBe(1);
    expect(result.err).toContain('is v20.19.0; mailproxy needs 22 or newer');
    expect(existsSync(path.join(target, 'opt'))).toBe(false);
  });
});

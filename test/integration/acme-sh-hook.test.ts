// The acme.sh deploy hook (scripts/acme.sh/mailproxy.sh) run the way acme.sh runs it: a harness
// (test/fixtures/acme-sh/acme-harness.sh) defines acme.sh's helper functions as acme.sh does and runs
// `--deploy -d DOMAIN --deploy-hook mailproxy` against an acme.sh home with an issued domain. `mailproxy`
// is a stand-in that records its arguments and exits with the status a test chooses, so the hook's
// plumbing is tested on its own: arguments, status, saved settings. Under dash (Debian's sh, what
// acme.sh's `#!/usr/bin/env sh` gets) and bash.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../helpers/tmp';

const ROOT = path.resolve(__dirname, '../..');
const HOOK = path.join(ROOT, 'scripts/acme.sh/mailproxy.sh');
const HARNESS = path.join(ROOT, 'test/fixtures/acme-sh/acme-harness.sh');
const DOMAIN = 'mx.example.com';

interface Rig {
  home: string;
  domainDir: string;
  conf: string;
  key: string;
  fullchain: string;
  ca: string;
  /** The stand-in `mailproxy` as DEPLOY_MAILPROXY_CMD would name it: interpreter and script, two words. */
  command: string;
  log: string;
}

/** An acme.sh home after `acme.sh --issue -d mx.example.com`, the hook copied into its deploy/ dir. */
function makeRig(dir: string): Rig {
  const home = path.join(dir, 'acme.sh');
  const domainDir = path.join(home, DOMAIN);
  mkdirSync(path.join(home, 'deploy'), { recursive: true });
  mkdirSync(domainDir, { recursive: true });
  copyFileSync(HOOK, path.join(home, 'deploy', 'mailproxy.sh'));
  const files = { key: `${DOMAIN}.key`, cert: `${DOMAIN}.cer`, ca: 'ca.cer', fullchain: 'fullchain.cer' };
  for (const [what, name] of Object.entries(files)) writeFileSync(path.join(domainDir, name), `stand-in ${what}\n`);
  const conf = path.join(domainDir, `${DOMAIN}.conf`);
  writeFileSync(conf, `Le_Domain='${DOMAIN}'\nLe_Alt='no'\nLe_Webroot='dns_ionos'\nLe_Keylength='ec-256'\n`);
  const standIn = path.join(dir, 'mailproxy-stand-in');
  const log = path.join(dir, 'mailproxy-calls');
  writeFileSync(
    standIn,
    [
      '# stand-in for mailproxy: one line per argument, then "--"; exits with $STAND_IN_STATUS (default 0)',
      'for arg in "$@"; do printf \'%s\\n\' "$arg"; done >>"$STAND_IN_LOG"',
      'printf -- \'--\\n\' >>"$STAND_IN_LOG"',
      'exit "${STAND_IN_STATUS:-0}"',
      '',
    ].join('\n'),
  );
  return {
    home,
    domainDir,
    conf,
    key: path.join(domainDir, files.key),
    fullchain: path.join(domainDir, files.fullchain),
    ca: path.join(domainDir, files.ca),
    command: `/bin/sh ${standIn}`,
    log,
  };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `acme.sh --deploy -d mx.example.com --deploy-hook mailproxy` under `shell`, with only `env` set. */
function acmeDeploy(shell: string, rig: Rig, env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      shell,
      [HARNESS, '--home', rig.home, '--deploy', '-d', DOMAIN, '--deploy-hook', 'mailproxy'],
      { env: { PATH: '/usr/bin:/bin', STAND_IN_LOG: rig.log, ...env }, encoding: 'utf8', timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Every call of the stand-in, as its argument lists. */
function calls(rig: Rig): string[][] {
  if (!existsSync(rig.log)) return [];
  const result: string[][] = [];
  let current: string[] = [];
  for (const line of readFileSync(rig.log, 'utf8').split('\n').slice(0, -1)) {
    if (line === '--') {
      result.push(current);
      current = [];
    } else {
      current.push(line);
    }
  }
  return result;
}

/** The KEY='value' lines of the domain config, as acme.sh would read them back. */
function savedConf(rig: Rig): string[] {
  return readFileSync(rig.conf, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0);
}

for (const shell of ['/bin/sh', '/bin/bash']) {
  describe(`acme.sh deploy hook under ${shell}`, () => {
    const tempDir = useTempDirs('mailproxy-acme-hook-');

    it('runs `mailproxy cert deploy` with acme.sh key, full chain and CA file, and saves the settings', async () => {
      const rig = makeRig(tempDir());
      const config = path.join(rig.home, 'mailproxy.yaml');
      const run = await acmeDeploy(shell, rig, { DEPLOY_MAILPROXY_CMD: rig.command, DEPLOY_MAILPROXY_CONFIG: config });
      expect(run.code, run.stderr).toBe(0);
      expect(calls(rig)).toEqual([['cert', 'deploy', '--config', config, '--key', rig.key, '--cert', rig.fullchain, '--chain', rig.ca]]);
      expect(run.stderr).toContain('harness: mailproxy_deploy returned 0');
      expect(run.stdout).toContain('Success');
      expect(savedConf(rig)).toEqual([
        `Le_Domain='${DOMAIN}'`,
        "Le_Alt='no'",
        "Le_Webroot='dns_ionos'",
        "Le_Keylength='ec-256'",
        "Le_DeployHook='mailproxy'",
        `SAVED_DEPLOY_MAILPROXY_CMD='${rig.command}'`,
        `SAVED_DEPLOY_MAILPROXY_CONFIG='${config}'`,
      ]);
    });

    it('a failed deploy fails the acme.sh run, and the hook returns cert deploy’s own status', async () => {
      for (const status of [1, 2]) {
        const rig = makeRig(tempDir());
        const run = await acmeDeploy(shell, rig, { DEPLOY_MAILPROXY_CMD: rig.command, STAND_IN_STATUS: String(status) });
        expect(calls(rig)).toHaveLength(1);
        expect(run.stderr).toContain(`mailproxy cert deploy failed with status ${status}`);
        expect(run.stderr).toContain(`harness: mailproxy_deploy returned ${status}`);
        expect(run.stderr).toContain(`Error deploy for domain:${DOMAIN}`);
        expect(run.stderr).toContain('Deploy error.');
        expect(run.stdout).not.toContain('Success');
        expect(run.code).toBe(1);
      }
    });

    it('the next run (a renewal, nothing in the environment) reuses the saved settings; a new value replaces them', async () => {
      const rig = makeRig(tempDir());
      const first = path.join(rig.home, 'first.yaml');
      expect((await acmeDeploy(shell, rig, { DEPLOY_MAILPROXY_CMD: rig.command, DEPLOY_MAILPROXY_CONFIG: first })).code).toBe(0);
      const renewal = await acmeDeploy(shell, rig, {});
      expect(renewal.code, renewal.stderr).toBe(0);
      const expected = (config: string) => ['cert', 'deploy', '--config', config, '--key', rig.key, '--cert', rig.fullchain, '--chain', rig.ca];
      expect(calls(rig)).toEqual([expected(first), expected(first)]);

      const second = path.join(rig.home, 'second.yaml');
      expect((await acmeDeploy(shell, rig, { DEPLOY_MAILPROXY_CONFIG: second })).code).toBe(0);
      expect((await acmeDeploy(shell, rig, {})).code).toBe(0);
      expect(calls(rig).slice(2)).toEqual([expected(second), expected(second)]);
      expect(savedConf(rig).filter((line) => line.startsWith('SAVED_DEPLOY_MAILPROXY_'))).toEqual([
        `SAVED_DEPLOY_MAILPROXY_CMD='${rig.command}'`,
        `SAVED_DEPLOY_MAILPROXY_CONFIG='${second}'`,
      ]);
    });

    it('an unset setting takes its default and is not saved; no CA file means no --chain', async () => {
      const rig = makeRig(tempDir());
      rmSync(rig.ca);
      const run = await acmeDeploy(shell, rig, { DEPLOY_MAILPROXY_CMD: rig.command });
      expect(run.code, run.stderr).toBe(0);
      expect(calls(rig)).toEqual([['cert', 'deploy', '--config', '/etc/mailproxy/mailproxy.yaml', '--key', rig.key, '--cert', rig.fullchain]]);
      expect(savedConf(rig).filter((line) => line.startsWith('SAVED_'))).toEqual([`SAVED_DEPLOY_MAILPROXY_CMD='${rig.command}'`]);
    });
  });
}

// `mailproxy cert issue|renew`: native ACME's CLI edge. `issue` orders a certificate for hostname (and
// acme.extra_names) now; `renew` does so only when the deployed certificate has fewer than
// acme.renew_days left (or is missing, expired, or lacks a name), after a random wait of up to
// acme.jitter seconds. Both hand the result to the deploy path every certificate takes (deploy/).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../../command/config-file';
import type { CommandIo } from '../../command/io';
import { UsageError, type UsageEntry } from '../../command/usage';
import type { Config } from '../../config/schema';
import { deployCertificate } from '../deploy/deploy';
import { issueCertificate, withAcmeLock, type IssueLog } from './issue';
import { acmeDir, acmePlan, certFacts, describeCert, describeChallenge, jitterMs, renewalDue, tlsIniCertPath, type AcmePlan, type CertFacts } from './plan';

export const ACME_USAGE_ENTRY: UsageEntry = {
  synopsis: 'cert issue|renew --config FILE [--instances DIR] [--no-deploy] [--force] [--verbose]',
  about: ['native ACME (renew acts only under acme.renew_days left)'],
};

const USAGE = 'usage: mailproxy cert issue|renew [--config FILE] [--instances DIR] [--no-deploy] [--force] [--verbose]';

interface Current {
  file: string;
  facts: CertFacts;
}

/**
 * The certificate haraka-in serves: the `cert=` of its rendered tls.ini (where the deploy path points
 * it), else the config's tls.cert. Null when neither file holds a certificate.
 */
async function deployedCertificate(config: Config, instancesDir: string): Promise<Current | null> {
  const configDir = path.join(instancesDir, 'haraka-in', 'config');
  const candidates: string[] = [];
  const ini = await fs.readFile(path.join(configDir, 'tls.ini'), 'utf8').catch(() => null);
  const fromIni = ini === null ? null : tlsIniCertPath(ini);
  if (fromIni) candidates.push(path.resolve(configDir, fromIni));
  candidates.push(config.tls.cert);
  for (const file of candidates) {
    const text = await fs.readFile(file, 'utf8').catch(() => null);
    if (text === null) continue;
    try {
      return { file, facts: certFacts(text) };
    } catch {}
  }
  return null;
}

/** A certificate an earlier run issued but could not deploy, still good: deployed instead of ordering again. */
async function undeployedIssue(plan: AcmePlan, current: Current | null, now: Date, renewDays: number): Promise<CertFacts | null> {
  const text = await fs.readFile(plan.certFile, 'utf8').catch(() => null);
  if (text === null) return null;
  const key = await fs.stat(plan.keyFile).catch(() => null);
  if (!key?.isFile()) return null;
  try {
    const facts = certFacts(text);
    if (current && facts.fingerprint === current.facts.fingerprint) return null;
    return renewalDue(facts, plan.names, now, renewDays).due ? null : facts;
  } catch {
    return null;
  }
}

export async function runAcmeCommand(sub: 'issue' | 'renew', args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      instances: { type: 'string' },
      'no-deploy': { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
    },
  });
  if (positionals.length) throw new UsageError(`${USAGE}\n(unexpected ${positionals.join(' ')})`);
  const print = (line: string) => io.stdout.write(`${line}\n`);
  const warn = (line: string) => io.stderr.write(`${line}\n`);
  const fail = (line: string) => {
    io.stderr.write(`mailproxy cert ${sub}: ${line}\n`);
    return 1;
  };

  const loaded = loadConfigFile(values.config, io.stderr);
  if (!loaded) return 1;
  const { config } = loaded;
  if (!config.acme.enabled) {
    if (sub === 'renew') {
      print('mailproxy cert renew: acme.enabled is false: native ACME is off, nothing to renew (the certificate comes from elsewhere, e.g. the acme.sh hook)');
      return 0;
    }
    return fail('acme.enabled is false: set acme.enabled: true (and the acme section: see docs/CONFIG.md) to get certificates with native ACME');
  }
  const plan = acmePlan(config);
  const instancesDir = path.resolve(values.instances ?? config.system.instances_dir);
  const now = new Date();
  const log: IssueLog = { info: print, warn, ...(values.verbose ? { debug: (line: string) => print(`acme-client: ${line}`) } : {}) };

  try {
    return await withAcmeLock(acmeDir(config), async () => {
      let issued: { keyFile: string; certFile: string; facts: CertFacts } | null = null;
      if (sub === 'renew') {
        const current = await deployedCertificate(config, instancesDir);
        const verdict = renewalDue(current?.facts ?? null, plan.names, now, config.acme.renew_days);
        const where = current ? current.file : `${config.tls.cert} or ${path.join(instancesDir, 'haraka-in', 'config', 'tls.ini')}`;
        if (!verdict.due && !values.force) {
          print(`mailproxy cert renew: ${where}: ${verdict.reason}; nothing to do`);
          return 0;
        }
        print(`mailproxy cert renew: ${where}: ${values.force && !verdict.due ? `${verdict.reason}, renewing anyway (--force)` : verdict.reason}`);
        const pending = values.force ? null : await undeployedIssue(plan, current, now, config.acme.renew_days);
        if (pending) {
          print(`an earlier run issued ${plan.certFile} but did not deploy it; deploying that instead of ordering again`);
          issued = { keyFile: plan.keyFile, certFile: plan.certFile, facts: pending };
        } else {
          const wait = jitterMs(config.acme.jitter);
          if (wait > 0) {
            print(`waiting ${Math.round(wait / 1000)} s first (acme.jitter: up to ${config.acme.jitter} s)`);
            await new Promise((resolve) => setTimeout(resolve, wait));
          }
        }
      }
      if (!issued) {
        print(`mailproxy cert ${sub}: ordering a certificate for ${plan.names.join(', ')} from ${plan.directoryUrl}, ${describeChallenge(config)}`);
        const result = await issueCertificate(config, plan, log);
        print(`issued: ${describeCert(result.facts, new Date())}`);
        print(`written: ${result.certFile} and ${result.keyFile} (mode 0600)`);
        issued = result;
      }
      if (values['no-deploy']) {
        print(`not deployed (--no-deploy): \`mailproxy cert deploy --key ${issued.keyFile} --cert ${issued.certFile}\` does that`);
        return 0;
      }
      const outcome = await deployCertificate({
        config,
        keyFile: issued.keyFile,
        certFile: issued.certFile,
        ...(plan.trustedCas.length ? { chainFile: plan.trustFile } : {}),
        instancesDir,
        log: print,
      });
      print(
        outcome.changed
          ? `deployed: SHA-256 ${outcome.fingerprint}, ${outcome.daysLeft} days left`
          : `already deployed: SHA-256 ${outcome.fingerprint}, ${outcome.daysLeft} days left; nothing changed`,
      );
      return 0;
    });
  } catch (err) {
    return fail((err as Error).message);
  }
}

// The one deploy path every certificate takes (the CLI, the acme.sh hook, native ACME renewals).
//
// 1. Validate before touching anything (validate.ts): the key belongs to the certificate, it is valid
//    now, its names cover `hostname`, the chain verifies against the system roots or --chain.
// 2. Install under names Haraka never cached: `state_dir/tls/<leaf sha256>[-<chain hash>].key|.pem`,
//    each written complete with its final group and mode, fsynced and renamed into place; only then are
//    the [main] key= and cert= of both instances' tls.ini rewritten (atomically), and the deploy record
//    next to the files updated so that `render` agrees. Why this order can never show Haraka a
//    mismatched pair: docs/DESIGN.md, "Certificate deploy".
// 3. Verify: STARTTLS to every haraka-in listener until each serves the new fingerprint (Haraka reloads
//    tls.ini about 5 s after it changed), within a deadline. A listener that does not: restore both
//    tls.ini and the record, wait until the previous certificate is served again, fail with the reason.
// 4. Restart haraka-out (systemctl try-restart) when its tls.ini changed, prune old versions (the
//    previous pair stays for a rollback).
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { Config } from '../../config/schema';
import { probeTarget, type HostPort } from '../../config/net';
import { inboundListen, tlsDeployDir, type RoleName } from '../../config/paths';
import { ROLES } from '../../render/roles';
import { writeFileAtomic } from '../../render/write';
import { policyHostName } from '../../mtasts/policy';
import { covers } from '../acme/plan';
import { acquireLock, ensureDeployDir, filePolicy, installFile, pruneVersions, readRegular, removeFile } from './files';
import { probeServedCertificate, short, waitUntilServed, type Probe, type Served } from './probe';
import { systemdRestarter, type Restarter } from './restart';
import { formatRecord, parseRecord, RECORD_NAME, VERSIONED_FILE, type DeployedPair, type DeployRecord } from '../../haraka/deploy-record';
import { readTlsPair, withTlsPair, type TlsPair } from './tlsini';
import { CertificateRefused, describeCertificate, validateCertificate, type ValidatedCertificate } from './validate';

/** haraka-config reloads a changed file 5 s after its last change event (haraka-config lib/watch.js). */
export const HARAKA_RELOAD_DELAY_MS = 5_000;
/** How long a listener may take to serve the new certificate: the reload delay, and room for a busy VPS. */
export const DEFAULT_VERIFY_TIMEOUT_MS = 30_000;
/** Between two STARTTLS probes of one listener. */
export const DEFAULT_POLL_INTERVAL_MS = 500;

export interface DeployRequest {
  config: Config;
  /** PEM files of the new private key and certificate (leaf first, chain after), and an optional extra CA chain to verify against. */
  keyFile: string;
  certFile: string;
  chainFile?: string;
  /** The rendered instance directories (default: config.system.instances_dir). */
  instancesDir: string;
  /** Progress lines for the person or log watching. */
  log: (line: string) => void;
  /** The clock validity is judged by (tests). */
  now?: () => Date;
  /** Deadline for every listener to serve the new certificate, and again the old one after a rollback (default 30 s). */
  verifyTimeoutMs?: number;
  pollIntervalMs?: number;
  /** Restarts haraka-out when its TLS settings changed; default: `systemctl try-restart` when systemd runs. */
  restartHarakaOut?: Restarter;
  /** Which certificate a listener serves; default: a real STARTTLS session (tests wrap it). */
  probe?: Probe;
  /** Trust anchors without --chain; default: Node's roots, NODE_EXTRA_CA_CERTS and the system store. */
  systemRoots?: () => readonly string[];
}

export interface DeployOutcome {
  /** False when this very certificate was already deployed (nothing changed). */
  changed: boolean;
  /** SHA-256 fingerprint of the deployed certificate. */
  fingerprint: string;
  daysLeft: number;
  /** The versioned files tls.ini now names. */
  keyPath?: string;
  certPath?: string;
  /** What haraka-in served before (null: nothing, or it was not running). */
  previousFingerprint?: string | null;
  /** Whether haraka-out's TLS settings changed, so that it was restarted (or would have been, without systemd). */
  harakaOutRestarted?: boolean;
}

/** A deploy that did not happen (`refused`: nothing was touched), failed, or was rolled back. */
export class DeployError extends Error {
  constructor(
    readonly stage: 'refused' | 'failed' | 'rolled back',
    message: string,
  ) {
    super(message);
  }
}

/** Trust anchors without --chain: Node's bundled roots, NODE_EXTRA_CA_CERTS, and the operating system's store. */
export function systemRoots(): readonly string[] {
  const get = (tls as unknown as { getCACertificates?: (type: string) => string[] }).getCACertificates;
  if (!get) return tls.rootCertificates;
  const all = new Set<string>();
  for (const type of ['default', 'system']) {
    try {
      for (const pem of get(type)) all.add(pem);
    } catch {
      // a store this Node cannot read: the others still count
    }
  }
  return [...all];
}

async function readInput(file: string, what: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new DeployError('refused', `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

interface Instance {
  role: RoleName;
  file: string;
  text: string;
  mode: number;
  pair: TlsPair;
}

async function readInstances(instancesDir: string, configHint: string): Promise<Instance[]> {
  const instances: Instance[] = [];
  for (const role of ROLES) {
    const file = path.join(instancesDir, role.name, 'config', 'tls.ini');
    const bytes = await readRegular(file);
    if (!bytes) throw new DeployError('refused', `${file} does not exist: render the instances first (mailproxy render ${configHint}) or pass --instances DIR`);
    const text = bytes.toString('utf8');
    const pair = readTlsPair(text);
    if (!pair) throw new DeployError('refused', `${file} has no key= and cert= in [main]: render it again with \`mailproxy render\``);
    instances.push({ role: role.name, file, text, mode: (await fs.stat(file)).mode & 0o777, pair });
  }
  return instances;
}

async function fingerprintOf(certFile: string): Promise<string | null> {
  try {
    return new X509Certificate(await fs.readFile(certFile)).fingerprint256;
  } catch {
    return null;
  }
}

function stemOf(file: string, dir: string): string | null {
  if (path.dirname(file) !== dir) return null;
  return VERSIONED_FILE.exec(path.basename(file))?.[1] ?? null;
}

export async function deployCertificate(request: DeployRequest): Promise<DeployOutcome> {
  const { config, log } = request;
  const now = (request.now ?? (() => new Date()))();
  const probe = request.probe ?? probeServedCertificate;

  // 1. Validate: nothing is touched before this passes.
  const input = {
    keyPem: await readInput(request.keyFile, 'the key'),
    certPem: await readInput(request.certFile, 'the certificate'),
    chainPem: request.chainFile === undefined ? undefined : await readInput(request.chainFile, 'the --chain file'),
  };
  let cert: ValidatedCertificate;
  try {
    cert = validateCertificate(input, { hostname: config.hostname, now, systemRoots: request.systemRoots ?? systemRoots });
  } catch (err) {
    if (err instanceof CertificateRefused) throw new DeployError('refused', err.message);
    throw err;
  }
  log(describeCertificate(cert));
  const matched = cert.matchedName.toLowerCase() === config.hostname.toLowerCase() ? '' : ` (as ${cert.matchedName})`;
  log(`names cover hostname ${config.hostname}${matched}; key matches; chain verified against ${cert.trustedBy}: ${cert.chain}`);
  if (cert.appended)
    log(`the certificate file lacked ${cert.appended} intermediate${cert.appended === 1 ? '' : 's'} of that chain: taken from --chain and served after the certificate`);
  if (cert.daysLeft < config.health.cert_warning_days) log(`warning: only ${cert.daysLeft} days left, under health.cert_warning_days (${config.health.cert_warning_days})`);
  const uncovered = config.inbound.mta_sts.enabled
    ? config.domains.map(policyHostName).filter(
        (name) =>
          !covers(
            cert.names.map((certName) => certName.toLowerCase()),
            name,
          ),
      )
    : [];
  // A warning, not a refusal: the certificate is what haraka-in's STARTTLS needs, and refusing it would let
  // that one expire; without these names senders only fail to fetch the policy, and then deliver as if
  // there were none (RFC 8461 §5), or by the copy they cached.
  if (uncovered.length)
    log(
      `warning: inbound.mta_sts is on, but the certificate does not cover ${uncovered.join(', ')}: senders cannot fetch the MTA-STS policy there (native ACME adds these names; with acme.sh, add -d for each)`,
    );

  const configHint = '--config FILE';
  // Refuse before creating anything when the instances are not rendered.
  await readInstances(request.instancesDir, configHint);
  const dir = tlsDeployDir(config);
  const keyPath = path.join(dir, `${cert.stem}.key`);
  const certPath = path.join(dir, `${cert.stem}.pem`);
  const wanted: TlsPair = { key: keyPath, cert: certPath };
  const outcome = { fingerprint: cert.fingerprint, daysLeft: cert.daysLeft, keyPath, certPath };

  const policy = filePolicy(config.system.user);
  try {
    await ensureDeployDir(dir, policy);
  } catch (err) {
    throw new DeployError('failed', `cannot make ${dir}: ${(err as Error).message}`);
  }
  const unlock = await acquireLock(dir).catch((err: Error) => {
    throw new DeployError('failed', err.message);
  });
  try {
    // Read again under the lock: another deploy may have finished meanwhile.
    const instances = await readInstances(request.instancesDir, configHint);
    const recordFile = path.join(dir, RECORD_NAME);
    const recordBytes = await readRegular(recordFile);
    let record: DeployRecord | null = null;
    try {
      record = recordBytes ? parseRecord(recordBytes.toString('utf8'), recordFile) : null;
    } catch (err) {
      log(`warning: ${(err as Error).message}: replacing it`);
    }
    const onDisk = async (file: string, text: string) => (await readRegular(file))?.equals(Buffer.from(text)) ?? false;

    const current: DeployedPair = { fingerprint: cert.fingerprint, stem: cert.stem, key: keyPath, cert: certPath, deployed: now.toISOString() };
    const pointsAtNew = instances.every((instance) => instance.pair.key === keyPath && instance.pair.cert === certPath);
    if (pointsAtNew && (await onDisk(keyPath, cert.keyPem)) && (await onDisk(certPath, cert.certPem))) {
      if (record?.current.stem !== cert.stem) {
        await writeFileAtomic(recordFile, formatRecord({ version: 1, current, previous: record?.current ?? null }));
        log(`recorded ${path.basename(certPath)} in ${recordFile}`);
      }
      log(`certificate ${short(cert.fingerprint)} is already deployed (both instances' tls.ini name ${certPath}): nothing changed`);
      return { ...outcome, changed: false, previousFingerprint: cert.fingerprint, harakaOutRestarted: false };
    }

    // Which listeners run, and what each serves now: after a rollback it must serve that again.
    const targets = inboundListen(config)
      .map(probeTarget)
      .filter((target): target is HostPort => target !== null);
    const stepTimeoutMs = config.health.smtp_timeout * 1000;
    const served = await Promise.all(targets.map(async (target) => ({ target, before: await probe(target, config.hostname, stepTimeoutMs) })));
    const running = served.filter((entry) => !entry.before.refused);
    for (const { target, before: was } of served) {
      const address = `${target.host}:${target.port}`;
      log(
        `haraka-in ${address} ${was.refused ? 'is not running (connection refused): not verified' : was.fingerprint ? `serves ${short(was.fingerprint)} now` : `serves no certificate now (${was.error})`}`,
      );
    }
    const previousFingerprint = running.find((entry) => entry.before.fingerprint)?.before.fingerprint ?? (await fingerprintOf(instances[0]?.pair.cert ?? ''));

    // 2. Install: the versioned files first, complete; then the tls.ini that names them; then the record.
    log(`installing into ${dir}: ${policy.note}`);
    const created: string[] = [];
    try {
      for (const [file, text, mode] of [
        [keyPath, cert.keyPem, 0o640],
        [certPath, cert.certPem, 0o644],
      ] as const) {
        const existed = (await readRegular(file)) !== null;
        if (await installFile(dir, path.basename(file), text, mode, policy)) {
          if (!existed) created.push(file);
          log(`wrote ${file}`);
        } else {
          log(`kept ${file} (already there, the same bytes)`);
        }
      }
    } catch (err) {
      for (const file of created) await removeFile(file).catch(() => undefined);
      throw new DeployError('failed', `cannot write the certificate files into ${dir}: ${(err as Error).message}; nothing else was changed`);
    }

    const oldPair = instances.find((instance) => instance.role === 'haraka-in')?.pair ?? (instances[0] as Instance).pair;
    const previous: DeployedPair =
      record && record.current.key === oldPair.key && record.current.cert === oldPair.cert
        ? record.current
        : { fingerprint: previousFingerprint ?? 'unknown', stem: stemOf(oldPair.cert, dir) ?? '', key: oldPair.key, cert: oldPair.cert, deployed: 'unknown' };
    const changedInstances: Instance[] = [];
    const restore = async () => {
      for (const instance of changedInstances) {
        await writeFileAtomic(instance.file, instance.text, instance.mode);
        log(`restored ${instance.file}`);
      }
      if (recordBytes) await writeFileAtomic(recordFile, recordBytes.toString('utf8'));
      else await removeFile(recordFile);
      for (const file of created) await removeFile(file);
    };
    try {
      for (const instance of instances) {
        const text = withTlsPair(instance.text, wanted, instance.file);
        if (text === instance.text) continue;
        changedInstances.push(instance);
        await writeFileAtomic(instance.file, text, instance.mode);
        log(`${instance.role}: ${instance.file} now names the new files`);
      }
      await writeFileAtomic(recordFile, formatRecord({ version: 1, current, previous }));
    } catch (err) {
      await restore().catch((restoreErr: Error) => log(`error: restoring failed too: ${restoreErr.message}`));
      throw new DeployError('failed', `cannot switch tls.ini to the new files: ${(err as Error).message}; restored the previous tls.ini`);
    }

    // 3. Verify on every running listener, within the deadline.
    const verifyTimeoutMs = request.verifyTimeoutMs ?? DEFAULT_VERIFY_TIMEOUT_MS;
    const waitOptions = {
      hostname: config.hostname,
      stepTimeoutMs,
      deadlineMs: verifyTimeoutMs,
      intervalMs: request.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
      probe,
      log,
    };
    if (running.length === 0) {
      log('haraka-in is not running: nothing to verify; it reads the new certificate when it starts');
    } else {
      log(
        `waiting for haraka-in to serve ${short(cert.fingerprint)} (Haraka reloads tls.ini ${HARAKA_RELOAD_DELAY_MS / 1000} s after it changed; deadline ${verifyTimeoutMs / 1000} s)`,
      );
      const result = await waitUntilServed(
        running.map((entry) => entry.target),
        cert.fingerprint,
        waitOptions,
      );
      if (!result.ok) {
        for (const failure of result.failures) log(`error: ${failure}`);
        log('rolling back to the previous certificate');
        try {
          await restore();
        } catch (err) {
          throw new DeployError('failed', `${result.failures.join('; ')}; and the rollback failed: ${(err as Error).message}`);
        }
        const back = await rollbackServed(running, waitOptions);
        throw new DeployError(
          'rolled back',
          `${result.failures.join('; ')}. Rolled back: ${back.ok ? 'every listener serves the previous certificate again' : `but ${back.failures.join('; ')}`}`,
        );
      }
    }

    // 4. haraka-out reads its TLS settings only at start; then prune, keeping the previous pair.
    const outChanged = changedInstances.some((instance) => instance.role === 'haraka-out');
    let restartError: Error | null = null;
    if (outChanged) {
      try {
        log(await (request.restartHarakaOut ?? systemdRestarter(process.env))());
      } catch (err) {
        restartError = err as Error;
      }
    } else {
      log('haraka-out: its TLS settings did not change, no restart');
    }
    const keep = new Set([cert.stem, ...(previous.stem ? [previous.stem] : [])]);
    for (const name of await pruneVersions(dir, keep)) log(`pruned ${path.join(dir, name)}`);
    if (restartError) throw new DeployError('failed', `the new certificate is installed and served by haraka-in, but ${restartError.message}`);
    if (config.inbound.mta_sts.enabled) log(`mailproxy-mta-sts.service presents it within a few seconds, without a restart: it watches ${recordFile}`);
    log(`deployed ${short(cert.fingerprint)}: ${cert.daysLeft} days left`);
    return { ...outcome, changed: true, previousFingerprint, harakaOutRestarted: outChanged };
  } finally {
    await unlock();
  }
}

/** After a rollback: each listener that served a certificate before serves it again, within the deadline. */
async function rollbackServed(running: { target: HostPort; before: Served }[], options: Parameters<typeof waitUntilServed>[2]): Promise<{ ok: boolean; failures: string[] }> {
  const failures: string[] = [];
  for (const fingerprint of new Set(running.map((entry) => entry.before.fingerprint))) {
    if (!fingerprint) continue;
    const targets = running.filter((entry) => entry.before.fingerprint === fingerprint).map((entry) => entry.target);
    failures.push(...(await waitUntilServed(targets, fingerprint, options)).failures);
  }
  return { ok: failures.length === 0, failures };
}

// Native ACME, the effectful part: the account key on disk, one order through acme-client (its `auto`
// flow: account, order, the authorizations in parallel, finalize, download), and the issued key and chain
// written under `<state_dir>/acme/<hostname>/` for the deploy path.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import * as acme from 'acme-client';
import type { Config } from '../../config/schema';
import { writeFileAtomic } from '../../render/write';
import { makeResponder } from './challenges';
import { certFacts, covers, type AcmePlan, type CertFacts } from './plan';

// Every ACME request has a deadline: the renewal unit has no start timeout, and a CA that stops answering
// must fail the run (the timer tries again) rather than hang it.
const ACME_REQUEST_TIMEOUT_MS = 30_000;
// acme-client polls a pending challenge or order with exponential backoff from this many ms (its default
// is 5 s); a CA that answers fast (pebble, mostly Let's Encrypt) is then not waited for in 5 s steps.
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
const BACKOFF_ATTEMPTS = 12;

export interface IssueLog {
  info: (line: string) => void;
  warn: (line: string) => void;
  /** acme-client's own debug lines (`--verbose`). */
  debug?: (line: string) => void;
}

export interface IssueResult {
  keyFile: string;
  certFile: string;
  facts: CertFacts;
  accountKeyCreated: boolean;
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/** The account key: read when it exists (tightened to 0600 if it was looser), made once otherwise. */
export async function loadOrCreateAccountKey(file: string, log: IssueLog): Promise<{ key: Buffer; created: boolean }> {
  try {
    const handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new Error(`the ACME account key ${file} is not a regular file`);
      if (stat.mode & 0o077) {
        await handle.chmod(0o600);
        log.warn(`warning: the ACME account key ${file} was readable by others (mode ${(stat.mode & 0o777).toString(8)}): now 0600`);
      }
      return { key: await handle.readFile(), created: false };
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
  }
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const key = await acme.crypto.createPrivateEcdsaKey('P-256');
  // wx: two runs at once must not overwrite each other's fresh key (the CA has bound one of them).
  await fs.writeFile(file, key, { mode: 0o600, flag: 'wx' });
  await fs.chmod(file, 0o600);
  log.info(`made a new ACME account key: ${file} (mode 0600; it is reused from now on)`);
  return { key, created: true };
}

/**
 * What a failed acme-client call says when the CA did not answer at all (null: the CA answered with an
 * ACME error). acme-client 5.4 turns a connection failure, once its retries are spent, into a TypeError
 * about `config` (its response interceptor reads the missing response): that is recognised here too.
 */
function networkFailure(err: unknown): string | null {
  const failure = err as { isAxiosError?: boolean; code?: string; message?: string };
  if (failure.isAxiosError || typeof failure.code === 'string') return failure.code ?? failure.message ?? 'no answer';
  if (err instanceof TypeError && /reading 'config'/.test(err.message)) return 'no answer (the connection failed)';
  return null;
}

/**
 * GET of the directory, before anything else: an unreachable CA or an untrusted HTTPS certificate is
 * named as such (acme-client would report either only as a TypeError, after a minute of retries).
 */
export function probeDirectory(url: string, agent: https.Agent | undefined, timeoutMs = ACME_REQUEST_TIMEOUT_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new Error(`cannot reach the ACME server ${url}: ${why}`));
    const request = https.get(url, { ...(agent ? { agent } : {}), timeout: timeoutMs, headers: { Accept: 'application/json' } }, (response) => {
      response.resume();
      if (response.statusCode === 200) resolve();
      else fail(`HTTP ${response.statusCode ?? '?'} for the directory (is acme.directory right?)`);
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error('no answer'), { code: 'ETIMEDOUT' })));
    request.on('error', (err: NodeJS.ErrnoException) => {
      const tlsTrust = /CERT|SELF_SIGNED|UNABLE_TO_/.test(err.code ?? '');
      fail(`${err.code ?? err.message}${tlsTrust ? ' (its HTTPS certificate is not trusted: a test CA or staging needs its CA in acme.trusted_cas)' : ''}`);
    });
  });
}

/**
 * Finds the account of the key, or registers one (agreeing to the CA's terms), and brings its contact up
 * to acme.email. Asked first with `onlyReturnExisting`: acme-client's own registration answers a known key
 * with an account update carrying only `termsOfServiceAgreed`, which a CA may refuse as an empty update.
 */
async function ensureAccount(client: acme.Client, email: string | null, log: IssueLog): Promise<void> {
  const contact = email ? [`mailto:${email}`] : [];
  let account: { contact?: string[] } | null = null;
  try {
    account = await client.createAccount({ onlyReturnExisting: true });
  } catch (err) {
    // An ACME error answer means no account for this key yet; no answer at all means no CA to register with.
    const network = networkFailure(err);
    if (network) throw new Error(`the ACME server stopped answering: ${network}`);
    account = null;
  }
  if (!account) {
    try {
      await client.createAccount({ termsOfServiceAgreed: true, ...(contact.length ? { contact } : {}) });
    } catch (err) {
      throw new Error(`cannot register the ACME account: ${networkFailure(err) ?? (err as Error).message}`);
    }
    log.info(`registered an ACME account${email ? ` for ${email}` : ''}: ${client.getAccountUrl()}`);
    return;
  }
  if (contact.length && !(account.contact ?? []).includes(contact[0]!)) {
    await client.updateAccount({ contact });
    log.info(`updated the ACME account's contact to ${email}`);
  }
}

/** The extra CA certificates of acme.trusted_cas in one PEM text ('' when there are none). */
export async function trustedCaPem(plan: AcmePlan): Promise<string> {
  const parts: string[] = [];
  for (const file of plan.trustedCas) {
    try {
      parts.push((await fs.readFile(file, 'utf8')).trim());
    } catch (err) {
      throw new Error(`cannot read acme.trusted_cas entry ${file}: ${(err as Error).message}`);
    }
  }
  return parts.length ? `${parts.join('\n')}\n` : '';
}

/**
 * One run at a time per state_dir: a second `cert issue|renew` (the timer while someone runs it by hand)
 * would fight over port 80 and order twice. A lock left by a dead process is taken over.
 */
export async function withAcmeLock<T>(dir: string, body: () => Promise<T>): Promise<T> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = path.join(dir, 'lock');
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.writeFile(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      if (errorCode(err) !== 'EEXIST' || attempt > 0) throw err;
      const pid = Number((await fs.readFile(lock, 'utf8').catch(() => '')).trim());
      let alive = false;
      if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch (probe) {
          alive = errorCode(probe) === 'EPERM';
        }
      }
      if (alive) throw new Error(`another cert issue or renew (pid ${pid}) is running (${lock})`);
      await fs.rm(lock, { force: true });
    }
  }
  try {
    return await body();
  } finally {
    await fs.rm(lock, { force: true });
  }
}

/** Runs one order for plan.names and writes the key and full chain; throws with the CA's reason on failure. */
export async function issueCertificate(config: Config, plan: AcmePlan, log: IssueLog): Promise<IssueResult> {
  const account = await loadOrCreateAccountKey(plan.accountKeyFile, log);
  const extraCa = await trustedCaPem(plan);
  const responder = makeResponder(config, log.info, log.warn);

  const saved = { agent: acme.axios.defaults.httpsAgent as unknown, timeout: acme.axios.defaults.timeout };
  // With acme.trusted_cas the ACME server may present a certificate from those CAs (pebble) as well as
  // from the usual roots; without, Node's own trust applies unchanged.
  const agent = extraCa ? new https.Agent({ ca: [...tls.rootCertificates, extraCa], keepAlive: false }) : undefined;
  if (agent) acme.axios.defaults.httpsAgent = agent;
  acme.axios.defaults.timeout = ACME_REQUEST_TIMEOUT_MS;
  acme.setLogger(log.debug ?? (() => undefined));

  let certPem: string;
  let keyPem: Buffer;
  try {
    await probeDirectory(plan.directoryUrl, agent);
    await responder.prepare(plan.names);
    const client = new acme.Client({
      directoryUrl: plan.directoryUrl,
      accountKey: account.key,
      backoffMin: BACKOFF_MIN_MS,
      backoffMax: BACKOFF_MAX_MS,
      backoffAttempts: BACKOFF_ATTEMPTS,
    });
    await ensureAccount(client, plan.email, log);
    keyPem = await acme.crypto.createPrivateEcdsaKey('P-256');
    const [, csr] = await acme.crypto.createCsr({ commonName: plan.names[0]!, altNames: plan.names }, keyPem);
    try {
      certPem = await client.auto({
        csr,
        termsOfServiceAgreed: true,
        challengePriority: [responder.type],
        // acme-client's own pre-check asks the system resolver and fetches over the internet; the DNS-01
        // responder waits for its records at the nameservers itself, and the CA's answer names any problem.
        skipChallengeVerification: true,
        challengeCreateFn: async (authz, challenge, keyAuthorization) => {
          if (challenge.type !== responder.type) {
            throw new Error(`the CA offers no ${responder.type} challenge for ${authz.identifier.value} (only ${authz.challenges.map((c) => c.type).join(', ')})`);
          }
          await responder.create(authz.identifier.value, challenge as { type: string; token: string }, keyAuthorization);
        },
        challengeRemoveFn: async (authz, challenge, keyAuthorization) => {
          try {
            await responder.remove(authz.identifier.value, challenge as { type: string; token: string }, keyAuthorization);
          } catch (err) {
            log.warn(`warning: ${(err as Error).message} (tried again at the end)`);
            throw err;
          }
        },
      });
    } catch (err) {
      const network = networkFailure(err);
      throw new Error(`the ACME order at ${plan.directoryUrl} failed: ${network ? `the ACME server stopped answering: ${network}` : (err as Error).message}`);
    }
  } finally {
    acme.axios.defaults.httpsAgent = saved.agent;
    acme.axios.defaults.timeout = saved.timeout;
    acme.setLogger(() => undefined);
    // Leftovers (a TXT record the provider would not delete) are loud, but do not undo a good certificate.
    await responder.close().catch((err: unknown) => log.warn(`warning: ${(err as Error).message}`));
  }

  // What came back must be what was asked for, with the key that was made for it.
  const facts = certFacts(certPem);
  const missing = plan.names.filter((name) => !covers(facts.names, name));
  if (missing.length) throw new Error(`the CA issued a certificate without ${missing.join(', ')} (it names ${facts.names.join(', ')})`);
  const leaf = new X509Certificate(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certPem)![0]);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the CA issued a certificate for another key');

  const dir = path.dirname(plan.keyFile);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(plan.keyFile, keyPem.toString(), 0o600);
  await writeFileAtomic(plan.certFile, certPem.endsWith('\n') ? certPem : `${certPem}\n`, 0o644);
  if (extraCa) await writeFileAtomic(plan.trustFile, extraCa, 0o644);
  return { keyFile: plan.keyFile, certFile: plan.certFile, facts, accountKeyCreated: account.created };
}

// What `mailproxy check` says about MTA-STS policy hosting (pure: the caller reads the certificate). An
// enforce policy tells compliant senders to deliver only over TLS to a certificate valid for an mx name:
// while haraka-in's STARTTLS certificate is missing, expired or not for hostname, publishing one would stop
// their mail, so `check` refuses it. The policy host names missing from the certificate are a warning:
// senders then cannot fetch the policy and deliver as before (RFC 8461 §5).
import type { X509Certificate } from 'node:crypto';
import { certificateNames, parseCertificates } from '../certs/deploy/validate';
import type { Config } from '../config/schema';
import { policyHosts } from './policy';

/** Why the STARTTLS certificate cannot carry an enforce policy for `hostname`; null when it can. */
function enforceProblem(leaf: X509Certificate | null, hostname: string, now: Date): string | null {
  if (!leaf) return 'there is no STARTTLS certificate';
  if (now < new Date(leaf.validFrom)) return `the STARTTLS certificate is not valid before ${new Date(leaf.validFrom).toISOString()}`;
  if (now > new Date(leaf.validTo)) return `the STARTTLS certificate expired on ${new Date(leaf.validTo).toISOString()}`;
  if (!leaf.checkHost(hostname)) return `the STARTTLS certificate's names (${certificateNames(leaf).join(', ') || 'none'}) do not cover hostname ${hostname}`;
  return null;
}

/** `error:` lines refuse the config, `warning:` lines do not. `certPem`: the certificate haraka-in serves, null when unreadable. */
export function mtaStsCheckLines(config: Config, certPem: string | null, now: Date): string[] {
  const settings = config.inbound.mta_sts;
  if (!settings.enabled) return [];
  let leaf: X509Certificate | null = null;
  try {
    leaf = certPem === null ? null : (parseCertificates(certPem, 'the certificate file')[0] ?? null);
  } catch {
    // does not parse: the certificate lines of `check` say so; for this judgement there is none
  }
  const lines: string[] = [];
  const problem = settings.mode === 'enforce' ? enforceProblem(leaf, config.hostname, now) : null;
  if (problem) {
    lines.push(
      `error: inbound.mta_sts.mode is enforce, but ${problem}: senders that honour the policy would stop delivering to haraka-in. Deploy a valid certificate for ${config.hostname} first (\`mailproxy cert deploy\`), or use mode testing`,
    );
  }
  const missing = leaf ? policyHosts(config).filter((name) => !leaf.checkHost(name)) : [];
  if (missing.length) {
    lines.push(`warning: inbound.mta_sts is on, but the certificate does not cover ${missing.join(', ')}: senders cannot fetch the policy there (native ACME adds these names)`);
  }
  return lines;
}

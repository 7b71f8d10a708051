// `mailproxy check`: validate the config, say what is wrong with the certificate on disk, render it to a
// temp dir and ask Haraka itself to load each instance's plugin list, so a plugin that cannot be resolved
// is caught before deploy.
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import { effectiveTls } from '../haraka/deploy-record';
import { certificateWarnings } from '../certs/deploy/validate';
import { formatConfigError, loadConfigText } from '../config/load';
import { placeholders, placeholderWarning } from '../config/placeholders';
import type { Config } from '../config/schema';
import { hiddenFromUnits, nodeProblem, probeNode } from '../haraka/node-runtime';
import { checkPluginOrder, harakaBin } from '../haraka/process';
import { mtaStsCheckLines } from '../mtasts-host/check';
import { renderInstances } from '../render/haraka';
import { ROLES } from '../render/roles';
import { writeRendered } from '../render/write';

export interface CheckReport {
  ok: boolean;
  lines: string[];
}

/** Why Haraka's tls plugin would fail to build its TLS context from this pair (it exits), or null. */
function unloadablePair(keyPem: string, certPem: string): string | null {
  try {
    createSecureContext({ key: keyPem, cert: certPem });
    return null;
  } catch (err) {
    const reason = (err as Error).message;
    return /key values mismatch/i.test(reason) ? 'the key does not belong to the certificate' : reason;
  }
}

/**
 * The certificate on disk that tls.ini names (the last `cert deploy`'s, else tls.key/tls.cert). A pair
 * Haraka cannot load (not PEM, a key of another certificate) is an `error:` line: Haraka would exit at
 * start. Warnings, the config itself still valid: missing, expired or not yet valid, fewer than
 * health.cert_warning_days (14) days left, names that do not cover hostname.
 */
export function tlsCheckLines(config: Config, now = new Date()): string[] {
  const tls = effectiveTls(config);
  const lines: string[] = [];
  if (tls.ignored) lines.push(`warning: not using the last cert deploy: ${tls.ignored}`);
  const label = (key: 'key' | 'cert') => (tls.from === 'cert deploy' ? `deployed ${key === 'key' ? 'key' : 'certificate'}` : `tls.${key}`);
  for (const key of ['key', 'cert'] as const) {
    if (!existsSync(tls[key]))
      lines.push(
        `warning: ${label(key)}: ${tls[key]} does not exist yet; haraka-in offers no STARTTLS without it, and picks up one created later only when restarted (or installed with \`mailproxy cert deploy\`)`,
      );
  }
  let certPem: string;
  try {
    certPem = readFileSync(tls.cert, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') lines.push(`warning: ${label('cert')}: cannot read ${tls.cert}: ${(err as Error).message}`);
    return lines;
  }
  let keyPem: string | null = null;
  try {
    keyPem = readFileSync(tls.key, 'utf8');
  } catch {
    // unreadable for this user (the key is for group mailproxy) or missing (said above): not compared
  }
  const unloadable = keyPem === null ? null : unloadablePair(keyPem, certPem);
  if (unloadable) {
    lines.push(
      `error: ${label('key')} ${tls.key} and ${label('cert')} ${tls.cert}: Haraka cannot load them (${unloadable}); haraka-in would stop at start. Give a matching PEM key and certificate (\`mailproxy cert deploy\` checks them first)`,
    );
  }
  const warnings = certificateWarnings(certPem, unloadable ? null : keyPem, config.hostname, now, config.health.cert_warning_days);
  for (const warning of warnings) {
    if (!unloadable || !/does not parse|holds no PEM/.test(warning)) lines.push(`warning: ${label('cert')}: ${tls.cert}: ${warning}`);
  }
  return lines;
}

/** Warnings about the machine and the values a user must change, not about the file's syntax. */
async function setupWarnings(config: Config): Promise<string[]> {
  const lines: string[] = [];
  const example = placeholderWarning(placeholders(config));
  if (example) lines.push(`warning: ${example}`);
  const node = nodeProblem(config.system.node, await probeNode(config.system.node)) ?? hiddenFromUnits(config.system.node);
  if (node) lines.push(`warning: ${node}`);
  return lines;
}

/** The certificate tls.ini names, or null when it cannot be read (tlsCheckLines says why). */
function servedCertificate(config: Config): string | null {
  try {
    return readFileSync(effectiveTls(config).cert, 'utf8');
  } catch {
    return null;
  }
}

export async function checkConfig(text: string, source: string): Promise<CheckReport> {
  const result = loadConfigText(text);
  if (!result.ok) return { ok: false, lines: result.errors.map((error) => formatConfigError(source, error)) };
  const configLines = result.warnings.map((warning) => `warning: ${formatConfigError(source, warning)}`);
  const tlsLines = tlsCheckLines(result.config);
  const broken = tlsLines.filter((line) => line.startsWith('error: '));
  const stsLines = mtaStsCheckLines(result.config, servedCertificate(result.config), new Date());
  const refused = stsLines.filter((line) => line.startsWith('error: '));
  const verdict = broken.length ? 'haraka-in cannot start with it:' : refused.length ? 'it is refused:' : null;
  const lines = [
    verdict ? `${source}: the config parses, but ${verdict}` : `${source}: config is valid`,
    ...broken,
    ...refused,
    ...configLines,
    ...tlsLines.filter((line) => !line.startsWith('error: ')),
    ...stsLines.filter((line) => !line.startsWith('error: ')),
    ...(await setupWarnings(result.config)),
  ];
  // Haraka would only repeat the TLS error above as a stack trace.
  if (broken.length > 0) return { ok: false, lines };
  const tls = effectiveTls(result.config);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-check-'));
  try {
    await writeRendered(dir, renderInstances(result.config, { source, ...(tls.from === 'cert deploy' ? { tls: { key: tls.key, cert: tls.cert } } : {}) }));
    let ok = true;
    for (const role of ROLES) {
      const instanceDir = path.join(dir, role.name);
      // `haraka -o` reads the hook list from docs/Plugins.md under the instance dir.
      symlinkSync(path.join(path.dirname(harakaBin()), '..', 'docs'), path.join(instanceDir, 'docs'));
      const order = checkPluginOrder(instanceDir);
      if (order.ok) {
        lines.push(`${role.name}: Haraka loaded plugins ${role.plugins.join(', ')}`);
      } else {
        ok = false;
        lines.push(
          `${role.name}: Haraka could not load its plugins:`,
          ...order.output
            .trim()
            .split('\n')
            .slice(-8)
            .map((line) => `  ${line}`),
        );
      }
    }
    return { ok: ok && refused.length === 0, lines };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

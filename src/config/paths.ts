// Where each instance lives and listens, derived from the config: its state directory (queue, spool, the
// store-and-forward spool, the MTA-STS cache) and its listen addresses (and the MTA-STS policy service's). The renderer writes these into the
// instances' files; health, queue, selftest, demo and cert deploy find the same places through here.
import path from 'node:path';
import { formatHostPort } from './net';
import type { Config } from './schema';

/** The two Haraka instances (the role table, src/render/roles.ts, says what each does). */
export type RoleName = 'haraka-in' | 'haraka-out';

export function stateDirFor(config: Config, role: RoleName): string {
  return path.posix.join(config.state_dir, role);
}

/** Haraka's outbound queue of an instance (queue_dir). */
export function queueDirFor(config: Config, role: RoleName): string {
  return path.posix.join(stateDirFor(config, role), 'queue');
}

/** Where Haraka spools messages too large to keep in memory (connection.ini spool_dir). */
export function spoolDirFor(config: Config, role: RoleName): string {
  return path.posix.join(stateDirFor(config, role), 'spool');
}

/** haraka-in's store-and-forward spool: mail kept while the backend cannot be reached. */
export function storeDir(config: Config): string {
  return path.posix.join(stateDirFor(config, 'haraka-in'), 'store');
}

/** haraka-out's pickup directory: messages haraka-in hands it to send (the backup MX's DSNs), as files
 * rather than over SMTP, so that haraka-out never relays for a local process (Postfix's maildrop). */
export function pickupDir(config: Config): string {
  return path.posix.join(stateDirFor(config, 'haraka-out'), 'pickup');
}

/** haraka-out's cache of MTA-STS policies. */
export function mtaStsCacheFile(config: Config): string {
  return path.posix.join(stateDirFor(config, 'haraka-out'), 'mta-sts-cache.json');
}

/** haraka-out's counts of TLS sessions per day, for SMTP TLS reports (src/tlsrpt/store.ts). */
export function tlsRptDir(config: Config): string {
  return path.posix.join(stateDirFor(config, 'haraka-out'), 'tls-rpt');
}

/** The private key that DKIM-signs emailed TLS reports, one per selector (a new selector is a new key). */
export function tlsRptDkimKeyFile(config: Config): string {
  return path.posix.join(tlsRptDir(config), `dkim-${config.outbound.tls_rpt.dkim_selector}.pem`);
}

/** Where `cert deploy` keeps its files: `state_dir/tls` (never an instance's config/tls/, which Haraka loads as SNI certificates). */
export function tlsDeployDir(config: Config): string {
  return path.posix.join(config.state_dir, 'tls');
}

/** haraka-in's listen addresses: inbound.listen, or port 25 on the public addresses. */
export function inboundListen(config: Config): string[] {
  if (config.inbound.listen.length > 0) return config.inbound.listen;
  const listen = [formatHostPort({ host: config.public_ipv4, port: 25 })];
  if (config.public_ipv6) listen.push(formatHostPort({ host: config.public_ipv6, port: 25 }));
  return listen;
}

/** The MTA-STS policy service's listen addresses: inbound.mta_sts.listen, or port 443 (where senders fetch a policy, RFC 8461 §3.3) on the public addresses. */
export function mtaStsListen(config: Config): string[] {
  const { listen } = config.inbound.mta_sts;
  if (listen.length > 0) return listen;
  return [config.public_ipv4, ...(config.public_ipv6 ? [config.public_ipv6] : [])].map((host) => formatHostPort({ host, port: 443 }));
}

export function listenFor(config: Config, role: RoleName): string[] {
  return role === 'haraka-in' ? inboundListen(config) : [config.outbound.listen];
}

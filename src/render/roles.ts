// The role table: one row per Haraka instance, the single task it does and the plugins that do it.
// The instance directories (and, later, the systemd units) are rendered from these rows.

import type { RoleName } from '../config/paths';

export interface Role {
  name: RoleName;
  summary: string;
  /** Plugin names as written to config/plugins, in hook order. Never `xclient`: that plugin ACCEPTS XCLIENT.
   * mailproxy-dns comes first: the others resolve through the servers it sets. mailproxy-notify (systemd
   * readiness and watchdog) hooks no SMTP phase; it is last. */
  plugins: readonly string[];
}

export const ROLES: readonly Role[] = [
  {
    name: 'haraka-in',
    summary: 'public MX: accepts mail for our domains and forwards it to the backend',
    // mailproxy-limits right after mailproxy-dns: a client over a limit is refused before anything else
    // (edge checks, DNS lookups, the backend) spends work on it.
    plugins: ['mailproxy-dns', 'mailproxy-limits', 'mailproxy-smtp', 'tls', 'mailproxy-edge', 'mailproxy-forward', 'mailproxy-notify'],
  },
  {
    name: 'haraka-out',
    summary: 'closed relay on the WireGuard address: delivers the backend’s outbound mail to the internet',
    plugins: ['mailproxy-dns', 'mailproxy-smtp', 'relay', 'mailproxy-outbound', 'mailproxy-notify'],
  },
];

// What `mailproxy dane check` prints (pure).
import { describeRecord } from './tlsa';
import type { DaneRoute, MxHost } from './route';

function hostLine(host: MxHost): string {
  const addresses = host.addresses.length ? host.addresses.join(', ') : 'no addresses';
  const head = `  ${host.name} (preference ${host.priority}; ${addresses}): `;
  switch (host.tls.level) {
    case 'dane':
      return `${head}dane: STARTTLS required, the certificate must match TLSA ${host.tls.records.map(describeRecord).join(' or ')}`;
    case 'encrypt':
      return `${head}encrypt: STARTTLS required without authentication (TLSA records, none usable for SMTP: ${host.tls.records.map(describeRecord).join(', ')})`;
    case 'may':
      return `${head}opportunistic TLS (${host.tls.why})`;
    case 'unusable':
      return `${head}skipped, never reached without its TLSA check (${host.tls.why})`;
  }
}

/** The DANE verdict for a domain as haraka-out will apply it. */
export function formatDaneRoute(domain: string, route: DaneRoute): string {
  switch (route.kind) {
    case 'insecure':
      return `${domain}: DANE does not apply (${route.why}); haraka-out uses the domain's MTA-STS policy if it has one, else opportunistic TLS`;
    case 'failed':
      return `${domain}: DANE lookups failed (${route.why}); haraka-out keeps mail for it queued and retries`;
    case 'dane':
      return [
        `${domain}: DANE applies (DNSSEC-signed MX and TLSA records); an MTA-STS policy governs only the hosts DANE does not authenticate`,
        ...route.hosts.map(hostLine),
        ...route.skipped.map(hostLine),
      ].join('\n');
  }
}

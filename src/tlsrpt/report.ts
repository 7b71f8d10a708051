// Turns one UTC day of TLS session records into the aggregate report a policy domain asked for (RFC 8460 §4),
// and names the report file (§5.1). Pure: the caller supplies the day, the report id and who submits it.
import { domainToASCII } from 'node:url';
import type { DayRecord, FailureRow, PolicyDay } from './types';

/** Who sends the report: organization-name and contact-info (§4.3). */
export interface Submitter {
  organization: string;
  /** An e-mail address or a URL where the receiving domain can reach us. */
  contact: string;
}

/** One failure-details entry (§4.3, §4.4). */
export interface TlsReportFailure {
  'result-type': FailureRow['resultType'];
  'sending-mta-ip': string;
  'receiving-mx-hostname': string;
  'receiving-ip'?: string;
  'failed-session-count': number;
  'failure-reason-code'?: string;
}

/** One policies[] entry: the policy applied, its counts and its failures. */
export interface TlsReportPolicy {
  policy: {
    'policy-type': PolicyDay['policy']['type'];
    'policy-string': string[];
    'policy-domain': string;
    'mx-host': string[];
  };
  summary: {
    'total-successful-session-count': number;
    'total-failure-session-count': number;
  };
  'failure-details': TlsReportFailure[];
}

/** The JSON report object of RFC 8460 §4.3 (application/tlsrpt+json). */
export interface TlsReport {
  'organization-name': string;
  'date-range': { 'start-datetime': string; 'end-datetime': string };
  'contact-info': string;
  'report-id': string;
  policies: TlsReportPolicy[];
}

const DAY_SECONDS = 86_400;

/** Seconds since the epoch at 00:00:00 UTC of `day` (YYYY-MM-DD); throws on anything else. */
export function dayStartSeconds(day: string): number {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  const ms = match ? Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])) : Number.NaN;
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== day) throw new Error(`${JSON.stringify(day)} is not a UTC day (YYYY-MM-DD)`);
  return ms / 1000;
}

/** A domain compared and printed the way reports name it: lower case, no trailing dot. */
function normalizedDomain(domain: string): string {
  return domain.trim().toLowerCase().replace(/\.$/, '');
}

/** The A-label form of a domain (§5.1 wants Punycode in file names); the name itself when it is not one. */
function asciiDomain(domain: string): string {
  const name = normalizedDomain(domain);
  return domainToASCII(name) || name;
}

function failureDetail(row: FailureRow): TlsReportFailure {
  return {
    'result-type': row.resultType,
    'sending-mta-ip': row.sendingMtaIp,
    'receiving-mx-hostname': row.receivingMxHostname,
    ...(row.receivingIp ? { 'receiving-ip': row.receivingIp } : {}),
    'failed-session-count': row.count,
    ...(row.reasonCode ? { 'failure-reason-code': row.reasonCode } : {}),
  };
}

function reportPolicy(entry: PolicyDay): TlsReportPolicy {
  return {
    policy: {
      'policy-type': entry.policy.type,
      'policy-string': [...entry.policy.strings],
      'policy-domain': normalizedDomain(entry.policy.domain),
      'mx-host': [...entry.policy.mxHost],
    },
    summary: {
      'total-successful-session-count': entry.successes,
      'total-failure-session-count': entry.failures,
    },
    'failure-details': entry.rows.map(failureDetail),
  };
}

/** The policy domains that have any policy in `day`, lower case, sorted, each once. */
export function reportDomains(day: DayRecord): string[] {
  return [...new Set(day.policies.map((entry) => normalizedDomain(entry.policy.domain)))].sort();
}

/**
 * The RFC 8460 §4.3 report on `domain` for `day`: every policy of that domain applied that day, with its
 * counts and failure rows. Null when the day holds no policy of that domain (nothing to report).
 */
export function buildReport(day: DayRecord, domain: string, submitter: Submitter, reportId: string): TlsReport | null {
  const wanted = normalizedDomain(domain);
  const policies = day.policies.filter((entry) => normalizedDomain(entry.policy.domain) === wanted);
  if (policies.length === 0) return null;
  dayStartSeconds(day.day); // throws on a malformed day rather than report a nonsense date-range
  return {
    'organization-name': submitter.organization,
    'date-range': { 'start-datetime': `${day.day}T00:00:00Z`, 'end-datetime': `${day.day}T23:59:59Z` },
    'contact-info': submitter.contact,
    'report-id': reportId,
    policies: policies.map(reportPolicy),
  };
}

/**
 * The report's file name (§5.1): `sender!policy-domain!begin!end!unique-id.json.gz`, domains as A-labels,
 * begin and end as epoch seconds of the day's first and last second. The grammar allows only letters and
 * digits in unique-id, so those of `reportId` are kept and the rest dropped (the part is left out when none
 * remain). `submitterDomain` is our domain, the one of the contact address.
 */
export function reportFileName(submitterDomain: string, domain: string, day: string, reportId: string): string {
  const begin = dayStartSeconds(day);
  const uniqueId = reportId.replace(/[^A-Za-z0-9]/g, '');
  return `${[asciiDomain(submitterDomain), asciiDomain(domain), begin, begin + DAY_SECONDS - 1, ...(uniqueId ? [uniqueId] : [])].join('!')}.json.gz`;
}

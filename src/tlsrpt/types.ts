// What haraka-out keeps about the TLS of its deliveries for SMTP TLS Reporting (RFC 8460): per UTC day and per
// policy (a recipient domain's DANE TLSA records or MTA-STS policy), the sessions that succeeded and those that
// failed, by RFC 8460's result types. The recorder (src/plugins/outbound/tls-sessions.ts) fills it, store.ts
// keeps it on disk, report.ts turns one day of it into the JSON report a domain asked for.

/** RFC 8460 §4.3 result types (the negotiation results of §4.3.1 and the policy failures of §4.3.2/§4.3.3). */
export const RESULT_TYPES = [
  'starttls-not-supported',
  'certificate-host-mismatch',
  'certificate-expired',
  'certificate-not-trusted',
  'validation-failure',
  'tlsa-invalid',
  'dnssec-invalid',
  'dane-required',
  'sts-policy-fetch-error',
  'sts-policy-invalid',
  'sts-webpki-invalid',
] as const;

export type ResultType = (typeof RESULT_TYPES)[number];

/** The policy a session was held to: RFC 8460 §4.3 "policy". */
export interface AppliedPolicy {
  type: 'tlsa' | 'sts';
  /** The recipient domain (policy-domain). */
  domain: string;
  /** policy-string: the TLSA records ("3 1 1 <hex>") or the MTA-STS policy's lines, as applied. */
  strings: string[];
  /** mx-host: the MTA-STS policy's mx patterns, or the MX host name the TLSA records belong to. */
  mxHost: string[];
}

/** One row of failure-details: the sessions that failed the same way between the same two hosts. */
export interface FailureRow {
  resultType: ResultType;
  /** Our address on the connection (sending-mta-ip). */
  sendingMtaIp: string;
  /** The MX host name (receiving-mx-hostname). */
  receivingMxHostname: string;
  /** The MX address (receiving-ip), when a connection was made. */
  receivingIp?: string;
  /** failure-reason-code: a short machine-readable reason, e.g. Node's TLS error code. */
  reasonCode?: string;
  count: number;
}

export interface PolicyDay {
  policy: AppliedPolicy;
  /** total-successful-session-count */
  successes: number;
  /** total-failure-session-count: every failed session, including those past the row limit. */
  failures: number;
  /** failure-details, at most MAX_FAILURE_ROWS rows (the counts in `failures` stay exact). */
  rows: FailureRow[];
}

/** One UTC day of sessions, the unit a report covers (RFC 8460 §4.1: a report per day and domain). */
export interface DayRecord {
  /** YYYY-MM-DD (UTC). */
  day: string;
  policies: PolicyDay[];
}

/** One session's outcome, as the recorder hands it to the store. */
export type SessionOutcome = { policy: AppliedPolicy; ok: true } | { policy: AppliedPolicy; ok: false; failure: Omit<FailureRow, 'count'> };

// The e-mail that carries a TLS report to a mailto: address (RFC 8460 §5.3): multipart/report with
// report-type "tlsrpt", a short note for people and the gzipped JSON report as an attachment. Built with
// nodemailer's MIME builder, which folds and encodes the headers and base64-wraps the attachment.
import { gzipSync } from 'node:zlib';
import MimeNode from 'nodemailer/lib/mime-node';
import type { TlsReport } from './report';

/** The media type of a gzipped report (§6.5); the POST body uses it too. */
export const TLSRPT_GZIP_TYPE = 'application/tlsrpt+gzip';

export interface ReportMessageInput {
  report: TlsReport;
  /** The report as gzipReport made it. */
  gzipped: Buffer;
  /** reportFileName's name for it. */
  fileName: string;
  /** Our domain (TLS-Report-Submitter and the Subject's Submitter). */
  submitter: string;
  /** The policy domain the report is about (TLS-Report-Domain and the Subject's Report Domain). */
  domain: string;
  /** From: address. */
  from: string;
  /** To: address (one rua mailto: address). */
  to: string;
  /** Message-ID with or without angle brackets; one is made at the submitter's domain when missing. */
  messageId?: string;
  date: Date;
}

/** The report as gzip-compressed JSON, the attachment and POST body. */
export function gzipReport(report: TlsReport): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(report), 'utf8'));
}

function humanNote(input: ReportMessageInput): string {
  const { report } = input;
  const range = report['date-range'];
  const lines = [
    `This is an aggregate SMTP TLS report (RFC 8460) from ${input.submitter} for ${input.domain}.`,
    '',
    `Report-ID: ${report['report-id']}`,
    `Period: ${range['start-datetime']} to ${range['end-datetime']}`,
    ...report.policies.map((entry) => {
      const { policy, summary } = entry;
      return `Policy ${policy['policy-type']} for ${policy['policy-domain']}: ${summary['total-successful-session-count']} successful, ${summary['total-failure-session-count']} failed sessions`;
    }),
    '',
    `The report itself is attached as ${TLSRPT_GZIP_TYPE}.`,
    '',
  ];
  return lines.join('\r\n');
}

/** nodemailer writes header names as Title-Case; these two keep the spelling RFC 8460 gives them. */
const HEADER_SPELLING: Record<string, string> = { 'Tls-Report-Domain': 'TLS-Report-Domain', 'Tls-Report-Submitter': 'TLS-Report-Submitter' };

/** reportFileName's names: letters, digits, ".", "-", "_" and "!", nothing that needs quoting rules. */
const SAFE_FILE_NAME = /^[A-Za-z0-9._!-]+$/;

/** The complete report message (headers and body) with CRLF line ends, ready to queue. */
export async function reportMessage(input: ReportMessageInput): Promise<Buffer> {
  if (!SAFE_FILE_NAME.test(input.fileName)) throw new Error(`report file name ${JSON.stringify(input.fileName)} has characters other than letters, digits and . - _ !`);
  const root = new MimeNode('multipart/report; report-type="tlsrpt"', {
    newline: 'win',
    hostname: input.submitter,
    normalizeHeaderKey: (key) => HEADER_SPELLING[key] ?? key,
  });
  root.setHeader({
    From: input.from,
    To: input.to,
    Date: input.date,
    Subject: `Report Domain: ${input.domain} Submitter: ${input.submitter} Report-ID: <${input.report['report-id']}>`,
    'TLS-Report-Domain': input.domain,
    'TLS-Report-Submitter': input.submitter,
  });
  if (input.messageId) root.setHeader('Message-ID', input.messageId);
  root.createChild('text/plain').setContent(humanNote(input));
  // The file name goes in as one quoted parameter (nodemailer would split a name this long into RFC 2231
  // continuations, which not every report parser reads); SAFE_FILE_NAME keeps the quoting trivial.
  root
    .createChild(TLSRPT_GZIP_TYPE)
    .setHeader('Content-Disposition', { prepared: true, foldLines: true, value: `attachment; filename="${input.fileName}"` })
    .setContent(input.gzipped);
  return root.build();
}

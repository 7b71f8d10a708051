// What the policy service answers (pure): the policy for exactly `GET /.well-known/mta-sts.txt` with the
// Host of one of the domains' policy hosts, 404 for anything else. Never a redirect: senders must not
// follow one (RFC 8461 §3.3), and no other path exists here.
import { WELL_KNOWN_PATH } from './policy';

export interface PolicyRequest {
  method: string | undefined;
  /** The request target as sent (path and query). */
  url: string | undefined;
  /** The Host header, as sent (may carry a port). */
  host: string | undefined;
}

export interface PolicyResponse {
  status: 200 | 404;
  headers: Record<string, string>;
  body: string;
}

/** The Host header's name: lower-case, without a port or a trailing dot; null when there is none. */
export function hostName(header: string | undefined): string | null {
  if (!header) return null;
  const trimmed = header.trim().toLowerCase();
  // A bracketed IPv6 literal keeps its colons; a name loses its :port.
  const name = trimmed.startsWith('[') ? trimmed.slice(0, trimmed.indexOf(']') + 1) : trimmed.replace(/:\d*$/, '');
  return name.replace(/\.$/, '') || null;
}

function respond(status: PolicyResponse['status'], body: string): PolicyResponse {
  return {
    status,
    headers: {
      'content-type': 'text/plain',
      'content-length': String(Buffer.byteLength(body)),
      'x-content-type-options': 'nosniff',
    },
    body,
  };
}

/** The answer to one request, given the policy hosts (lower-case) and the policy body. */
export function answer(request: PolicyRequest, hosts: ReadonlySet<string>, policyText: string): PolicyResponse {
  const host = hostName(request.host);
  if (request.method === 'GET' && request.url === WELL_KNOWN_PATH && host !== null && hosts.has(host)) return respond(200, policyText);
  return respond(404, 'not found\n');
}

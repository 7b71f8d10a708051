// Why a delivery failed, in words for the log and the DSN, with the RFC 3463 status that goes with it, for
// the failures Haraka itself describes poorly: its MTA-STS-driven TLS refusals and our own deferrals.
// Pure functions only.

export interface Failure {
  /** RFC 3463 enhanced status code, class 4 while the message is still queued. */
  status: string;
  text: string;
  /** Something on this host is wrong (logged as an error, not a warning). */
  local?: true;
}

export const failures = {
  privateMx: (domain: string, skipped: string[]): Failure => ({
    status: '4.4.4',
    text: `every MX address of ${domain} lies where haraka-out never delivers by MX (${skipped.join('; ')}): behind the tunnel or in private space; the message stays queued (outbound.allow_private_mx: true allows it)`,
  }),
  noPolicyMx: (domain: string, exchanges: string[]): Failure => ({
    status: '4.7.5',
    text: `MTA-STS policy of ${domain} (enforce) names none of its MX hosts (${exchanges.join(', ')})`,
  }),
  mxLookupRetry: (domain: string, error: string): Failure => ({
    status: '4.4.3',
    text: `MX lookup for ${domain} failed (${error}): trying again later`,
  }),
  mxLookup: (domain: string, error: string): Failure => ({
    status: '4.4.3',
    text: `MX lookup for ${domain} failed (${error}), and its MTA-STS policy (enforce) allows no other route`,
  }),
  tlsSettingsMissing: (domain: string): Failure => ({
    status: '4.3.0',
    text: `MTA-STS policy of ${domain} (enforce) requires TLS, but Haraka's outbound TLS settings are not loaded, so TLS cannot be required`,
    local: true,
  }),
  // With TLS forced, Haraka verifies the certificate inside the handshake: a certificate that does not
  // verify for the MX name fails it too.
  handshake: (domain: string, host: string): Failure => ({
    status: '4.7.5',
    text: `MTA-STS policy of ${domain} (enforce) requires TLS with a certificate valid for the MX host name, but the TLS handshake with ${host} failed`,
  }),
  daneLookup: (domain: string, why: string): Failure => ({
    status: '4.7.5',
    text: `DANE: a DNSSEC lookup for ${domain} failed (${why}); the message waits rather than going out without the protection its DNS may ask for`,
  }),
  daneResolver: (domain: string, error: string): Failure =>
    /ECONNREFUSED/.test(error)
      ? {
          status: '4.4.3',
          text: `DANE: the local DNSSEC-validating resolver refused the lookups for ${domain} (${error}): is unbound running? (mailproxy dane resolver)`,
          local: true,
        }
      : { status: '4.4.3', text: `DANE: the local DNSSEC-validating resolver gave no answer for ${domain} in time (${error}); the next attempt asks again` },
  daneNoStarttls: (domain: string, mx: string): Failure => ({
    status: '4.7.4',
    text: `DANE: ${mx}, an MX host of ${domain}, publishes DNSSEC-signed TLSA records, so TLS is required, but it did not offer STARTTLS`,
  }),
  daneHandshake: (domain: string, mx: string, host: string): Failure => ({
    status: '4.7.5',
    text: `DANE: ${mx}, an MX host of ${domain}, publishes DNSSEC-signed TLSA records, so TLS is required, but the TLS handshake with ${host} failed`,
  }),
  daneMismatch: (domain: string, mx: string, why: string): Failure => ({
    status: '4.7.5',
    text: `DANE: the certificate of ${mx}, an MX host of ${domain}, does not match its DNSSEC-signed TLSA records (${why})`,
  }),
  queueFile: (file: string, error: string): Failure => ({
    status: '4.3.0',
    text: `queue file ${file} cannot be read (${error}); kept for the next attempt`,
    local: true,
  }),
  routing: (domain: string, error: string): Failure => ({ status: '4.3.0', text: `routing ${domain} failed: ${error}`, local: true }),
};

// Haraka's own words (outbound/hmail.js) for a host that fails the TLS it requires. haraka-out requires TLS
// under MTA-STS enforce and for an MX whose TLSA records say so (DANE); the attempt says which.
export const NO_STARTTLS = 'No TLS available but required by configuration';
const NOT_VERIFIED = 'Host failed TLS verification required by configuration';

/**
 * The plugin's account of why an attempt failed, given Haraka's reason for the deferral or bounce (possibly
 * `Too many failures (<reason>)`): its own deferral first, then a failed handshake under MTA-STS when no MX
 * answered at all, then Haraka's TLS refusals. Null when Haraka's reason and fields say it best.
 */
export function explainFailure(attempt: { failure?: Failure; tlsFailure?: Failure; daneMx?: string }, reason: string, domain: string): Failure | null {
  if (attempt.failure) return attempt.failure;
  const last = /^Too many failures \(([\s\S]*)\)$/.exec(reason)?.[1] ?? reason;
  if (attempt.tlsFailure && /^Tried all MXs/.test(last)) return attempt.tlsFailure;
  if (attempt.daneMx && last.includes(NO_STARTTLS)) return failures.daneNoStarttls(domain, attempt.daneMx);
  return harakaTlsFailure(last, domain);
}

/** The MTA-STS failure behind one of Haraka's TLS refusals, or null for any other reason. */
export function harakaTlsFailure(reason: string, domain: string): Failure | null {
  if (reason.includes(NO_STARTTLS)) {
    return { status: '4.7.4', text: `MTA-STS policy of ${domain} (enforce) requires TLS, but its MX host did not offer STARTTLS` };
  }
  if (reason.includes(NOT_VERIFIED)) {
    return {
      status: '4.7.5',
      text: `MTA-STS policy of ${domain} (enforce) requires a certificate valid for the MX host name, but its MX host's certificate did not verify`,
    };
  }
  return null;
}

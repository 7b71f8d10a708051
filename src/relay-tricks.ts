// The one list of relay tricks (pure): recipient forms that have made mail servers relay for strangers,
// shared by the tests (haraka-in and haraka-out refuse every one) and by `mailproxy selftest` (which tries
// them against the running appliance, as MXToolbox's SMTP Open Relay test does with its own probe).
//
// Each trick is built from a foreign domain (one we must never relay to), one of our own domains and
// address literals. A `foreign` trick must be refused by every listener; an `own` address (a plain
// recipient at one of our domains) is refused only where nobody outside the relay ACL may send at all,
// i.e. haraka-out: haraka-in accepts it, that is its job.

export interface RelayTrickParams {
  /** A domain that is not ours (MXToolbox's probe uses mxtoolboxsmtpdiag.com). */
  foreign: string;
  /** One of our domains. */
  own: string;
  /** Our MX host name, for the two-hop source route. */
  ownHost: string;
  /** An IPv4 address literal that is not ours. */
  ipv4: string;
  /** An IPv6 address literal that is not ours. */
  ipv6: string;
  /** The local part tried. */
  user?: string;
}

export interface RelayTrick {
  /** What the trick is, for messages: `percent hack`, `bang path`, ... */
  name: string;
  /** The address given in `RCPT TO:<...>`. */
  rcpt: string;
  /** `foreign`: nobody may accept it; `own`: a plain recipient of ours (refused by haraka-out only). */
  target: 'foreign' | 'own';
}

/** Every trick, foreign ones first. */
export function relayTricks(params: RelayTrickParams): RelayTrick[] {
  const { foreign, own, ownHost, ipv4, ipv6 } = params;
  const user = params.user ?? 'bob';
  const foreignTricks: [string, string][] = [
    ['plain foreign recipient', `${user}@${foreign}`],
    ['percent hack', `${user}%${foreign}@${own}`],
    ['bang path', `${foreign}!${user}@${own}`],
    ['quoted local part with @', `"${user}@${foreign}"@${own}`],
    ['quoted percent hack', `"${user}%${foreign}"@${own}`],
    ['source route', `@${own}:${user}@${foreign}`],
    ['two-hop source route', `@${ownHost},@${own}:${user}@${foreign}`],
    ['IPv4 address literal', `${user}@[${ipv4}]`],
    ['IPv6 address literal', `${user}@[IPv6:${ipv6}]`],
    ['trailing dot', `${user}@${foreign}.`],
    ['upper case', `${user.toUpperCase()}@${foreign.toUpperCase()}`],
  ];
  const ownAddresses: [string, string][] = [
    ['own domain', `alice@${own}`],
    ['own domain, upper case', `alice@${own.toUpperCase()}`],
    ['bare postmaster', 'postmaster'],
    ['postmaster of our domain', `postmaster@${own}`],
  ];
  return [...foreignTricks.map(([name, rcpt]) => ({ name, rcpt, target: 'foreign' as const })), ...ownAddresses.map(([name, rcpt]) => ({ name, rcpt, target: 'own' as const }))];
}

/** The addresses of `relayTricks` nobody may accept (haraka-in's list). */
export function foreignRelayTricks(params: RelayTrickParams): string[] {
  return relayTricks(params)
    .filter((trick) => trick.target === 'foreign')
    .map((trick) => trick.rcpt);
}

/** Every address of `relayTricks` (haraka-out refuses them all to a client outside its relay ACL). */
export function allRelayTricks(params: RelayTrickParams): string[] {
  return relayTricks(params).map((trick) => trick.rcpt);
}

/** MXToolbox's own open-relay probe: the sender and recipients its transcripts and help page show. */
export const MXTOOLBOX_PROBE = {
  sender: 'supertool@mxtoolboxsmtpdiag.com',
  recipients: ['test@mxtoolboxsmtpdiag.com', 'test@example.com'],
  domain: 'mxtoolboxsmtpdiag.com',
} as const;

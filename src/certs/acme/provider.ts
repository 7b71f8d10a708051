// DNS-01: the small interface a DNS provider implements (ionos.ts is one).
//
// acme-client runs the authorizations of an order in parallel, so several `_acme-challenge` TXT records
// (one per name; two for a name and its wildcard) are created at once, possibly under the same name. A
// provider must therefore ADD one record per call and remove exactly that record afterwards, never replace
// the record set of a name (which would drop a sibling's value while the CA is checking it).

/** What a provider needs to find the record again when it removes it. */
export interface TxtRecord {
  /** The record's name without the trailing dot, e.g. `_acme-challenge.mx.example.com`. */
  name: string;
  value: string;
  /** The zone the record went into (its apex), for finding the zone's nameservers. */
  zone: string;
  /** The provider's own handle (IONOS: zone id and record id). */
  ref: Record<string, string>;
}

export interface DnsProvider {
  readonly name: string;
  /** Checks, before any order is placed, that the provider answers and holds a zone for each name. */
  preflight(names: readonly string[]): Promise<void>;
  /** Adds one TXT record (never replacing others of the same name). */
  addTxt(name: string, value: string): Promise<TxtRecord>;
  /** Removes exactly the record addTxt made. */
  removeTxt(record: TxtRecord): Promise<void>;
}

// The IONOS DNS API (https://developer.hosting.ionos.com/docs/dns) as a DNS-01 provider: the subset it
// needs. `GET /v1/zones` to find the zone of a name, `POST /v1/zones/{zoneId}/records` with ONE record
// per call (additive: never `PATCH /v1/zones/{zoneId}`, which replaces the zone's records of that name
// and type, while acme-client validates several names in parallel), `DELETE
// /v1/zones/{zoneId}/records/{recordId}` for exactly that record afterwards. Authentication is the
// header `X-API-Key: <public prefix>.<secret>`.
import type { DnsProvider, TxtRecord } from './provider';

// IONOS's smallest TTL: a record that outlives a failed run is gone from caches soon.
const TXT_TTL = 60;
// One API call may not hold up a renewal forever (the renewal unit has no start timeout).
const REQUEST_TIMEOUT_MS = 30_000;

interface IonosZone {
  id: string;
  name: string;
}

interface IonosRecord {
  id?: string;
  name?: string;
  type?: string;
  content?: string;
}

export interface IonosOptions {
  /** Base URL without /v1, e.g. https://api.hosting.ionos.com/dns. */
  apiUrl: string;
  apiKey: string;
  timeoutMs?: number;
}

/** IONOS returns TXT content in quotes (`"\"abc\""`); the value is what lies inside. */
export function unquoteTxt(content: string): string {
  return content.length >= 2 && content.startsWith('"') && content.endsWith('"') ? content.slice(1, -1) : content;
}

/** The zone a name belongs to: the longest zone name that is the name or one of its parent domains. */
export function zoneFor(zones: readonly IonosZone[], name: string): IonosZone | null {
  const wanted = name.toLowerCase().replace(/\.$/, '');
  let best: IonosZone | null = null;
  for (const zone of zones) {
    const apex = zone.name.toLowerCase().replace(/\.$/, '');
    if ((wanted === apex || wanted.endsWith(`.${apex}`)) && (!best || apex.length > best.name.length)) best = { ...zone, name: apex };
  }
  return best;
}

export class IonosProvider implements DnsProvider {
  readonly name = 'ionos';
  private zones: Promise<IonosZone[]> | null = null;
  private readonly base: string;

  constructor(private readonly options: IonosOptions) {
    this.base = options.apiUrl.replace(/\/+$/, '');
  }

  private async call(method: string, route: string, body?: unknown): Promise<unknown> {
    const url = `${this.base}${route}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          'X-API-Key': this.options.apiKey,
          Accept: 'application/json',
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? REQUEST_TIMEOUT_MS),
        redirect: 'error',
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`IONOS API ${method} ${route}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    const text = await response.text();
    if (!response.ok) {
      const hint = response.status === 401 || response.status === 403 ? ' (is the key in acme.dns_01.api_key_file right, as <prefix>.<secret>?)' : '';
      throw new Error(`IONOS API ${method} ${route}: HTTP ${response.status}${hint}: ${text.slice(0, 300)}`);
    }
    if (text.trim() === '') return null;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new Error(`IONOS API ${method} ${route}: the answer is not JSON: ${text.slice(0, 100)}`);
    }
  }

  /** The account's zones, asked once per run (authorizations run in parallel and share the answer). */
  private listZones(): Promise<IonosZone[]> {
    this.zones ??= this.call('GET', '/v1/zones').then((answer) => {
      if (!Array.isArray(answer)) throw new Error('IONOS API GET /v1/zones: expected a list of zones');
      return answer.filter((zone): zone is IonosZone => typeof zone?.id === 'string' && typeof zone?.name === 'string');
    });
    this.zones.catch(() => (this.zones = null));
    return this.zones;
  }

  private async zoneOf(name: string): Promise<IonosZone> {
    const zones = await this.listZones();
    const zone = zoneFor(zones, name);
    if (!zone) throw new Error(`no IONOS zone holds ${name} (the account has ${zones.map((z) => z.name).join(', ') || 'no zones'})`);
    return zone;
  }

  async preflight(names: readonly string[]): Promise<void> {
    for (const name of names) await this.zoneOf(`_acme-challenge.${name}`);
  }

  /** The id of the TXT record `name` with `value` in the zone, looked up when the POST's answer did not say. */
  private async findRecordId(zone: IonosZone, name: string, value: string): Promise<string | null> {
    const query = `?recordName=${encodeURIComponent(name)}&recordType=TXT`;
    const answer = (await this.call('GET', `/v1/zones/${encodeURIComponent(zone.id)}${query}`)) as { records?: IonosRecord[] } | null;
    const record = (answer?.records ?? []).find(
      (candidate) => candidate.type === 'TXT' && candidate.name?.toLowerCase() === name.toLowerCase() && unquoteTxt(candidate.content ?? '') === value,
    );
    return record?.id ?? null;
  }

  async addTxt(name: string, value: string): Promise<TxtRecord> {
    const zone = await this.zoneOf(name);
    const route = `/v1/zones/${encodeURIComponent(zone.id)}/records`;
    let answer: unknown;
    try {
      answer = await this.call('POST', route, [{ name, type: 'TXT', content: value, ttl: TXT_TTL, prio: 0, disabled: false }]);
    } catch (err) {
      // A POST that timed out may still have made the record: find it and take it away again.
      const id = await this.findRecordId(zone, name, value).catch(() => null);
      if (id) await this.call('DELETE', `${route}/${encodeURIComponent(id)}`).catch(() => undefined);
      throw err;
    }
    const created = Array.isArray(answer) ? (answer as IonosRecord[]).find((record) => unquoteTxt(record.content ?? '') === value) : undefined;
    const id = created?.id ?? (await this.findRecordId(zone, name, value));
    if (!id) throw new Error(`IONOS API POST ${route}: the new TXT record ${name} is not in the zone afterwards`);
    return { name, value, zone: zone.name, ref: { zoneId: zone.id, recordId: id } };
  }

  async removeTxt(record: TxtRecord): Promise<void> {
    const { zoneId, recordId } = record.ref;
    if (!zoneId || !recordId) throw new Error(`no IONOS record id for ${record.name}`);
    try {
      await this.call('DELETE', `/v1/zones/${encodeURIComponent(zoneId)}/records/${encodeURIComponent(recordId)}`);
    } catch (err) {
      // Already gone (removed by hand, or a retried DELETE): what we wanted.
      if (/HTTP 404/.test((err as Error).message)) return;
      throw err;
    }
  }
}

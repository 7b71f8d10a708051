// A stand-in for the IONOS DNS API on loopback: the subset mailproxy calls (GET /v1/zones, GET
// /v1/zones/{id}?recordName=&recordType=, POST /v1/zones/{id}/records, DELETE
// /v1/zones/{id}/records/{recordId}), with IONOS's habits (X-API-Key, TXT content returned in quotes,
// 201 with the created records). Every TXT record it holds is fed to pebble-challtestsrv, so pebble's
// DNS-01 validation sees exactly the zone's records. PATCH and PUT (which would replace a record set) are
// refused and counted.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { challtestsrvPost } from './pebble';

export interface StandInRecord {
  id: string;
  zoneId: string;
  name: string;
  type: string;
  content: string;
  ttl: number;
}

export interface IonosStandIn {
  url: string;
  records: Map<string, StandInRecord>;
  /** Every request as `METHOD path`. */
  requests: string[];
  /** The bodies of the POSTs (each a list of records). */
  posts: unknown[][];
  /** Most TXT records held at once. */
  maxRecords(): number;
  close(): Promise<void>;
}

export interface StandInOptions {
  apiKey: string;
  zones: string[];
  /** challtestsrv's management URL; null: the records reach no DNS server (pebble's check then fails). */
  challtestsrvUrl: string | null;
  /** Milliseconds each POST takes, so that parallel authorizations overlap visibly. */
  postDelayMs?: number;
}

export async function startIonosStandIn(options: StandInOptions): Promise<IonosStandIn> {
  const zones = options.zones.map((name, i) => ({ name, id: `00000000-0000-4000-8000-00000000000${i}`, type: 'NATIVE' }));
  const records = new Map<string, StandInRecord>();
  const requests: string[] = [];
  const posts: unknown[][] = [];
  let most = 0;

  // challtestsrv holds TXT values per name: after any change, that name's values are set again from ours.
  const sync = async (name: string) => {
    if (!options.challtestsrvUrl) return;
    const host = `${name}.`;
    await challtestsrvPost(options.challtestsrvUrl, '/clear-txt', { host });
    for (const record of records.values()) {
      if (record.type === 'TXT' && record.name === name) await challtestsrvPost(options.challtestsrvUrl, '/set-txt', { host, value: JSON.parse(record.content) as string });
    }
  };

  const server = http.createServer((request, response) => {
    let raw = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (raw += chunk));
    request.on('end', () => {
      void (async () => {
        const url = new URL(request.url ?? '/', 'http://stand-in');
        requests.push(`${request.method} ${url.pathname}`);
        const send = (status: number, body: unknown) => {
          response.writeHead(status, { 'Content-Type': 'application/json' }).end(body === undefined ? '' : JSON.stringify(body));
        };
        if (request.headers['x-api-key'] !== options.apiKey) return send(401, [{ code: 'UNAUTHORIZED', message: 'The customer is not authorized to do this operation.' }]);
        const parts = url.pathname.split('/').filter(Boolean);
        if (parts[0] !== 'v1' || parts[1] !== 'zones') return send(404, [{ code: 'NOT_FOUND' }]);
        if (request.method === 'GET' && parts.length === 2) return send(200, zones);
        const zone = zones.find((candidate) => candidate.id === parts[2]);
        if (!zone) return send(404, [{ code: 'ZONE_NOT_FOUND' }]);
        if (request.method === 'GET' && parts.length === 3) {
          const name = url.searchParams.get('recordName');
          const type = url.searchParams.get('recordType');
          const list = [...records.values()].filter((r) => r.zoneId === zone.id && (!name || r.name === name) && (!type || r.type === type));
          return send(200, { ...zone, records: list.map(({ zoneId: _zoneId, ...rest }) => ({ ...rest, rootName: zone.name, disabled: false, prio: 0 })) });
        }
        if (request.method === 'POST' && parts.length === 4 && parts[3] === 'records') {
          const body = JSON.parse(raw) as { name: string; type: string; content: string; ttl?: number }[];
          posts.push(body);
          if (options.postDelayMs) await new Promise((resolve) => setTimeout(resolve, options.postDelayMs));
          const created: StandInRecord[] = [];
          for (const item of body) {
            if (!item.name.endsWith(zone.name)) return send(400, [{ code: 'INVALID_RECORD', message: `${item.name} is not in ${zone.name}` }]);
            // IONOS stores and returns TXT content in quotes.
            const record = { id: randomUUID(), zoneId: zone.id, name: item.name, type: item.type, content: JSON.stringify(item.content), ttl: item.ttl ?? 3600 };
            records.set(record.id, record);
            created.push(record);
          }
          most = Math.max(most, [...records.values()].filter((r) => r.type === 'TXT').length);
          for (const name of new Set(created.map((r) => r.name))) await sync(name);
          return send(
            201,
            created.map(({ zoneId: _zoneId, ...rest }) => ({ ...rest, rootName: zone.name, disabled: false, prio: 0 })),
          );
        }
        if (request.method === 'DELETE' && parts.length === 5 && parts[3] === 'records') {
          const record = records.get(parts[4]!);
          if (!record || record.zoneId !== zone.id) return send(404, [{ code: 'RECORD_NOT_FOUND' }]);
          records.delete(record.id);
          await sync(record.name);
          return send(200, undefined);
        }
        return send(405, [{ code: 'METHOD_NOT_ALLOWED', message: `${request.method} is not part of the stand-in: mailproxy must only add and delete single records` }]);
      })().catch((err: unknown) => {
        response.writeHead(500).end(String(err));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    records,
    requests,
    posts,
    maxRecords: () => most,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

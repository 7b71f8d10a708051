// mailproxy-edge's pure parts (answers, scoring, HELO names, settings) and its DNS list resolver against
// a real DNS server on loopback: one query per name while the answer is fresh, and never longer than
// the lookup timeout.
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAnswerRange } from '../../src/config/net';
import { answerCounts, isRefusalAnswer } from '../../src/plugins/edge/answers';
import { DnsListResolver, queryName, scoreAnswers, type ListAnswer, type ListEntry } from '../../src/plugins/edge/dnsbl';
import { heloProblem } from '../../src/plugins/edge/helo';
import { isAllowed, isOwnAddress, readSettings } from '../../src/plugins/edge/settings';
import { startDnsServer, type DnsServer } from '../../src/testpeers/dns-server';
import { loadConfigText } from '../../src/config/load';
import * as edge from '../../src/plugins/edge/index';
import { renderInstances } from '../../src/render/haraka';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const constants = require('haraka-constants') as { DENYDISCONNECT: number };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ini = require('haraka-config/lib/readers/ini') as { parseIni(name: string, options: object, data: string): Record<string, Record<string, unknown>> };

const BASE = `version: 1
hostname: mx.example.com
public_ipv4: 203.0.113.25
public_ipv6: 2001:db8::25
domains: [example.com]
dns: { servers: ['127.0.0.53:5353'] }
`;

describe('DNS list answers', () => {
  it('reads addresses, CIDRs and ranges, and nothing else', () => {
    expect(parseAnswerRange('127.0.0.2')).toEqual({ from: 0x7f000002, to: 0x7f000002 });
    expect(parseAnswerRange('127.0.0.0/24')).toEqual({ from: 0x7f000000, to: 0x7f0000ff });
    expect(parseAnswerRange('127.0.0.2-127.0.0.11')).toEqual({ from: 0x7f000002, to: 0x7f00000b });
    for (const bad of ['127.0.0.11-127.0.0.2', '127.1', '127.0.0.0/33', '::1', 'x', '']) expect(parseAnswerRange(bad), bad).toBeNull();
  });

  it('counts any 127/8 answer by default, never the lists’ “query refused” codes', () => {
    expect(answerCounts('127.0.0.2', [])).toBe(true);
    expect(answerCounts('127.0.15.0', [])).toBe(true);
    expect(answerCounts('10.0.0.2', [])).toBe(false);
    for (const refused of ['127.255.255.254', '127.255.255.252', '127.0.0.255']) {
      expect(isRefusalAnswer(refused)).toBe(true);
      expect(answerCounts(refused, [])).toBe(false);
      expect(answerCounts(refused, [parseAnswerRange('127.0.0.0/8')!])).toBe(false);
    }
    const pbl = [parseAnswerRange('127.0.0.10-127.0.0.11')!];
    expect(answerCounts('127.0.0.10', pbl)).toBe(true);
    expect(answerCounts('127.0.0.2', pbl)).toBe(false);
  });
});

describe('queryName', () => {
  it('reverses IPv4, nibbles IPv6 (RFC 5782 §2.4) and unwraps IPv4-mapped addresses', () => {
    expect(queryName('192.0.2.99', 'bl.test')).toBe('99.2.0.192.bl.test');
    expect(queryName('::ffff:192.0.2.99', 'bl.test')).toBe('99.2.0.192.bl.test');
    expect(queryName('2001:db8::25', 'bl.test')).toBe('5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test');
  });
});

describe('scoreAnswers', () => {
  const entry = (zone: string, weight: number, answers: string[] = []): ListEntry => ({ zone, weight, answers: answers.map((a) => parseAnswerRange(a)!) });
  const listed = (...answers: string[]): ListAnswer => ({ kind: 'listed', answers });

  it('adds the weights of the block lists that list the client and subtracts the allow lists’', () => {
    const blocks = [entry('zen.test', 3, ['127.0.0.2-127.0.0.9']), entry('zen.test', 1, ['127.0.0.10-127.0.0.11']), entry('spam.test', 2)];
    const allows = [entry('wl.test', 4)];
    const answers = new Map<string, ListAnswer>([
      ['zen.test', listed('127.0.0.4', '127.0.0.11')],
      ['spam.test', { kind: 'unlisted' }],
      ['wl.test', { kind: 'unlisted' }],
    ]);
    expect(scoreAnswers(blocks, allows, answers)).toEqual({ score: 4, listedBy: ['zen.test'], allowedBy: [], errors: [] });
    answers.set('wl.test', listed('127.0.10.2'));
    answers.set('spam.test', { kind: 'error', error: 'timeout' });
    expect(scoreAnswers(blocks, allows, answers)).toEqual({ score: 0, listedBy: ['zen.test'], allowedBy: ['wl.test'], errors: [{ zone: 'spam.test', error: 'timeout' }] });
  });
});

describe('heloProblem', () => {
  const identity = { names: new Set(['mx.example.com', 'example.com']), addresses: new Set(['203.0.113.25', '2001:db8:0:0:0:0:0:25']) };
  it.each([
    ['mail.example.net', null],
    ['MAIL.Example.NET.', null],
    ['[198.51.100.7]', null],
    ['[IPv6:2001:db8::7]', null],
    ['mx.example.com', 'forged'],
    ['Example.Com', 'forged'],
    ['[203.0.113.25]', 'forged'],
    ['[IPv6:2001:db8::25]', 'forged'],
    ['203.0.113.25', 'forged'],
    ['198.51.100.7', 'bare_ip'],
    ['2001:db8::7', 'bare_ip'],
    ['[198.51.100]', 'invalid'],
    ['[mail.example.net]', 'invalid'],
    ['mail..example.net', 'invalid'],
    ['-mail.example.net', 'invalid'],
    ['mail example', 'invalid'],
    ['localhost', 'not_fqdn'],
    ['WIN-7QK3D2', 'not_fqdn'],
    ['host.123', 'not_fqdn'],
  ])('%s → %s', (helo, problem) => {
    expect(heloProblem(helo, identity)).toBe(problem);
  });
});

describe('readSettings', () => {
  it('reads the rendered file, and names what it could not read', () => {
    const { settings, problems } = readSettings({
      main: { lookup_timeout: 0.5, dns_servers: '127.0.0.1:5353', allow: ['198.51.100.0/24', 'nonsense'], own: ['203.0.113.25'] },
      early_talker: { mode: 'refuse', pause: 0 },
      helo: { mode: 'sometimes', names: ['MX.example.com'] },
      dnsbl: { mode: 'refuse', threshold: 2 },
      dnsbl_zone_2: { zone: 'b.test', weight: 1 },
      dnsbl_zone_1: { zone: 'a.test', weight: 2, answers: ['127.0.0.2', 'x'] },
      dnswl_zone_1: { zone: 'wl.test', weight: 5 },
    });
    expect(settings.lookupTimeoutMs).toBe(500);
    expect(settings.servers).toEqual(['127.0.0.1:5353']);
    expect(settings.helo).toEqual({ mode: 'log', names: new Set(['mx.example.com']) });
    expect(settings.dnsbl.zones.map((zone) => zone.zone)).toEqual(['a.test', 'b.test']);
    expect(settings.dnsbl.zones[0]?.answers).toHaveLength(1);
    expect(settings.dnsbl.allowZones.map((zone) => [zone.zone, zone.weight])).toEqual([['wl.test', 5]]);
    expect(isAllowed(settings, '198.51.100.9')).toBe(true);
    expect(isAllowed(settings, '::ffff:198.51.100.9')).toBe(true);
    expect(isAllowed(settings, '198.51.101.9')).toBe(false);
    expect(isOwnAddress(settings, '203.0.113.25')).toBe(true);
    expect(problems).toEqual([
      '[main] allow: nonsense is no CIDR; ignored',
      '[helo] mode: sometimes is not off, log or refuse; using log',
      '[dnsbl_zone_1] answers: x is no address, CIDR or range; ignored',
    ]);
  });

  it('defaults: early talker refused, HELO logged, no DNS list asked', () => {
    const { settings } = readSettings({});
    expect([settings.earlyTalker, settings.helo.mode, settings.dnsbl.mode, settings.lookupTimeoutMs]).toEqual([{ mode: 'refuse', pauseMs: 0 }, 'log', 'off', 800]);
  });
});

describe('DnsListResolver against a DNS server on loopback', () => {
  let server: DnsServer;
  let silent: dgram.Socket;
  let silentAddress = '';

  beforeAll(async () => {
    server = await startDnsServer({ A: { '9.0.0.127.bl.test': ['127.0.0.2'], '8.0.0.127.bl.test': ['127.255.255.254'] } });
    // A DNS server that never answers.
    silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', () => resolve()));
    silentAddress = `127.0.0.1:${silent.address().port}`;
  });
  afterAll(async () => {
    await server.close();
    silent.close();
  });

  it('asks once per name while the answer is fresh, and again once it expired', async () => {
    let clock = 1_000;
    const resolver = new DnsListResolver({ servers: [server.address], timeoutMs: 800, now: () => clock });
    const asked = (name: string) => server.queries.filter((query) => query.name === name).length;
    const [first, second] = await Promise.all([resolver.lookup('9.0.0.127.bl.test'), resolver.lookup('9.0.0.127.BL.test')]);
    expect(first).toMatchObject({ kind: 'listed', answers: ['127.0.0.2'] });
    expect(second).toBe(first);
    expect(await resolver.lookup('7.0.0.127.bl.test')).toEqual({ kind: 'unlisted' });
    expect(await resolver.lookup('9.0.0.127.bl.test')).toBe(first);
    expect(asked('9.0.0.127.bl.test')).toBe(1);
    // The zone's TTL is 60 s: kept that long (the lower bound), then asked again.
    clock += 61_000;
    await resolver.lookup('9.0.0.127.bl.test');
    expect(asked('9.0.0.127.bl.test')).toBe(2);
    // Unlisted answers are kept five minutes.
    await resolver.lookup('7.0.0.127.bl.test');
    expect(asked('7.0.0.127.bl.test')).toBe(1);
  });

  it('takes a “query refused” answer as an error, not a listing', async () => {
    const resolver = new DnsListResolver({ servers: [server.address], timeoutMs: 800 });
    expect(await resolver.lookup('8.0.0.127.bl.test')).toEqual({ kind: 'error', error: 'refused (127.255.255.254)' });
  });

  it('gives up after the timeout when the server never answers, and does not ask again at once', async () => {
    const resolver = new DnsListResolver({ servers: [silentAddress], timeoutMs: 300 });
    const started = Date.now();
    expect(await resolver.lookup('9.0.0.127.bl.test')).toEqual({ kind: 'error', error: 'timeout' });
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(280);
    expect(took).toBeLessThan(700);
    const again = Date.now();
    expect(await resolver.lookup('9.0.0.127.bl.test')).toEqual({ kind: 'error', error: 'timeout' });
    expect(Date.now() - again).toBeLessThan(50);
  });
});

describe('the edge section of the config', () => {
  it('is off for DNS lists, log for HELO and refuse for early talkers by default', () => {
    const loaded = loadConfigText(BASE);
    expect(loaded.ok && loaded.config.edge).toEqual({
      allow: [],
      lookup_timeout: 0.8,
      early_talker: { mode: 'refuse', pause: 0 },
      helo: { mode: 'log' },
      dnsbl: { mode: 'off', zones: [], dnswl_zones: [], threshold: 1 },
    });
  });

  it('refuses DNSBL scoring without a zone, a threshold nobody can reach, bad answers and slow lookups', () => {
    const errors = (edge: string) => {
      const loaded = loadConfigText(`${BASE}edge: ${edge}\n`);
      return loaded.ok ? [] : loaded.errors.map((error) => `${error.key}: ${error.message}`);
    };
    expect(errors('{ dnsbl: { mode: refuse } }')).toEqual(['edge.dnsbl.zones: expected at least one zone: dnsbl.mode refuse asks none']);
    expect(errors('{ dnsbl: { mode: log, threshold: 4, zones: [{ zone: a.test, weight: 2 }, { zone: b.test }] } }')).toEqual([
      'edge.dnsbl.threshold: expected at most 3, the weights of all zones together: no client could ever reach 4',
    ]);
    expect(errors('{ dnsbl: { zones: [{ zone: a.test, answers: [127.0.0.300] }] } }')).toHaveLength(1);
    expect(errors('{ lookup_timeout: 2 }')).toHaveLength(1);
    expect(errors('{ helo: { mode: reject } }')).toHaveLength(1);
  });

  it('renders mailproxy-edge.ini that haraka-config reads back into the same settings', () => {
    const loaded = loadConfigText(
      `${BASE}edge:
  allow: [198.51.100.0/24]
  lookup_timeout: 0.5
  early_talker: { pause: 2 }
  helo: { mode: refuse }
  dnsbl:
    mode: refuse
    threshold: 3
    zones:
      - { zone: zen.spamhaus.org, weight: 3, answers: [127.0.0.2-127.0.0.9] }
      - { zone: zen.spamhaus.org, weight: 1, answers: [127.0.0.10/31] }
    dnswl_zones: [{ zone: list.dnswl.org, weight: 5 }]
`,
    );
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    const files = renderInstances(loaded.config, { source: 'test.yaml' });
    expect(files.get('haraka-in/config/plugins')).toMatch(/^tls\nmailproxy-edge\nmailproxy-forward$/m);
    expect(files.has('haraka-out/config/mailproxy-edge.ini')).toBe(false);
    expect(files.get('haraka-in/config/mailproxy-edge.timeout')?.trim().split('\n').at(-1)).toBe('8');
    const { settings, problems } = readSettings(ini.parseIni('mailproxy-edge.ini', {}, files.get('haraka-in/config/mailproxy-edge.ini')!));
    expect(problems).toEqual([]);
    expect(settings).toEqual({
      lookupTimeoutMs: 500,
      servers: ['127.0.0.53:5353'],
      allow: [expect.anything()],
      own: new Set(['203.0.113.25', '2001:db8:0:0:0:0:0:25', '10.0.0.1']),
      earlyTalker: { mode: 'refuse', pauseMs: 2000 },
      helo: { mode: 'refuse', names: new Set(['mx.example.com', 'example.com']) },
      dnsbl: {
        mode: 'refuse',
        threshold: 3,
        zones: [
          { zone: 'zen.spamhaus.org', weight: 3, answers: [parseAnswerRange('127.0.0.2-127.0.0.9')] },
          { zone: 'zen.spamhaus.org', weight: 1, answers: [parseAnswerRange('127.0.0.10/31')] },
        ],
        allowZones: [{ zone: 'list.dnswl.org', weight: 5, answers: [] }],
      },
    });
    expect(isAllowed(settings, '198.51.100.200')).toBe(true);
  });
});

describe('the plugin skips the clients it must not judge', () => {
  // The plugin's hooks with a stand-in for Haraka's plugin and connection objects.
  const plugin: Record<string, unknown> = {
    name: 'mailproxy-edge',
    config: { get: () => ({ main: { own: ['203.0.113.25'], allow: ['198.51.100.0/24'] }, helo: { mode: 'refuse', names: ['mx.example.com'] }, early_talker: { mode: 'refuse' } }) },
    register_hook: () => undefined,
    logerror: () => undefined,
    logwarn: () => undefined,
  };
  Object.assign(plugin, edge);
  (plugin.register as () => void)();

  function session(ip: string, flags: { is_private?: boolean; is_local?: boolean } = {}) {
    const logged: string[] = [];
    const results: object[] = [];
    const connection = {
      uuid: 'u',
      remote: { ip, ...flags },
      notes: {},
      start_time: Date.now(),
      last_response: null,
      early_talker: true, // talked before the banner: refused, unless the client is skipped
      msg_count: { accept: 1 },
      results: { add: (_: unknown, result: object) => results.push(result) },
      lognotice: (_: unknown, line: string) => logged.push(line),
      logwarn: () => undefined,
    };
    const run = (hook: string, ...params: unknown[]) =>
      new Promise<unknown[]>((resolve) => (plugin[hook] as (...a: unknown[]) => void).call(plugin, (...args: unknown[]) => resolve(args), connection, ...params));
    return { connection, logged, results, run };
  }

  // A loopback client (local tools, the demo's sender) is counted too, marked: `mailproxy
  // stats` on the demo counts its sessions. The appliance itself (its health probes) is never logged.
  it.each([
    ['a loopback client', '127.0.0.5', { is_private: true, is_local: true }, 'private', ['loopback']],
    ['an RFC 1918 client', '10.1.2.3', { is_private: true }, 'private', ['private']],
    ['the appliance itself (health probes)', '203.0.113.25', {}, 'own', []],
    ['a client on the allow list', '198.51.100.7', {}, 'allow', ['allow']],
  ])('%s: no check, and an accept line marked exempt for every client but the appliance itself', async (_, ip, flags, skip, exempt) => {
    const s = session(ip, flags);
    expect(await s.run('edge_start')).toEqual([]);
    expect(s.results).toEqual([{ skip }]);
    expect(await s.run('edge_decide', 'mx.example.com')).toEqual([]);
    await s.run('edge_accounted');
    const accepted = s.logged.filter((line) => / action=accept /.test(line));
    expect(accepted.map((line) => / exempt=(\S+)$/.exec(line)?.[1])).toEqual(exempt);
    expect(accepted.every((line) => / msgs=1 /.test(line))).toBe(true);
    expect(s.logged.filter((line) => / action=(refuse|log) /.test(line))).toEqual([]);
  });

  it('a checked client that passed: an accept line without exempt', async () => {
    const s = session('192.0.2.8');
    s.connection.early_talker = false;
    await s.run('edge_start');
    expect(await s.run('edge_decide', 'mail.example.org')).toEqual([]);
    await s.run('edge_accounted');
    expect(s.logged).toHaveLength(1);
    expect(s.logged[0]).toMatch(/^mailproxy-decision time=\S+ action=accept ip=192\.0\.2\.8 msgs=1$/);
  });

  it('a public client that talked first is refused, and logged once', async () => {
    const s = session('192.0.2.7');
    await s.run('edge_start');
    const [code, dsn] = await s.run('edge_decide', 'mx.example.com');
    expect(code).toBe(constants.DENYDISCONNECT);
    expect(dsn).toMatchObject({ code: 554, reply: '5.5.1 Protocol error: talking before the greeting' });
    await s.run('edge_accounted');
    expect(s.logged).toHaveLength(1);
    expect(s.logged[0]).toMatch(/^mailproxy-decision time=\S+ action=refuse ip=192\.0\.2\.7 check=early_talker reason=pregreet code=554$/);
  });
});

// `mailproxy stats`: a known log gives exact counts, --since cuts it, and the chart is well-formed XML
// (checked by a strict parser below) with one series per check and reason.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli';
import { formatDecision, parseDecisionLine, parseLogfmt } from '../../src/plugins/decision-log';
import { aggregate, parseSince, readDecisions, refusalSeries } from '../../src/stats/aggregate';
import { formatSummary } from '../../src/stats/format';
import { runStatsCommand } from '../../src/stats/command';
import { renderChart } from '../../src/stats/svg';

/** Haraka's own lines, journald-prefixed lines and `-o cat` lines, mixed, as a real log is. */
const LOG = [
  '[NOTICE] [-] [core] Listening on 203.0.113.25:25',
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000001] [core] connect ip=198.51.100.7 port=40000 local_ip=203.0.113.25 local_port=25',
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000001] [mailproxy-edge] mailproxy-decision time=2026-05-01T10:00:05.000Z action=refuse ip=198.51.100.7 check=dnsbl reason=zen.spamhaus.org code=554 score=3',
  'May 01 10:01:00 mx haraka[812]: [NOTICE] [A1B2C3D4-0000-4000-8000-000000000002] [mailproxy-edge] mailproxy-decision time=2026-05-01T10:01:00.000Z action=refuse ip=198.51.100.8 check=dnsbl reason=zen.spamhaus.org,bl.spamcop.net code=554 score=5',
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000003] [mailproxy-edge] mailproxy-decision time=2026-05-01T10:20:00.000Z action=refuse ip=2001:db8::7 check=early_talker reason=pregreet code=554',
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000004] [mailproxy-limits] mailproxy-decision time=2026-05-01T10:40:00.000Z action=refuse ip=192.0.2.1 check=limits reason=per_ip code=421',
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000005] [mailproxy-edge] mailproxy-decision time=2026-05-01T11:00:00.000Z action=log ip=192.0.2.2 check=helo reason=not_fqdn',
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000005] [mailproxy-edge] mailproxy-decision time=2026-05-01T11:00:01.000Z action=accept ip=192.0.2.2 msgs=2',
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000006] [mailproxy-edge] mailproxy-decision time=2026-05-01T11:30:00.000Z action=accept ip=192.0.2.3 msgs=0',
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000007] [mailproxy-edge] mailproxy-decision time=2026-05-01T11:59:00.000Z action=refuse ip=192.0.2.4 check=helo reason=forged code=550',
  // Not decisions: a Haraka disconnect line, a broken time, an unknown action, the word inside another word.
  '[NOTICE] [A1B2C3D4-0000-4000-8000-000000000007] [core] disconnect ip=192.0.2.4 rdns="" helo=mx.example.com relay=N early=N esmtp=Y',
  '[NOTICE] [x] [mailproxy-edge] mailproxy-decision time=yesterday action=refuse ip=192.0.2.5 check=dnsbl reason=x code=554',
  '[NOTICE] [x] [mailproxy-edge] mailproxy-decision time=2026-05-01T11:00:00.000Z action=maybe ip=192.0.2.6',
  '[NOTICE] [x] [other] not-mailproxy-decision time=2026-05-01T11:00:00.000Z action=refuse ip=192.0.2.7',
  '',
].join('\n');

describe('the decision line', () => {
  it('round-trips through logfmt, quoting what needs it', () => {
    const line = formatDecision(
      { action: 'refuse', ip: '203.0.113.9', check: 'helo', reason: 'a "quoted" = reason\\', code: 501, extra: { score: 3 } },
      new Date('2026-05-01T12:00:00.123Z'),
    );
    expect(line).toBe('mailproxy-decision time=2026-05-01T12:00:00.123Z action=refuse ip=203.0.113.9 check=helo reason="a \\"quoted\\" = reason\\\\" code=501 score=3');
    expect(parseDecisionLine(`[NOTICE] [uuid] [mailproxy-edge] ${line}`)).toEqual({
      time: new Date('2026-05-01T12:00:00.123Z'),
      action: 'refuse',
      ip: '203.0.113.9',
      check: 'helo',
      reason: 'a "quoted" = reason\\',
      code: 501,
      fields: { time: '2026-05-01T12:00:00.123Z', action: 'refuse', ip: '203.0.113.9', check: 'helo', reason: 'a "quoted" = reason\\', code: '501', score: '3' },
    });
    expect(parseLogfmt(' a=1 b="x y" c= d')).toEqual({ a: '1', b: 'x y', c: '' });
  });

  it('is never read by the `queue list --log` parser, which looks for [outbound] lines', () => {
    expect(LOG).not.toMatch(/\[outbound\]/);
  });
});

describe('stats of a known log', () => {
  const decisions = readDecisions(LOG);

  it('reads only the decision lines', () => {
    expect(decisions).toHaveLength(8);
  });

  it('counts sessions accepted and refused, by check and reason', () => {
    const summary = aggregate(decisions);
    expect(summary.from).toEqual(new Date('2026-05-01T10:00:05.000Z'));
    expect(summary.to).toEqual(new Date('2026-05-01T11:59:00.000Z'));
    expect(summary.accepted).toEqual({ sessions: 2, messages: 2 });
    expect(summary.refused).toEqual({
      total: 5,
      byCheck: { dnsbl: 2, early_talker: 1, limits: 1, helo: 1 },
      byReason: {
        dnsbl: { 'zen.spamhaus.org': 1, 'zen.spamhaus.org,bl.spamcop.net': 1 },
        early_talker: { pregreet: 1 },
        limits: { per_ip: 1 },
        helo: { forged: 1 },
      },
    });
    expect(summary.logged).toEqual({ total: 1, byCheck: { helo: 1 }, byReason: { helo: { not_fqdn: 1 } } });
  });

  it('counts sessions no check applied to (exempt=) among the accepted, and says why they were not checked', () => {
    const exempt = [
      '[NOTICE] [u1] [mailproxy-edge] mailproxy-decision time=2026-05-01T12:00:00.000Z action=accept ip=127.0.0.1 msgs=1 exempt=loopback',
      '[NOTICE] [u2] [mailproxy-edge] mailproxy-decision time=2026-05-01T12:00:01.000Z action=accept ip=127.0.0.1 msgs=0 exempt=loopback',
      '[NOTICE] [u3] [mailproxy-edge] mailproxy-decision time=2026-05-01T12:00:02.000Z action=accept ip=10.0.0.7 msgs=2 exempt=private',
    ].join('\n');
    const summary = aggregate(readDecisions(`${LOG}${exempt}\n`));
    expect(summary.accepted).toEqual({ sessions: 5, messages: 5 });
    expect(summary.exempt).toEqual({ sessions: 3, messages: 3, byReason: { loopback: 2, private: 1 } });
    expect(summary.refused.total).toBe(5);
    expect(formatSummary(summary).split('\n').slice(0, 6)).toEqual([
      'sessions: 2026-05-01T10:00:05.000Z to 2026-05-01T12:00:02.000Z',
      '  total                                10',
      '  accepted                              5  50.0 %, 5 messages',
      '    not checked (loopback)              2',
      '    not checked (private)               1',
      '  refused                               5  50.0 %',
    ]);
    expect(aggregate(decisions).exempt).toEqual({ sessions: 0, messages: 0, byReason: {} });
  });

  it('counts the backup MX apart: stored, handed on, held by reason, and its refusals of recipients, not of sessions', () => {
    const kept = [
      // A session during an outage: two recipients stored, one refused as unknown; the session is still accepted.
      '[NOTICE] [k1] [mailproxy-forward] mailproxy-decision time=2026-05-01T12:00:00.000Z action=refuse ip=192.0.2.9 check=store_and_forward reason=not_verified code=450',
      '[NOTICE] [k1] [mailproxy-forward] mailproxy-decision time=2026-05-01T12:00:01.000Z action=store ip=192.0.2.9 check=store_and_forward reason=backend_unreachable code=250 id=01777636800000-000001-0a0b0c0d rcpts=2 size=900',
      '[NOTICE] [k1] [mailproxy-edge] mailproxy-decision time=2026-05-01T12:00:02.000Z action=accept ip=192.0.2.9 msgs=1',
      '[NOTICE] [k2] [mailproxy-forward] mailproxy-decision time=2026-05-01T12:01:00.000Z action=refuse ip=192.0.2.10 check=store_and_forward reason=cached_bad code=550',
      '[NOTICE] [k2] [mailproxy-forward] mailproxy-decision time=2026-05-01T12:01:30.000Z action=store ip=192.0.2.10 check=store_and_forward reason=backend_unreachable code=250 id=01777636890000-000002-0a0b0c0d rcpts=1 size=700',
      '[NOTICE] [k2] [mailproxy-edge] mailproxy-decision time=2026-05-01T12:01:31.000Z action=accept ip=192.0.2.10 msgs=1',
      // The drain: one handed on, one refused by the backend and held.
      '[NOTICE] [-] [mailproxy-forward] mailproxy-decision time=2026-05-01T12:30:00.000Z action=drain ip=192.0.2.9 check=store_and_forward reason=delivered code=250 id=01777636800000-000001-0a0b0c0d rcpts=2 waited=1799',
      '[NOTICE] [-] [mailproxy-forward] mailproxy-decision time=2026-05-01T12:30:01.000Z action=hold ip=192.0.2.10 check=store_and_forward reason=backend_refused code=554 id=01777636890000-000002-0a0b0c0d',
    ].join('\n');
    const summary = aggregate(readDecisions(kept));
    expect(summary.kept).toEqual({
      stored: { messages: 2, recipients: 3 },
      drained: 1,
      held: { total: 1, byReason: { backend_refused: 1 } },
      returned: { total: 0, byReason: {} },
      refused: { total: 2, byReason: { not_verified: 1, cached_bad: 1 } },
    });
    expect([summary.accepted, summary.refused.total, summary.logged.total]).toEqual([{ sessions: 2, messages: 2 }, 0, 0]);
    expect(formatSummary(summary).split('\n').slice(4)).toEqual([
      '',
      'kept while the backend was away (inbound.store_and_forward):',
      '  stored                                2  3 recipients',
      '  handed on to the backend              1',
      '  held for the operator                 1  see `mailproxy queue held`',
      '    backend_refused                     1',
      '  refused meanwhile                     2  recipients or messages',
      '    cached_bad                          1',
      '    not_verified                        1',
      '',
    ]);
    expect(formatSummary(aggregate(decisions))).not.toMatch(/kept while/);
  });

  it('counts kept messages returned to their sender apart from the held ones', () => {
    const line =
      '[NOTICE] [-] [mailproxy-forward] mailproxy-decision time=2026-05-01T12:30:01.000Z action=bounce ip=192.0.2.10 check=store_and_forward reason=max_age id=01777636890000-000002-0a0b0c0d spf=pass';
    const summary = aggregate(readDecisions(line));
    expect(summary.kept.returned).toEqual({ total: 1, byReason: { max_age: 1 } });
    expect([summary.kept.held.total, summary.kept.refused.total]).toEqual([0, 0]);
    expect(formatSummary(summary)).toMatch(/returned to the sender \(SPF pass\) +1 +a DSN each\n +max_age +1/);
  });

  it('--since counts back from now, or from a point in time', () => {
    const now = new Date('2026-05-01T12:00:00Z');
    expect(parseSince('1h', now)).toEqual(new Date('2026-05-01T11:00:00Z'));
    expect(parseSince('1d12h', now)).toEqual(new Date('2026-04-30T00:00:00Z'));
    expect(parseSince('2026-05-01T11:30:00Z', now)).toEqual(new Date('2026-05-01T11:30:00Z'));
    for (const bad of ['yesterday', '24', 'h', '-1h']) expect(parseSince(bad, now), bad).toBeNull();
    const lastHour = aggregate(decisions, parseSince('1h', now));
    expect([lastHour.accepted.sessions, lastHour.refused.total, lastHour.logged.total]).toEqual([2, 1, 1]);
  });

  it('cuts refusals into buckets, one series per check and reason, largest first', () => {
    const series = refusalSeries(decisions, { maxBuckets: 12 });
    // 10:00:05 to 11:59: two hours in 15-minute buckets (the smallest size giving at most 12).
    expect([series.bucketMs, series.buckets, new Date(series.start).toISOString()]).toEqual([900_000, 8, '2026-05-01T10:00:00.000Z']);
    expect(series.series).toEqual([
      { name: 'dnsbl: zen.spamhaus.org', counts: [1, 0, 0, 0, 0, 0, 0, 0] },
      { name: 'dnsbl: zen.spamhaus.org,bl.spamcop.net', counts: [1, 0, 0, 0, 0, 0, 0, 0] },
      { name: 'early_talker: pregreet', counts: [0, 1, 0, 0, 0, 0, 0, 0] },
      { name: 'helo: forged', counts: [0, 0, 0, 0, 0, 0, 0, 1] },
      { name: 'limits: per_ip', counts: [0, 0, 1, 0, 0, 0, 0, 0] },
    ]);
    const folded = refusalSeries(decisions, { maxBuckets: 12, maxSeries: 3 });
    expect(folded.series.map((s) => [s.name, s.counts.reduce((a, b) => a + b, 0)])).toEqual([
      ['dnsbl: zen.spamhaus.org', 1],
      ['dnsbl: zen.spamhaus.org,bl.spamcop.net', 1],
      ['other', 3],
    ]);
  });
});

interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  text: string;
}

/**
 * A strict XML well-formedness check (no DTD, no CDATA, no processing instructions but the declaration):
 * balanced tags, one root, quoted unique attributes, only the five named entities and character references,
 * no `<` or bare `&` in text or attribute values. Throws at the first fault; returns the element tree.
 */
function parseXml(text: string): XmlElement {
  const NAME = '[A-Za-z_][\\w.:-]*';
  const ENTITY = /&(?!(?:lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;
  let at = 0;
  const fail = (why: string): never => {
    throw new Error(`${why} at offset ${at}: ${JSON.stringify(text.slice(at, at + 40))}`);
  };
  const declaration = /^<\?xml\s+version="1\.0"(\s+encoding="UTF-8")?\s*\?>/.exec(text);
  if (declaration) at = declaration[0].length;
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  while (at < text.length) {
    if (text.startsWith('<!--', at)) {
      const end = text.indexOf('-->', at + 4);
      if (end === -1) fail('unclosed comment');
      at = end + 3;
      continue;
    }
    if (text.startsWith('</', at)) {
      const close = new RegExp(`^</(${NAME})\\s*>`).exec(text.slice(at));
      if (!close) fail('bad end tag');
      const open = stack.pop();
      if (!open || open.name !== close![1]) fail(`</${close![1]}> does not close <${open?.name ?? '(nothing)'}>`);
      at += close![0].length;
      continue;
    }
    if (text[at] === '<') {
      const start = new RegExp(`^<(${NAME})((?:\\s+${NAME}\\s*=\\s*(?:"[^"]*"|'[^']*'))*)\\s*(/?)>`).exec(text.slice(at));
      if (!start) fail('bad start tag');
      const element: XmlElement = { name: start![1] as string, attributes: {}, children: [], text: '' };
      for (const [, key, dq, sq] of (start![2] as string).matchAll(new RegExp(`(${NAME})\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, 'g'))) {
        const value = (dq ?? sq) as string;
        if (Object.hasOwn(element.attributes, key as string)) fail(`duplicate attribute ${key}`);
        if (value.includes('<') || ENTITY.test(value)) fail(`bad attribute value ${key}`);
        element.attributes[key as string] = value;
      }
      const parent = stack.at(-1);
      if (parent) parent.children.push(element);
      else if (root) fail('a second root element');
      else root = element;
      if (start![3] !== '/') stack.push(element);
      at += start![0].length;
      continue;
    }
    const next = text.indexOf('<', at);
    const chunk = text.slice(at, next === -1 ? text.length : next);
    if (ENTITY.test(chunk)) fail('bare &');
    const parent = stack.at(-1);
    if (parent) parent.text += chunk;
    else if (chunk.trim()) fail('text outside the root element');
    at += chunk.length;
  }
  if (stack.length) fail(`<${stack.at(-1)!.name}> never closed`);
  if (!root) fail('no root element');
  return root!;
}

function findAll(element: XmlElement, predicate: (e: XmlElement) => boolean): XmlElement[] {
  return [...(predicate(element) ? [element] : []), ...element.children.flatMap((child) => findAll(child, predicate))];
}

describe('the chart', () => {
  it('the strict XML check refuses what is not well-formed', () => {
    for (const bad of ['<svg><g></svg>', '<svg a="1" a="2"/>', '<svg>a & b</svg>', '<svg/><svg/>', '<svg x=1/>', 'text<svg/>']) {
      expect(() => parseXml(bad), bad).toThrow();
    }
    expect(parseXml('<?xml version="1.0" encoding="UTF-8"?>\n<svg a="&lt;1&gt;"><!-- c --><t>x &amp; y</t></svg>\n').children[0]?.text).toBe('x &amp; y');
  });

  it('is a well-formed SVG with a line and a legend entry per series', () => {
    const series = refusalSeries(readDecisions(LOG), { maxBuckets: 12 });
    const svg = renderChart(series);
    const root = parseXml(svg);
    expect(root.name).toBe('svg');
    expect(root.attributes.xmlns).toBe('http://www.w3.org/2000/svg');
    const groups = findAll(root, (e) => e.attributes.class === 'series');
    expect(groups.map((g) => [g.attributes['data-series'], g.attributes['data-total']])).toEqual([
      ['dnsbl: zen.spamhaus.org', '1'],
      ['dnsbl: zen.spamhaus.org,bl.spamcop.net', '1'],
      ['early_talker: pregreet', '1'],
      ['helo: forged', '1'],
      ['limits: per_ip', '1'],
    ]);
    for (const group of groups) {
      const line = findAll(group, (e) => e.name === 'polyline')[0];
      expect(line?.attributes.points.split(' ')).toHaveLength(8);
      expect(findAll(group, (e) => e.name === 'text')[0]?.text).toBe(`${group.attributes['data-series']} (1)`);
    }
    // Byte-stable: the same input gives the same file.
    expect(renderChart(series)).toBe(svg);
  });

  it('says so when there is nothing to draw', () => {
    const root = parseXml(renderChart(refusalSeries([])));
    expect(findAll(root, (e) => e.attributes.class === 'series')).toEqual([]);
    expect(findAll(root, (e) => e.name === 'text').some((e) => e.text === 'no refusals in this period')).toBe(true);
  });
});

describe('mailproxy stats', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-stats-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const capture = () => {
    let text = '';
    const stream = new PassThrough();
    stream.on('data', (chunk) => (text += chunk));
    return { stream, text: () => text };
  };

  it('reads a file, prints the counts and writes the chart', async () => {
    const log = path.join(dir, 'haraka-in.log');
    const svg = path.join(dir, 'refusals.svg');
    writeFileSync(log, LOG);
    const stdout = capture();
    const stderr = capture();
    expect(await main(['stats', log, '--svg', svg], { stdout: stdout.stream, stderr: stderr.stream })).toBe(0);
    expect(stderr.text()).toBe('');
    expect(stdout.text()).toBe(
      [
        'sessions: 2026-05-01T10:00:05.000Z to 2026-05-01T11:59:00.000Z',
        '  total                                 7',
        '  accepted                              2  28.6 %, 2 messages',
        '  refused                               5  71.4 %',
        '',
        'refused, by check and reason:',
        '  dnsbl                                 2',
        '    zen.spamhaus.org                    1',
        '    zen.spamhaus.org,bl.spamcop.net        1',
        '  early_talker                          1',
        '    pregreet                            1',
        '  helo                                  1',
        '    forged                              1',
        '  limits                                1',
        '    per_ip                              1',
        '',
        'would have been refused (checks in log mode), by check and reason:',
        '  helo                                  1',
        '    not_fqdn                            1',
        `chart: ${svg}`,
        '',
      ].join('\n'),
    );
    expect(parseXml(readFileSync(svg, 'utf8')).name).toBe('svg');
  });

  it('reads stdin (journalctl -o cat | mailproxy stats) and counts back from now with --since', async () => {
    const stdin = new PassThrough();
    stdin.end(LOG);
    const stdout = capture();
    const code = await runStatsCommand(['--since', '30m', '--json'], { stdin, stdout: stdout.stream, stderr: capture().stream, now: () => new Date('2026-05-01T12:00:00Z') });
    expect(code).toBe(0);
    const summary = JSON.parse(stdout.text()) as { accepted: { sessions: number }; refused: { total: number; byCheck: object } };
    expect([summary.accepted.sessions, summary.refused.total, summary.refused.byCheck]).toEqual([1, 1, { helo: 1 }]);
  });

  it("with nothing to count, says why: an empty log, a log_level that hides NOTICE, not haraka-in's log, or --since", async () => {
    const first = async (text: string, args: string[] = []) => {
      const stdin = new PassThrough();
      stdin.end(text);
      const stdout = capture();
      expect(await runStatsCommand(args, { stdin, stdout: stdout.stream, stderr: capture().stream, now: () => new Date('2026-05-02T12:00:00Z') })).toBe(0);
      return stdout.text().split('\n')[0];
    };
    expect(await first('')).toBe('sessions: no decision lines: the log is empty');
    expect(await first('[WARN] [-] [core] something\n[ERROR] [-] [core] else\n')).toMatch(
      /none of the log's 2 lines is at NOTICE or INFO.*log_level warn or error\? set it to info or notice/,
    );
    const harakaOut = '[NOTICE] [-] [core] Listening on 10.0.0.2:2526\n[INFO] [-] [outbound] delivered\n';
    expect(await first(harakaOut)).toMatch(
      /no decision lines in 2 lines of log: .*except for the appliance's own addresses.*is this haraka-in's log \(journalctl -u mailproxy-haraka-in\)/,
    );
    expect(await first(LOG, ['--since', '1h'])).toBe('sessions: no decision lines since 2026-05-02T11:00:00.000Z (8 before it)');
  });

  it('refuses a bad --since as a usage error', async () => {
    const stderr = capture();
    expect(await main(['stats', '-', '--since', 'yesterday'], { stdout: capture().stream, stderr: stderr.stream })).toBe(2);
    expect(stderr.text()).toMatch(/--since yesterday: expected a duration/);
  });
});

import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../helpers/tmp';
import { parseConfig } from '../../src/config/load';
import { configDocs } from '../../src/config/docs';
import { renderInstances, temporaryFailureIntervals } from '../../src/render/haraka';
import { MANIFEST, writeRendered } from '../../src/render/write';

// eslint-disable-next-line @typescript-eslint/no-require-imports
// biome-ignore lint/suspicious/noExplicitAny: haraka-config returns an ini object, a list or a string, by the file's type
const harakaConfig = require('haraka-config') as { module_config(dir: string): { get(name: string, type?: string | object): any } };

const root = path.resolve(__dirname, '../..');
const exampleText = readFileSync(path.join(root, 'mailproxy.example.yaml'), 'utf8');
const example = parseConfig(exampleText, 'mailproxy.example.yaml');
const render = () => renderInstances(example, { source: 'mailproxy.example.yaml' });

const tempDir = useTempDirs('mailproxy-render-');

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir)
    .flatMap((name) => {
      const full = path.join(dir, name);
      const relative = prefix ? `${prefix}/${name}` : name;
      return statSync(full).isDirectory() ? listFiles(full, relative) : [relative];
    })
    .sort();
}

describe('mailproxy-forward.timeout', () => {
  it('gives the slowest end of data room: a replayed greeting, MAIL and recipients, a NOOP, DATA, the body and the verdict', () => {
    const { backend, inbound } = example;
    const limit = Number(render().get('haraka-in/config/mailproxy-forward.timeout')?.trim().split('\n').at(-1));
    const greeting = backend.rdns_timeout + 2 * backend.connect_timeout + 24 * backend.timeout;
    const body = backend.timeout + Math.ceil(inbound.max_message_size / (64 * 1024));
    expect(limit).toBeGreaterThanOrEqual(greeting + 3 * backend.timeout + body + backend.data_timeout);
  });
});

describe('rendered Haraka instances, read back through haraka-config itself', () => {
  it('haraka-in and haraka-out read the values the config asks for', async () => {
    const dir = tempDir();
    await writeRendered(dir, render());
    const inbound = harakaConfig.module_config(path.join(dir, 'haraka-in'));
    const outbound = harakaConfig.module_config(path.join(dir, 'haraka-out'));

    const smtpIn = inbound.get('smtp.ini', { booleans: ['+main.graceful_shutdown'] }).main;
    expect(smtpIn).toMatchObject({ listen: '203.0.113.25:25', public_ip: '203.0.113.25', nodes: 0, graceful_shutdown: true });
    expect(outbound.get('smtp.ini').main).toMatchObject({ listen: '10.0.0.1:2526', nodes: 0 });

    expect(inbound.get('me')).toBe('mx.example.com');
    expect(inbound.get('host_list', 'list')).toEqual(['example.com']);
    const plugins = inbound.get('plugins', 'list') as string[];
    expect(plugins).not.toContain('xclient');
    expect(plugins).toContain('mailproxy-forward');
    expect(outbound.get('plugins', 'list')).toContain('relay');

    const connection = inbound.get('connection.ini', { booleans: ['+headers.show_version', '+haproxy.enabled'] });
    expect(connection.max.bytes).toBe(26214400);
    expect(connection.headers.show_version).toBe(false);
    expect(connection.haproxy.enabled).toBe(false);

    const relay = outbound.get('relay.ini', { booleans: ['+relay.acl', '-relay.all', '+relay.force_routing'] }).relay;
    expect(relay).toMatchObject({ acl: true, all: false });
    expect(outbound.get('relay_acl_allow', 'list')).toEqual(['10.0.0.2/32']);

    const tls = inbound.get('tls.ini').main;
    expect(tls).toMatchObject({ key: '/etc/mailproxy/tls/privkey.pem', cert: '/etc/mailproxy/tls/fullchain.pem', dhparam: 'dhparams.pem' });

    const outboundIni = outbound.get('outbound.ini', { booleans: ['-local_mx_ok', '+enable_tls'] }).main;
    expect(outboundIni).toMatchObject({ concurrency_max: 20, local_mx_ok: false, enable_tls: true });
    // Routing waits for DNSSEC lookups and an MTA-STS fetch: more than Haraka's default 30 s per hook.
    expect(Number(outbound.get('mailproxy-outbound.timeout'))).toBe(90);
    expect(outboundIni.temp_fail_intervals).toMatch(/^60s,300s,900s,1800s,3600s,7200s,14400s,28800s,28800s,/);
    const waits = String(outboundIni.temp_fail_intervals)
      .split(',')
      .map((wait) => parseInt(wait, 10));
    expect(waits.reduce((sum, wait) => sum + wait, 0)).toBeLessThanOrEqual(432000);
    expect(waits.reduce((sum, wait) => sum + wait, 0) + 28800).toBeGreaterThan(432000);
    expect(inbound.get('outbound.ini', { booleans: ['-disabled'] }).main.disabled).toBe(true);
    expect(outbound.get('queue_dir')).toBe('/var/lib/mailproxy/haraka-out/queue');
  });

  it('writes every comment on a line of its own (haraka-config reads inline comments as values)', () => {
    for (const [file, text] of render()) {
      // Read raw: every line of the bounce template is a line of the bounce, so it has no comment at all.
      if (file.endsWith('.pem') || file.endsWith('/outbound.bounce_message')) continue;
      for (const line of text.split('\n')) {
        if (/^[;#]/.test(line) || line === '' || /^\[.*\]$/.test(line)) continue;
        expect(line, `${file}: ${line}`).not.toMatch(/\s[;#]/);
      }
      expect(text.startsWith('; generated by mailproxy') || text.startsWith('# generated by mailproxy'), file).toBe(true);
    }
  });

  it('gives haraka-out a bounce template Haraka fills in: headers, then a readable text naming each recipient', async () => {
    const dir = tempDir();
    await writeRendered(dir, render());
    expect(existsSync(path.join(dir, 'haraka-in/config/outbound.bounce_message'))).toBe(false);
    const lines = harakaConfig.module_config(path.join(dir, 'haraka-out')).get('outbound.bounce_message', 'data') as string[];
    const blank = lines.indexOf('');
    const headers = lines.slice(0, blank);
    const text = lines.slice(blank + 1);
    expect(headers).toEqual([
      'Date: {date}',
      'From: Mail Delivery System <MAILER-DAEMON@{me}>',
      'To: {to}',
      'Subject: Undelivered Mail Returned to Sender',
      'Message-Id: {msgid}',
      'Auto-Submitted: auto-replied',
      'MIME-Version: 1.0',
    ]);
    expect(text).toContain('{extended_reason}');
    expect(text.join('\n')).toMatch(/\{subject\}/);
    // Haraka replaces only these names (outbound/hmail.js), and declares the text us-ascii.
    const names = new Set([...lines.join('\n').matchAll(/\{(\w+)\}/g)].map((match) => match[1]));
    for (const name of names) expect(['date', 'me', 'from', 'to', 'subject', 'recipients', 'reason', 'extended_reason', 'pid', 'msgid']).toContain(name);
    expect(lines.join('\n')).toMatch(/^[\x20-\x7e\n]*$/);
    expect(Math.max(...lines.map((line) => line.length))).toBeLessThanOrEqual(78);
  });

  it('is deterministic', () => {
    expect([...render()]).toEqual([...render()]);
  });
});

describe('the retry schedule', () => {
  it('repeats the last interval within the queue lifetime, and says none for no retries', () => {
    expect(temporaryFailureIntervals([5], 15)).toBe('5s,5s,5s');
    expect(temporaryFailureIntervals([60, 300], 1000)).toBe('60s,300s,300s,300s');
    expect(temporaryFailureIntervals([60], 0)).toBe('none');
  });
});

describe('writing rendered files', () => {
  it('writes only changed files and removes files it generated earlier that are no longer wanted', async () => {
    const dir = tempDir();
    const first = await writeRendered(dir, render());
    expect(first.written.length).toBeGreaterThan(10);
    const again = await writeRendered(dir, render());
    expect(again.written).toEqual([]);

    const more = new Map(render());
    more.set('haraka-out/config/sub/dir/extra', 'x\n');
    await writeRendered(dir, more);
    const fewer = new Map(render());
    fewer.delete('haraka-out/config/relay_acl_allow');
    const userFile = path.join(dir, 'haraka-out/config/not-ours');
    writeFileSync(userFile, 'keep me\n');
    const report = await writeRendered(dir, fewer);
    expect(report.removed).toEqual(['haraka-out/config/relay_acl_allow', 'haraka-out/config/sub/dir/extra']);
    expect(listFiles(dir).some((file) => file.includes('/sub/'))).toBe(false);
    expect(existsSync(path.join(dir, 'haraka-out/config/sub'))).toBe(false);
    expect(listFiles(dir)).not.toContain('haraka-out/config/relay_acl_allow');
    expect(readFileSync(userFile, 'utf8')).toBe('keep me\n');
    expect(readFileSync(path.join(dir, MANIFEST), 'utf8')).not.toContain('relay_acl_allow');
  });
});

describe('committed files equal a fresh render (no drift)', () => {
  it('instances/ is the render of mailproxy.example.yaml', () => {
    const expected = render();
    const committed = listFiles(path.join(root, 'instances')).filter((file) => file !== MANIFEST);
    expect(committed).toEqual([...expected.keys()].sort());
    for (const [file, text] of expected) expect(readFileSync(path.join(root, 'instances', file), 'utf8'), file).toBe(text);
  });

  it('docs/CONFIG.md is generated from the schema', () => {
    expect(readFileSync(path.join(root, 'docs/CONFIG.md'), 'utf8')).toBe(configDocs());
  });
});

// The backup MX's health checks (pure): kept mail against its thresholds (a held message is a WARNING by
// default: a human decides), the disk budget, a spool left behind with the feature off, the recipient
// cache, the metrics they export, and the config's thresholds.
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load';
import { formatPrometheus } from '../../src/health/format';
import { judgeKept, judgeRecipientCache, type KeptThresholds } from '../../src/health/kept';
import { report } from '../../src/health/status';
import type { KeptFigures } from '../../src/plugins/store-forward/spool-admin';

const now = new Date('2026-03-01T12:00:00Z');
const MB = 1024 * 1024;
const limits: KeptThresholds = {
  keptWarning: 3,
  keptCritical: 5,
  oldestWarning: 3600,
  oldestCritical: 86400,
  heldWarning: 1,
  heldCritical: 4,
  maxDiskBytes: 100 * MB,
  enabled: true,
};
const figures = (over: Partial<KeptFigures> = {}): { figures: KeptFigures } => ({
  figures: { exists: true, ready: 0, held: 0, corrupt: 0, bytes: 0, oldestReadyAt: null, oldestHeldAt: null, ...over },
});
const ago = (seconds: number) => now.getTime() - seconds * 1000;

describe('kept mail', () => {
  it('is OK with nothing kept, and exports the figures', () => {
    expect(judgeKept(figures(), now, limits)).toEqual({
      status: 'OK',
      detail: '0 kept for the backend, 0 held, 0 of 100 MB',
      metrics: { kept_messages: 0, kept_oldest_seconds: 0, kept_held_messages: 0, kept_bytes: 0, kept_corrupt_messages: 0 },
    });
    expect(judgeKept(figures({ ready: 2, bytes: 3 * MB, oldestReadyAt: ago(600) }), now, limits)).toMatchObject({
      status: 'OK',
      detail: '2 kept for the backend, oldest 10m, 0 held, 3 of 100 MB',
      metrics: { kept_messages: 2, kept_oldest_seconds: 600, kept_bytes: 3 * MB },
    });
  });

  it('warns and goes critical on the count and on the age of the oldest', () => {
    expect(judgeKept(figures({ ready: 3, oldestReadyAt: ago(60) }), now, limits)).toMatchObject({
      status: 'WARNING',
      detail: expect.stringMatching(/^3 kept for the backend \(health\.kept_warning: 3\).*see `mailproxy queue list --instance in`$/),
    });
    expect(judgeKept(figures({ ready: 5, oldestReadyAt: ago(60) }), now, limits).status).toBe('CRITICAL');
    expect(judgeKept(figures({ ready: 1, oldestReadyAt: ago(7200) }), now, limits)).toMatchObject({
      status: 'WARNING',
      detail: expect.stringContaining('oldest 2h00m (health.kept_oldest_warning: 3600 s)'),
    });
    expect(judgeKept(figures({ ready: 1, oldestReadyAt: ago(90000) }), now, limits).status).toBe('CRITICAL');
  });

  it('warns at one held message (a human decides) and says how to see them', () => {
    expect(judgeKept(figures({ held: 1, oldestHeldAt: ago(10) }), now, limits)).toMatchObject({
      status: 'WARNING',
      detail: '0 kept for the backend, 1 held (health.held_warning: 1), 0 of 100 MB: see `mailproxy queue held`',
      metrics: { kept_held_messages: 1 },
    });
    expect(judgeKept(figures({ held: 4 }), now, limits).status).toBe('CRITICAL');
  });

  it('warns near max_disk_mb, is critical at it (new mail gets 452), and warns about corrupt/', () => {
    expect(judgeKept(figures({ ready: 1, oldestReadyAt: ago(1), bytes: 80 * MB }), now, limits)).toMatchObject({
      status: 'WARNING',
      detail: expect.stringContaining('80 of 100 MB (max_disk_mb), over 80 %'),
    });
    expect(judgeKept(figures({ ready: 1, oldestReadyAt: ago(1), bytes: 100 * MB }), now, limits)).toMatchObject({
      status: 'CRITICAL',
      detail: expect.stringContaining('new mail gets 452'),
    });
    expect(judgeKept(figures({ corrupt: 2 }), now, limits)).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('2 unreadable in corrupt/') });
  });

  it('with store_and_forward off, is OK when nothing is left and warns when kept mail waits', () => {
    const off = { ...limits, enabled: false };
    expect(judgeKept(figures(), now, off)).toMatchObject({ status: 'OK', detail: 'inbound.store_and_forward is off; nothing kept' });
    expect(judgeKept(figures({ ready: 2, held: 1 }), now, off)).toMatchObject({
      status: 'WARNING',
      detail: expect.stringMatching(/is off, but 3 kept message\(s\) wait \(2 ready, 1 held\): turn it on/),
    });
  });

  it('cannot tell when the spool cannot be read', () => {
    expect(judgeKept({ error: 'cannot read /s: permission denied (run as root or as haraka-in’s user)' }, now, limits).status).toBe('UNKNOWN');
  });
});

describe('the recipient cache', () => {
  it('counts the entries; a missing file is OK, an unreadable one unknown, a malformed one a warning', () => {
    expect(judgeRecipientCache({ kind: 'loaded', accepted: 3, refused: 2 }, '/r.json')).toEqual({
      status: 'OK',
      detail: '5 recipient(s) cached: 3 accepted (kept for while the backend is away), 2 refused',
      metrics: { recipient_cache_entries: 5, recipient_cache_accepted_entries: 3 },
    });
    expect(judgeRecipientCache({ kind: 'missing' }, '/r.json')).toMatchObject({ status: 'OK', metrics: { recipient_cache_entries: 0 } });
    expect(judgeRecipientCache({ kind: 'unreadable', code: 'EACCES' }, '/r.json').status).toBe('UNKNOWN');
    expect(judgeRecipientCache({ kind: 'malformed' }, '/r.json').status).toBe('WARNING');
  });
});

describe('metrics and config', () => {
  it('writes the kept figures into the Prometheus textfile with their own HELP', () => {
    const kept = judgeKept(figures({ ready: 2, held: 1, bytes: 4096, oldestReadyAt: ago(30) }), now, limits);
    const cache = judgeRecipientCache({ kind: 'loaded', accepted: 3, refused: 2 }, '/r.json');
    const text = formatPrometheus(
      report(
        [
          { name: 'haraka-in.kept', status: kept.status, detail: kept.detail, ms: 2, metrics: kept.metrics ?? {} },
          { name: 'haraka-in.recipients', status: cache.status, detail: cache.detail, ms: 1, metrics: cache.metrics ?? {} },
        ],
        now,
      ),
    );
    expect(text).toContain('mailproxy_kept_messages{check="haraka-in.kept"} 2\n');
    expect(text).toContain('mailproxy_kept_held_messages{check="haraka-in.kept"} 1\n');
    expect(text).toContain('mailproxy_kept_oldest_seconds{check="haraka-in.kept"} 30\n');
    expect(text).toContain('mailproxy_recipient_cache_entries{check="haraka-in.recipients"} 5\n');
    expect(text).not.toMatch(/as measured by mailproxy health/);
  });

  it('refuses a held warning beyond its critical threshold', () => {
    const base = 'version: 1\nhostname: mx.example.org\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\n';
    const result = loadConfigText(`${base}health:\n  held_warning: 30\n  kept_oldest_warning: 90000\n`);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map((error) => error.key)).toEqual(['health.held_warning', 'health.kept_oldest_warning']);
  });
});

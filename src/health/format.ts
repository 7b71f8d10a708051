// Output of `mailproxy health` (pure): lines for people, JSON, and the Prometheus text format for
// node_exporter's textfile collector.
import { reportJson, statusLine } from '../report/format';
import { STATUS_CODE, type Status } from '../report/status';
import type { HealthReport } from './status';

/** A summary line (the Nagios status line), then one line per check: status, name, detail. */
export function formatHuman(report: HealthReport): string {
  const width = Math.max(0, ...report.checks.map((check) => check.name.length));
  const lines = [statusLine('health', report.status, report.checks)];
  for (const check of report.checks) lines.push(`${check.status.padEnd(8)}  ${check.name.padEnd(width)}  ${check.detail}`);
  return `${lines.join('\n')}\n`;
}

export function formatJson(report: HealthReport): string {
  return reportJson(
    {},
    report.status,
    report.checkedAt,
    report.checks.map((check) => ({ name: check.name, status: check.status, detail: check.detail, ms: check.ms, metrics: check.metrics })),
  );
}

// HELP text of the metrics the checks measure (Verdict.metrics, exported as mailproxy_<name>).
const METRIC_HELP: Record<string, string> = {
  smtp_banner_seconds: 'Seconds from connecting to the complete SMTP greeting (slowest listen address of the instance).',
  cert_expiry_seconds: 'Seconds until the certificate haraka-in serves over STARTTLS expires (negative once expired).',
  wireguard_handshake_age_seconds: "Seconds since the latest WireGuard handshake with the backend's peer.",
  queue_messages: "Messages in haraka-out's queue.",
  queue_deferred_messages: "Messages in haraka-out's queue that failed at least once and wait for a retry.",
  queue_oldest_seconds: "Age of the oldest message in haraka-out's queue (0 when empty).",
  queue_error_files: 'Files haraka-out moved aside (error.*) and never retries.',
  disk_free_bytes: 'Bytes free for unprivileged users on the file system of state_dir.',
  disk_size_bytes: 'Size in bytes of the file system of state_dir.',
  kept_messages: 'Messages haraka-in keeps for the backend while it is away (inbound.store_and_forward), waiting for delivery.',
  kept_oldest_seconds: 'Age of the oldest message haraka-in keeps for the backend (0 when none).',
  kept_held_messages: 'Kept messages haraka-in holds for the operator (refused by the backend, or too old).',
  kept_bytes: 'Bytes of the mail haraka-in keeps (ready and held), counted against inbound.store_and_forward.max_disk_mb.',
  kept_corrupt_messages: 'Kept messages haraka-in found unreadable at a start and moved to corrupt/.',
  recipient_cache_entries: "Recipients in haraka-in's recipient cache (accepted and refused by the backend).",
  recipient_cache_accepted_entries: "Recipients in haraka-in's recipient cache that the backend accepted: the ones mail is kept for.",
};

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function number(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  return String(value);
}

const STATUS_HELP = Object.entries(STATUS_CODE)
  .map(([status, code]) => `${code} ${status}`)
  .join(', ');

/**
 * The Prometheus text exposition format (0.0.4), every metric a gauge with HELP and TYPE. A metric a
 * check could not measure (backend down, no `wg`) is left out rather than written as a made-up value.
 */
export function formatPrometheus(report: HealthReport): string {
  const out: string[] = [];
  const family = (name: string, help: string, samples: [labels: Record<string, string>, value: number][]) => {
    if (samples.length === 0) return;
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [labels, value] of samples) {
      const text = Object.entries(labels)
        .map(([key, label]) => `${key}="${escapeLabel(label)}"`)
        .join(',');
      out.push(`${name}${text ? `{${text}}` : ''} ${number(value)}`);
    }
  };
  const code = (status: Status) => STATUS_CODE[status];
  family('mailproxy_health_status', `Overall result of mailproxy health, its exit code: ${STATUS_HELP}.`, [[{}, code(report.status)]]);
  family(
    'mailproxy_health_check_status',
    `Result of each mailproxy health check: ${STATUS_HELP}.`,
    report.checks.map((check) => [{ check: check.name }, code(check.status)]),
  );
  family(
    'mailproxy_health_check_duration_seconds',
    'Seconds each mailproxy health check took.',
    report.checks.map((check) => [{ check: check.name }, check.ms / 1000]),
  );
  family('mailproxy_health_last_run_timestamp_seconds', 'When mailproxy health last ran (Unix time).', [[{}, Math.round(report.checkedAt.getTime() / 1000)]]);
  const names = [...new Set(report.checks.flatMap((check) => Object.keys(check.metrics)))].sort();
  for (const name of names) {
    const samples = report.checks.filter((check) => name in check.metrics).map((check): [Record<string, string>, number] => [{ check: check.name }, check.metrics[name] ?? NaN]);
    family(`mailproxy_${name}`, METRIC_HELP[name] ?? `${name} as measured by mailproxy health.`, samples);
  }
  return `${out.join('\n')}\n`;
}

// The decisions of `mailproxy health` about the backup MX (inbound.store_and_forward), pure like checks.ts:
// the mail haraka-in keeps for the backend (ready), the messages it holds for a human (held), and the
// recipient cache that decides what it may keep. probes.ts reads the files; this judges the figures.
import { formatDuration } from '../queue/format';
import type { KeptFigures } from '../plugins/store-forward/spool-admin';
import { worst, type Status, type Verdict } from '../report/status';

export interface KeptThresholds {
  keptWarning: number;
  keptCritical: number;
  /** Seconds. */
  oldestWarning: number;
  oldestCritical: number;
  heldWarning: number;
  heldCritical: number;
  /** inbound.store_and_forward.max_disk_mb in bytes: over it new mail gets 452. */
  maxDiskBytes: number;
  /** inbound.store_and_forward.enabled: off, kept mail is not handed on. */
  enabled: boolean;
}

export type KeptFacts = { figures: KeptFigures } | { error: string };

/** Share of max_disk_mb from which the check warns that 452s are near. */
export const KEPT_DISK_WARNING_SHARE = 0.8;

type Part = { status: Status; text: string };

function against(value: number, warning: number, critical: number, text: string, names: [string, string], unit = ''): Part {
  if (value >= critical) return { status: 'CRITICAL', text: `${text} (health.${names[1]}: ${critical}${unit})` };
  if (value >= warning) return { status: 'WARNING', text: `${text} (health.${names[0]}: ${warning}${unit})` };
  return { status: 'OK', text };
}

/**
 * Kept messages and the age of the oldest against their thresholds, held messages against theirs (a held
 * message waits for a human, so one is a WARNING by default), the disk they take against max_disk_mb, and
 * anything recovery moved to corrupt/ (a WARNING: a human looks at it).
 */
export function judgeKept(facts: KeptFacts, now: Date, limits: KeptThresholds): Verdict {
  if ('error' in facts) return { status: 'UNKNOWN', detail: facts.error };
  const { figures } = facts;
  const oldestSeconds = figures.oldestReadyAt === null ? 0 : Math.max(0, Math.round((now.getTime() - figures.oldestReadyAt) / 1000));
  const metrics = {
    kept_messages: figures.ready,
    kept_oldest_seconds: oldestSeconds,
    kept_held_messages: figures.held,
    kept_bytes: figures.bytes,
    kept_corrupt_messages: figures.corrupt,
  };
  if (!limits.enabled) {
    const left = figures.ready + figures.held;
    if (left === 0) return { status: 'OK', detail: 'inbound.store_and_forward is off; nothing kept', metrics };
    return {
      status: 'WARNING',
      detail: `inbound.store_and_forward is off, but ${left} kept message(s) wait (${figures.ready} ready, ${figures.held} held): turn it on to hand them on, or see \`mailproxy queue list --instance in\``,
      metrics,
    };
  }
  const parts: Part[] = [against(figures.ready, limits.keptWarning, limits.keptCritical, `${figures.ready} kept for the backend`, ['kept_warning', 'kept_critical'])];
  if (figures.ready > 0) {
    const oldest = `oldest ${formatDuration(oldestSeconds * 1000)}`;
    parts.push(against(oldestSeconds, limits.oldestWarning, limits.oldestCritical, oldest, ['kept_oldest_warning', 'kept_oldest_critical'], ' s'));
  }
  parts.push(against(figures.held, limits.heldWarning, limits.heldCritical, `${figures.held} held`, ['held_warning', 'held_critical']));
  const mb = (bytes: number) => Math.ceil(bytes / (1024 * 1024));
  const disk = `${mb(figures.bytes)} of ${mb(limits.maxDiskBytes)} MB`;
  if (figures.bytes >= limits.maxDiskBytes) parts.push({ status: 'CRITICAL', text: `${disk} (max_disk_mb): new mail gets 452 while the backend is away` });
  else if (figures.bytes >= KEPT_DISK_WARNING_SHARE * limits.maxDiskBytes)
    parts.push({ status: 'WARNING', text: `${disk} (max_disk_mb), over ${KEPT_DISK_WARNING_SHARE * 100} %` });
  else parts.push({ status: 'OK', text: disk });
  if (figures.corrupt > 0) parts.push({ status: 'WARNING', text: `${figures.corrupt} unreadable in corrupt/` });
  const status = worst(parts.map((part) => part.status));
  const hint = figures.held > 0 ? ': see `mailproxy queue held`' : status === 'OK' ? '' : ': see `mailproxy queue list --instance in`';
  return { status, detail: `${parts.map((part) => part.text).join(', ')}${hint}`, metrics };
}

/** The saved recipient cache as the health probe read it (entries past their lifetime left out). */
export type RecipientCacheFacts = { kind: 'loaded'; accepted: number; refused: number } | { kind: 'missing' } | { kind: 'unreadable'; code: string } | { kind: 'malformed' };

/**
 * How many recipients haraka-in may keep mail for: only those the backend accepted before. Informational
 * (OK) unless the file cannot be read by haraka-in either (it then starts empty and answers every
 * recipient 450 while the backend is away).
 */
export function judgeRecipientCache(facts: RecipientCacheFacts, file: string): Verdict {
  if (facts.kind === 'missing') {
    return { status: 'OK', detail: `no recipient learnt yet (${file}): haraka-in learns them from the backend's answers to live mail`, metrics: { recipient_cache_entries: 0 } };
  }
  if (facts.kind === 'unreadable') return { status: 'UNKNOWN', detail: `cannot read ${file} (${facts.code}): run health as root or as haraka-in's user` };
  if (facts.kind === 'malformed')
    return { status: 'WARNING', detail: `${file} is not a recipient cache: haraka-in starts with an empty one and answers 450 while the backend is away` };
  const total = facts.accepted + facts.refused;
  return {
    status: 'OK',
    detail: `${total} recipient(s) cached: ${facts.accepted} accepted (kept for while the backend is away), ${facts.refused} refused`,
    metrics: { recipient_cache_entries: total, recipient_cache_accepted_entries: facts.accepted },
  };
}

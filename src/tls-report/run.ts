// `mailproxy tls-report send`: each finished day of haraka-out's TLS sessions (src/tlsrpt/store.ts), as one
// report per recipient domain (src/tlsrpt/report.ts) to every address the domain's `_smtp._tls` record gives:
// a mailto: one as an email dropped into haraka-out's pickup directory (it leaves through haraka-out's queue,
// with its retries, DANE and MTA-STS, from the null sender so that it never bounces), an https: one by POST.
// What went out is written down per day (`<day>.reported.json`), so a run after a failure sends only what is
// missing and a second run sends nothing twice.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { dropIntoPickup } from '../plugins/pickup-files';
import { dayOf } from '../tlsrpt/day';
import { gzipReport, reportMessage } from '../tlsrpt/message';
import { buildReport, reportDomains, reportFileName } from '../tlsrpt/report';
import { parseTlsRptRecord, tlsRptName, type Rua } from '../tlsrpt/rua';
import { KEEP_DAYS, markReported, readDay, reportedDomains, savedDays } from '../tlsrpt/store';
import type { DayRecord } from '../tlsrpt/types';

export interface ReportSettings {
  /** haraka-out's store of TLS sessions. */
  dir: string;
  /** haraka-out's pickup directory. */
  pickupDir: string;
  /** TLS-Report-Submitter and the report's host part: our host name. */
  submitter: string;
  organization: string;
  contact: string;
  from: string;
}

export interface ReportDeps {
  resolveTxt(name: string): Promise<string[][]>;
  post(url: string, gzipped: Buffer): Promise<void>;
  /** The emailed report with its DKIM-Signature in front. */
  sign(message: Buffer): Promise<Buffer>;
  now(): number;
}

export interface ReportLine {
  day: string;
  domain: string;
  /** sent to each of `to`; none: the domain asks for no reports; failed: retried by the next run. */
  outcome: 'sent' | 'none' | 'failed';
  to: string[];
  note?: string;
}

const uriOf = (rua: Rua) => (rua.kind === 'mailto' ? `mailto:${rua.address}` : rua.url);

/** The ruas of a domain's record, or why there are none (a DNS failure throws: the next run asks again). */
async function ruasOf(domain: string, deps: ReportDeps): Promise<Rua[] | string> {
  let records: string[][];
  try {
    records = await deps.resolveTxt(tlsRptName(domain));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return `no ${tlsRptName(domain)} record`;
    throw err;
  }
  const parsed = parseTlsRptRecord(records);
  return 'error' in parsed ? `${tlsRptName(domain)}: ${parsed.error}` : parsed.rua;
}

async function reportDomain(record: DayRecord, domain: string, settings: ReportSettings, deps: ReportDeps, done: Set<string>, save: () => Promise<void>): Promise<ReportLine> {
  const { day } = record;
  const reportId = `${day}_${domain}@${settings.submitter}`;
  const report = buildReport(record, domain, { organization: settings.organization, contact: settings.contact }, reportId);
  let ruas: Rua[] | string;
  try {
    ruas = await ruasOf(domain, deps);
  } catch (err) {
    return { day, domain, outcome: 'failed', to: [], note: `${tlsRptName(domain)}: ${(err as Error).message}` };
  }
  if (!report || typeof ruas === 'string') {
    done.add(domain);
    await save();
    return { day, domain, outcome: 'none', to: [], note: typeof ruas === 'string' ? ruas : 'no sessions' };
  }
  const gzipped = gzipReport(report);
  const fileName = reportFileName(settings.submitter, domain, day, reportId);
  const to: string[] = [];
  const problems: string[] = [];
  for (const rua of ruas) {
    const key = `${domain} ${uriOf(rua)}`;
    if (done.has(key)) continue;
    try {
      if (rua.kind === 'mailto') {
        const message = await reportMessage({ report, gzipped, fileName, submitter: settings.submitter, domain, from: settings.from, to: rua.address, date: new Date(deps.now()) });
        await dropIntoPickup(settings.pickupDir, { from: '', to: [rua.address], tlsReport: true }, await deps.sign(message));
      } else {
        await deps.post(rua.url, gzipped);
      }
      // Written down before the next address: a run cut short here sends this one no second time.
      done.add(key);
      await save();
      to.push(uriOf(rua));
    } catch (err) {
      problems.push(`${uriOf(rua)}: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) return { day, domain, outcome: 'failed', to, note: problems.join('; ') };
  done.add(domain);
  await save();
  return { day, domain, outcome: 'sent', to };
}

/** haraka-out saves its counts within seconds: a day is reported once it has been over this long. */
const SETTLE_MS = 10 * 60_000;

/** The days to report: `day`, or each saved day that ended SETTLE_MS ago and is not past KEEP_DAYS. */
async function daysToReport(settings: ReportSettings, now: number, day?: string): Promise<string[]> {
  if (day) return [day];
  const settled = dayOf(now - SETTLE_MS);
  const oldest = dayOf(now - KEEP_DAYS * 86_400_000);
  return (await savedDays(settings.dir)).filter((saved) => saved < settled && saved >= oldest);
}

/** One run at a time: a second one (a manual run beside the timer's) would send what the first is sending. */
async function withLock<T>(dir: string, body: () => Promise<T>): Promise<T> {
  const lock = path.join(dir, '.send.lock');
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(lock, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const age = Date.now() - (await fs.stat(lock)).mtimeMs;
    // A lock left by a run that died long ago is no run.
    if (age < STALE_LOCK_MS) throw new Error(`another \`tls-report send\` is running (${lock}, ${Math.round(age / 1000)} s old)`);
    await fs.rm(lock, { force: true });
    handle = await fs.open(lock, 'wx', 0o600);
  }
  try {
    return await body();
  } finally {
    await handle.close();
    await fs.rm(lock, { force: true });
  }
}

const STALE_LOCK_MS = 3_600_000;

/** Reports `day`, or every saved day that has ended, has domains not yet reported and is not too old. */
export async function sendReports(settings: ReportSettings, deps: ReportDeps, day?: string): Promise<ReportLine[]> {
  return withLock(settings.dir, async () => {
    const lines: ReportLine[] = [];
    for (const current of await daysToReport(settings, deps.now(), day)) {
      const done = await reportedDomains(settings.dir, current);
      const save = () => markReported(settings.dir, current, done);
      const record = await readDay(settings.dir, current);
      for (const domain of reportDomains(record)) {
        if (!done.has(domain)) lines.push(await reportDomain(record, domain, settings, deps, done, save));
      }
    }
    return lines;
  });
}

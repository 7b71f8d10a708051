// Watching units in the systemd container (test/helpers/nspawn.ts) as systemd itself reports them: each
// sample is one `systemctl show` (and, when asked, whether an address:port is listening, read right after
// it), so a test can say what states a unit went through, not only where it ended.
import type { Container } from './nspawn';

export const UNIT_PROPERTIES = ['ActiveState', 'SubState', 'Result', 'NRestarts', 'MainPID', 'InvocationID'] as const;

export type UnitSample = Record<(typeof UNIT_PROPERTIES)[number], string> & {
  /** Host milliseconds (Date.now()) when the sample was taken. */
  at: number;
  /** Whether the `listen` address had a listening socket, read after the unit's state. */
  listening: boolean | null;
};

export interface WatchOptions {
  /** Stop once this holds for a sample (that sample is the last one returned). */
  until: (sample: UnitSample) => boolean;
  timeoutMs: number;
  /** ADDRESS:PORT (IPv4) to check for a listening socket in each sample. */
  listen?: string;
  /** Called with each sample before the next one is taken (e.g. to act once a state is reached). */
  onSample?: (sample: UnitSample) => Promise<void> | void;
  intervalMs?: number;
}

export async function sampleUnit(container: Container, unit: string, listen?: string): Promise<UnitSample> {
  const show = `systemctl show ${unit} ${UNIT_PROPERTIES.map((name) => `--property=${name}`).join(' ')}`;
  const probe = listen ? `; if ss -Htln 'src ${listen}' | grep -q .; then echo Listening=yes; else echo Listening=no; fi` : '';
  const at = Date.now();
  const out = await container.ok(['sh', '-c', `${show}${probe}`]);
  const values: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values[line.slice(0, eq)] = line.slice(eq + 1);
  }
  const sample = { at, listening: listen ? values.Listening === 'yes' : null } as UnitSample;
  for (const name of UNIT_PROPERTIES) sample[name] = values[name] ?? '';
  return sample;
}

/** Samples `unit` until `until` holds; throws with every distinct state seen when time runs out. */
export async function watchUnit(container: Container, unit: string, options: WatchOptions): Promise<UnitSample[]> {
  const samples: UnitSample[] = [];
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const sample = await sampleUnit(container, unit, options.listen);
    samples.push(sample);
    if (options.until(sample)) return samples;
    if (Date.now() > deadline) throw new Error(`${unit}: timed out after ${options.timeoutMs} ms; states seen:\n${describeSamples(samples)}`);
    await options.onSample?.(sample);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
  }
}

/** The distinct states of a run of samples, one line each, with the ms since the first. */
export function describeSamples(samples: UnitSample[]): string {
  const lines: string[] = [];
  let previous = '';
  for (const sample of samples) {
    const text = `${sample.ActiveState}/${sample.SubState} result=${sample.Result} restarts=${sample.NRestarts} pid=${sample.MainPID}${sample.listening === null ? '' : ` listening=${sample.listening}`}`;
    if (text !== previous) lines.push(`+${sample.at - (samples[0]?.at ?? 0)} ms ${text}`);
    previous = text;
  }
  return lines.join('\n');
}

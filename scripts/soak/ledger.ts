// What the soak offered and what came of it: every message that must be delivered, refusals by reply
// code, bad inputs by kind (answered as expected or not), the faults injected, anything unexpected.

export type Direction = 'in' | 'out';

export interface Tracked {
  id: string;
  direction: Direction;
  kind: string;
  acceptedAt: number | null;
  attempts: number;
  finalCode: number;
  latencyMs: number | null;
}

export class Ledger {
  tracked = new Map<string, Tracked>();
  refused = new Map<string, number>();
  badInputs = new Map<string, { tried: number; expected: number }>();
  faults = new Map<string, number>();
  unexpected: string[] = [];
  counter = 0;

  nextId(prefix: string): string {
    this.counter += 1;
    return `${prefix}${this.counter}`;
  }

  refuse(code: number, what: string): void {
    const key = `${code || 'none'} ${what}`;
    this.refused.set(key, (this.refused.get(key) ?? 0) + 1);
  }

  bad(kind: string, ok: boolean): void {
    const entry = this.badInputs.get(kind) ?? { tried: 0, expected: 0 };
    entry.tried += 1;
    if (ok) entry.expected += 1;
    this.badInputs.set(kind, entry);
  }

  fault(kind: string): void {
    this.faults.set(kind, (this.faults.get(kind) ?? 0) + 1);
  }
}

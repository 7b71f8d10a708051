// The soak's options, its seeded randomness and its clock: what makes a run repeatable in its traffic mix.

export interface Options {
  minutes: number;
  rate: number;
  faultEvery: number;
  seed: number;
}

export function parseOptions(argv: string[]): Options {
  const options: Options = { minutes: 10, rate: 4, faultEvery: 30, seed: Date.now() % 100_000 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = Number(inline ?? argv[++i]);
    const key = ({ '--minutes': 'minutes', '--rate': 'rate', '--fault-every': 'faultEvery', '--seed': 'seed' } as const)[flag];
    if (!key || !Number.isFinite(value) || value <= 0) {
      process.stderr.write(`usage: npm run soak -- [--minutes N] [--rate R] [--fault-every S] [--seed X]\n(bad ${argv[i - (inline ? 0 : 1)]})\n`);
      process.exit(2);
    }
    options[key] = value;
  }
  return options;
}

// A small seeded PRNG (mulberry32): a run is repeatable in its traffic mix.
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

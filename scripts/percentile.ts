/** The p-th percentile (nearest rank) of ascending `sorted`; NaN for none. Shared by the benchmarks and the soak. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/**
 * V8 flags every Haraka runs with (demo, tests, benchmarks and the systemd units). A small young
 * generation and a capped old space keep haraka-in near 85 MB at 50 concurrent sessions instead of
 * 110-120 MB, at no measurable cost in throughput (docs/BENCHMARKS.md). Large messages are spooled to
 * disk (connection.ini spool_after, 256 KB), so the heap never holds large bodies.
 */
export const HARAKA_NODE_ARGS = ['--max-semi-space-size=4', '--max-old-space-size=128'] as const;

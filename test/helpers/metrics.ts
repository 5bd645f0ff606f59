// Unlabelled values from a running sidecar's /metrics (Prometheus text): the lines `name value`.
// Used by the tests and by the bench (bench/run.ts reads the sidecar's memory split with it).

/** The value of the unlabelled metric `name` in Prometheus text; throws naming it when absent. */
export function parseMetric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no metric ${name}`);
  return Number(line.slice(name.length + 1));
}

/** The values of `names` on http://`address`/metrics, all from one scrape (bounded: 10 s). */
export async function metricValues(address: string, names: readonly string[]): Promise<number[]> {
  const text = await (await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  return names.map((n) => parseMetric(text, n));
}

/** The value of `name` on http://`address`/metrics; throws naming it when the sidecar does not report it. */
export async function metricValue(address: string, name: string): Promise<number> {
  return (await metricValues(address, [name]))[0]!;
}

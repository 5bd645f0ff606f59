// One unlabelled value from a running sidecar's /metrics (Prometheus text): the line `name value`.

/** The value of `name` on http://`address`/metrics; throws naming it when the sidecar does not report it. */
export async function metricValue(address: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no metric ${name}`);
  return Number(line.slice(name.length + 1));
}

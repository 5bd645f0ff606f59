// The Redis key names of the engine's layout (redisStore.ts's header comment), in one place: the
// engine and migrate's import/export (portable.ts) must name the same keys.
export class RedisKeys {
  constructor(readonly prefix: string) {}
  /** A global table (one slot, `{g}`). */
  g(name: string): string {
    return `${this.prefix}{g}:${name}`;
  }
  /** An account's keys (its slot, `{a:<account>}`); "h" is its hash. */
  a(account: string, name = "h"): string {
    return `${this.prefix}{a:${account}}:${name}`;
  }
  /** A group budget's keys (its own slot). */
  gb(group: string, name: string): string {
    return `${this.prefix}{gb:${group}}:${name}`;
  }
  /** Usage buckets and their indexes (`{u}`). */
  u(name: string): string {
    return `${this.prefix}{u}:${name}`;
  }
}

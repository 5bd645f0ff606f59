// What a key IS for the people looking at it, as opposed to what is stored: the
// models it may really use (its own list AND its group's, as Check enforces
// them), whether it has expired, and the quota it can still spend (remaining
// minus what open reservations hold). One pure module, so the service (list
// filters, Key fields), the CLI and the TUI all read a key the same way.
// No I/O and no clock: callers pass `now`.

/** Where a model restriction comes from. */
export type ModelSource = "none" | "key" | "group" | "key+group";

export interface EffectiveModels {
  /** The allowed models (key ∩ group, in the key's order, else the group's). Meaningful only when restricted. */
  readonly models: readonly string[];
  /** False = every model is allowed. True with an empty list = none is. */
  readonly restricted: boolean;
  readonly source: ModelSource;
}

/**
 * The models a key may use. Stored lists use "empty = all" (a key or group with no list
 * restricts nothing); a key whose group no longer exists gets no group restriction, like
 * Check (src/policy/evaluate.ts).
 */
export function effectiveModels(keyModels: readonly string[], groupModels: readonly string[] | undefined): EffectiveModels {
  const byKey = keyModels.length > 0;
  const byGroup = groupModels !== undefined && groupModels.length > 0;
  if (!byKey && !byGroup) return { models: [], restricted: false, source: "none" };
  if (byKey && !byGroup) return { models: [...keyModels], restricted: true, source: "key" };
  if (!byKey) return { models: [...(groupModels ?? [])], restricted: true, source: "group" };
  const group = new Set(groupModels);
  return { models: keyModels.filter((m) => group.has(m)), restricted: true, source: "key+group" };
}

/** True when a key with these effective models may use `model`. */
export function allowsModel(e: { readonly models: readonly string[]; readonly restricted: boolean }, model: string): boolean {
  return !e.restricted || e.models.includes(model);
}

/** True when an expiry (epoch ms, null/undefined = never) has passed at `now` (Check denies at expiresAt). */
export function isExpiredAt(expiresAtMs: number | null | undefined, now: number): boolean {
  return expiresAtMs !== null && expiresAtMs !== undefined && now >= expiresAtMs;
}

/** The status a person needs: can the key be used? Expired wins (it stays refused after an enable). */
export type KeyUsability = "enabled" | "disabled" | "expired";

export function keyUsability(enabled: boolean, expired: boolean): KeyUsability {
  if (expired) return "expired";
  return enabled ? "enabled" : "disabled";
}

/** The page's words for KeyUsability. */
export const USABILITY_LABEL: Readonly<Record<KeyUsability, string>> = { enabled: "Enabled", disabled: "Disabled", expired: "Expired" };

/**
 * What a status filter keeps: "enabled" = usable now (enabled and not expired), "disabled" =
 * switched off (expired or not), "expired" = past its expiry (enabled or not).
 */
export function matchesStatusFilter(filter: KeyUsability, enabled: boolean, expired: boolean): boolean {
  switch (filter) {
    case "enabled":
      return enabled && !expired;
    case "disabled":
      return !enabled;
    case "expired":
      return expired;
  }
}

/**
 * The quota a key can still spend: remaining minus the units open reservations hold
 * (Check admits a request only against this). Exact for any int64.
 */
export function spendableUnits(remaining: bigint, reserved: bigint): bigint {
  return remaining - (reserved > 0n ? reserved : 0n);
}

/** What a Key message states beyond the stored record (AdminService.keyFacts builds it). */
export interface KeyFacts {
  readonly effectiveModels: readonly string[];
  readonly modelsRestricted: boolean;
  /** The group's own list (empty = the group restricts nothing). */
  readonly groupModels: readonly string[];
  readonly expired: boolean;
}

/** The facts of a key whose record holds `keyModels` and `expiresAt`, in a group with `groupModels` (undefined = no such group). */
export function keyFacts(keyModels: readonly string[], expiresAt: number | null, groupModels: readonly string[] | undefined, now: number): KeyFacts {
  const e = effectiveModels(keyModels, groupModels);
  return { effectiveModels: e.models, modelsRestricted: e.restricted, groupModels: [...(groupModels ?? [])], expired: isExpiredAt(expiresAt, now) };
}

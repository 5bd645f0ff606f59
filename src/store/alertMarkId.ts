// Store.claimAlertMark's id rule, shared by every engine: ids are event ids ("evt_" + 24
// base64url characters), accepted as 1..200 printable ASCII characters.

/** The longest mark id accepted. */
export const MAX_MARK_ID = 200;

/** Whether `id` may be a mark id: 1..200 printable ASCII characters. */
export function validMarkId(id: string): boolean {
  return typeof id === "string" && id.length > 0 && id.length <= MAX_MARK_ID && /^[\x21-\x7e]+$/.test(id);
}

/** Throws the TypeError an engine's claimAlertMark answers a bad id with. */
export function checkMarkId(id: string): void {
  if (!validMarkId(id)) throw new TypeError(`claimAlertMark: bad mark id ${JSON.stringify(String(id).slice(0, 40))}`);
}

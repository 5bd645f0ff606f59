// How many WatchUsage streams may be open: per admin token and in total. Each open stream costs
// the server every second (an event built, encoded and written) and holds a connection's
// resources; without a bound one read-only token opening thousands of streams starved Check.

export interface WatchLimits {
  /** Open streams per admin token (--watch-streams-per-token). */
  perToken: number;
  /** Open streams in total (--watch-streams-total). */
  total: number;
}

/**
 * Whether one more stream may open, given the streams `tokenId` already has open and the total:
 * null when it may, else the RESOURCE_EXHAUSTED message naming the limit and its flag. Pure.
 */
export function watchAdmission(tokenId: string, openForToken: number, openTotal: number, limits: WatchLimits): string | null {
  if (openForToken >= limits.perToken) {
    return `token ${JSON.stringify(tokenId)} already has ${openForToken} open WatchUsage streams (at most ${limits.perToken} per token, --watch-streams-per-token): close one first`;
  }
  if (openTotal >= limits.total) {
    return `the server already has ${openTotal} open WatchUsage streams (at most ${limits.total} in total, --watch-streams-total): try again later`;
  }
  return null;
}

// A value now or later. The embedded engine answers the hot path synchronously; a shared
// engine (Redis) answers with a promise. Code between the two handles both with `then`,
// so the synchronous path allocates no promise and takes no extra turn of the event loop.

export type MaybePromise<T> = T | Promise<T>;

/** f(v) now when v is a value; v.then(f) when it is a promise (a rejection passes through). */
export function then<T, U>(v: MaybePromise<T>, f: (value: T) => MaybePromise<U>): MaybePromise<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}

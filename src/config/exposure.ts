// Which listeners may serve in plaintext, decided once for all of them. Loopback needs no TLS.
// Off loopback, every port carries something an attacker wants — the admin API everything, the
// data port and the Envoy endpoint Check verdicts and Consume charges against any key id — so
// each needs TLS (--tls-cert/--tls-key) or the operator's explicit acceptance of plaintext
// (--admin-insecure for the admin port, --data-insecure for the data port, the Envoy endpoint and
// the HTTP forward-auth endpoint).
import { isLoopback, splitHostPort } from "../observability/metrics.js";

export type Transport = "plaintext" | "tls";

export interface ExposureConfig {
  listen: string;
  envoyListen: string;
  /** Optional ("" or absent = disabled): the HTTP forward-auth listener. */
  httpListen?: string;
  adminListen: string;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  adminInsecure: boolean;
  dataInsecure: boolean;
}

export interface Exposure {
  admin: Transport;
  data: Transport;
  /** null: the Envoy endpoint is disabled. */
  envoy: Transport | null;
  /** null: the HTTP forward-auth listener is disabled. */
  http: Transport | null;
}

/** A listener that may not start as configured; the message names the flags. */
export class ExposureError extends Error {
  override name = "ExposureError";
}

/**
 * How each listener serves. The admin port uses TLS whenever a certificate is configured (as it
 * always has); the data port and the Envoy endpoint use it off loopback only, so a local Envoy
 * keeps its plaintext connection when the admin port gets TLS. Throws ExposureError for a
 * non-loopback listener without TLS and without its -insecure flag. Pure.
 */
export function decideExposure(c: ExposureConfig): Exposure {
  const tls = Boolean(c.tlsCert && c.tlsKey);
  const loopback = (addr: string) => isLoopback(splitHostPort(addr).host);
  const admin: Transport = tls ? "tls" : "plaintext";
  if (!tls && !loopback(c.adminListen) && !c.adminInsecure) {
    throw new ExposureError(
      `refusing to serve the admin API on non-loopback ${c.adminListen} without TLS: pass --tls-cert/--tls-key, or --admin-insecure to accept the risk`,
    );
  }
  const dataPlane = (flag: string, addr: string, what: string): Transport => {
    if (loopback(addr) || c.dataInsecure) return "plaintext";
    if (tls) return "tls";
    throw new ExposureError(
      `${flag}: refusing to serve ${what} on non-loopback ${addr} without TLS (anyone who reaches it could charge any key): pass --tls-cert/--tls-key, or --data-insecure (AISA_DATA_INSECURE=1) for a trusted network`,
    );
  };
  const data = dataPlane("--listen", c.listen, "the data port");
  const envoy = c.envoyListen === "" ? null : dataPlane("--envoy-listen", c.envoyListen, "the Envoy endpoint");
  // The forward-auth listener answers the same verdicts and serves the same Consume: the data port's rule.
  const http = !c.httpListen ? null : dataPlane("--http-listen", c.httpListen, "the HTTP forward-auth endpoint");
  return { admin, data, envoy, http };
}

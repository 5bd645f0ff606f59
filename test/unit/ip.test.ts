import { expect } from "chai";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { SidecarError } from "../../src/domain/errors.js";
import { ipInRanges, normalizeIpEntry, parseClientIp, parseClientIpShared, sharedClientIpCount, SHARED_CLIENT_IPS_MAX, toCidrRange } from "../../src/domain/ip.js";

const bytes = (...b: number[]) => Uint8Array.from(b);
const v6 = (text: string) => Uint8Array.from(ipaddr.IPv6.parse(text).toByteArray());

/** Deterministic PRNG (mulberry32) so the cross-checks are reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("normalizeIpEntry", () => {
  const ok: [string, string][] = [
    ["203.0.113.7", "203.0.113.7"],
    ["  203.0.113.7\t", "203.0.113.7"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["10.1.2.3/8", "10.0.0.0/8"],
    ["10.1.2.3/32", "10.1.2.3/32"],
    ["10.1.2.3/0", "0.0.0.0/0"],
    ["192.168.77.200/26", "192.168.77.192/26"],
    ["172.31.255.255/12", "172.16.0.0/12"],
    ["2001:DB8::1", "2001:db8::1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // RFC 5952: first longest run
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // a single zero group is not compressed
    ["2001:db8:abcd:12::1/32", "2001:db8::/32"],
    ["fe80::1/10", "fe80::/10"],
    ["::1", "::1"],
    ["::", "::"],
    ["::/0", "::/0"],
    ["::ffff:1.2.3.4", "1.2.3.4"],
    ["::FFFF:1.2.3.4", "1.2.3.4"],
    ["::ffff:102:304", "1.2.3.4"],
    ["0:0:0:0:0:ffff:10.1.2.3", "10.1.2.3"],
    ["::ffff:10.1.2.3/104", "10.0.0.0/8"],
    ["::ffff:10.1.2.3/96", "0.0.0.0/0"],
    ["::ffff:10.1.2.3/128", "10.1.2.3/32"],
    ["::ffff:0:0/95", "::fffe:0:0/95"], // below /96 it is an IPv6 range (host bit 95 zeroed)
    ["::1.2.3.4", "::102:304"], // IPv4-compatible (deprecated) stays IPv6
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
  ];
  for (const [input, want] of ok) {
    it(`${JSON.stringify(input)} → ${want}`, () => {
      const got = normalizeIpEntry(input, "ips[0]");
      expect(got).to.equal(want);
      expect(normalizeIpEntry(got), "idempotent").to.equal(got);
    });
  }

  const bad: string[] = [
    "",
    "   ",
    "300.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "010.0.0.1", // octal to inet_aton
    "10.0.0.01",
    "1", // inet_aton short form
    "0x7f.1",
    "0x7f000001",
    "127.1",
    "1.2.3.-4",
    "1.2.3.4/33",
    "1.2.3.4/-1",
    "1.2.3.4/08",
    "1.2.3.4/",
    "1.2.3.4/8/8",
    "1.2.3.4/ 8",
    "2001:db8::1/129",
    "2001:db8::g",
    "2001:db8:::1",
    "1:2:3:4:5:6:7:8:9",
    "::ffff:010.0.0.1",
    "::ffff:1.2.3",
    "fe80::1%eth0",
    "[::1]",
    "1.2.3.4:80",
    "localhost",
    "a".repeat(100),
  ];
  for (const input of bad) {
    it(`rejects ${JSON.stringify(input.length > 20 ? input.slice(0, 20) + "…" : input)}`, () => {
      let err: unknown;
      try {
        normalizeIpEntry(input, "ips[2]");
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(SidecarError);
      expect((err as SidecarError).code).to.equal("INVALID_ARGUMENT");
      expect((err as SidecarError).publicMessage).to.match(/^ips\[2\]: /);
    });
  }

  it("names the field and the value in the message", () => {
    expect(() => normalizeIpEntry("300.1.1.1", "ips[2]")).to.throw(
      'ips[2]: "300.1.1.1" is not an IPv4/IPv6 address or CIDR',
    );
  });

  it("agrees with ipaddr.js on 2000 random IPv6 CIDRs (host bits zeroed, canonical text)", () => {
    const r = rng(7);
    for (let n = 0; n < 2000; n++) {
      const words = Array.from({ length: 8 }, () => (r() < 0.3 ? 0 : Math.floor(r() * 0x10000)));
      if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) words[5] = 1; // keep it non-mapped
      const prefix = Math.floor(r() * 129);
      const addr = new ipaddr.IPv6(words);
      const got = normalizeIpEntry(`${addr.toNormalizedString()}/${prefix}`);
      const want = `${ipaddr.IPv6.networkAddressFromCIDR(`${addr.toString()}/${prefix}`).toRFC5952String()}/${prefix}`;
      expect(got).to.equal(want);
    }
  });
});

describe("toCidrRange", () => {
  const cases: [string, Uint8Array, number][] = [
    ["203.0.113.7", bytes(203, 0, 113, 7), 32],
    ["10.0.0.0/8", bytes(10, 0, 0, 0), 8],
    ["0.0.0.0/0", bytes(0, 0, 0, 0), 0],
    ["2001:db8::/32", v6("2001:db8::"), 32],
    ["2001:db8::1", v6("2001:db8::1"), 128],
    ["::/0", new Uint8Array(16), 0],
    // Not normalised, still understood: host bits zeroed, mapped → IPv4.
    ["10.1.2.3/8", bytes(10, 0, 0, 0), 8],
    ["::ffff:10.1.2.3/104", bytes(10, 0, 0, 0), 8],
    ["::ffff:10.1.2.3", bytes(10, 1, 2, 3), 32],
  ];
  for (const [text, b, prefix] of cases) {
    it(`${text} → ${b.length} bytes /${prefix}`, () => {
      const r = toCidrRange(text);
      expect(Array.from(r.bytes)).to.deep.equal(Array.from(b));
      expect(r.prefix).to.equal(prefix);
    });
  }
  for (const text of ["", "1.2.3.4/33", "::/129", "010.0.0.1", "[::1]", "1.2.3.4:80", "fe80::1%eth0", "garbage", "1.2.3.4/x"]) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      expect(() => toCidrRange(text, "ips[0]")).to.throw(SidecarError, /^ips\[0\]: /);
    });
  }
  it("round-trips every normalised entry of the normalizeIpEntry table", () => {
    for (const s of ["10.1.2.3/8", "2001:db8:abcd:12::1/32", "::ffff:10.1.2.3/104", "fe80::1/10", "::ffff:0:0/95", "64:ff9b::192.0.2.33"]) {
      const n = normalizeIpEntry(s);
      const r = toCidrRange(n);
      const slash = n.indexOf("/");
      expect(r.prefix).to.equal(slash < 0 ? r.bytes.length * 8 : Number(n.slice(slash + 1)));
      expect(Array.from(r.bytes)).to.deep.equal(ipaddr.parse(slash < 0 ? n : n.slice(0, slash)).toByteArray());
    }
  });
});

describe("parseClientIp", () => {
  const cases: [string, Uint8Array | null][] = [
    ["203.0.113.7", bytes(203, 0, 113, 7)],
    [" 203.0.113.7 ", bytes(203, 0, 113, 7)],
    ["0.0.0.0", bytes(0, 0, 0, 0)],
    ["255.255.255.255", bytes(255, 255, 255, 255)],
    ["203.0.113.7:51234", bytes(203, 0, 113, 7)],
    ["::1", v6("::1")],
    ["[::1]", v6("::1")],
    ["[::1]:8080", v6("::1")],
    ["  [2001:db8::7]:443\t", v6("2001:db8::7")],
    ["2001:DB8::7", v6("2001:db8::7")],
    ["2001:db8:0:0:0:0:0:7", v6("2001:db8::7")],
    ["fe80::1%eth0", v6("fe80::1")],
    ["[fe80::1%25eth0]", v6("fe80::1")],
    ["::", new Uint8Array(16)],
    ["1::", v6("1::")],
    ["1:2:3:4:5:6:7::", v6("1:2:3:4:5:6:7:0")],
    ["::2:3:4:5:6:7:8", v6("0:2:3:4:5:6:7:8")],
    ["::ffff:10.1.2.3", bytes(10, 1, 2, 3)],
    ["::FFFF:10.1.2.3", bytes(10, 1, 2, 3)],
    ["::ffff:a01:203", bytes(10, 1, 2, 3)],
    ["[::ffff:10.1.2.3]:80", bytes(10, 1, 2, 3)],
    ["0:0:0:0:0:ffff:10.1.2.3", bytes(10, 1, 2, 3)],
    ["::1.2.3.4", v6("::102:304")],
    ["64:ff9b::192.0.2.33", v6("64:ff9b::c000:221")],
    // garbage
    ["", null],
    ["   ", null],
    ["unix:/var/run/envoy.sock", null],
    ["/var/run/envoy.sock", null],
    ["localhost", null],
    ["300.1.1.1", null],
    ["1.2.3", null],
    ["1.2.3.4.5", null],
    ["010.0.0.1", null],
    ["1.2.3.04", null],
    ["1", null],
    ["0x7f.1", null],
    ["1.2.3.4:", null],
    ["1.2.3.4:65536", null],
    ["1.2.3.4:80:80", null],
    ["[1.2.3.4]", null],
    ["[::1", null],
    ["::1]", null],
    ["[::1]x", null],
    [":1", null],
    ["1:", null],
    [":::", null],
    ["1::2::3", null],
    ["1:2:3:4:5:6:7:8:9", null],
    ["1:2:3:4:5:6:7:8::", null],
    ["12345::", null],
    ["::ffff:1.2.3", null],
    ["::ffff:010.1.2.3", null],
    ["1:2:3:4:5:6:7:1.2.3.4", null],
    ["fe80::1%", null],
    ["g::1", null],
    ["1.2.3.4,5.6.7.8", null],
    ["9".repeat(200), null],
  ];
  for (const [input, want] of cases) {
    it(`${JSON.stringify(input.length > 24 ? input.slice(0, 24) + "…" : input)} → ${want === null ? "null" : `${want.length} bytes`}`, () => {
      const got = parseClientIp(input);
      if (want === null) expect(got).to.equal(null);
      else expect(got && Array.from(got)).to.deep.equal(Array.from(want));
    });
  }

  it("never throws on non-string input", () => {
    for (const x of [undefined, null, 42, {}, []]) expect(parseClientIp(x as unknown as string)).to.equal(null);
  });

  it("agrees with ipaddr.js / node:net on 5000 random addresses in every text form", () => {
    const r = rng(42);
    for (let n = 0; n < 5000; n++) {
      if (r() < 0.3) {
        const o = [0, 0, 0, 0].map(() => Math.floor(r() * 256));
        const text = o.join(".");
        expect(Array.from(parseClientIp(text)!)).to.deep.equal(o);
        const mapped = `::ffff:${text}`;
        expect(Array.from(parseClientIp(mapped)!), mapped).to.deep.equal(o);
        continue;
      }
      const words = Array.from({ length: 8 }, () => (r() < 0.4 ? 0 : Math.floor(r() * 0x10000)));
      const addr = new ipaddr.IPv6(words);
      const want = addr.isIPv4MappedAddress() ? addr.toIPv4Address().toByteArray() : addr.toByteArray();
      const forms = [addr.toString(), addr.toNormalizedString(), addr.toRFC5952String()];
      for (const text of forms) {
        expect(isIP(text), text).to.equal(6);
        expect(Array.from(parseClientIp(text) ?? []), text).to.deep.equal(want);
        expect(Array.from(parseClientIp(`[${text.toUpperCase()}]:1`) ?? []), text).to.deep.equal(want);
      }
    }
  });

  it("rejects what node:net rejects among 5000 random mutations (never accepts an invalid literal)", () => {
    const r = rng(99);
    const alphabet = "0123456789abcdefABCDEF:.%";
    for (let n = 0; n < 5000; n++) {
      const base = r() < 0.5 ? "2001:db8::1:2" : "10.20.30.40";
      const chars = base.split("");
      const k = 1 + Math.floor(r() * 3);
      for (let m = 0; m < k; m++) chars[Math.floor(r() * chars.length)] = alphabet[Math.floor(r() * alphabet.length)]!;
      const text = chars.join("");
      if (text.includes("%")) continue; // zones: node accepts, we drop them; covered above
      const got = parseClientIp(text);
      if (isIP(text) === 0) {
        // node accepts leading-zero-free forms only too; what it rejects we must reject,
        // except "a.b.c.d:port", which we accept by design.
        if (got !== null) expect(/^\d+\.\d+\.\d+\.\d+:\d+$/.test(text), text).to.equal(true);
      } else {
        expect(got, text).to.not.equal(null);
      }
    }
  });
});

describe("ipInRanges", () => {
  const ranges = ["10.0.0.0/8", "192.168.1.128/25", "203.0.113.7", "2001:db8::/32", "fe80::/10", "2001:db8:ffff::1"].map((s) =>
    toCidrRange(normalizeIpEntry(s)),
  );
  const cases: [string, boolean][] = [
    ["10.0.0.0", true],
    ["10.255.255.255", true],
    ["11.0.0.0", false],
    ["9.255.255.255", false],
    ["192.168.1.127", false],
    ["192.168.1.128", true],
    ["192.168.1.255", true],
    ["203.0.113.7", true],
    ["203.0.113.6", false],
    ["203.0.113.8", false],
    ["2001:db8::", true],
    ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true],
    ["2001:db9::", false],
    ["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false],
    ["fe80::1", true],
    ["febf:ffff::1", true],
    ["fec0::", false],
    ["::ffff:10.1.2.3", true], // mapped → IPv4 → 10/8
    ["::ffff:11.1.2.3", false],
    ["::a01:203", false], // IPv4-compatible is IPv6: never matches an IPv4 range
  ];
  for (const [ip, want] of cases) {
    it(`${ip} → ${want}`, () => {
      expect(ipInRanges(parseClientIp(ip)!, ranges)).to.equal(want);
    });
  }

  it("IPv4 never matches an IPv6 range, even ::/0; IPv6 never matches 0.0.0.0/0", () => {
    expect(ipInRanges(bytes(10, 0, 0, 1), [toCidrRange("::/0")])).to.equal(false);
    expect(ipInRanges(v6("2001:db8::1"), [toCidrRange("0.0.0.0/0")])).to.equal(false);
    expect(ipInRanges(bytes(10, 0, 0, 1), [toCidrRange("0.0.0.0/0")])).to.equal(true);
    expect(ipInRanges(v6("2001:db8::1"), [toCidrRange("::/0")])).to.equal(true);
  });

  it("an empty list matches nothing", () => {
    expect(ipInRanges(bytes(10, 0, 0, 1), [])).to.equal(false);
  });

  it("agrees with ipaddr.js match() on random addresses and prefixes", () => {
    const r = rng(5);
    for (let n = 0; n < 3000; n++) {
      const four = r() < 0.5;
      const len = four ? 4 : 16;
      const a = Array.from({ length: len }, () => Math.floor(r() * 256));
      const b = a.slice();
      // flip one random bit so matches and misses both occur
      const bit = Math.floor(r() * len * 8);
      b[bit >>> 3] = b[bit >>> 3]! ^ (0x80 >>> (bit & 7));
      const prefix = Math.floor(r() * (len * 8 + 1));
      const range = { bytes: Uint8Array.from(a), prefix };
      const other = ipaddr.fromByteArray(b);
      const want = other.match(ipaddr.fromByteArray(a), prefix);
      expect(ipInRanges(Uint8Array.from(b), [range])).to.equal(want);
    }
  });
});

describe("parseClientIpShared (the Envoy Check's shared, frozen client addresses, issue 18)", () => {
  it("answers what parseClientIp answers, one frozen array per text, that nothing can change", () => {
    for (const text of ["203.0.113.7", "::ffff:10.9.9.9", "[2001:db8::1]:443", "fe80::1%eth0", "not-an-ip", "", " 10.0.0.1 "]) {
      const want = parseClientIp(text);
      const got = parseClientIpShared(text);
      expect(got === null ? null : Array.from(got), text).to.deep.equal(want === null ? null : Array.from(want));
      expect(parseClientIpShared(text), `${text}: the same object the second time`).to.equal(got);
      if (got !== null) {
        expect(Object.isFrozen(got)).to.equal(true);
        expect(() => ((got as number[])[0] = 99)).to.throw(TypeError);
        expect(parseClientIpShared(text)![0]).to.equal(want![0]);
      }
    }
    expect(parseClientIpShared(42 as unknown as string)).to.equal(null);
  });

  it("stays bounded under 100,000 distinct addresses, and answers each correctly", () => {
    const r = rng(18);
    for (let i = 0; i < 100_000; i++) {
      const v4 = i % 2 === 0;
      const text = v4 ? `${i >>> 16}.${(i >>> 8) & 255}.${i & 255}.${Math.floor(r() * 256)}` : `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::${Math.floor(r() * 0xffff).toString(16)}`;
      const got = parseClientIpShared(text);
      expect(sharedClientIpCount()).to.be.at.most(SHARED_CLIENT_IPS_MAX);
      if (i % 997 === 0) expect(got && Array.from(got), text).to.deep.equal(Array.from(parseClientIp(text)!));
    }
    // Longer than any address: answered, never kept.
    const before = sharedClientIpCount();
    expect(parseClientIpShared("1".repeat(5000))).to.equal(null);
    expect(sharedClientIpCount()).to.equal(before);
  });
});

// hashSecretInto (the Check path's allocation-free SHA-256) gives exactly hashSecretBytes'
// digest for every kind of presented secret, and fully overwrites a reused array.
import { expect } from "chai";
import { generateKeySecret, hashSecretBytes, hashSecretInto } from "../../src/keys/secrets.js";

describe("hashSecretInto", () => {
  const secrets = ["", "sk-x", generateKeySecret(), generateKeySecret(), "sk-ünïcödé-🔑", " padded ", "x".repeat(10_000), "\u0000\u00ff\u0100"];
  it("equals hashSecretBytes for every secret, into one reused array", () => {
    const out = new Uint8Array(32).fill(0xaa);
    for (const s of secrets) {
      expect(hashSecretInto(s, out), JSON.stringify(s.slice(0, 20))).to.equal(out);
      expect(Buffer.compare(Buffer.from(out), hashSecretBytes(s)), JSON.stringify(s.slice(0, 20))).to.equal(0);
    }
  });
});

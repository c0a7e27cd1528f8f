// docs/verifying.md implemented from its text alone, with Node's standard library only:
// rebuild each vector's hash input, its eventhash and its signature check, then every
// chain's verdict. Run by tests/contracts/test_vectors_node.py (skipped without Node.js).
"use strict";
const fs = require("fs");
const crypto = require("crypto");

const vectors = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));

// Canonical JSON: members sorted (all names are ASCII), no whitespace, strings as JSON.stringify writes them.
const canon = (x) =>
  Array.isArray(x) ? "[" + x.map(canon).join(",") + "]"
  : x !== null && typeof x === "object"
    ? "{" + Object.keys(x).sort().map((k) => JSON.stringify(k) + ":" + canon(x[k])).join(",") + "}"
    : JSON.stringify(x);

// The time as the hash input writes it: Z as +00:00, a six-digit fraction, none when zero.
function recordedAt(time) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)$/.exec(time);
  if (!m) throw new Error("not a time: " + time);
  const micros = parseInt((m[2] || "0").padEnd(6, "0"), 10);
  return m[1] + (micros ? "." + String(micros).padStart(6, "0") : "") + (m[3] === "Z" ? "+00:00" : m[3]);
}

const hashInput = (e) => canon({
  case_id: e.subject, version: e.caseversion, type: e.type, event_id: e.id,
  recorded_at: recordedAt(e.time), actor_id: e.actorid, actor_organisation: e.actororg,
  principal: e.actorprincipal, correlation_id: e.correlationid, causation_id: e.causationid ?? null,
  prev_hash: e.prevhash, data: e.data,
});
const sha256 = (text) => crypto.createHash("sha256").update(text, "utf8").digest("hex");
const keys = new Map(vectors.keys.keys.map((k) => [k.kid, crypto.createPublicKey({ key: k, format: "jwk" })]));
const signatureOk = (e, hash) =>
  keys.has(e.vsskeyid) &&
  crypto.verify(null, Buffer.from("vss-commit-v1:" + hash, "ascii"), keys.get(e.vsskeyid), Buffer.from(e.vsssig, "base64url"));

// The verification rules of section 3: the first failing version, or null.
function failsAt(events) {
  let previous = "0".repeat(64), signedThrough = 0, version = 0;
  for (const e of events) {
    version += 1;
    if (e.caseversion !== version || e.subject !== events[0].subject) return version;
    const hash = sha256(hashInput(e));
    if (e.prevhash !== previous || hash !== e.eventhash) return version;
    if (e.vsssig !== undefined || e.vsskeyid !== undefined) {
      if (!signatureOk(e, hash)) return version;
      signedThrough = version;
    }
    previous = hash;
  }
  return signedThrough === version ? null : version;
}

const report = { vectors: [], chains: [] };
for (const v of vectors.vectors) {
  const e = v.cloudevent, text = hashInput(e), hash = sha256(text);
  report.vectors.push({
    version: e.caseversion,
    hash_input: text === v.hash_input,
    eventhash: hash === v.eventhash,
    signature: e.vsssig === undefined ? null : signatureOk(e, hash),
  });
}
for (const c of vectors.chains) report.chains.push({ name: c.name, fails_at: failsAt(c.events) });
console.log(JSON.stringify(report));

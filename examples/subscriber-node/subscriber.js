#!/usr/bin/env node
// An organisation's VSS subscriber in Node.js, written from the AsyncAPI document and the docs
// (docs/subscribing.md, docs/verifying.md) alone: the official NATS client, Ajv 8 and node:crypto.
//
//   node subscriber.js --url nats://127.0.0.1:4422 --organisation vgr-psykiatri-nordost \
//       --seed ../../.vss/nats-auth/organisations/vgr-psykiatri-nordost.nk \
//       --keys http://127.0.0.1:8000/.well-known/vss-keys.json --idle-exit 3
//   node subscriber.js --vectors ../../contracts/vss_contracts/testvectors/chain.json
//   node subscriber.js --check-schemas
//
// For each message of its own share on VSS_SHARE it validates the CloudEvent envelope and its
// data against the committed JSON Schemas (the data's schema is the one whose $id is the
// event's `dataschema`), recomputes the event's hash, checks the chain and every commit
// signature, prints one JSON line, and acknowledges it. A SharingEnded (source /vss/sharing)
// ends the case: nothing more is expected, and its copy may end inside a commit, so the last
// events need not be signed. At the end it prints a summary line; the exit status is 4 at the
// first event that does not verify or validate (left unacknowledged), 2 for a refused setup.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");
const { connect, nkeyAuthenticator, AckPolicy, DeliverPolicy } = require("nats");
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const SHARE_STREAM = "VSS_SHARE";
const CASE_SOURCE = "/vss/case";
const SHARING_SOURCE = "/vss/sharing";
const GENESIS = "0".repeat(64);
const SIGNATURE_CONTEXT = "vss-commit-v1:";
const DEFAULT_SCHEMAS = path.resolve(__dirname, "..", "..", "contracts", "vss_contracts", "schemas");
const EXIT = { ok: 0, connect: 1, setup: 2, undecodable: 3, unverified: 4 };

class Failure extends Error {
  constructor(exit, message) {
    super(message);
    this.exit = exit;
  }
}

function parseArgs(argv) {
  const args = { url: process.env.NATS_URL || "nats://127.0.0.1:4422", schemas: DEFAULT_SCHEMAS };
  const flags = new Set(["check-schemas"]);
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, "");
    if (flags.has(name)) args[name] = true;
    else if (argv[i].startsWith("--") && i + 1 < argv.length) args[name] = argv[++i];
    else throw new Failure(EXIT.setup, `unknown argument ${argv[i]}`);
  }
  return args;
}

// --- docs/verifying.md: the hash input, the hash, the signature -------------------------------

// Canonical JSON: members sorted by name, no whitespace, strings and numbers as JSON.stringify writes them.
const canon = (x) =>
  Array.isArray(x)
    ? "[" + x.map(canon).join(",") + "]"
    : x !== null && typeof x === "object"
      ? "{" + Object.keys(x).sort().map((k) => JSON.stringify(k) + ":" + canon(x[k])).join(",") + "}"
      : JSON.stringify(x);

// The time as the hash input writes it: Z as +00:00, six fraction digits, none when they are all zero.
function recordedAt(time) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)$/.exec(time);
  if (!m) throw new Error("not a time: " + time);
  const micros = parseInt((m[2] || "0").padEnd(6, "0"), 10);
  return m[1] + (micros ? "." + String(micros).padStart(6, "0") : "") + (m[3] === "Z" ? "+00:00" : m[3]);
}

const hashInput = (e) =>
  canon({
    case_id: e.subject,
    version: e.caseversion,
    type: e.type,
    event_id: e.id,
    recorded_at: recordedAt(e.time),
    actor_id: e.actorid,
    actor_organisation: e.actororg,
    principal: e.actorprincipal,
    correlation_id: e.correlationid,
    causation_id: e.causationid ?? null,
    prev_hash: e.prevhash,
    data: e.data,
  });
const eventHash = (e) => crypto.createHash("sha256").update(hashInput(e), "utf8").digest("hex");

function publicKeys(jwks) {
  const keys = new Map();
  for (const k of jwks.keys || []) {
    if (k.kty !== "OKP" || k.crv !== "Ed25519" || !k.kid) throw new Failure(EXIT.setup, "not an Ed25519 key set");
    keys.set(k.kid, crypto.createPublicKey({ key: { kty: k.kty, crv: k.crv, x: k.x }, format: "jwk" }));
  }
  return keys;
}

const signed = (e) => e.vsssig != null || e.vsskeyid != null;
const signatureOk = (keys, e, hash) =>
  keys.has(e.vsskeyid) &&
  typeof e.vsssig === "string" &&
  crypto.verify(null, Buffer.from(SIGNATURE_CONTEXT + hash, "ascii"), keys.get(e.vsskeyid), Buffer.from(e.vsssig, "base64url"));

// One case's chain as it arrives: the next version, the previous hash, how far a signature covers it.
class CaseChain {
  constructor(caseId) {
    Object.assign(this, { caseId, version: 0, previous: GENESIS, signedThrough: 0, ended: null });
  }

  // The first reason the event does not follow, or null; on success the chain moves on.
  take(keys, e) {
    const version = this.version + 1;
    if (e.caseversion !== version) return `version ${version} expected, got ${e.caseversion}`;
    if (e.prevhash !== this.previous) return "prevhash does not match the previous event";
    const hash = eventHash(e);
    if (hash !== e.eventhash) return "the event's content does not match its hash";
    if (signed(e)) {
      if (!signatureOk(keys, e, hash)) return `the signature (key ${e.vsskeyid}) does not verify`;
      this.signedThrough = version;
    }
    Object.assign(this, { version, previous: hash, ended: null });
    return null;
  }
}

// --- the JSON Schemas ---------------------------------------------------------------------------

function loadSchemas(directory) {
  const ajv = new Ajv2020(); // Ajv 8's default settings (strict mode included)
  addFormats(ajv);
  const ids = [];
  for (const file of fs.readdirSync(directory).filter((f) => f.endsWith(".json")).sort()) {
    const schema = JSON.parse(fs.readFileSync(path.join(directory, file), "utf8"));
    ajv.addSchema(schema);
    ids.push(schema.$id);
  }
  for (const id of ids) ajv.getSchema(id); // compile each now: a schema Ajv refuses fails here
  const envelope = ids.find((id) => id.endsWith(":se.vss.CloudEvent"));
  if (!envelope) throw new Failure(EXIT.setup, `no CloudEvent envelope schema in ${directory}`);
  return { ajv, ids, envelope: ajv.getSchema(envelope) };
}

function schemaProblem(schemas, e) {
  if (!schemas.envelope(e)) return "envelope: " + schemas.ajv.errorsText(schemas.envelope.errors);
  const data = schemas.ajv.getSchema(e.dataschema);
  if (!data) return `no schema ${e.dataschema}`;
  if (!data(e.data)) return "data: " + schemas.ajv.errorsText(data.errors);
  return null;
}

// --- the modes ----------------------------------------------------------------------------------

function reproduceVectors(file) {
  const vectors = JSON.parse(fs.readFileSync(file, "utf8"));
  const keys = publicKeys(vectors.keys);
  const report = { vectors: [], chains: [] };
  for (const v of vectors.vectors) {
    const e = v.cloudevent;
    const hash = eventHash(e);
    report.vectors.push({
      version: e.caseversion,
      hash_input: hashInput(e) === v.hash_input,
      eventhash: hash === v.eventhash,
      signature: signed(e) ? signatureOk(keys, e, hash) : null,
    });
  }
  for (const c of vectors.chains) {
    const chain = new CaseChain(c.events[0].subject);
    let failsAt = null;
    for (const e of c.events) {
      if (e.subject !== chain.caseId || chain.take(keys, e) !== null) {
        failsAt = chain.version + 1;
        break;
      }
    }
    if (failsAt === null && chain.signedThrough !== chain.version) failsAt = chain.version;
    report.chains.push({ name: c.name, fails_at: failsAt });
  }
  return report;
}

async function loadKeys(source) {
  try {
    if (/^https?:\/\//.test(source)) {
      const response = await fetch(source);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return publicKeys(await response.json());
    }
    return publicKeys(JSON.parse(fs.readFileSync(source, "utf8")));
  } catch (error) {
    if (error instanceof Failure) throw error;
    throw new Failure(EXIT.setup, `cannot load the keys from ${source}: ${error.message}`);
  }
}

const token = (organisation) => organisation.replaceAll(".", "~"); // a subject token (docs/subscribing.md)
const emit = (line) => process.stdout.write(JSON.stringify(line) + "\n");

async function subscribe(args) {
  for (const needed of ["organisation", "seed", "keys"]) {
    if (!args[needed]) throw new Failure(EXIT.setup, `--${needed} is needed`);
  }
  const schemas = loadSchemas(args.schemas);
  let keys = await loadKeys(args.keys);
  const seed = new TextEncoder().encode(fs.readFileSync(args.seed, "utf8").trim());
  let nc;
  try {
    nc = await connect({
      servers: args.url,
      authenticator: nkeyAuthenticator(seed),
      inboxPrefix: `_INBOX_${args.organisation}`, // replies on the shared _INBOX are refused
      timeout: 5000,
      maxReconnectAttempts: 3,
    });
  } catch (error) {
    throw new Failure(EXIT.connect, `cannot connect to ${args.url} as ${args.organisation}: ${error.message}`);
  }
  const summary = { events: 0, hashes: 0, signatures: 0, schemas: 0, sharing_ended: 0, cases: 0 };
  const chains = new Map();
  try {
    const name = args.durable || args.organisation;
    const jsm = await nc.jetstreamManager({ timeout: 5000 }); // asks $JS.API.INFO
    try {
      await jsm.consumers.add(SHARE_STREAM, {
        name,
        durable_name: name,
        filter_subject: `vss.share.${token(args.organisation)}.>`,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
      });
    } catch (error) {
      throw new Failure(EXIT.setup, `the server refused consumer ${name} on ${SHARE_STREAM}: ${error.message}`);
    }
    const consumer = await nc.jetstream().consumers.get(SHARE_STREAM, name);
    const idle = Number(args["idle-exit"] || 0) * 1000;
    let last = Date.now();
    while (!idle || Date.now() - last < idle) {
      const messages = await consumer.fetch({ max_messages: 100, expires: Math.max(1000, Math.min(idle, 2000)) });
      for await (const m of messages) {
        last = Date.now();
        let e;
        try {
          e = m.json();
        } catch (error) {
          throw new Failure(EXIT.undecodable, `${m.subject}: not JSON (${error.message})`);
        }
        const problem = schemaProblem(schemas, e);
        if (problem) throw new Failure(EXIT.unverified, `${m.subject}: does not validate: ${problem}`);
        summary.schemas += 1;
        if (!chains.has(e.subject)) chains.set(e.subject, new CaseChain(e.subject));
        const chain = chains.get(e.subject);
        if (e.source === SHARING_SOURCE) {
          chain.ended = e.data.reason; // nothing more of this case is expected
          summary.sharing_ended += 1;
          emit({ case_id: e.subject, type: e.type, event_id: e.id, schema: true, sharing_ended: e.data.reason });
          m.ack();
          continue;
        }
        if (e.source !== CASE_SOURCE) throw new Failure(EXIT.undecodable, `${m.subject}: source ${e.source}`);
        let reason = chain.take(keys, e);
        if (reason && reason.includes("signature") && !keys.has(e.vsskeyid) && /^https?:/.test(args.keys)) {
          keys = await loadKeys(args.keys); // a key rotated since start
          reason = chain.take(keys, e);
        }
        if (reason) {
          throw new Failure(EXIT.unverified, `case ${e.subject} does not verify at version ${chain.version + 1}: ${reason}`);
        }
        summary.events += 1;
        summary.hashes += 1;
        if (signed(e)) summary.signatures += 1;
        emit({
          case_id: e.subject,
          case_version: e.caseversion,
          type: e.type,
          event_id: e.id,
          schema: true,
          hash: true,
          signature: signed(e) ? true : null,
        });
        m.ack();
      }
    }
    // A case still shared ends at a commit's end, which is signed; an ended one may stop mid-commit.
    for (const chain of chains.values()) {
      if (chain.ended === null && chain.signedThrough !== chain.version) {
        throw new Failure(EXIT.unverified, `case ${chain.caseId}: versions after ${chain.signedThrough} are not signed`);
      }
    }
    summary.cases = chains.size;
    emit({ summary });
  } finally {
    await nc.flush().catch(() => {});
    await nc.close();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.vectors) return emit(reproduceVectors(args.vectors));
  if (args["check-schemas"]) return emit({ schemas: loadSchemas(args.schemas).ids });
  return subscribe(args);
}

main().then(
  () => process.exit(EXIT.ok),
  (error) => {
    process.stderr.write(`subscriber-node: ${error.message}\n`);
    process.exit(error instanceof Failure ? error.exit : EXIT.setup);
  },
);

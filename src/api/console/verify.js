// Veritrail console: "verify in this browser".
//
// Checks a decision's audit bundle with this browser's own cryptography (WebCrypto),
// trusting only the verifier key the user gives (or pinned earlier in this browser):
//   1. the checkpoint's Ed25519 signature (C2SP signed-note) by that key;
//   2. every entry's RFC 9162 inclusion proof against the checkpoint's root;
//   3. that the decision entry is the one this page's address names (kind, system,
//      decision id), read from the entry's own CBOR bytes;
//   4. that each opened personal field opens its commitment (HMAC-SHA256, RFC 8785 JSON).
// The server's answer is data to check, never the result. No dependency; served from
// the service itself (script-src 'self').
"use strict";

(function () {
  const PIN = "veritrail.verifier_key";
  const enc = new TextEncoder();

  // Bytes and encodings.
  function b64(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function unhex(s) {
    if (!/^([0-9a-f]{2})*$/.test(s)) throw new Error("not lowercase hex: " + s.slice(0, 16));
    const out = new Uint8Array(s.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
    return out;
  }
  function hex(b) {
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  function equal(a, b) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }
  async function sha256(b) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", b));
  }

  // C2SP signed-note verifier key: <name>+<8 hex key id>+<base64(0x01 || public key)>.
  async function parseKey(text) {
    // The base64 key may itself hold "+": only the first two separate.
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(text.trim());
    if (!m) throw new Error("a verifier key has the form name+keyid+key");
    const [, name, id, key] = m;
    const raw = b64(key);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("the key is not an Ed25519 (type 1) key");
    const pub = raw.slice(1);
    const keyId = (await sha256(concat(enc.encode(name + "\n"), raw))).slice(0, 4);
    if (hex(keyId) !== id) throw new Error("the key id does not match the key");
    const cryptoKey = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    return { name, keyId, cryptoKey };
  }

  // A checkpoint: the signed text, its origin, size and root, and its signature lines.
  function parseNote(note) {
    const split = note.indexOf("\n\n");
    if (split < 0) throw new Error("the checkpoint has no signature block");
    const text = note.slice(0, split + 1);
    const lines = text.split("\n");
    if (lines.length < 4 || !/^[0-9]+$/.test(lines[1])) throw new Error("the checkpoint's text is not origin, size, root");
    const root = b64(lines[2]);
    if (root.length !== 32) throw new Error("the checkpoint's root is not 32 bytes");
    const sigs = note.slice(split + 2).split("\n").filter((l) => l !== "").map((l) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(l);
      if (!m) throw new Error("a signature line is malformed");
      const raw = b64(m[2]);
      return { name: m[1], keyId: raw.slice(0, 4), sig: raw.slice(4) };
    });
    return { text, origin: lines[0], size: BigInt(lines[1]), root, sigs };
  }

  async function checkSignature(cp, key) {
    const mine = cp.sigs.filter((s) => s.name === key.name && equal(s.keyId, key.keyId));
    if (mine.length === 0) throw new Error("no signature by " + key.name + " on the checkpoint");
    for (const s of mine) {
      if (s.sig.length === 64 && await crypto.subtle.verify({ name: "Ed25519" }, key.cryptoKey, s.sig, enc.encode(cp.text))) {
        return;
      }
    }
    throw new Error("the checkpoint's signature does not verify with this key");
  }

  // A witness policy (C2SP tlog-policy lines, as `veritrail audit --witness-policy`
  // reads them): the witnesses' cosignature/v1 keys and the quorum rule.
  async function parsePolicy(text) {
    const witnesses = new Map();
    const rules = new Map([["none", { none: true }]]);
    let quorum = null;
    for (const [i, raw] of text.split("\n").entries()) {
      const w = raw.trim().split(/[ \t]+/).filter((x) => x !== "");
      const where = "witness policy, line " + (i + 1) + ": ";
      if (w.length === 0 || w[0].startsWith("#") || w[0] === "log") continue;
      if (w[0] === "witness" && (w.length === 3 || w.length === 4)) {
        const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(w[2]);
        if (!m || rules.has(w[1])) throw new Error(where + "a witness needs a new name and a key name+keyid+key");
        const rawKey = b64(m[3]);
        if (rawKey.length !== 33 || rawKey[0] !== 4) throw new Error(where + "not a cosignature/v1 (type 4) key");
        const keyId = (await sha256(concat(enc.encode(m[1] + "\n"), rawKey))).slice(0, 4);
        if (hex(keyId) !== m[2]) throw new Error(where + "the key id does not match the key");
        const cryptoKey = await crypto.subtle.importKey("raw", rawKey.slice(1), { name: "Ed25519" }, false, ["verify"]);
        witnesses.set(w[1], { keyName: m[1], keyId, cryptoKey });
        rules.set(w[1], { witness: w[1] });
      } else if (w[0] === "group" && w.length >= 4) {
        const members = w.slice(3);
        if (rules.has(w[1]) || members.some((m) => m === "none" || !rules.has(m))) throw new Error(where + "a group's members must be defined above");
        const k = w[2] === "any" ? 1 : w[2] === "all" ? members.length : Number(w[2]);
        if (!Number.isInteger(k) || k < 1 || k > members.length) throw new Error(where + "the threshold must be any, all or 1.." + members.length);
        rules.set(w[1], { k, members });
      } else if (w[0] === "quorum" && w.length === 2) {
        if (quorum !== null || !rules.has(w[1])) throw new Error(where + "one quorum, naming a witness or group defined above");
        quorum = w[1];
      } else {
        throw new Error(where + "cannot read it");
      }
    }
    if (quorum === null) throw new Error("the witness policy has no quorum line");
    return { witnesses, rules, quorum };
  }

  // The policy's witnesses whose cosignature/v1 on the checkpoint verifies, and whether
  // they meet the quorum.
  async function checkCosignatures(cp, policy) {
    const valid = new Set();
    for (const [name, w] of policy.witnesses) {
      for (const s of cp.sigs) {
        if (s.name !== w.keyName || !equal(s.keyId, w.keyId) || s.sig.length !== 72) continue;
        let t = 0n;
        for (const b of s.sig.slice(0, 8)) t = (t << 8n) | BigInt(b);
        const msg = enc.encode("cosignature/v1\ntime " + t + "\n" + cp.text);
        if (await crypto.subtle.verify({ name: "Ed25519" }, w.cryptoKey, s.sig.slice(8), msg)) {
          valid.add(name);
          break;
        }
      }
    }
    const holds = (name) => {
      const r = policy.rules.get(name);
      if (r.none) return true;
      if (r.witness) return valid.has(r.witness);
      return r.members.filter(holds).length >= r.k;
    };
    const names = [...valid].join(", ") || "none";
    if (!holds(policy.quorum)) throw new Error("the checkpoint does not meet the witness quorum " + policy.quorum + ": valid cosignatures by " + names);
    return names;
  }

  // RFC 9162 §2.1.3.2: the root an inclusion proof leads to.
  async function rootFromInclusion(index, size, leaf, proof) {
    if (index >= size) throw new Error("index " + index + " is not below the tree size " + size);
    let fn = index, sn = size - 1n, r = leaf;
    for (const h of proof) {
      const p = unhex(h);
      if (sn === 0n) throw new Error("the proof is longer than the tree allows");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(concat([1], p, r));
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await sha256(concat([1], r, p));
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("the proof is shorter than the tree needs");
    return r;
  }

  // Enough CBOR (RFC 8949) to read an entry: ints, bytes, text, arrays, maps, tags, simple.
  function decodeCbor(bytes) {
    let at = 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    function arg(info) {
      if (info < 24) return BigInt(info);
      if (info === 24) { at += 1; return BigInt(view.getUint8(at - 1)); }
      if (info === 25) { at += 2; return BigInt(view.getUint16(at - 2)); }
      if (info === 26) { at += 4; return BigInt(view.getUint32(at - 4)); }
      if (info === 27) { at += 8; return view.getBigUint64(at - 8); }
      throw new Error("indefinite or reserved CBOR length");
    }
    function item() {
      if (at >= bytes.length) throw new Error("the entry's CBOR ends early");
      const first = bytes[at++];
      const major = first >> 5, info = first & 31;
      if (major === 7) {
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        if (info === 25) { at += 2; return view.getFloat16 ? view.getFloat16(at - 2) : NaN; }
        if (info === 26) { at += 4; return view.getFloat32(at - 4); }
        if (info === 27) { at += 8; return view.getFloat64(at - 8); }
        throw new Error("unexpected CBOR simple value");
      }
      const n = arg(info);
      switch (major) {
        case 0: return n;
        case 1: return -1n - n;
        case 2: { const b = bytes.slice(at, at + Number(n)); at += Number(n); return b; }
        case 3: { const t = new TextDecoder("utf-8", { fatal: true }).decode(bytes.slice(at, at + Number(n))); at += Number(n); return t; }
        case 4: { const a = []; for (let i = 0n; i < n; i++) a.push(item()); return a; }
        case 5: {
          const m = Object.create(null);
          for (let i = 0n; i < n; i++) { const k = item(); m[String(k)] = item(); }
          return m;
        }
        case 6: return { tag: n, value: item() };
      }
      throw new Error("unknown CBOR major type");
    }
    const v = item();
    if (at !== bytes.length) throw new Error("bytes after the entry's CBOR");
    return v;
  }

  // RFC 8785 canonical JSON: keys sorted by UTF-16 code units, ECMAScript number text.
  function canonical(v) {
    if (v === null || typeof v !== "object") return JSON.stringify(v);
    if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
  }

  async function opens(opening, commitment) {
    const key = await crypto.subtle.importKey("raw", unhex(opening.salt), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(canonical(opening.value))));
    return commitment instanceof Uint8Array && equal(mac, commitment);
  }

  // The decision this page's own address names.
  function named() {
    const m = /^\/console\/systems\/([^/]+)\/decisions\/([^/]+)$/.exec(location.pathname);
    if (!m) throw new Error("this page's address names no decision");
    return { system: decodeURIComponent(m[1]), decision: decodeURIComponent(m[2]) };
  }

  async function verify(bundle, keyText, policyText, step) {
    const key = await parseKey(keyText);
    step("verifier key " + key.name + " (key id " + hex(key.keyId) + ")");
    const cp = parseNote(bundle.checkpoint);
    await checkSignature(cp, key);
    step("checkpoint signed by " + key.name + ": size " + cp.size + ", root " + hex(cp.root));
    if (policyText) {
      const names = await checkCosignatures(cp, await parsePolicy(policyText));
      step("checkpoint meets the witness quorum: cosigned by " + names);
    }
    if (BigInt(bundle.tree_size) !== cp.size) throw new Error("the bundle's proofs are not against this checkpoint's size");
    let decision = null;
    for (const e of bundle.entries) {
      const raw = b64(e.raw);
      const leaf = await sha256(concat([0], raw));
      const root = await rootFromInclusion(BigInt(e.index), cp.size, leaf, e.inclusion_proof);
      if (!equal(root, cp.root)) throw new Error("entry " + e.index + " (" + e.role + "): its inclusion proof does not lead to the checkpoint's root");
      step("entry " + e.index + " (" + e.role + ") is in the log: leaf " + hex(leaf).slice(0, 16) + "…, " + e.inclusion_proof.length + " proof hashes");
      if (e.role === "decision") decision = { index: e.index, entry: decodeCbor(raw) };
    }
    if (!decision) throw new Error("the bundle holds no decision entry");
    const want = named();
    const d = decision.entry;
    if (d.kind !== "decision.recorded" || d.system !== want.system || d.body.decision_id !== want.decision || d.index !== BigInt(decision.index)) {
      throw new Error("the decision entry is not decision " + want.decision + " of " + want.system);
    }
    step("entry " + decision.index + " records decision " + want.decision + " of " + want.system + " by model version " + d.body.model_version + ", output " + d.body.output);
    const fields = [["subject_ref", "subject"], ["inputs", "inputs"], ["input_sha256", "input_sha256_commitment"]];
    for (const [field, committed] of fields) {
      const o = bundle.openings[field];
      if (!o) { step(field + ": not opened (erased or absent)"); continue; }
      if (!(await opens(o, d.body[committed]))) throw new Error(field + ": the value and salt do not open the entry's commitment");
      step(field + " opens the entry's commitment");
    }
    return "decision " + want.decision + " is entry " + decision.index + " of the log signed by " + key.name + " at size " + cp.size;
  }

  function start() {
    const form = document.getElementById("verify-form");
    if (!form) return;
    const keyInput = document.getElementById("verifier_key");
    const policyInput = document.getElementById("witness_policy");
    const pin = document.getElementById("pin_key");
    const result = document.getElementById("verify-result");
    const steps = document.getElementById("verify-steps");
    const pinned = localStorage.getItem(PIN);
    if (pinned) { keyInput.value = pinned; pin.checked = true; }
    const pinnedPolicy = localStorage.getItem(PIN + ".policy");
    if (pinnedPolicy) policyInput.value = pinnedPolicy;
    form.hidden = false;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      steps.replaceChildren();
      result.dataset.state = "running";
      result.textContent = "Verifying…";
      const step = (text) => {
        const li = document.createElement("li");
        li.textContent = "\u2713 " + text;
        steps.append(li);
      };
      try {
        if (!window.isSecureContext || !crypto.subtle) throw new Error("this page is not in a secure context (https or localhost), so the browser offers no WebCrypto here; download the bundle and run veritrail verify-bundle");
        const keyText = keyInput.value.trim();
        if (!keyText) throw new Error("paste the log's verifier key first");
        const policyText = policyInput.value.trim();
        if (pin.checked) {
          localStorage.setItem(PIN, keyText);
          if (policyText) localStorage.setItem(PIN + ".policy", policyText); else localStorage.removeItem(PIN + ".policy");
        } else {
          localStorage.removeItem(PIN);
          localStorage.removeItem(PIN + ".policy");
        }
        const res = await fetch(location.pathname + "/audit", { credentials: "same-origin", cache: "no-store" });
        if (!res.ok) throw new Error("the bundle could not be fetched (" + res.status + ")");
        const summary = await verify(await res.json(), keyText, policyText, step);
        result.dataset.state = "passed";
        result.textContent = "Verified in this browser: " + summary + ".";
      } catch (e) {
        const li = document.createElement("li");
        li.textContent = "\u2717 " + e.message;
        steps.append(li);
        result.dataset.state = "failed";
        result.textContent = "Verification FAILED: " + e.message;
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

// The counter projection in JavaScript (jco componentize, QuickJS backend):
// how many events each entity has. Reads and snapshots match
// guest/plugins/examples/counter.rs. The exported interface `projection`
// is the object `projection`; its resource `state` is the class `State`.
import { utf8 } from "./utf8.js";

// Walks the packed events of `apply-packed` (layout in docs/guest-abi.md)
// and calls `visit(entity, scope, kind, payloadStart, payloadEnd)`.
function unpack(bytes, visit) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const text = () => {
    const n = view.getUint32(at, true);
    at += 4;
    const s = utf8(bytes, at, at + n);
    at += n;
    return s;
  };
  while (at < bytes.length) {
    const kind = view.getUint16(at, true);
    at += 2 + 8 + 4 + 8 + 8; // kind, sequence, clock, id high, id low
    const entity = text();
    const scope = text();
    const n = view.getUint32(at, true);
    visit(entity, scope, kind, at + 4, at + 4 + n);
    at += 4 + n;
  }
}

class State {
  constructor(snapshot) {
    this.counts = snapshot ? JSON.parse(utf8(snapshot)) : {};
  }

  count(entity) {
    this.counts[entity] = (this.counts[entity] || 0) + 1;
  }

  apply(event) {
    this.count(event.coordinate.entity);
  }

  applyPacked(events) {
    unpack(events, (entity) => this.count(entity));
  }

  snapshot() {
    const sorted = {};
    for (const k of Object.keys(this.counts).sort()) sorted[k] = this.counts[k];
    return encode(JSON.stringify(sorted));
  }

  read(key) {
    const n = this.counts[key];
    return n === undefined ? null : encode(String(n));
  }
}

// A string to UTF-8 bytes (QuickJS has no TextEncoder either).
function encode(s) {
  const out = [];
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return new Uint8Array(out);
}

export const projection = {
  describe() {
    return { name: "counter", version: "0.1.0", schemaVersion: 1, kinds: [], entityPrefix: "" };
  },
  State,
};

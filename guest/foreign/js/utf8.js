// UTF-8 bytes to a JavaScript string. QuickJS has no TextDecoder, and
// payloads, entities and scopes cross the component boundary as bytes.
// The host only ever sends valid UTF-8 (canonical JSON, checked names).
//
// Every step runs in QuickJS's native code, not in interpreted JS (a
// per-byte loop costs hundreds of fuel a byte): `String.fromCharCode`
// turns the bytes into a Latin-1 string, 8 KiB at a time, `escape` turns
// each byte >= 0x80 into a %XX escape, and `decodeURIComponent` reads those
// escapes as UTF-8.
export function utf8(bytes, start = 0, end = bytes.length) {
  let latin1 = "";
  for (let i = start; i < end; i += 8192) {
    latin1 += String.fromCharCode.apply(null, bytes.subarray(i, Math.min(end, i + 8192)));
  }
  return decodeURIComponent(escape(latin1));
}

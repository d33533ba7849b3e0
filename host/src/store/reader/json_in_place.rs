//! Parsing a JSON payload into a `Value` that still holds an earlier
//! payload, reusing its maps, vectors and strings.
//!
//! Replays read thousands of payloads of the same few shapes. Parsed into
//! a fresh `Value`, each costs a map node and a string per key, and the
//! earlier payload in the slot is freed; parsed in place, an object whose
//! keys match the slot's only overwrites the values. The result always
//! equals `serde_json::from_slice`: anything outside the plain subset
//! handled here (escaped strings, repeated keys, deep nesting, malformed
//! input) makes the whole payload go through serde_json.

use serde_json::{Map, Number, Value};

/// Most keys an object may have to be merged in place (the check for
/// repeated keys compares each key with the ones before it).
const MAX_KEYS_IN_PLACE: usize = 32;
/// Deepest nesting parsed in place (serde_json's own limit is 128).
const MAX_DEPTH_IN_PLACE: usize = 64;

/// Overwrites `slot` with the JSON document `bytes`. On success `slot`
/// equals `serde_json::from_slice(bytes)`; on error the slot holds some
/// value and the error is serde_json's.
pub(crate) fn parse_into(slot: &mut Value, bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut parser = Parser { bytes, pos: 0 };
    if parser.value_into(slot, 0).is_some() && parser.at_end() {
        return Ok(());
    }
    *slot = serde_json::from_slice(bytes)?;
    Ok(())
}

/// A cursor over one document. Every method returns `None` when the input
/// leaves the subset parsed in place; the caller then starts over with
/// serde_json.
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.bytes.len()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn value_into(&mut self, slot: &mut Value, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH_IN_PLACE {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            b'{' => self.object_into(slot, depth),
            b'[' => self.array_into(slot, depth),
            b'"' => {
                let s = self.string()?;
                match slot {
                    Value::String(old) => {
                        old.clear();
                        old.push_str(s);
                    }
                    _ => *slot = Value::String(s.to_owned()),
                }
                Some(())
            }
            b't' => self.literal(b"true", slot, Value::Bool(true)),
            b'f' => self.literal(b"false", slot, Value::Bool(false)),
            b'n' => self.literal(b"null", slot, Value::Null),
            _ => {
                *slot = Value::Number(self.number()?);
                Some(())
            }
        }
    }

    fn literal(&mut self, word: &[u8], slot: &mut Value, value: Value) -> Option<()> {
        if !self.bytes.get(self.pos..)?.starts_with(word) {
            return None;
        }
        self.pos += word.len();
        *slot = value;
        Some(())
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let rest = self.bytes.get(self.pos..)?;
        let len = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.pos += len + 1;
        std::str::from_utf8(rest.get(..len)?).ok()
    }

    /// Plain integers here; other number tokens as serde_json reads them.
    fn number(&mut self) -> Option<Number> {
        let start = self.pos;
        let negative = self.eat(b'-').is_some();
        let digits_from = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        let digits = self.bytes.get(digits_from..self.pos)?;
        let leading_zero = digits.len() > 1 && digits.first() == Some(&b'0');
        let fraction = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        let plain = (1..=19).contains(&digits.len()) && !leading_zero && !fraction;
        if !plain {
            while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            return serde_json::from_slice(self.bytes.get(start..self.pos)?).ok();
        }
        let magnitude = digits.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        match (negative, magnitude) {
            (false, m) => Some(m.into()),
            // "-0": left to serde_json.
            (true, 0) => serde_json::from_slice(self.bytes.get(start..self.pos)?).ok(),
            (true, m) => i64::try_from(-i128::from(m)).ok().map(Number::from),
        }
    }

    /// After an item of an array or object: `false` past a comma, `true`
    /// past `close`.
    fn closed_after_item(&mut self, close: u8) -> Option<bool> {
        self.skip_ws();
        let byte = self.peek()?;
        self.pos += 1;
        match byte {
            b',' => Some(false),
            b if b == close => Some(true),
            _ => None,
        }
    }

    fn array_into(&mut self, slot: &mut Value, depth: usize) -> Option<()> {
        self.eat(b'[')?;
        if !matches!(slot, Value::Array(_)) {
            *slot = Value::Array(Vec::new());
        }
        let Value::Array(items) = slot else { return None };
        let mut n = 0;
        self.skip_ws();
        if self.eat(b']').is_none() {
            loop {
                match items.get_mut(n) {
                    Some(item) => self.value_into(item, depth + 1)?,
                    None => {
                        let mut item = Value::Null;
                        self.value_into(&mut item, depth + 1)?;
                        items.push(item);
                    }
                }
                n += 1;
                if self.closed_after_item(b']')? {
                    break;
                }
            }
        }
        items.truncate(n);
        Some(())
    }

    fn object_into(&mut self, slot: &mut Value, depth: usize) -> Option<()> {
        self.eat(b'{')?;
        if !matches!(slot, Value::Object(_)) {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(map) = slot else { return None };
        let mut keys: [&str; MAX_KEYS_IN_PLACE] = [""; MAX_KEYS_IN_PLACE];
        let mut n = 0;
        self.skip_ws();
        if self.eat(b'}').is_none() {
            loop {
                self.skip_ws();
                let key = self.string()?;
                if n == MAX_KEYS_IN_PLACE || keys[..n].contains(&key) {
                    return None;
                }
                keys[n] = key;
                n += 1;
                self.skip_ws();
                self.eat(b':')?;
                match map.get_mut(key) {
                    Some(value) => self.value_into(value, depth + 1)?,
                    None => {
                        let mut value = Value::Null;
                        self.value_into(&mut value, depth + 1)?;
                        map.insert(key.to_owned(), value);
                    }
                }
                if self.closed_after_item(b'}')? {
                    break;
                }
            }
        }
        // The map holds every key read (all distinct), and perhaps keys of
        // the earlier payload that this one lacks.
        if map.len() != n {
            let read = &keys[..n];
            map.retain(|key, _| read.contains(&key.as_str()));
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What serde_json makes of `bytes`, and what parsing them over `old` gives.
    fn both(old: &Value, bytes: &[u8]) -> (Result<Value, String>, Result<Value, String>) {
        let expected = serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string());
        let mut slot = old.clone();
        let got = parse_into(&mut slot, bytes).map(|()| slot).map_err(|e| e.to_string());
        (got, expected)
    }

    fn value() -> impl Strategy<Value = Value> {
        let key =
            prop_oneof![Just("a".to_string()), Just("amount".to_string()), Just("b".to_string()), ".{0,6}"];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parsing_over_any_value_equals_a_fresh_parse(old in value(), new in value()) {
            let bytes = serde_json::to_vec(&new).expect("serialise");
            let (got, expected) = both(&old, &bytes);
            prop_assert_eq!(got, expected);
            let pretty = serde_json::to_vec_pretty(&new).expect("serialise");
            let (got, expected) = both(&old, &pretty);
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn damaged_documents_fail_or_parse_as_serde_json_says(
            old in value(),
            new in value(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = serde_json::to_vec(&new).expect("serialise");
            let at = cut.index(bytes.len());
            let mut changed = bytes.clone();
            changed[at] = byte;
            bytes.truncate(at);
            for doc in [&bytes, &changed] {
                let (got, expected) = both(&old, doc);
                prop_assert_eq!(got.is_ok(), expected.is_ok(), "{:?}", String::from_utf8_lossy(doc));
                if let (Ok(got), Ok(expected)) = (got, expected) {
                    prop_assert_eq!(got, expected);
                }
            }
        }
    }

    #[test]
    fn edge_cases_match_serde_json() {
        let old = serde_json::json!({"a": 1, "b": [1, 2, 3], "s": "text"});
        let cases: &[&str] = &[
            "-0",
            "0",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "9999999999999999999",
            "1e400",
            "01",
            "-",
            "1.5",
            "-2.5e-3",
            " { \"a\" : [ 1 , 2 ] } ",
            "{\"a\":1,\"a\":2}",
            "{\"a\":1,\"a\":2,\"b\":[]}",
            "{\"a\":1}",
            "{\"a\":1,\"b\":[1],\"s\":\"x\"}",
            "{\"a\":\"tab\\tquote\\\"\"}",
            "\"\\u00e9\\ud83d\\ude00\"",
            "\"caf\u{e9}\"",
            "[1,2,]",
            "{\"a\":1,}",
            "tru",
            "truex",
            "nul",
            "1 2",
            "",
            "   ",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        ];
        for case in cases {
            let (got, expected) = both(&old, case.as_bytes());
            assert_eq!(got, expected, "{case}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let (got, expected) = both(&old, deep.as_bytes());
        assert_eq!(got, expected);
    }

    #[test]
    fn matching_shapes_reuse_the_slot_without_leaving_old_keys() {
        let mut slot = serde_json::json!({"amount": 1, "memo": "first", "tags": [1, 2, 3]});
        parse_into(&mut slot, br#"{"amount":2,"memo":"second","tags":[4]}"#).expect("parse");
        assert_eq!(slot, serde_json::json!({"amount": 2, "memo": "second", "tags": [4]}));
        parse_into(&mut slot, br#"{"amount":3}"#).expect("parse");
        assert_eq!(slot, serde_json::json!({"amount": 3}));
        parse_into(&mut slot, b"[true,null]").expect("parse");
        assert_eq!(slot, serde_json::json!([true, null]));
        assert!(parse_into(&mut slot, b"{").is_err());
    }
}

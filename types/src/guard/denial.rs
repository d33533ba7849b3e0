//! [`Denial`]: why a gate refused a proposal.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

/// A gate's refusal: which gate, a machine-readable code, a message for
/// people, and key/value context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The gate's name. A WASM gate's name is interned once per distinct
    /// name when the gate is installed (see [`MAX_INTERNED_GATE_NAMES`]).
    pub gate: &'static str,
    /// Machine-readable code, e.g. `AMOUNT_LIMIT` or `GATE_DEFECT`.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
    /// Extra facts as key/value pairs.
    pub context: Vec<(String, String)>,
}

impl Denial {
    /// A denial by `gate` with `message` and an empty code.
    pub fn new(gate: &'static str, message: impl Into<String>) -> Self {
        Self { gate, code: String::new(), message: message.into(), context: Vec::new() }
    }

    /// This denial with a code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = code.into();
        self
    }

    /// This denial with one more context pair.
    pub fn with_context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.context.push((key.into(), value.into()));
        self
    }

    /// The value of a context key, if present.
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.context.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code.is_empty() {
            write!(f, "[{}] {}", self.gate, self.message)
        } else {
            write!(f, "[{}] {}: {}", self.gate, self.code, self.message)
        }
    }
}

impl std::error::Error for Denial {}

/// How many distinct WASM gate names one process interns. Each costs its
/// bytes (≤ 256) once, for the life of the process; installing a gate with a
/// new name past this bound is refused.
pub const MAX_INTERNED_GATE_NAMES: usize = 4096;

/// The process-wide `&'static str` for a WASM gate's name (0.3.0's
/// `Denial::gate` is `&'static str`; names of installed components are only
/// known at run time). `None` once [`MAX_INTERNED_GATE_NAMES`] distinct
/// names are held.
#[doc(hidden)]
pub fn intern_gate_name(name: &str) -> Option<&'static str> {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(|| Mutex::new(HashSet::new())).lock();
    if let Some(held) = names.get(name) {
        return Some(held);
    }
    if names.len() >= MAX_INTERNED_GATE_NAMES {
        return None;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Some(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_interned_once() {
        let a = intern_gate_name("interned-twice").unwrap();
        let b = intern_gate_name(&String::from("interned-twice")).unwrap();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "interned-twice");
    }
}

//! [`Denial`]: why a gate refused a proposal.

use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

/// A gate's refusal: which gate, a machine-readable code, a message for
/// people, and key/value context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The gate's name (static for native gates, owned for WASM gates).
    pub gate: Cow<'static, str>,
    /// Machine-readable code, e.g. `AMOUNT_LIMIT` or `GATE_DEFECT`.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
    /// Extra facts as key/value pairs.
    pub context: Vec<(String, String)>,
}

impl Denial {
    /// A denial by `gate` with `message` and an empty code.
    pub fn new(gate: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self { gate: gate.into(), code: String::new(), message: message.into(), context: Vec::new() }
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

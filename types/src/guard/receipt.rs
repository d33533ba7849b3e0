//! [`Receipt`]: proof that a proposal passed a gate set. It can only be
//! made inside this crate, by `GateSet::evaluate`.

/// Proof that every gate of a set allowed a payload.
#[derive(Debug)]
pub struct Receipt<T> {
    payload: T,
    gates_passed: Vec<&'static str>,
    _seal: Seal,
}

/// Private: only this crate can build a `Receipt`.
#[derive(Debug)]
struct Seal;

impl<T> Receipt<T> {
    pub(crate) fn issue(payload: T, gates_passed: Vec<&'static str>) -> Self {
        Self { payload, gates_passed, _seal: Seal }
    }

    /// The approved payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// Names of the gates that passed, in order.
    pub fn gates_passed(&self) -> &[&'static str] {
        &self.gates_passed
    }

    /// The payload and the gate names.
    pub fn into_parts(self) -> (T, Vec<&'static str>) {
        (self.payload, self.gates_passed)
    }
}

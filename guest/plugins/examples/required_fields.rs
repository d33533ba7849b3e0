//! Requires every payload to be a JSON object with an "actor" field.
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct RequiredFields;

impl Gate for RequiredFields {
    const NAME: &'static str = "required-fields";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        match p.field("actor") {
            Some(_) => Ok(()),
            None => {
                Err(Denial::new("MISSING_FIELD", "payload needs an \"actor\" field").with("field", "actor"))
            }
        }
    }
}

export_gate!(RequiredFields);

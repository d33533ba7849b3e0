//! §1.7–§1.9: native gates, the pipeline and typestate, called as 0.3.0
//! code calls them.

use batpak::guard::{Denial, Gate, GateSet};
use batpak::pipeline::{Committed, Pipeline, Proposal};
use batpak::typestate::transition::Transition;

struct Limit(u64);
impl Gate<u64> for Limit {
    fn name(&self) -> &'static str {
        "limit"
    }
    fn evaluate(&self, amount: &u64) -> Result<(), Denial> {
        if *amount <= self.0 {
            return Ok(());
        }
        Err(Denial::new("limit", format!("{amount} is over {}", self.0))
            .with_code("OVER_LIMIT")
            .with_context("limit", self.0.to_string()))
    }
    fn description(&self) -> &'static str {
        "refuses amounts over the limit"
    }
}

struct Defective;
impl Gate<u64> for Defective {
    fn name(&self) -> &'static str {
        "defective"
    }
    fn evaluate(&self, _: &u64) -> Result<(), Denial> {
        panic!("gate bug")
    }
}

#[test]
fn gate_sets_evaluate_in_order_and_report_every_denial() {
    let mut gates: GateSet<u64> = GateSet::default();
    assert!(gates.is_empty());
    gates.push(Limit(100));
    gates.push(Limit(10));
    assert_eq!((gates.len(), gates.names()), (2, vec!["limit", "limit"]));
    let receipt = gates.evaluate(&5, Proposal::new("small")).unwrap();
    assert_eq!(*receipt.payload(), "small");
    let (payload, passed): (&str, Vec<&str>) = receipt.into_parts();
    assert_eq!((payload, passed.len()), ("small", 2));
    let denial: Denial = gates.evaluate(&50, Proposal::new("mid")).unwrap_err();
    let gate: &'static str = denial.gate;
    assert_eq!((gate, denial.code.as_str()), ("limit", "OVER_LIMIT"));
    assert_eq!(denial.context, vec![("limit".to_string(), "10".to_string())]);
    assert_eq!(denial.to_string(), "[limit] OVER_LIMIT: 50 is over 10");
    assert_eq!(Limit(1).description(), "refuses amounts over the limit");

    gates.push(Defective);
    let all = gates.evaluate_all(&500);
    assert_eq!(all.len(), 3, "both limits and the panicking gate");
    assert_eq!(all[2].code, "GATE_DEFECT");
    assert!(all[2].message.contains("gate bug"));
    let as_error: &dyn std::error::Error = &all[0];
    assert!(!as_error.to_string().is_empty());
    let serialized = serde_json::to_value(&all[0]).unwrap();
    assert_eq!(serialized["gate"], "limit");
}

#[test]
fn the_pipeline_commits_only_what_its_gates_passed() {
    let mut gates = GateSet::new();
    gates.push(Limit(10));
    let pipeline = Pipeline::new(gates);
    let proposal = Proposal::new(3u64).map(|v| v * 2);
    assert_eq!(*proposal.payload(), 6);
    let receipt = pipeline.evaluate(&6, proposal).unwrap();
    let committed: Result<Committed<u64>, std::io::Error> =
        pipeline.commit(receipt, |v| Ok(Committed { payload: v, event_id: 5, sequence: 1, hash: [7; 32] }));
    let committed = committed.unwrap();
    assert_eq!((committed.payload, committed.event_id, committed.sequence), (6, 5, 1));
    let json = serde_json::to_string(&committed).unwrap();
    assert_eq!(serde_json::from_str::<Committed<u64>>(&json).unwrap().hash, [7; 32]);
    assert!(pipeline.evaluate(&11, Proposal::new(11u64)).is_err());
}

batpak::define_state_machine!(DoorState { Locked, Unlocked });
batpak::define_typestate!(Door<S: DoorState> { name: String, opens: u32 });

#[test]
fn typestate_macros_and_transitions() {
    let door: Door<Locked> = Door::new("front".into(), 0);
    let (name, opens) = door.data();
    assert_eq!((name.as_str(), *opens), ("front", 0));
    let (name, opens) = door.into_data();
    let open: Door<Unlocked> = Door::new(name, opens + 1);
    assert_eq!(open.opens, 1);

    let t: Transition<Locked, Unlocked, u32> = Transition::new(batpak::event::EventKind::DATA, 7);
    assert_eq!((t.kind(), *t.payload()), (batpak::event::EventKind::DATA, 7));
    assert_eq!(t.into_payload(), 7);
}

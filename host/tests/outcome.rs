//! Outcome: monad laws, combinators, serde forms.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test code

use batpak::outcome::{join_all, join_any, zip, CompensationAction, WaitCondition};
use batpak::prelude::*;
use proptest::prelude::*;

fn err(msg: &str) -> OutcomeError {
    OutcomeError::new(ErrorKind::Validation, msg)
}

fn outcome() -> impl Strategy<Value = Outcome<i32>> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Outcome::ok),
        "[a-z]{1,5}".prop_map(|m| Outcome::err(err(&m))),
        (0u64..10, 0u32..3).prop_map(|(a, n)| Outcome::retry(a, n, 3, "busy")),
        any::<u64>().prop_map(|t| Outcome::pending(WaitCondition::Timeout { resume_at_ms: t }, 7)),
        "[a-z]{1,5}".prop_map(Outcome::cancelled),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| prop::collection::vec(inner, 0..4).prop_map(Outcome::Batch))
}

fn f(x: i32) -> Outcome<i32> {
    if x % 3 == 0 {
        Outcome::err(err("div3"))
    } else {
        Outcome::ok(x.wrapping_mul(2))
    }
}

fn g(x: i32) -> Outcome<i32> {
    if x % 5 == 0 {
        Outcome::Batch(vec![Outcome::ok(x), Outcome::ok(x.wrapping_add(1))])
    } else {
        Outcome::ok(x.wrapping_sub(7))
    }
}

proptest! {
    #[test]
    fn left_identity(x in any::<i32>()) {
        prop_assert_eq!(Outcome::ok(x).and_then(f), f(x));
    }

    #[test]
    fn right_identity(m in outcome()) {
        prop_assert_eq!(m.clone().and_then(Outcome::ok), m);
    }

    #[test]
    fn associativity(m in outcome()) {
        prop_assert_eq!(m.clone().and_then(f).and_then(g), m.and_then(|x| f(x).and_then(g)));
    }

    #[test]
    fn map_is_bind_of_ok(m in outcome()) {
        prop_assert_eq!(m.clone().map(|x| x.wrapping_add(1)), m.and_then(|x| Outcome::ok(x.wrapping_add(1))));
    }

    #[test]
    fn serde_round_trips(m in outcome()) {
        let text = serde_json::to_string(&m).expect("serialise");
        let back: Outcome<i32> = serde_json::from_str(&text).expect("deserialise");
        prop_assert_eq!(back, m);
    }
}

#[test]
fn combinators_follow_their_priorities() {
    let e = Outcome::<i32>::err(err("x"));
    assert!(zip(Outcome::ok(1), e.clone()).is_err());
    assert!(zip(Outcome::<i32>::cancelled("c"), Outcome::<i32>::retry(1, 1, 2, "r")).is_cancelled());
    assert_eq!(zip(Outcome::ok(1), Outcome::ok("a")), Outcome::ok((1, "a")));
    assert_eq!(
        zip(Outcome::Batch(vec![Outcome::ok(1), Outcome::ok(2)]), Outcome::ok('z')),
        Outcome::Batch(vec![Outcome::ok((1, 'z')), Outcome::ok((2, 'z'))])
    );
    assert_eq!(join_all(vec![Outcome::ok(1), Outcome::Batch(vec![Outcome::ok(2)])]), Outcome::ok(vec![1, 2]));
    assert!(join_all(vec![Outcome::ok(1), e.clone()]).is_err());
    assert_eq!(join_any(vec![e.clone(), Outcome::ok(4)]), Outcome::ok(4));
    assert!(join_any(Vec::<Outcome<i32>>::new()).is_err());
    assert!(Outcome::<i32>::cancelled("stop").into_result().is_err());
    assert_eq!(Outcome::ok(Outcome::ok(3)).flatten(), Outcome::ok(3));
    assert!(ErrorKind::Timeout.is_retryable() && !ErrorKind::Conflict.is_retryable());
    assert!(ErrorKind::PolicyRejection.is_domain() && ErrorKind::Serialization.is_operational());
}

#[test]
fn serde_forms_are_adjacently_tagged() {
    let v = serde_json::to_value(Outcome::ok(5)).expect("json");
    assert_eq!(v, serde_json::json!({"type": "Ok", "data": 5}));
    let c = CompensationAction::Rollback { event_ids: vec![1, 2] };
    let back: CompensationAction =
        serde_json::from_value(serde_json::to_value(&c).expect("json")).expect("back");
    assert_eq!(back, c);
}

//! §1.2–§1.6: coordinates, events, ids, wire helpers and outcomes, each
//! function and method called as 0.3.0 code calls it.

use batpak::coordinate::{Coordinate, CoordinateError, DagPosition, KindFilter, Region};
use batpak::event::hash::{compute_hash, verify_chain};
use batpak::event::header::{FLAG_REPLAY, FLAG_REQUIRES_ACK, FLAG_TRANSACTIONAL};
use batpak::event::{Event, EventHeader, EventKind, HashChain, StoredEvent};
use batpak::id::{EntityIdType, EventId};
use batpak::outcome::combine::{join_all, join_any, zip};
use batpak::outcome::error::{ErrorKind, OutcomeError};
use batpak::outcome::wait::{CompensationAction, WaitCondition};
use batpak::outcome::Outcome;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cmp::Ordering;
use std::sync::Arc;

#[test]
fn coordinates_check_in_the_documented_order_and_display_entity_at_scope() {
    let c = Coordinate::new("order:1", "shop").unwrap();
    assert_eq!((c.entity(), c.scope()), ("order:1", "shop"));
    assert_eq!(c.to_string(), "order:1@shop");
    let long = "x".repeat(1025);
    assert!(matches!(Coordinate::new("", ""), Err(CoordinateError::EmptyEntity)));
    assert!(matches!(Coordinate::new("e", ""), Err(CoordinateError::EmptyScope)));
    assert!(matches!(
        Coordinate::new(&long, &long),
        Err(CoordinateError::EntityTooLong { len: 1025, max: 1024 })
    ));
    assert!(matches!(
        Coordinate::new("e", &long),
        Err(CoordinateError::ScopeTooLong { len: 1025, max: 1024 })
    ));
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Coordinate>(&json).unwrap(), c);
}

#[test]
fn regions_filter_by_prefix_scope_kind_and_category() {
    let kind = EventKind::custom(2, 7);
    let by_literal = Region {
        entity_prefix: Some(Arc::from("order:")),
        scope: Some(Arc::from("shop")),
        fact: Some(KindFilter::Exact(kind)),
        clock_range: Some((0, 10)),
    };
    assert!(by_literal.matches_event("order:9", "shop", kind));
    assert!(!by_literal.matches_event("user:9", "shop", kind));
    assert!(!by_literal.matches_event("order:9", "other", kind));
    assert!(!by_literal.matches_event("order:9", "shop", EventKind::DATA));
    assert!(Region::all().matches_event("anything", "any", kind));
    assert!(Region::default().matches_event("anything", "any", kind));
    assert!(Region::entity("order:").matches_event("order:1", "s", kind), "entity() is a prefix");
    assert!(!Region::scope("shop").matches_event("e", "shopping", kind), "scope() is exact");
    let built = Region::entity("order:").with_scope("shop").with_fact_category(2).with_clock_range((1, 5));
    assert_eq!(built.clock_range, Some((1, 5)));
    assert!(built.matches_event("order:1", "shop", kind));
    assert!(!built.matches_event("order:1", "shop", EventKind::custom(3, 7)));
    let any = Region::all().with_fact(KindFilter::Any);
    assert!(any.matches_event("e", "s", EventKind::SYSTEM_INIT));
    assert!(Region::all().with_fact(KindFilter::Category(2)).matches_event("e", "s", kind));
}

#[test]
fn dag_positions_have_every_constructor_and_compare_within_a_lane() {
    let literal = DagPosition { wall_ms: 5, counter: 1, depth: 0, lane: 0, sequence: 3 };
    assert_eq!(DagPosition::with_hlc(5, 1, 0, 0, 3), literal);
    assert_eq!(DagPosition::new(0, 0, 3).sequence, 3);
    assert!(DagPosition::root().is_root());
    assert!(!DagPosition::child(4).is_root());
    assert_eq!(DagPosition::child(4).sequence, 4);
    let at = DagPosition::child_at(4, 99, 2);
    assert_eq!((at.sequence, at.wall_ms, at.counter), (4, 99, 2));
    let fork = DagPosition::fork(1, 7);
    assert_eq!((fork.depth, fork.lane, fork.sequence), (2, 7, 0));
    assert!(DagPosition::child(1).is_ancestor_of(&DagPosition::child(2)));
    assert!(!DagPosition::child(2).is_ancestor_of(&DagPosition::child(1)));
    assert!(!DagPosition::child(1).is_ancestor_of(&fork));
    assert_eq!(DagPosition::child(1).partial_cmp(&DagPosition::child(2)), Some(Ordering::Less));
    assert_eq!(DagPosition::child(1).partial_cmp(&fork), None, "different lanes do not compare");
    assert_eq!(literal.to_string(), "0:0:3@5.1");
    let json = serde_json::to_string(&literal).unwrap();
    assert_eq!(serde_json::from_str::<DagPosition>(&json).unwrap(), literal);
}

#[test]
fn event_kinds_split_category_and_type_and_keep_the_reserved_constants() {
    let k = EventKind::custom(3, 0x0abc);
    assert_eq!((k.category(), k.type_id()), (3, 0x0abc));
    assert_eq!(EventKind::custom(1, 0xffff).type_id(), 0x0fff, "the type is masked to 12 bits");
    assert_eq!(k.to_string(), "0x3ABC");
    assert!(EventKind::SYSTEM_INIT.is_system() && !EventKind::SYSTEM_INIT.is_effect());
    assert!(EventKind::EFFECT_ACK.is_effect());
    assert_eq!(EventKind::DATA.category(), 1);
    let constants = [
        (EventKind::DATA, "0x1000"),
        (EventKind::SYSTEM_INIT, "0x0001"),
        (EventKind::SYSTEM_SHUTDOWN, "0x0002"),
        (EventKind::SYSTEM_HEARTBEAT, "0x0003"),
        (EventKind::SYSTEM_CONFIG_CHANGE, "0x0004"),
        (EventKind::SYSTEM_CHECKPOINT, "0x0005"),
        (EventKind::SYSTEM_BATCH_BEGIN, "0x0006"),
        (EventKind::SYSTEM_BATCH_COMMIT, "0x0007"),
        (EventKind::TOMBSTONE, "0x0FFE"),
        (EventKind::EFFECT_ERROR, "0xD001"),
        (EventKind::EFFECT_RETRY, "0xD002"),
        (EventKind::EFFECT_ACK, "0xD004"),
        (EventKind::EFFECT_BACKPRESSURE, "0xD005"),
        (EventKind::EFFECT_CANCEL, "0xD006"),
        (EventKind::EFFECT_CONFLICT, "0xD007"),
    ];
    for (kind, text) in constants {
        assert_eq!(kind.to_string(), text);
    }
    assert_eq!(serde_json::to_string(&EventKind::DATA).unwrap(), "4096", "a plain u16");
    for bad in [0x0, 0xD, 16] {
        let caught = std::panic::catch_unwind(|| EventKind::custom(bad, 1));
        assert!(caught.is_err(), "category {bad:#x} is refused");
    }
}

#[test]
fn headers_carry_flags_and_ages_and_events_their_chain() {
    let pos = DagPosition::child(0);
    let header = EventHeader::new(1, 2, Some(3), 1_000, pos, 10, EventKind::DATA);
    assert_eq!((header.flags, header.content_hash), (0, [0; 32]));
    assert!(!header.requires_ack() && !header.is_transactional() && !header.is_replay());
    let flagged = header.with_flags(FLAG_REQUIRES_ACK | FLAG_TRANSACTIONAL | FLAG_REPLAY);
    assert!(flagged.requires_ack() && flagged.is_transactional() && flagged.is_replay());
    assert_eq!(header.age_us(1_500), 500);
    assert_eq!(header.age_us(10), 0, "ages saturate at zero");
    let _ = EventHeader {
        event_id: 1,
        correlation_id: 1,
        causation_id: None,
        timestamp_us: 0,
        position: pos,
        payload_size: 0,
        event_kind: EventKind::DATA,
        flags: 0,
        content_hash: [0; 32],
    };

    let event = Event::new(header, json!({"n": 1}));
    assert_eq!((event.event_id(), event.event_kind()), (1, EventKind::DATA));
    assert_eq!(event.position(), &pos);
    assert!(event.is_genesis(), "no chain is genesis");
    let chained = event.clone().with_hash_chain(HashChain { prev_hash: [1; 32], event_hash: [2; 32] });
    assert!(!chained.is_genesis());
    let mapped: Event<u64> = chained.map_payload(|v| v["n"].as_u64().unwrap());
    assert_eq!(mapped.payload, 1);
    let stored = StoredEvent { coordinate: Coordinate::new("e", "s").unwrap(), event };
    assert_eq!(stored.position(), &pos);

    let hash = compute_hash(b"content");
    assert_eq!(hash, *blake3::hash(b"content").as_bytes());
    let chain = HashChain { prev_hash: [9; 32], event_hash: hash };
    assert!(verify_chain(b"content", &chain, &[9; 32]));
    assert!(!verify_chain(b"other", &chain, &[9; 32]));
    assert!(!verify_chain(b"content", &chain, &[8; 32]));
}

batpak::define_entity_id!(OrderId, "order");

#[test]
fn entity_ids_display_with_their_label_and_parse_both_forms() {
    assert_eq!(OrderId::ENTITY_NAME, "order");
    let id = OrderId::new(0xab);
    assert_eq!(id.as_u128(), 0xab);
    assert_eq!(id.to_string(), format!("order:{:032x}", 0xab));
    assert_eq!(id.to_string().parse::<OrderId>().unwrap(), id);
    assert_eq!("ab".parse::<OrderId>().unwrap(), id);
    let err: String = "order:zz".parse::<OrderId>().unwrap_err();
    assert!(!err.is_empty());
    assert_eq!(OrderId::nil().as_u128(), 0);
    let (a, b) = (OrderId::now_v7(), OrderId::now_v7());
    assert_ne!(a, b);
    assert_eq!(a.as_u128() >> 76 & 0xf, 7, "a UUIDv7");
    assert!(EventId::new(1).to_string().starts_with("event:"));
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Wired {
    #[serde(with = "batpak::wire::u128_bytes")]
    id: u128,
    #[serde(with = "batpak::wire::option_u128_bytes")]
    maybe: Option<u128>,
    #[serde(with = "batpak::wire::vec_u128_bytes")]
    many: Vec<u128>,
}

#[test]
fn wire_helpers_write_big_endian_bytes() {
    let v = Wired { id: 1, maybe: None, many: vec![2, 3] };
    let json = serde_json::to_value(&v).unwrap();
    let mut one = vec![0u8; 15];
    one.push(1);
    assert_eq!(json["id"], json!(one), "16 bytes, big-endian");
    assert_eq!(json["maybe"], json!(null));
    assert_eq!(json["many"].as_array().unwrap().len(), 2);
    assert_eq!(serde_json::from_value::<Wired>(json).unwrap(), v);
}

fn failure(kind: ErrorKind) -> OutcomeError {
    OutcomeError::new(kind, "failed")
}

#[test]
fn outcomes_construct_test_and_combine_as_documented() {
    let ok: Outcome<u32> = Outcome::ok(2);
    assert!(ok.is_ok() && ok.is_terminal());
    assert!(Outcome::<u32>::err(failure(ErrorKind::NotFound)).is_err());
    assert!(Outcome::<u32>::cancelled("stop").is_cancelled());
    let retry = Outcome::<u32>::retry(10, 1, 3, "busy");
    assert!(retry.is_retry() && !retry.is_terminal());
    let pending = Outcome::<u32>::pending(WaitCondition::Timeout { resume_at_ms: 5 }, 77);
    assert!(pending.is_pending());
    assert!(Outcome::Batch(vec![Outcome::ok(1u32)]).is_batch());

    assert!(matches!(Outcome::ok(2u32).map(|v| v * 10), Outcome::Ok(20)));
    assert!(matches!(Outcome::ok(2u32).and_then(|v| Outcome::ok(v + 1)), Outcome::Ok(3)));
    let remapped =
        Outcome::<u32>::err(failure(ErrorKind::Timeout)).map_err(|e| OutcomeError { retryable: true, ..e });
    assert!(matches!(remapped, Outcome::Err(e) if e.retryable));
    assert!(matches!(
        Outcome::<u32>::err(failure(ErrorKind::Conflict)).or_else(|_| Outcome::ok(9)),
        Outcome::Ok(9)
    ));
    let seen = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let s = seen.clone();
    let _ = Outcome::ok(4u32).inspect(move |v| s.store(*v, std::sync::atomic::Ordering::SeqCst));
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 4);
    let s = seen.clone();
    let _ = Outcome::<u32>::err(failure(ErrorKind::Internal))
        .inspect_err(move |_| s.store(99, std::sync::atomic::Ordering::SeqCst));
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 99);
    assert!(matches!(Outcome::ok(4u32).and_then_if(|v| *v > 3, |v| Outcome::ok(v * 2)), Outcome::Ok(8)));
    assert!(matches!(Outcome::ok(1u32).and_then_if(|v| *v > 3, |v| Outcome::ok(v * 2)), Outcome::Ok(1)));
    let batch = Outcome::Batch(vec![Outcome::ok(1u32), Outcome::ok(2)]).map(|v| v + 1);
    assert!(matches!(batch, Outcome::Batch(ref items) if matches!(items[1], Outcome::Ok(3))));

    assert_eq!(Outcome::ok(3u32).into_result().unwrap(), 3);
    let cancelled = Outcome::<u32>::cancelled("user").into_result().unwrap_err();
    assert_eq!(cancelled.kind, ErrorKind::Internal);
    assert!(cancelled.message.contains("cancelled"));
    assert!(retry.into_result().unwrap_err().message.contains("not terminal"));
    assert_eq!(Outcome::<u32>::cancelled("x").unwrap_or(5), 5);
    assert_eq!(Outcome::<u32>::cancelled("x").unwrap_or_else(|| 6), 6);
    assert!(matches!(Outcome::ok(Outcome::ok(1u32)).flatten(), Outcome::Ok(1)));

    let zipped = zip(Outcome::<u32>::cancelled("c"), Outcome::<u32>::err(failure(ErrorKind::Validation)));
    assert!(zipped.is_err(), "Err outranks Cancelled");
    let spread = zip(Outcome::Batch(vec![Outcome::ok(1u32), Outcome::ok(2)]), Outcome::ok("x"));
    assert!(matches!(spread, Outcome::Batch(ref v) if v.len() == 2));
    assert!(join_all(vec![Outcome::ok(1u32), Outcome::<u32>::cancelled("c")]).is_cancelled());
    let empty = join_any::<u32>(Vec::new()).into_result().unwrap_err();
    assert!(empty.message.contains("empty"));

    let json = serde_json::to_value(Outcome::ok(1u32)).unwrap();
    assert_eq!(json, json!({"type": "Ok", "data": 1}), "adjacently tagged");
}

#[test]
fn error_kinds_classify_and_actions_are_plain_data() {
    assert!(ErrorKind::StorageError.is_retryable() && ErrorKind::Timeout.is_retryable());
    assert!(!ErrorKind::Conflict.is_retryable());
    assert!(ErrorKind::PolicyRejection.is_domain() && !ErrorKind::Serialization.is_domain());
    assert!(ErrorKind::Serialization.is_operational() && !ErrorKind::Custom(7).is_operational());
    let e = OutcomeError {
        kind: ErrorKind::Conflict,
        message: "taken".into(),
        compensation: Some(CompensationAction::Release { resource_ids: vec![1] }),
        retryable: false,
    };
    assert_eq!(e.to_string(), "[Conflict] taken");
    let conditions = [
        WaitCondition::All(vec![WaitCondition::Event { event_id: 1 }]),
        WaitCondition::Any(vec![]),
        WaitCondition::Custom { tag: 1, data: vec![2] },
    ];
    assert_eq!(conditions.len(), 3);
    let actions = [
        CompensationAction::Notify { target_id: 1, message: "m".into() },
        CompensationAction::Custom { action_type: "t".into(), data: vec![] },
    ];
    assert_eq!(actions.len(), 2);
}

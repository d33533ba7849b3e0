//! Combining outcomes: [`zip`], [`join_all`], [`join_any`].

use super::{ErrorKind, Outcome, OutcomeError};

fn rank<T>(o: &Outcome<T>) -> u8 {
    match o {
        Outcome::Err(_) => 0,
        Outcome::Cancelled { .. } => 1,
        Outcome::Retry { .. } => 2,
        Outcome::Pending { .. } => 3,
        Outcome::Batch(_) => 4,
        Outcome::Ok(_) => 5,
    }
}

/// Pairs two outcomes. Priority: Err > Cancelled > Retry > Pending > Batch >
/// Ok (the first argument wins ties). Two batches zip pairwise (truncating);
/// a batch and an `Ok` pair the `Ok` with every element.
pub fn zip<A: Clone, B: Clone>(a: Outcome<A>, b: Outcome<B>) -> Outcome<(A, B)> {
    match (a, b) {
        (Outcome::Ok(x), Outcome::Ok(y)) => Outcome::Ok((x, y)),
        (Outcome::Batch(xs), Outcome::Batch(ys)) => {
            Outcome::Batch(xs.into_iter().zip(ys).map(|(x, y)| zip(x, y)).collect())
        }
        (Outcome::Batch(xs), Outcome::Ok(y)) => {
            Outcome::Batch(xs.into_iter().map(|x| zip(x, Outcome::Ok(y.clone()))).collect())
        }
        (Outcome::Ok(x), Outcome::Batch(ys)) => {
            Outcome::Batch(ys.into_iter().map(|y| zip(Outcome::Ok(x.clone()), y)).collect())
        }
        (a, b) => {
            if rank(&a) <= rank(&b) {
                a.and_then(|_| Outcome::Err(OutcomeError::new(ErrorKind::Internal, "zip")))
            } else {
                b.and_then(|_| Outcome::Err(OutcomeError::new(ErrorKind::Internal, "zip")))
            }
        }
    }
}

/// All `Ok` → `Ok(values)`; otherwise the first non-`Ok` (nested batches flattened).
pub fn join_all<T>(outcomes: Vec<Outcome<T>>) -> Outcome<Vec<T>> {
    let mut values = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        match o {
            Outcome::Ok(t) => values.push(t),
            Outcome::Batch(inner) => match join_all(inner) {
                Outcome::Ok(vs) => values.extend(vs),
                other => return other,
            },
            other => return other.and_then(|_| Outcome::Ok(Vec::new())),
        }
    }
    Outcome::Ok(values)
}

/// The first `Ok`; `Retry`, `Pending` and `Cancelled` return at once; if
/// all fail, the last error. An empty input is an internal error.
pub fn join_any<T>(outcomes: Vec<Outcome<T>>) -> Outcome<T> {
    let mut last = None;
    for o in outcomes {
        match o {
            Outcome::Ok(t) => return Outcome::Ok(t),
            Outcome::Err(e) => last = Some(e),
            Outcome::Batch(inner) => match join_any(inner) {
                Outcome::Ok(t) => return Outcome::Ok(t),
                Outcome::Err(e) => last = Some(e),
                other => return other,
            },
            other => return other,
        }
    }
    Outcome::Err(
        last.unwrap_or_else(|| OutcomeError::new(ErrorKind::Internal, "join_any called with empty vec")),
    )
}

//! Lossy push subscriptions: each subscriber has a bounded queue; when it is
//! full the notification is dropped for that subscriber (and counted), so a
//! slow reader can never stall the writer.

use crate::coordinate::Region;
use crate::store::contracts::Notification;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Subscriber {
    region: Region,
    tx: flume::Sender<Notification>,
    dropped: Arc<AtomicU64>,
}

/// Every live subscriber.
#[derive(Default)]
pub(crate) struct Subscribers {
    list: Mutex<Vec<Subscriber>>,
}

impl Subscribers {
    pub(crate) fn subscribe(&self, region: &Region, capacity: usize) -> Subscription {
        let (tx, rx) = flume::bounded(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        self.list.lock().push(Subscriber { region: region.clone(), tx, dropped: Arc::clone(&dropped) });
        Subscription { rx, region: region.clone(), dropped }
    }

    /// Drops every subscriber's sender: their `recv` returns `None` (close).
    pub(crate) fn close_all(&self) {
        self.list.lock().clear();
    }

    /// Sends the notes `make` builds to every subscriber whose region
    /// matches them; `make` runs only if anyone is subscribed.
    pub(crate) fn broadcast_with(&self, make: impl FnOnce() -> Vec<Notification>) {
        let mut list = self.list.lock();
        if list.is_empty() {
            return;
        }
        let notes = make();
        list.retain(|s| {
            for n in &notes {
                if !s.region.matches_event(n.coord.entity(), n.coord.scope(), n.kind) {
                    continue;
                }
                match s.tx.try_send(n.clone()) {
                    Ok(()) => {}
                    Err(flume::TrySendError::Full(_)) => {
                        s.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(flume::TrySendError::Disconnected(_)) => return false,
                }
            }
            true
        });
    }
}

/// A lossy stream of notifications for one region.
pub struct Subscription {
    rx: flume::Receiver<Notification>,
    region: Region,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// Blocks for the next notification; `None` once the store is gone.
    pub fn recv(&self) -> Option<Notification> {
        self.rx.recv().ok()
    }

    /// The underlying channel (for `try_recv`, timeouts or `recv_async`).
    pub fn receiver(&self) -> &flume::Receiver<Notification> {
        &self.rx
    }

    /// The region this subscription follows.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Notifications dropped because this subscriber's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A filtering, mapping, counting view of this subscription.
    pub fn ops(self) -> SubscriptionOps {
        SubscriptionOps { sub: self, filters: Vec::new(), mapper: None, remaining: None }
    }
}

type Filter = Box<dyn Fn(&Notification) -> bool + Send>;
type Mapper = Box<dyn Fn(&Notification) -> Option<Notification> + Send>;

/// Combinators over a [`Subscription`].
pub struct SubscriptionOps {
    sub: Subscription,
    filters: Vec<Filter>,
    mapper: Option<Mapper>,
    remaining: Option<usize>,
}

impl SubscriptionOps {
    /// Keep only notifications passing `f` (all filters must pass).
    pub fn filter(mut self, f: impl Fn(&Notification) -> bool + Send + 'static) -> Self {
        self.filters.push(Box::new(f));
        self
    }

    /// Transform notifications; `None` skips one (the last mapper set wins).
    pub fn map(mut self, f: impl Fn(&Notification) -> Option<Notification> + Send + 'static) -> Self {
        self.mapper = Some(Box::new(f));
        self
    }

    /// Stop after `n` notifications.
    pub fn take(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    /// The next notification passing the filters; `None` when done or closed.
    pub fn recv(&mut self) -> Option<Notification> {
        if self.remaining == Some(0) {
            return None;
        }
        loop {
            let n = self.sub.recv()?;
            if !self.filters.iter().all(|f| f(&n)) {
                continue;
            }
            let mapped = match &self.mapper {
                Some(m) => match m(&n) {
                    Some(x) => x,
                    None => continue,
                },
                None => n,
            };
            if let Some(r) = self.remaining.as_mut() {
                *r -= 1;
            }
            return Some(mapped);
        }
    }
}

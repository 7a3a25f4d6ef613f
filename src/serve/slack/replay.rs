//! Remembers the deliveries already taken, so a delivery Slack retries (its `X-Slack-Retry-Num`
//! requests, sent when an acknowledgement was slow or lost) or an identical signed request
//! replayed inside the signature window is acknowledged without being answered again.
//!
//! Bounded and in memory: at most `capacity` keys, each kept `ttl` seconds (the oldest are
//! forgotten first when full). A restart forgets everything, so a retry that arrives after a
//! restart is answered again; with several replicas, each remembers only what it saw. Both
//! are the price of needing no shared store; Slack's retries come within minutes, and the
//! default TTL (an hour) covers them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// The deliveries seen, with when each was first seen (Unix seconds).
#[derive(Debug)]
pub struct Replays {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: i64,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashMap<String, i64>,
    order: VecDeque<(String, i64)>,
}

impl Replays {
    /// Remembers at most `capacity` deliveries (at least one), each for `ttl_secs`.
    pub fn new(capacity: usize, ttl_secs: u64) -> Self {
        Replays {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            ttl: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        }
    }

    /// True the first time `key` is offered within the TTL (and remembers it from `now`);
    /// false for a repeat.
    pub fn first_time(&self, key: &str, now: i64) -> bool {
        // The map stays consistent even if a holder panicked, so a poisoned lock is used as is.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        while let Some((_, at)) = inner.order.front() {
            if now.saturating_sub(*at) < self.ttl {
                break;
            }
            inner.forget_oldest();
        }
        if let Some(&at) = inner.seen.get(key)
            && now.saturating_sub(at) < self.ttl
        {
            return false;
        }
        while inner.seen.len() >= self.capacity && !inner.order.is_empty() {
            inner.forget_oldest();
        }
        inner.seen.insert(key.to_string(), now);
        inner.order.push_back((key.to_string(), now));
        true
    }

    /// How many deliveries are remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn forget_oldest(&mut self) {
        if let Some((key, at)) = self.order.pop_front()
            // A key seen again after it expired has a later time: keep that entry.
            && self.seen.get(&key) == Some(&at)
        {
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_recognised_until_it_expires() {
        let r = Replays::new(10, 60);
        assert!(r.first_time("Ev1", 1000));
        assert!(!r.first_time("Ev1", 1000));
        assert!(!r.first_time("Ev1", 1059));
        assert!(r.first_time("Ev2", 1059));
        assert!(r.first_time("Ev1", 1060), "forgotten after the TTL");
        assert!(!r.first_time("Ev1", 1061));
    }

    #[test]
    fn the_set_stays_bounded_forgetting_the_oldest() {
        let r = Replays::new(3, 3600);
        for key in ["a", "b", "c", "d"] {
            assert!(r.first_time(key, 5));
        }
        assert_eq!(r.len(), 3);
        assert!(!r.first_time("d", 6));
        assert!(!r.first_time("b", 6));
        assert!(r.first_time("a", 6), "the oldest was forgotten");
        assert_eq!(r.len(), 3);
    }
}

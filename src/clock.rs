//! The injected clock. Every deadline check asks a `Clock`, never `Utc::now()`
//! directly, so tests move time instead of sleeping. No I/O.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock shifted by an offset that tests can move forward.
#[derive(Debug, Clone, Default)]
pub struct ShiftedClock {
    /// Nanoseconds added to the wall clock; shared by every clone. Exact, so a clock
    /// moved to an instant is at or past it from then on (a millisecond offset could
    /// leave it just short of an instant with microseconds).
    offset_ns: Arc<AtomicI64>,
}

impl ShiftedClock {
    /// A clock that starts at the wall clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = by.num_nanoseconds().unwrap_or(i64::MAX);
        self.offset_ns.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::nanoseconds(self.offset_ns.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_a_clone_moves_every_clone() {
        let clock = ShiftedClock::new();
        let clone = clock.clone();
        clone.advance(Duration::days(30));
        assert!(clock.now() - Utc::now() > Duration::days(29));
    }

    #[test]
    fn a_clock_moved_to_an_instant_is_never_short_of_it() {
        let clock = ShiftedClock::new();
        for micros in [1, 999, 123_457] {
            let target = clock.now() + Duration::days(1) + Duration::microseconds(micros);
            clock.advance(target - clock.now());
            assert!(clock.now() >= target);
        }
    }
}

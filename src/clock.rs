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
    /// Milliseconds added to the wall clock; shared by every clone.
    offset_ms: Arc<AtomicI64>,
}

impl ShiftedClock {
    /// A clock that starts at the wall clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
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
}

//! Readiness of the parts of one process that need the broker: every consumer loop,
//! the intake and the relay report whether their broker session is up. `/readyz`
//! reads it (with the database checks, see `app::endpoints`). No I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The parts of a process and whether each is up.
#[derive(Default)]
pub struct Health {
    /// Part name (`consumer issuance 1`, `relay`, …) to whether it is up.
    parts: Mutex<BTreeMap<String, bool>>,
}

impl Health {
    /// Registers a part, down until it says otherwise; a second part of the same kind
    /// gets the next number.
    pub fn register(self: &Arc<Self>, kind: &str) -> Part {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let number = (1..)
            .find(|n| !parts.contains_key(&format!("{kind} {n}")))
            .unwrap_or(1);
        let name = format!("{kind} {number}");
        parts.insert(name.clone(), false);
        Part {
            health: self.clone(),
            name,
        }
    }

    /// The parts that are down (empty when everything is up), and how many there are.
    pub fn down(&self) -> (Vec<String>, usize) {
        let parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let down = parts
            .iter()
            .filter(|(_, up)| !**up)
            .map(|(name, _)| name.clone())
            .collect();
        (down, parts.len())
    }
}

/// One registered part; it reports itself down when dropped.
pub struct Part {
    health: Arc<Health>,
    name: String,
}

impl Part {
    /// Says whether the part's broker session is up.
    pub fn set(&self, up: bool) {
        let mut parts = self
            .health
            .parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        parts.insert(self.name.clone(), up);
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        self.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_ready_only_when_every_part_is_up() {
        let health = Arc::new(Health::default());
        let first = health.register("consumer issuance");
        let second = health.register("consumer issuance");
        let relay = health.register("relay");
        assert_eq!(health.down().0.len(), 3, "down until they say so");
        first.set(true);
        second.set(true);
        relay.set(true);
        assert_eq!(health.down(), (Vec::new(), 3));
        second.set(false);
        assert_eq!(health.down().0, vec!["consumer issuance 2".to_owned()]);
        second.set(true);
        drop(relay);
        assert_eq!(health.down().0, vec!["relay 1".to_owned()]);
    }
}

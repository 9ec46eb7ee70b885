//! Crash points for fault-injection tests. `PINFLOW_FAILPOINTS=after-commit` makes the
//! process exit at once right after a batch's transaction commits and before its
//! acknowledgement, the window in which a crash must not double an effect;
//! `relay-after-publish` right after the broker confirmed a round of outbox rows and
//! before they are deleted, the window that makes delivery at-least-once. Unset in
//! production, where `hit` reads a once-initialised empty list.

use std::sync::OnceLock;

static ENABLED: OnceLock<Vec<String>> = OnceLock::new();

/// Exits the process with status 86 if the named failpoint is enabled.
pub fn hit(name: &str) {
    let enabled = ENABLED.get_or_init(|| {
        std::env::var("PINFLOW_FAILPOINTS")
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    });
    if enabled.iter().any(|e| e == name) {
        eprintln!("failpoint {name} hit: exiting");
        std::process::exit(86);
    }
}

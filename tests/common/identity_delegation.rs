//! Helpers for tests of the delegation worker: the two commands as the office counter
//! sends them, and its dead-letter queue.

use pinflow::broker::Names;
use serde_json::{Value, json};

use super::{TestApp, command};

/// A `delegation.grant` by operator `op-17`.
pub fn grant(delegator: &str, delegate: &str, valid_until: Option<&str>) -> Value {
    let mut data = json!({ "delegator_tax_code": delegator, "delegate_tax_code": delegate,
        "operator_id": "op-17" });
    if let Some(day) = valid_until {
        data["valid_until"] = json!(day);
    }
    command("delegation.grant", data)
}

/// A `delegation.revoke` by operator `op-18`.
pub fn revoke(delegation_id: &str) -> Value {
    command(
        "delegation.revoke",
        json!({ "delegation_id": delegation_id, "operator_id": "op-18" }),
    )
}

/// The delegation worker's dead-letter queue.
pub fn delegation_dlq(app: &TestApp) -> String {
    Names::dlq(&app.names.work_queue("identity_delegation"))
}

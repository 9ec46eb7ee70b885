//! Every exchange and queue name, prefixed by the namespace. No I/O.

use std::time::Duration;

/// The names of one installation's exchanges and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The prefix, with its trailing dot, or empty.
    prefix: String,
}

/// The notification channels; each has a durable queue so that nothing is dropped
/// while a gateway is down.
pub const NOTIFY_CHANNELS: &[&str] = &["sms", "email", "pec", "post", "office"];

impl Names {
    /// Names for a namespace (empty: no prefix).
    pub fn new(namespace: &str) -> Names {
        let prefix = if namespace.is_empty() {
            String::new()
        } else {
            format!("{namespace}.")
        };
        Names { prefix }
    }

    /// The name a connection of this installation gives the broker, e.g.
    /// `pinflow:t42:relay`.
    pub fn connection_name(&self, purpose: &str) -> String {
        format!("pinflow:{}:{purpose}", self.prefix.trim_end_matches('.'))
    }

    fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// `pinflow.commands`: upstream systems publish here.
    pub fn commands(&self) -> String {
        self.name("pinflow.commands")
    }
    /// `pinflow.events`.
    pub fn events(&self) -> String {
        self.name("pinflow.events")
    }
    /// `pinflow.notifications`.
    pub fn notifications(&self) -> String {
        self.name("pinflow.notifications")
    }
    /// `pinflow.dlx`: dead letters, routed by the name of the queue they failed on.
    pub fn dlx(&self) -> String {
        self.name("pinflow.dlx")
    }
    /// The alternate exchange of `pinflow.commands`.
    pub fn unrouted(&self) -> String {
        self.name("pinflow.unrouted")
    }
    /// Where commands that no worker binds are kept.
    pub fn unrouted_dlq(&self) -> String {
        self.name("pinflow.unrouted.dlq")
    }
    /// Where the broker puts what pinflow must seal before it rests: commands no
    /// worker binds (from the alternate exchange) and messages the broker itself
    /// dead-lettered (delivery limit). pinflow moves them, sealed, to their `.dlq`.
    pub fn intake(&self) -> String {
        self.name("pinflow.intake")
    }
    /// A worker's work queue.
    pub fn work_queue(&self, worker: &str) -> String {
        self.name(&format!("pinflow.{worker}"))
    }
    /// A queue's dead-letter queue.
    pub fn dlq(queue: &str) -> String {
        format!("{queue}.dlq")
    }
    /// The delay queue that holds a queue's messages for at most `ttl` before they go
    /// back to it. Named by its TTL, so a change of retry settings declares new queues
    /// instead of clashing with the old ones.
    pub fn retry_queue(queue: &str, ttl: Duration) -> String {
        format!("{queue}.retry.{}ms", ttl.as_millis())
    }
    /// The durable queue a gateway consumes for `notify.<channel>`.
    pub fn notify_queue(&self, channel: &str) -> String {
        self.name(&format!("pinflow.notify.{channel}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_prefixes_every_name() {
        let names = Names::new("t42");
        assert_eq!(names.commands(), "t42.pinflow.commands");
        assert_eq!(names.unrouted_dlq(), "t42.pinflow.unrouted.dlq");
        assert_eq!(
            Names::dlq(&names.work_queue("sample")),
            "t42.pinflow.sample.dlq"
        );
        assert_eq!(Names::new("").events(), "pinflow.events");
    }
}

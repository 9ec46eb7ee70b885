//! What a worker says of itself, as plain data: its name, the messages it binds
//! (exchange, routing key, RPC or not, what each typically causes) and its timed jobs.
//! Topology, health, the dead-letter commands, the benchmark and the compose check all
//! read these descriptions, so a worker's names are written once, in its own folder.
//! Pure: no I/O, and it imports nothing of pinflow.

/// The exchange a binding listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `pinflow.commands`: what upstream systems publish.
    Commands,
    /// `pinflow.events`: what pinflow's own workers publish.
    Events,
}

/// One routing key a worker's queue is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Which exchange.
    pub source: Source,
    /// The message type (also the routing key).
    pub message_type: &'static str,
    /// An RPC command: invalid without `reply_to` and `correlation_id`.
    pub rpc: bool,
    /// The routing keys of what one ordinary, successful message of this type causes
    /// (events, notifications, `reply` for the RPC reply): the message pattern the
    /// benchmark drives and compares with the broker's own ceiling.
    pub causes: &'static [&'static str],
    /// Command types whose contract example, for the same applicant, must have been
    /// handled before this type's example can succeed (an ordinary PIN before its
    /// conversion; the PIN issued, then activated with the initial PIN its halves
    /// carried, before a `pin.verify`; a notification before its `delivery.receipt`):
    /// the benchmark sends them first, in this order, untimed. Empty for most.
    pub needs: &'static [&'static str],
    /// Whether handling it runs Argon2. While commands of a type that does not are
    /// being handled, the hashing threads that step aside wait (see
    /// `domain::OtherWork`).
    pub hashes: bool,
}

impl Binding {
    /// A command on `pinflow.commands`.
    pub const fn command(message_type: &'static str, causes: &'static [&'static str]) -> Binding {
        Binding {
            source: Source::Commands,
            message_type,
            rpc: false,
            causes,
            needs: &[],
            hashes: false,
        }
    }

    /// An RPC command on `pinflow.commands`: answered on its `reply_to`.
    pub const fn rpc(message_type: &'static str, causes: &'static [&'static str]) -> Binding {
        Binding {
            source: Source::Commands,
            message_type,
            rpc: true,
            causes,
            needs: &[],
            hashes: false,
        }
    }

    /// An event another worker publishes on `pinflow.events`.
    pub const fn event(message_type: &'static str, causes: &'static [&'static str]) -> Binding {
        Binding {
            source: Source::Events,
            message_type,
            rpc: false,
            causes,
            needs: &[],
            hashes: false,
        }
    }

    /// The same binding, whose example needs these command types handled first.
    pub const fn after(self, needs: &'static [&'static str]) -> Binding {
        Binding { needs, ..self }
    }

    /// The same binding, for a type whose handling runs Argon2.
    pub const fn hashing(self) -> Binding {
        Binding {
            hashes: true,
            ..self
        }
    }
}

/// A timed job: work that no message starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    /// The job's name, unique within its worker.
    pub name: &'static str,
    /// The environment variable that sets how often it runs (an ISO 8601 duration).
    pub interval_setting: &'static str,
}

/// Everything the runtime and the operator tools need to know of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Description {
    /// The worker's name: `pinflow run --worker NAME`, and its queue `pinflow.NAME`.
    pub name: &'static str,
    /// What its queue is bound to; empty for a worker made only of timed jobs, which
    /// then has no queue at all.
    pub bindings: &'static [Binding],
    /// Its timed jobs.
    pub jobs: &'static [JobSpec],
}

impl Description {
    /// Whether the worker consumes messages (and so has a work queue and a `.dlq`).
    pub fn has_queue(&self) -> bool {
        !self.bindings.is_empty()
    }

    /// The binding for a message type, if this worker takes it.
    pub fn binding(&self, message_type: &str) -> Option<&'static Binding> {
        self.bindings
            .iter()
            .find(|b| b.message_type == message_type)
    }

    /// Whether this worker takes a message type.
    pub fn accepts(&self, message_type: &str) -> bool {
        self.binding(message_type).is_some()
    }

    /// Whether a message type is an RPC command here.
    pub fn is_rpc(&self, message_type: &str) -> bool {
        self.binding(message_type).is_some_and(|b| b.rpc)
    }
}

/// Picks descriptions by name; none named means all. An unknown name is an error that
/// lists the known ones.
pub fn choose<'a>(
    all: &'a [Description],
    requested: &[String],
) -> Result<Vec<&'a Description>, String> {
    if requested.is_empty() {
        return Ok(all.iter().collect());
    }
    requested
        .iter()
        .map(|name| {
            all.iter().find(|d| d.name == name).ok_or_else(|| {
                let known: Vec<_> = all.iter().map(|d| d.name).collect();
                format!(
                    "unknown worker `{name}`; the workers are: {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: Description = Description {
        name: "sample",
        bindings: &[
            Binding::command("a.do", &["a.done"]),
            Binding::rpc("a.ask", &["reply"]),
        ],
        jobs: &[],
    };

    const JOBS_ONLY: Description = Description {
        name: "sweeper",
        bindings: &[],
        jobs: &[JobSpec {
            name: "sweep",
            interval_setting: "PINFLOW_SWEEP_INTERVAL",
        }],
    };

    #[test]
    fn a_description_answers_for_its_bindings_only() {
        assert!(SAMPLE.accepts("a.do"));
        assert!(!SAMPLE.is_rpc("a.do"));
        assert!(SAMPLE.is_rpc("a.ask"));
        assert!(!SAMPLE.accepts("b.do"));
        assert!(SAMPLE.has_queue());
        assert!(!JOBS_ONLY.has_queue());
    }

    #[test]
    fn choosing_an_unknown_worker_names_the_known_ones() {
        let all = [SAMPLE, JOBS_ONLY];
        assert_eq!(choose(&all, &[]).unwrap().len(), 2);
        assert_eq!(
            choose(&all, &["sweeper".to_owned()]).unwrap()[0].name,
            "sweeper"
        );
        let error = choose(&all, &["nope".to_owned()]).unwrap_err();
        assert!(error.contains("sample, sweeper"), "{error}");
    }
}

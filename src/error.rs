//! How a message's failure is classified: permanent (dead-letter at once) or transient
//! (retry later). Decided where the error arises, so the consumer loop only asks.

/// A handler's failure.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Bad input or an impossible state: retrying cannot help. The text is a short
    /// reason that never quotes a secret.
    #[error("{0}")]
    Permanent(String),
    /// The database failed; transient when the cause is a lost connection, a
    /// serialization failure or a resource limit.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// No database connection could be had (refused, down, pool exhausted): always
    /// transient, whatever the server said.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Hashing a secret failed (a malformed stored hash, or the hashing threads are gone).
    #[error("hashing failed")]
    Hash(#[source] crate::domain::HashError),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        HandlerError::Database(e)
    }
}

impl From<crate::domain::HashError> for HandlerError {
    fn from(e: crate::domain::HashError) -> Self {
        HandlerError::Hash(e)
    }
}

impl From<crate::contract::outgoing::EncodeError> for HandlerError {
    fn from(e: crate::contract::outgoing::EncodeError) -> Self {
        // Our types serialize no secret, so serde's words may go into the reason.
        HandlerError::Permanent(chain(&e))
    }
}

impl HandlerError {
    /// Whether trying the same message again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            HandlerError::Permanent(_) | HandlerError::Hash(_) => false,
            HandlerError::Unavailable(_) => true,
            HandlerError::Database(e) => is_transient(e),
        }
    }
}

/// Whether a database error is worth retrying: connection and pool trouble, and the
/// SQLSTATE classes for connection exceptions (08), transaction rollbacks such as
/// serialization failures and deadlocks (40), insufficient resources (53), operator
/// intervention such as a terminated backend (57) and system errors (58).
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|c| code.starts_with(c))
        }),
        _ => false,
    }
}

/// The full cause chain of an error, for the one log line that reports it.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! The verification worker: `conversion.submit` on its three channels. Upload and fax
//! documents pass the automatic checks and wait for an operator; at the office, where
//! the operator saw the citizen and the document, the PIN is converted at once. A
//! failed check is a refusal the citizen hears about, not a dead letter. It records
//! conversions and ends them through the conversion worker's `record` and `outcome`,
//! so an office conversion is approved by the same code as a review.

mod checks;
mod submit;

use sqlx::PgConnection;
use tracing::Instrument as _;

use crate::config::Rules;
use crate::contract::commands::{
    self as wire, CommandData, ConversionChannel, Document, Fax, IdentityDocument,
};
use crate::contract::{Envelope, Outgoing, ParseError};
use crate::domain::TaxCode;
use crate::error::HandlerError;
use crate::manifest::{Binding, Description};
use crate::runtime::{Handling, Message, Registration, Worker};
pub use checks::{Failure, MEDIA_TYPES};

/// The verification worker as the registry lists it.
pub const WORKER: Registration = Registration {
    description: Description {
        name: "verification",
        bindings: &[
            Binding::command("conversion.submit", &["conversion.review_requested"])
                .after(&["pin.request"]),
        ],
        jobs: &[],
    },
    start: |starter| starter.consume(Verification::new(starter.rules().clone())),
    parse: |envelope| Submission::parse(envelope).map(drop),
};

/// The verification worker.
pub struct Verification {
    /// The document size limit.
    rules: Rules,
}

impl Verification {
    /// A worker with these rules.
    pub fn new(rules: Rules) -> Verification {
        Verification { rules }
    }
}

/// A checked `conversion.submit` (the schema already required `fax` for a fax and
/// `operator_id` at the office).
pub struct Submission {
    /// Whose PIN, check character verified.
    pub tax_code: TaxCode,
    /// How the documents arrived.
    pub channel: ConversionChannel,
    /// References to the documents.
    pub documents: Vec<Document>,
    /// The identity document's data.
    pub identity_document: IdentityDocument,
    /// How a fax arrived.
    pub fax: Option<Fax>,
    /// The operator at the office.
    pub operator_id: Option<String>,
}

impl Submission {
    /// Parses the data of a `conversion.submit`.
    pub fn parse(envelope: &Envelope) -> Result<Submission, ParseError> {
        let data = wire::ConversionSubmit::from_envelope(envelope)?;
        Ok(Submission {
            tax_code: wire::tax_code("tax_code", &data.tax_code)?,
            channel: data.channel,
            documents: data.documents,
            identity_document: data.identity_document,
            fax: data.fax,
            operator_id: data.operator_id,
        })
    }

    /// Who submitted: the operator at the office, else the upstream system.
    pub fn actor<'a>(&'a self, source: &'a str) -> &'a str {
        self.operator_id.as_deref().unwrap_or(source)
    }
}

impl Worker for Verification {
    type Command = Submission;
    type Prepared = Submission;

    fn parse(&self, envelope: &Envelope) -> Result<Submission, ParseError> {
        Submission::parse(envelope)
    }

    async fn prepare(&self, submission: Submission) -> Result<Submission, HandlerError> {
        Ok(submission)
    }

    async fn handle<'a>(
        &'a self,
        submission: &'a Submission,
        message: &'a Message<'a>,
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        submit::handle(self, submission, None, message, conn).await
    }

    /// A batch's submissions lock their credentials in one statement and file the
    /// conversions of those that pass every check in one (see `submit::stage`), then
    /// each is handled in order.
    async fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handling<'a, Submission>],
        conn: &'a mut PgConnection,
    ) -> Result<Vec<Vec<Outgoing>>, HandlerError> {
        let staged = submit::stage(self, batch, conn).await?;
        let mut all = Vec::with_capacity(batch.len());
        for (item, staged) in batch.iter().zip(staged) {
            let handled = submit::handle(self, item.prepared, staged, item.message, conn);
            all.push(handled.instrument(item.span.clone()).await?);
        }
        Ok(all)
    }
}

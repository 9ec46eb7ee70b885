//! How a conversion ends, whoever ends it: approved (the PIN becomes a device PIN,
//! `pin.converted`, the citizen is told with `pin_converted`) or rejected
//! (`conversion.rejected` with every reason, the citizen is told with
//! `conversion_rejected`). An office conversion and an approved review are the same
//! code; so are a review's rejection and the checks'. Every notice goes by PEC where
//! the citizen has one on record, else by e-mail; without either, only the event.

use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::record::{self, Conversion, Status};
use crate::contract::events::{ConversionRejected, PinConverted};
use crate::contract::{Notice, NotifyChannel, Outgoing};
use crate::domain::TaxCode;
use crate::domain::credential::Credential;
use crate::error::HandlerError;
use crate::runtime::Message;
use crate::store::credentials;

/// The notice to the holder of `credential_id` by PEC or e-mail, if they have either
/// on record. `params` gets their name and the credential.
pub async fn notice(
    conn: &mut PgConnection,
    message: &Message<'_>,
    credential_id: Option<Uuid>,
    template: &'static str,
    tax_code: &TaxCode,
    mut params: Value,
) -> Result<Option<Outgoing>, HandlerError> {
    let Some(credential_id) = credential_id else {
        return Ok(None);
    };
    let Some(holder) = credentials::addressee(conn, credential_id).await? else {
        return Ok(None);
    };
    let (channel, address) = match (holder.contacts.pec, holder.contacts.email) {
        (Some(pec), _) => (NotifyChannel::Pec, pec),
        (None, Some(email)) => (NotifyChannel::Email, email),
        (None, None) => return Ok(None),
    };
    params["credential_id"] = json!(credential_id);
    params["given_name"] = json!(holder.given_name);
    params["family_name"] = json!(holder.family_name);
    let notice = Notice {
        channel,
        template,
        to: json!(address.as_str()),
        params,
        tax_code: tax_code.as_str().to_owned(),
        credential_id: Some(credential_id),
        secret: None,
    };
    Ok(Some(Outgoing::notification(notice, message.now)))
}

/// Approves a conversion that waits (or, at the office, was just recorded): the same
/// PIN becomes a device PIN.
pub async fn approve(
    conn: &mut PgConnection,
    message: &Message<'_>,
    conversion: &Conversion,
    credential: &Credential,
    actor: &str,
) -> Result<Vec<Outgoing>, HandlerError> {
    let device = credential
        .convert(message.now)
        .map_err(|r| HandlerError::Permanent(format!("conversion refused: {}", r.as_str())))?;
    credentials::save_kind(conn, &device).await?;
    let id = &message.envelope.id;
    if !record::decide(
        conn,
        conversion.id,
        Status::Approved,
        &[],
        actor,
        id,
        message.now,
    )
    .await?
    {
        return Err(HandlerError::Permanent(
            "the conversion no longer waits for a decision".into(),
        ));
    }
    let detail = json!({ "conversion_id": conversion.id, "channel": conversion.channel });
    let tax_code = &conversion.tax_code;
    message.audit(
        actor,
        "pin.converted",
        Some(tax_code.as_str()),
        Some(device.id),
        detail,
    );
    let converted = PinConverted {
        tax_code: tax_code.clone(),
        credential_id: device.id,
        conversion_id: conversion.id,
    };
    let mut out = vec![Outgoing::typed_event(&converted, message.now)?];
    let params = json!({ "conversion_id": conversion.id });
    out.extend(
        notice(
            conn,
            message,
            Some(device.id),
            "pin_converted",
            tax_code,
            params,
        )
        .await?,
    );
    Ok(out)
}

/// Rejects a conversion that waits for review, with the operator's reasons (or
/// `rejected_on_review` when they gave none).
pub async fn reject(
    conn: &mut PgConnection,
    message: &Message<'_>,
    conversion: &Conversion,
    reasons: &[String],
    actor: &str,
) -> Result<Vec<Outgoing>, HandlerError> {
    let reasons = if reasons.is_empty() {
        vec!["rejected_on_review".to_owned()]
    } else {
        reasons.to_vec()
    };
    let id = &message.envelope.id;
    if !record::decide(
        conn,
        conversion.id,
        Status::Rejected,
        &reasons,
        actor,
        id,
        message.now,
    )
    .await?
    {
        return Err(HandlerError::Permanent(
            "the conversion no longer waits for a decision".into(),
        ));
    }
    let detail = json!({ "conversion_id": conversion.id, "reasons": reasons });
    let tax_code = &conversion.tax_code;
    let credential_id = conversion.credential_id;
    message.audit(
        actor,
        "conversion.rejected",
        Some(tax_code.as_str()),
        credential_id,
        detail,
    );
    rejected(conn, message, conversion, reasons).await
}

/// What a rejection announces: `conversion.rejected` with every reason, and the notice.
pub async fn rejected(
    conn: &mut PgConnection,
    message: &Message<'_>,
    conversion: &Conversion,
    reasons: Vec<String>,
) -> Result<Vec<Outgoing>, HandlerError> {
    let params = json!({ "conversion_id": conversion.id, "reasons": reasons });
    let event = ConversionRejected {
        tax_code: conversion.tax_code.clone(),
        conversion_id: conversion.id,
        reasons,
    };
    let mut out = vec![Outgoing::typed_event(&event, message.now)?];
    let tax_code = &conversion.tax_code;
    let template = "conversion_rejected";
    out.extend(
        notice(
            conn,
            message,
            conversion.credential_id,
            template,
            tax_code,
            params,
        )
        .await?,
    );
    Ok(out)
}

-- Device PINs: conversions of an ordinary PIN (documents, checks, an operator's
-- review) and applications for benefits, held while the applicant has only an
-- ordinary PIN. Neither table holds a secret; the credential keeps its PIN hash and
-- only its kind changes.

-- One row per conversion.submit: rejected at once by the automatic checks, waiting for
-- an operator (upload, fax), or approved (at the office, or on review).
create table conversions (
    id                  uuid primary key,
    tax_code            text not null,
    -- The PIN to convert; null when the tax code had none at all.
    credential_id       uuid references credentials (id),
    channel             text not null check (channel in ('upload', 'fax', 'office')),
    status              text not null check (status in ('under_review', 'approved', 'rejected')),
    -- References to the documents (kind, media type, size, SHA-256, URI), never the
    -- documents themselves.
    documents           jsonb not null,
    identity_document   jsonb not null,
    fax                 jsonb,
    submitted_by        text not null,
    submit_message_id   text not null,
    submitted_at        timestamptz not null,
    -- Every failed check or the operator's reasons, for a rejection.
    reasons             jsonb not null default '[]',
    decided_by          text,
    decide_message_id   text,
    decided_at          timestamptz,
    check ((status = 'under_review') = (decided_at is null)),
    check (status = 'rejected' or credential_id is not null)
);

-- At most one conversion of a PIN waits for an operator; a rejected one blocks nothing.
create unique index conversion_pending_key on conversions (credential_id)
    where status = 'under_review';
create index conversions_tax_code on conversions (tax_code, submitted_at);

-- One row per application.submit, keyed on the applicant and the portal's id (an id
-- that two applicants share is two applications: neither is lost).
create table applications (
    application_id      text not null,
    tax_code            text not null,
    benefit             text not null,
    authenticated_with  text not null
                        check (authenticated_with in ('pin_ordinary', 'pin_device', 'spid', 'cie', 'cns')),
    status              text not null check (status in ('accepted', 'held', 'released')),
    -- Why it is held: an ordinary PIN, or a PIN since revoked.
    hold_reason         text check (hold_reason in ('ordinary_pin', 'pin_revoked')),
    -- The legal filing time: the envelope's `time`, when the portal saw it.
    filed_at            timestamptz not null,
    -- Breaks ties between applications filed at the same instant: arrival order.
    seq                 bigserial not null,
    submit_message_id   text not null,
    received_at         timestamptz not null,
    released_at         timestamptz,
    -- The device credential whose conversion released it.
    released_with       uuid,
    check ((status = 'held') = (hold_reason is not null)),
    check ((status = 'released') = (released_at is not null)),
    primary key (tax_code, application_id)
);

create index applications_held on applications (tax_code, filed_at, seq) where status = 'held';

-- The runtime's tables: inbox (idempotency), outbox (what to publish), audit.

create table inbox (
    message_id   text primary key,
    queue        text not null,
    message_type text not null,
    processed_at timestamptz not null default now()
);

-- Rows wait here from the handler's commit until the relay has a publisher confirm.
-- A secret travels sealed (AES-256-GCM) in sealed_secret and is gone with the row.
create table outbox (
    id              bigserial primary key,
    created_at      timestamptz not null default now(),
    destination     text not null check (destination in ('event', 'notification', 'reply')),
    routing_key     text not null,
    message_id      text not null,
    message_type    text not null,
    correlation_id  text,
    traceparent     text,
    body            jsonb not null,
    secret_field    text,
    sealed_secret   bytea,
    key_id          text,
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    check ((secret_field is null) = (sealed_secret is null))
);
create index outbox_due on outbox (next_attempt_at, id);

create table audit_log (
    id            bigserial primary key,
    at            timestamptz not null,
    actor         text not null,
    action        text not null,
    tax_code      text,
    credential_id uuid,
    message_id    text,
    detail        jsonb not null default '{}'
);
create index audit_log_tax_code on audit_log (tax_code, at);

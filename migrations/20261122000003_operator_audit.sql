-- What operators did to dead letters: who, when, which messages, the outcome.
create table operator_audit (
    id          bigserial primary key,
    at          timestamptz not null default now(),
    operator    text not null,
    action      text not null check (action in ('replay', 'edit', 'purge')),
    queue       text,
    message_ids text[] not null,
    outcome     text not null,
    detail      jsonb not null default '{}'
);
create index operator_audit_at on operator_audit (at);

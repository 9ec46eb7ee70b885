-- Many workers: the inbox is per consuming queue, the outbox carries tracestate, and
-- every notification is kept in a ledger after it is sent (never its secret).

-- One event consumed by two workers is new to each of them.
alter table inbox drop constraint inbox_pkey;
alter table inbox add primary key (queue, message_id);

alter table outbox add column tracestate text;

create table notifications (
    notification_id text primary key,
    template        text not null,
    channel         text not null check (channel in ('sms', 'email', 'pec', 'post', 'office')),
    tax_code        text not null,
    credential_id   uuid,
    -- Which secret it carried, never the secret itself.
    carries         text check (carries in ('first_half', 'second_half', 'whole_pin', 'token')),
    state           text not null default 'pending'
                    check (state in ('pending', 'sent', 'delivered', 'failed', 'returned')),
    created_at      timestamptz not null,
    sent_at         timestamptz,
    state_at        timestamptz not null,
    detail          text
);
create index notifications_tax_code on notifications (tax_code, created_at);
create index notifications_credential on notifications (credential_id, created_at);

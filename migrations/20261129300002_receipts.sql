-- Delivery receipts: every receipt a gateway sends, whether or not it names a known
-- notification, and whether it moved the notification's delivery state or announced a
-- failure. The state itself is in the notification ledger (`notifications`).

create table notification_receipts (
    id               bigserial primary key,
    -- The receipt's CloudEvent id.
    message_id       text not null,
    notification_id  text not null,
    status           text not null check (status in ('delivered', 'failed', 'returned')),
    -- The gateway's own words (never the message's content).
    detail           text,
    -- When the gateway saw the outcome: the receipt's `time`, else when it arrived.
    observed_at      timestamptz not null,
    received_at      timestamptz not null,
    source           text not null,
    -- Whether the ledger has the notification.
    known            boolean not null,
    -- Whether it changed the notification's delivery state.
    applied          boolean not null,
    -- Whether it caused `pin.delivery_failed`.
    announced        boolean not null default false
);
create index notification_receipts_notification on notification_receipts (notification_id);
create index notification_receipts_unknown on notification_receipts (received_at) where not known;

-- Delegation of digital identity: a delegator lets a delegate act for them. At most one
-- live delegation per delegator-delegate pair; a dated one ends at the start of the day
-- after its `valid_until`, Italian time.

create table delegations (
    id                 uuid primary key,
    delegator_tax_code text not null,
    delegate_tax_code  text not null,
    -- The last day of the delegation, as granted; null for one without an end.
    valid_until        date,
    -- The instant it ends (the start of the day after valid_until in Europe/Rome).
    ends_at            timestamptz,
    status             text not null default 'live'
                       check (status in ('live', 'revoked', 'expired')),
    granted_at         timestamptz not null,
    granted_by         text not null,
    ended_at           timestamptz,
    ended_by           text,
    check (delegator_tax_code <> delegate_tax_code)
);
create unique index delegations_live_pair on delegations (delegator_tax_code, delegate_tax_code)
    where status = 'live';
create index delegations_due on delegations (ends_at) where status = 'live';
create index delegations_delegate on delegations (delegate_tax_code);

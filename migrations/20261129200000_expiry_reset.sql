-- Expiry, reset and revocation: which deadline a reminder went out for, the indexes
-- the sweeps claim due rows by, single-use reset tokens (kept only as SHA-256) and the
-- reset requests counted per tax code.

-- The deadline (valid_until) whose reminder has gone out; a new deadline (a reset
-- followed by a new first access) is reminded of again.
alter table credentials add column reminded_for timestamptz;

-- Each sweep claims due rows in deadline order from a partial index that holds only
-- the rows that can still fall due, so a pass reads what is due and nothing else.
create index credentials_validity_due on credentials (valid_until)
    where status in ('active', 'locked');
create index credentials_reminder_due on credentials (valid_until)
    where status in ('active', 'locked') and reminded_for is distinct from valid_until;
create index credentials_initial_pin_due on credentials (initial_pin_expires_at)
    where status in ('issued', 'locked') and activated_at is null;

-- A reset link's token: the token itself goes only into the notification that
-- carries it; this table keeps its SHA-256.
create table reset_tokens (
    token_sha256  bytea primary key,
    credential_id uuid not null references credentials (id),
    tax_code      text not null,
    state         text not null default 'pending'
                  check (state in ('pending', 'used', 'expired', 'superseded', 'revoked')),
    created_at    timestamptz not null,
    expires_at    timestamptz not null,
    ended_at      timestamptz
);
create index reset_tokens_pending_due on reset_tokens (expires_at) where state = 'pending';
create index reset_tokens_pending_credential on reset_tokens (credential_id)
    where state = 'pending';

-- Every reset request that was weighed (not those refused for the rate limit), so
-- the limit per tax code can be counted.
create table reset_requests (
    id       bigserial primary key,
    tax_code text not null,
    at       timestamptz not null,
    outcome  text not null check (outcome in ('link_sent', 'contacts_mismatch', 'not_found'))
);
create index reset_requests_tax_code on reset_requests (tax_code, at);

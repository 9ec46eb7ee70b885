-- Phone PINs: the temporary PIN a citizen who logged in with SPID, CIE or CNS gets for
-- the contact center. One per tax code (a new one replaces the last), kept only as an
-- Argon2id hash; the hash is cleared once the PIN is past its validity.

create table phone_pin_credentials (
    tax_code           text primary key,
    -- The live credential the phone PIN was issued against.
    credential_id      uuid not null references credentials (id),
    -- Argon2id; null once the phone PIN is past its validity and tidied up.
    pin_hash           text,
    validity           text not null check (validity in ('P1D', 'P7D', 'P1M', 'P3M')),
    authenticated_with text not null check (authenticated_with in ('spid', 'cie', 'cns')),
    issued_at          timestamptz not null,
    valid_until        timestamptz not null,
    failed_attempts    integer not null default 0,
    locked_at          timestamptz,
    tidied_at          timestamptz
);
-- What the tidy-up job looks for: hashes past their validity.
create index phone_pin_credentials_due on phone_pin_credentials (valid_until)
    where pin_hash is not null;

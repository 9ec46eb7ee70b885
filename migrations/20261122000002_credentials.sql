-- Credentials: one row per PIN ever issued. Secrets are stored only as Argon2id hashes.

create table credentials (
    id                     uuid primary key,
    tax_code               text not null,
    kind                   text not null check (kind in ('ordinary', 'device')),
    holder                 text not null check (holder in ('citizen', 'intermediary')),
    channel                text not null check (channel in ('online', 'contact_center', 'office')),
    status                 text not null check (status in ('issued', 'active', 'locked', 'expired', 'revoked')),
    given_name             text not null,
    family_name            text not null,
    birth_date             date not null,
    residence_country      text not null,
    contacts               jsonb not null,
    postal_address         jsonb not null,
    health_card            jsonb,
    initial_pin_hash       text,
    initial_pin_expires_at timestamptz,
    pin_hash               text,
    activated_at           timestamptz,
    valid_until            timestamptz,
    failed_attempts        integer not null default 0,
    locked_at              timestamptz,
    ended_at               timestamptz,
    issued_at              timestamptz not null,
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now()
);

-- At most one current (issued, active or locked) credential per tax code.
create unique index credential_current_key on credentials (tax_code)
    where status in ('issued', 'active', 'locked');
create index credentials_tax_code on credentials (tax_code, issued_at desc);

create function set_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at = now();
    return new;
end $$;

create trigger credentials_updated_at before update on credentials
    for each row execute function set_updated_at();

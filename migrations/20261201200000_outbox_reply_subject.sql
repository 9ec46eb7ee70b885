-- A reply's row carries the tax code and credential its request's audit entries named
-- (the last of them), written with the row. When the caller's queue is gone, the relay
-- records `reply.returned` against them from the row itself, instead of searching the
-- audit log by message id, which has no index for it: a search of the whole log, in
-- the relay's transaction, for every reply that comes back.
alter table outbox
    add column request_tax_code text,
    add column request_credential_id uuid;

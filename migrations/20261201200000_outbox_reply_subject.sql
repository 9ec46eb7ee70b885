-- A reply's row carries the tax code and credential its request's audit entries named
-- (the last of them), written with the row. When the caller's queue is gone, the relay
-- records `reply.returned` against them from the row itself, instead of searching the
-- audit log by message id, which has no index for it: a search of the whole log, in
-- the relay's transaction, for every reply that comes back.
alter table outbox
    add column request_tax_code text,
    add column request_credential_id uuid;

-- Replies written before this migration and not yet published get theirs from the
-- audit log once, as the relay used to.
do $$
begin
    if exists (select 1 from outbox where destination = 'reply') then
        update outbox o
        set request_tax_code = a.tax_code, request_credential_id = a.credential_id
        from (select distinct on (message_id) message_id, tax_code, credential_id
              from audit_log
              where message_id in (select caused_by from outbox where destination = 'reply')
              order by message_id, id desc) a
        where o.destination = 'reply' and o.caused_by = a.message_id;
    end if;
end
$$;

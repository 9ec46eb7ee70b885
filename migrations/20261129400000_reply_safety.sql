-- The message that caused an outbox row, so a reply the broker returns (its caller's
-- queue is gone) can be recorded against the request in the audit trail.
alter table outbox add column caused_by text;

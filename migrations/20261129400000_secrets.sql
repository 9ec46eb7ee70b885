-- The message that caused an outbox row, so a reply the broker returns (its caller's
-- queue is gone) can be recorded against the request in the audit trail.
alter table outbox add column caused_by text;

-- `pinflow watch --show-secrets` is an operator action too, and audited.
alter table operator_audit drop constraint operator_audit_action_check;
alter table operator_audit add constraint operator_audit_action_check
    check (action in ('replay', 'edit', 'purge', 'watch', 'keys'));

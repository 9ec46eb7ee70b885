-- The process that publishes a row itself at commit (see runtime::at_commit) names
-- itself here: the key of the advisory lock it holds while it lives. The relay takes
-- a held row as soon as that lock is gone, instead of waiting for the hold to end.
alter table outbox add column held_by bigint;

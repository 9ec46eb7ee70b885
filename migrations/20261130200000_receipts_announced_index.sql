-- The receipts log is searched by notification for one question only: was a failure
-- of this notification announced already? Index only the announced rows, so that an
-- ordinary receipt writes one index entry fewer.
drop index notification_receipts_notification;
create index notification_receipts_announced on notification_receipts (notification_id)
    where announced;

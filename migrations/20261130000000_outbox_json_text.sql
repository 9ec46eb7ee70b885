-- The outbox body is written once and read once, by the relay, which publishes it as
-- it is. As jsonb, PostgreSQL parsed it into its binary form on the way in and printed
-- it back to text on the way out, and the relay parsed it again and printed it again.
-- As json, the text is kept as written (checked to be JSON) and handed back as it is,
-- and the relay publishes those bytes. The `->` and `->>` operators work on both.
alter table outbox alter column body type json using body::json;

-- The notification ledger is searched by notification id (receipts) and by tax code
-- (operators), never by credential, yet every notification wrote an entry to an index
-- of its credential id: a random uuid, so each entry lands on a page of its own.
-- Drop that index; a notification writes two index entries instead of three.
drop index notifications_credential;

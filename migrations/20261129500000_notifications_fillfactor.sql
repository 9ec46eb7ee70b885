-- Every notification is written once (pending) and updated soon after, when the relay
-- has its confirm (sent), and again by a gateway's receipt. None of those updates
-- touches an indexed column, so PostgreSQL can keep the new version on the same page
-- and skip the three index entries (a HOT update), but only if the page has room:
-- pages filled to the brim by the inserts left room for about one update in eight.
-- Leave room on each new page for the updates its rows will get. Pages already
-- written keep their layout until the table is rewritten.
alter table notifications set (fillfactor = 60);

-- change_tracking: the triggers that log which contacts' events changed log every one of them, run
-- only where they are meant to, and write the change log the fastest way that keeps what a user
-- put on it (an index, a trigger, a check, a partition bound).

-- A large UPDATE after a one-row UPDATE in the same session logs every contact it changed (1.2
-- planned the join of its transition tables once, for the one-row UPDATE: 16 s for 20,000 rows).
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
SELECT 7420000 + c % 5000, 'opened', timestamptz '2026-01-01 00:00+00' - c * interval '1 minute'
  FROM generate_series(1, 25000) c;
UPDATE engagement.engagement_events SET occurred_at = occurred_at - interval '1 second'
 WHERE id = (SELECT min(id) FROM engagement.engagement_events WHERE contact_id BETWEEN 7420000 AND 7424999);
UPDATE engagement.engagement_events SET occurred_at = occurred_at - interval '1 second'
 WHERE contact_id BETWEEN 7420000 AND 7424999;
SELECT count(DISTINCT contact_id) AS tracked_contacts FROM engagement.event_changes
 WHERE contact_id BETWEEN 7420000 AND 7424999;

-- SQLSTATEs: a role that does not exist is 42704; track_event_changes run again replaces its
-- triggers (after attaching partitions, say).
SELECT ref.sqlstate_of($$SELECT engagement.grant_application_access(0::regrole)$$) AS app_no_role,
       ref.sqlstate_of($$SELECT engagement.grant_admin_access(0::regrole)$$) AS admin_no_role;
CREATE TABLE tracking_events (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                              conversion_value numeric);
SELECT engagement.track_event_changes('tracking_events');
SELECT engagement.track_event_changes('tracking_events');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'tracking_events'::regclass AND NOT tgisinternal ORDER BY 1;
DROP TABLE tracking_events;
-- The tracking triggers run as their owner: on a relation whose contact column is not of a
-- built-in integer type itself (a domain or a type whose casts or operators would run with the
-- owner's rights) they refuse to run.
CREATE DOMAIN tracking_contact AS bigint;
CREATE TABLE tracking_odd (contact_id tracking_contact);
CREATE TRIGGER odd_track AFTER INSERT ON tracking_odd REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION engagement._track_event_changes();
SELECT ref.sqlstate_of($$INSERT INTO tracking_odd VALUES (1)$$) AS odd_contact_type;
DROP TABLE tracking_odd;
DROP DOMAIN tracking_contact;
-- Attached without transition tables, new_events would name the caller's temporary view, read
-- with the owner's rights: the trigger refuses to run.
CREATE TABLE tracking_nott (contact_id bigint);
CREATE TRIGGER nott_track AFTER INSERT ON tracking_nott
    FOR EACH STATEMENT EXECUTE FUNCTION engagement._track_event_changes();
CREATE TEMP VIEW new_events AS SELECT 424242::bigint AS contact_id;
SELECT ref.sqlstate_of($$INSERT INTO tracking_nott VALUES (1)$$) AS no_transition_tables;
SELECT contact_id AS read_from_the_temp_view FROM engagement.event_changes WHERE contact_id = 424242;
DROP VIEW new_events;
DROP TABLE tracking_nott;

-- The tracking trigger writes the change log's rows straight into its table when an INSERT
-- would do nothing more; with an index, an audit trigger, a check or a partition's bound on the
-- table (one at a time here) it logs through an INSERT, which keeps the index, fires the
-- trigger and enforces the check and the bound.  Which way a row went shows in its command id:
-- the direct write has the triggering statement's (the event's cmin), the INSERT the next one.
CREATE TABLE tracking_audit (contact_id bigint);
CREATE FUNCTION tracking_audit_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_audit SELECT n.contact_id FROM new_rows n;
    RETURN NULL;
END $$;
CREATE FUNCTION tracking_log_way(contact bigint) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN c.cmin = e.cmin THEN 'written directly' ELSE 'by an INSERT' END
      FROM engagement.event_changes c JOIN engagement.engagement_events e ON e.contact_id = c.contact_id
     WHERE c.contact_id = contact $$;
CREATE FUNCTION tracking_log_event(contact bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
    VALUES (contact, 'opened', now() - interval '1 hour') $$;
BEGIN;
SELECT tracking_log_event(930001);
CREATE INDEX tracking_changes_idx ON engagement.event_changes (contact_id);
SELECT tracking_log_event(930002);
SET LOCAL enable_seqscan = off;   -- (through the index: the INSERT kept it)
SELECT contact_id AS found_by_the_index FROM engagement.event_changes WHERE contact_id = 930002;
RESET enable_seqscan;
DROP INDEX engagement.tracking_changes_idx;
SELECT tracking_log_event(930003);
CREATE TRIGGER tracking_changes_audit AFTER INSERT ON engagement.event_changes REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_audit_changes();
SELECT tracking_log_event(930004);
DROP TRIGGER tracking_changes_audit ON engagement.event_changes;
ALTER TABLE engagement.event_changes ADD CONSTRAINT tracking_changes_check CHECK (contact_id <> 930006);
SELECT tracking_log_event(930005);
SELECT ref.sqlstate_of($$SELECT tracking_log_event(930006)$$) AS check_kept;
ALTER TABLE engagement.event_changes DROP CONSTRAINT tracking_changes_check;
SELECT c AS contact, tracking_log_way(c) AS logged FROM generate_series(930001, 930005) c;
SELECT contact_id AS audited FROM tracking_audit;
-- A column added by hand and dropped again: written directly, each value in its column.
ALTER TABLE engagement.event_changes ADD COLUMN tracking_note text;
ALTER TABLE engagement.event_changes DROP COLUMN tracking_note;
SELECT tracking_log_event(930009);
SELECT contact_id, relation, tracking_log_way(contact_id) AS logged FROM engagement.event_changes WHERE contact_id = 930009;
-- (the log emptied, so that it fits the bound when attached)
DELETE FROM engagement.event_changes;
CREATE TABLE tracking_change_log (contact_id bigint NOT NULL, relation regclass NOT NULL) PARTITION BY RANGE (contact_id);
ALTER TABLE tracking_change_log ATTACH PARTITION engagement.event_changes FOR VALUES FROM (930007) TO (930008);
SELECT tracking_log_event(930007);
SELECT tracking_log_way(930007) AS logged_in_a_partition;
SELECT ref.sqlstate_of($$SELECT tracking_log_event(930008)$$) AS partition_bound_kept;
ROLLBACK;
DROP FUNCTION tracking_log_event(bigint), tracking_log_way(bigint), tracking_audit_changes();
DROP TABLE tracking_audit;

DELETE FROM engagement.engagement_events WHERE contact_id BETWEEN 7420000 AND 7424999;
DELETE FROM engagement.event_changes WHERE contact_id BETWEEN 7420000 AND 7424999;

-- A changed source is noticed: a view source replaced (a currency conversion added), a column of a
-- table source changing type.  Until the next refresh every score of the profiles reading it is
-- stale; that refresh rescores everyone (a full refresh); the stored scores then equal live ones.
BEGIN;
CREATE TABLE public.fx_orders (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                               amount numeric);
INSERT INTO public.fx_orders
SELECT 9400000 + c % 40, CASE WHEN c % 3 = 0 THEN 'converted' ELSE 'clicked' END::engagement.event_type,
       timestamptz '2026-05-01 00:00+00' + c * interval '7 hours', CASE WHEN c % 3 = 0 THEN 10 + c % 17 END
  FROM generate_series(1, 400) c;
CREATE VIEW public.fx_events AS
SELECT contact_id, event_type, occurred_at, amount AS conversion_value FROM public.fx_orders;
SELECT engagement.track_event_changes('public.fx_orders', for_source => engagement.define_event_source('public.fx_events'));
CREATE TABLE public.fx_ledger AS TABLE public.fx_orders;
SELECT engagement.define_event_source('public.fx_ledger', value_column => 'amount') IS NOT NULL AS table_source;
INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('fx_view', 'public.fx_events'),
                                                                        ('fx_table', 'public.fx_ledger');
SELECT engagement.refresh_scores('fx_view') AS view_first, engagement.refresh_scores('fx_table') AS table_first;
SELECT profile, count(*) FILTER (WHERE is_stale) AS stale FROM engagement.contact_scores
 WHERE profile LIKE 'fx%' GROUP BY 1 ORDER BY 1;
SELECT engagement.refresh_scores('fx_view') AS view_nothing_changed;
CREATE OR REPLACE VIEW public.fx_events AS
SELECT contact_id, event_type, occurred_at, amount * 1.1 AS conversion_value FROM public.fx_orders;
ALTER TABLE public.fx_ledger ALTER COLUMN amount TYPE float8;
SELECT profile, count(*) FILTER (WHERE is_stale) AS stale, count(*) AS scores FROM engagement.contact_scores
 WHERE profile LIKE 'fx%' GROUP BY 1 ORDER BY 1;
SELECT engagement.refresh_scores('fx_view') AS view_after_replace, engagement.refresh_scores('fx_table') AS table_after_alter;
SELECT profile, mode FROM engagement.refresh_runs WHERE profile LIKE 'fx%' ORDER BY id DESC LIMIT 2;
SELECT profile, count(*) FILTER (WHERE is_stale) AS stale FROM engagement.contact_scores
 WHERE profile LIKE 'fx%' GROUP BY 1 ORDER BY 1;
-- (the stored scores that differ from live ones, in any field: none)
SELECT s.profile, s.contact_id
  FROM engagement.engagement_scores s
 WHERE s.profile LIKE 'fx%'
   AND to_jsonb(ref.as_score(s)) - 'as_of'
       <> to_jsonb(engagement.engagement_score(s.contact_id, s.calculated_at, s.profile)) - 'as_of';
SELECT engagement.untrack_event_changes('public.fx_orders');
ROLLBACK;

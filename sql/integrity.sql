-- integrity: nothing lost, no plan that turns quadratic, no bad value that stops every refresh.
-- Each check returns the offending rows (none when all is well) or the SQLSTATE it expects.

-- 1. A contact whose events are still in the future stays pending through every kind of refresh,
--    and is rescored once they are due (1.2 dropped it at the next refresh).
INSERT INTO engagement.scoring_profiles (name) VALUES ('integrity_b');
SELECT engagement.refresh_scores('integrity_b') IS NOT NULL AS refreshed_b;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (910001, 'delivered', now() - interval '2 days');
SELECT engagement.refresh_scores() IS NOT NULL AS refreshed;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (910001, 'clicked', clock_timestamp() + interval '2 seconds');
-- default drains the change (integrity_b gets it as pending); then incremental, full, incremental
SELECT engagement.refresh_scores() IS NOT NULL AS incremental_1;
-- a profile created after the change was drained: its first (full) refresh keeps it pending too
INSERT INTO engagement.scoring_profiles (name) VALUES ('integrity_late');
SELECT engagement.refresh_scores('integrity_late') IS NOT NULL AS late_first;
SELECT engagement.refresh_scores() IS NOT NULL AS incremental_2;
SELECT engagement.refresh_scores('default', true) IS NOT NULL AS full_refresh;
SELECT engagement.refresh_scores() IS NOT NULL AS incremental_3;
SELECT engagement.refresh_scores('integrity_b') IS NOT NULL AS other_profile_1;
SELECT engagement.refresh_scores('integrity_b') IS NOT NULL AS other_profile_2;
-- still pending for both profiles, and so stale
SELECT p.name AS profile_not_pending
  FROM engagement.scoring_profiles p
 WHERE p.name IN ('default', 'integrity_b', 'integrity_late')
   AND NOT EXISTS (SELECT FROM engagement.pending_rescore pr WHERE pr.profile = p.name AND pr.contact_id = 910001)
 ORDER BY 1;
SELECT profile AS not_stale FROM engagement.contact_scores WHERE contact_id = 910001 AND NOT is_stale ORDER BY 1;
SELECT pg_sleep(greatest(0, extract(epoch FROM (SELECT max(occurred_at) FROM engagement.engagement_events
                                                  WHERE contact_id = 910001) - clock_timestamp()) + 0.1));
SELECT engagement.refresh_scores() IS NOT NULL AS due_default, engagement.refresh_scores('integrity_b') IS NOT NULL AS due_b,
       engagement.refresh_scores('integrity_late') IS NOT NULL AS due_late;
-- now scored with both events, and nothing pending
SELECT p.name AS profile, s.event_count AS stored_events, 2 AS live_events
  FROM engagement.scoring_profiles p
  LEFT JOIN engagement.engagement_scores s ON s.profile = p.name AND s.contact_id = 910001
 WHERE p.name IN ('default', 'integrity_b', 'integrity_late') AND s.event_count IS DISTINCT FROM 2 ORDER BY 1;
SELECT profile AS still_pending FROM engagement.pending_rescore
 WHERE contact_id = 910001 AND profile IN ('default', 'integrity_b', 'integrity_late') ORDER BY 1;

-- 2. A NaN conversion value passed the value check (NaN >= 0 holds for numeric) and then stopped
--    every refresh: it is refused.
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
                         VALUES (910002, 'converted', now() - interval '1 day', 'NaN')$$) AS nan_value;

-- 3. A new profile's first refreshes stay linear when the statistics of engagement_scores know
--    nothing of it (1.2 joined its scores by nested loops: 95 s for 56,000 contacts).
CREATE TABLE integrity_events (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                               conversion_value numeric);
INSERT INTO integrity_events
SELECT c, 'opened', timestamptz '2026-01-01 00:00+00' + (c % 97) * interval '1 hour', NULL
  FROM generate_series(1, 30000) c;
ANALYZE integrity_events;
ANALYZE engagement.engagement_scores;
INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('integrity_new', 'integrity_events');
SET statement_timeout = '15s';
SELECT engagement.refresh_scores('integrity_new') AS first_refresh;
SELECT engagement.refresh_scores('integrity_new', true) AS second_refresh;
RESET statement_timeout;

-- 4. Tracking a large UPDATE plans the join of its transition tables for that UPDATE, not with a
--    plan kept from a one-row UPDATE earlier in the session (1.2: 16 s for 20,000 rows).
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
SELECT 7420000 + c % 5000, 'opened', timestamptz '2026-01-01 00:00+00' - c * interval '1 minute'
  FROM generate_series(1, 25000) c;
UPDATE engagement.engagement_events SET occurred_at = occurred_at - interval '1 second'
 WHERE id = (SELECT min(id) FROM engagement.engagement_events WHERE contact_id BETWEEN 7420000 AND 7424999);
SET statement_timeout = '10s';
UPDATE engagement.engagement_events SET occurred_at = occurred_at - interval '1 second'
 WHERE contact_id BETWEEN 7420000 AND 7424999;
RESET statement_timeout;
SELECT count(DISTINCT contact_id) AS tracked_contacts FROM engagement.event_changes
 WHERE contact_id BETWEEN 7420000 AND 7424999;

-- 5. SQLSTATEs: a role that does not exist is 42704; track_event_changes run again replaces its
--    triggers (after attaching partitions, say).
SELECT ref.sqlstate_of($$SELECT engagement.grant_application_access(0::regrole)$$) AS app_no_role,
       ref.sqlstate_of($$SELECT engagement.grant_admin_access(0::regrole)$$) AS admin_no_role;
SELECT engagement.track_event_changes('integrity_events');
SELECT engagement.track_event_changes('integrity_events');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'integrity_events'::regclass AND NOT tgisinternal ORDER BY 1;
-- The tracking triggers run as their owner: on a relation whose contact column is not of a
-- built-in integer type itself (a domain or a type whose casts or operators would run with the
-- owner's rights) they refuse to run.
CREATE DOMAIN integrity_contact AS bigint;
CREATE TABLE integrity_odd (contact_id integrity_contact);
CREATE TRIGGER odd_track AFTER INSERT ON integrity_odd REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION engagement._track_event_changes();
SELECT ref.sqlstate_of($$INSERT INTO integrity_odd VALUES (1)$$) AS odd_contact_type;
DROP TABLE integrity_odd;
DROP DOMAIN integrity_contact;
-- Attached without transition tables, new_events would name the caller's temporary view, read
-- with the owner's rights: the trigger refuses to run.
CREATE TABLE integrity_nott (contact_id bigint);
CREATE TRIGGER nott_track AFTER INSERT ON integrity_nott
    FOR EACH STATEMENT EXECUTE FUNCTION engagement._track_event_changes();
CREATE TEMP VIEW new_events AS SELECT 424242::bigint AS contact_id;
SELECT ref.sqlstate_of($$INSERT INTO integrity_nott VALUES (1)$$) AS no_transition_tables;
SELECT contact_id AS read_from_the_temp_view FROM engagement.event_changes WHERE contact_id = 424242;
DROP VIEW new_events;
DROP TABLE integrity_nott;

-- 7. refresh_scores relies on each statement seeing what committed before it.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores()$$) AS repeatable_read;
ROLLBACK;

-- 6. A stored score edited by hand no longer matches the distribution: the next incremental refresh
--    rebuilds it from the stored scores (with a WARNING) instead of failing every time.
SELECT engagement.refresh_scores() IS NOT NULL AS refreshed;
UPDATE engagement.engagement_scores SET composite = composite / 2 + 0.125 WHERE profile = 'default' AND contact_id = 910001;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (910001, 'opened', now() - interval '1 hour');
SELECT engagement.refresh_scores() AS rescored_after_edit;
SELECT d.contacts AS distribution_contacts, count(*) AS stored_scores
  FROM engagement.score_distributions d JOIN engagement.engagement_scores s ON s.profile = d.profile
 WHERE d.profile = 'default'
 GROUP BY d.profile, d.contacts, d.sorted_composites
HAVING d.contacts <> count(*) OR d.sorted_composites <> engagement._pack_sorted(array_agg(s.composite));

-- 8. The tracking trigger writes the change log's rows straight into its table when an INSERT
--    would do nothing more; with an index, an audit trigger, a check or a partition's bound on the
--    table (one at a time here) it logs through an INSERT, which keeps the index, fires the
--    trigger and enforces the check and the bound.  Which way a row went shows in its command id:
--    the direct write has the triggering statement's (the event's cmin), the INSERT the next one.
CREATE TABLE integrity_audit (contact_id bigint);
CREATE FUNCTION integrity_audit_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO integrity_audit SELECT n.contact_id FROM new_rows n;
    RETURN NULL;
END $$;
CREATE FUNCTION integrity_log_way(contact bigint) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN c.cmin = e.cmin THEN 'written directly' ELSE 'by an INSERT' END
      FROM engagement.event_changes c JOIN engagement.engagement_events e ON e.contact_id = c.contact_id
     WHERE c.contact_id = contact $$;
CREATE FUNCTION integrity_log_event(contact bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
    VALUES (contact, 'opened', now() - interval '1 hour') $$;
BEGIN;
SELECT integrity_log_event(930001);
CREATE INDEX integrity_changes_idx ON engagement.event_changes (contact_id);
SELECT integrity_log_event(930002);
SET LOCAL enable_seqscan = off;   -- (through the index: the INSERT kept it)
SELECT contact_id AS found_by_the_index FROM engagement.event_changes WHERE contact_id = 930002;
RESET enable_seqscan;
DROP INDEX engagement.integrity_changes_idx;
SELECT integrity_log_event(930003);
CREATE TRIGGER integrity_changes_audit AFTER INSERT ON engagement.event_changes REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION integrity_audit_changes();
SELECT integrity_log_event(930004);
DROP TRIGGER integrity_changes_audit ON engagement.event_changes;
ALTER TABLE engagement.event_changes ADD CONSTRAINT integrity_changes_check CHECK (contact_id <> 930006);
SELECT integrity_log_event(930005);
SELECT ref.sqlstate_of($$SELECT integrity_log_event(930006)$$) AS check_kept;
ALTER TABLE engagement.event_changes DROP CONSTRAINT integrity_changes_check;
SELECT c AS contact, integrity_log_way(c) AS logged FROM generate_series(930001, 930005) c;
SELECT contact_id AS audited FROM integrity_audit;
-- A column added by hand and dropped again: written directly, each value in its column.
ALTER TABLE engagement.event_changes ADD COLUMN integrity_note text;
ALTER TABLE engagement.event_changes DROP COLUMN integrity_note;
SELECT integrity_log_event(930009);
SELECT contact_id, relation, integrity_log_way(contact_id) AS logged FROM engagement.event_changes WHERE contact_id = 930009;
-- (the log emptied, so that it fits the bound when attached)
DELETE FROM engagement.event_changes;
CREATE TABLE integrity_change_log (contact_id bigint NOT NULL, relation regclass NOT NULL) PARTITION BY RANGE (contact_id);
ALTER TABLE integrity_change_log ATTACH PARTITION engagement.event_changes FOR VALUES FROM (930007) TO (930008);
SELECT integrity_log_event(930007);
SELECT integrity_log_way(930007) AS logged_in_a_partition;
SELECT ref.sqlstate_of($$SELECT integrity_log_event(930008)$$) AS partition_bound_kept;
ROLLBACK;
DROP FUNCTION integrity_log_event(bigint), integrity_log_way(bigint), integrity_audit_changes();
DROP TABLE integrity_audit;

DELETE FROM engagement.engagement_events WHERE contact_id IN (910001, 910002) OR contact_id BETWEEN 7420000 AND 7424999;
DELETE FROM engagement.scoring_profiles WHERE name IN ('integrity_b', 'integrity_late', 'integrity_new');
DROP TABLE integrity_events;

#!/usr/bin/env bash
# An SMS CRM of a data engineer's own, scored through the extension end to end (issue 24, "Answers
# that fit SMS"): contacts, weekly campaigns, messages with Twilio's statuses (queued, sent,
# delivered, undelivered, failed, read), link clicks, orders in cents with refunds, inbound replies
# with free text (STOP, stop , UNSUBSCRIBE, START, YES) in tables of schema sms; one view sms.events
# over them as the source (kind map with queued and sent ignored on purpose, kinds matched trimmed
# and lower-cased, amounts from cents, the campaign column for the funnels); a profile sms with
# the funnel delivered > clicked > converted; the tables' changes tracked for the view.
# Checked: every count of refresh_runs against the CRM's own tables; every contact's stored and live
# score against the plain-SQL reference model (test/reference_model.sql) to 1e-9 relative; opt-out
# (STOP, START, both at one instant), undeliverable numbers and new contacts on chosen contacts;
# campaign funnels against plain SQL over the CRM's tables; a redefined view; erasure (by the CRM,
# and forget_contact); incremental refreshes.  Deterministic data (hashes, no random()) placed
# relative to an anchor an hour or two before the run; live scores are compared as of each stored
# score's calculated_at.  Runs against the cluster in PGHOST/PGPORT/PGUSER; TAP-style lines.
# ES_SMS_KEEP=1 keeps the database es_sms at the end (to look into a failure).
set -uo pipefail
DB=es_sms
q() { psql -qXAt -v ON_ERROR_STOP=1 -d $DB "$@"; }
# (the per-contact functions warn about the rows they skip, the refunds, at every contact)
quiet() { PGOPTIONS="-c client_min_messages=error" q "$@"; }
. "$(dirname "$0")/../tap.sh"

PGOPTIONS="-c client_min_messages=warning" psql -qXAt -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
q -c "CREATE EXTENSION engagement_scoring"
q -f "$(dirname "$0")/../reference_model.sql" >/dev/null

# ------------------------------------------------------------------------------------------------
# The CRM: its tables and its data, every time relative to the anchor t0 (the hour before the last
# full hour: every row is in the past when the refreshes score as of now()).
# ------------------------------------------------------------------------------------------------
q <<'SQL'
CREATE TABLE ref.sms_t0 AS SELECT date_trunc('hour', now()) - interval '1 hour' AS t0;
CREATE SCHEMA sms;
CREATE TABLE sms.contacts (id bigint PRIMARY KEY, phone text NOT NULL UNIQUE, created_at timestamptz NOT NULL);
CREATE TABLE sms.campaigns (id bigint PRIMARY KEY, name text NOT NULL, sent_at timestamptz NOT NULL);
-- one row per status callback of a message (Twilio: queued, sent, then delivered / undelivered /
-- failed, then read where the phone sends read receipts; accepted by a messaging service)
CREATE TABLE sms.messages (id bigserial PRIMARY KEY, sid text NOT NULL, campaign_id bigint, contact_id bigint NOT NULL,
                           status text NOT NULL, status_at timestamptz NOT NULL);
CREATE TABLE sms.clicks (id bigserial PRIMARY KEY, contact_id bigint NOT NULL, campaign_id bigint, url text NOT NULL,
                         clicked_at timestamptz NOT NULL);
-- amounts in cents; a refund is a row of negative amount
CREATE TABLE sms.orders (id bigserial PRIMARY KEY, contact_id bigint NOT NULL, campaign_id bigint,
                         amount_cents bigint NOT NULL, ordered_at timestamptz NOT NULL);
-- inbound SMS: contact_id NULL when the number is no contact's
CREATE TABLE sms.replies (id bigserial PRIMARY KEY, contact_id bigint, campaign_id bigint, from_number text NOT NULL,
                          body text NOT NULL, received_at timestamptz NOT NULL);
CREATE INDEX ON sms.messages (contact_id, status_at);
CREATE INDEX ON sms.messages (campaign_id);
CREATE INDEX ON sms.clicks (contact_id, clicked_at);
CREATE INDEX ON sms.orders (contact_id, ordered_at);
CREATE INDEX ON sms.replies (contact_id, received_at);

-- 1,000 contacts; 971..1000 joined in the last 24 days, the others 20 to 220 days ago
INSERT INTO sms.contacts
SELECT c, '+1555' || lpad(c::text, 7, '0'),
       t0 - make_interval(secs => floor(CASE WHEN c > 970 THEN 1 + 23 * ref.u01(c, 11) ELSE 20 + 200 * ref.u01(c, 11) END
                                         * 86400))
  FROM generate_series(1, 1000) c, ref.sms_t0;
-- 30 weekly campaigns, the last two days before t0; 131 is scheduled and has sent nothing yet
INSERT INTO sms.campaigns
SELECT 100 + k, 'week ' || k, t0 - interval '2 days' - (30 - k) * interval '7 days' FROM generate_series(1, 30) k, ref.sms_t0;
INSERT INTO sms.campaigns SELECT 131, 'spring sale (scheduled)', t0 + interval '5 days' FROM ref.sms_t0;

-- Each campaign goes to a share of the contacts that existed then (more of the active ones).  A
-- message: queued, then sent (99%; 1% stay queued), then delivered (89%), undelivered (4%), failed
-- (2%) or no receipt (4%); read receipts from 45% of the phones; 3% of the numbers are dead (every
-- message bounces).  (Every INSERT orders its rows: the ids, which some hashes read, are the same
-- at every run.)
-- Statuses as the CRM stored them: some upper-case, some padded, some capitalised (a legacy import).
-- Campaign 130's messages to every 37th contact have an 'accepted' callback too: a status the
-- kind map does not know.
INSERT INTO sms.messages (sid, campaign_id, contact_id, status, status_at)
SELECT 'SM' || md5(s.m::text), s.campaign_id, s.contact_id,
       CASE WHEN v.st = 'accepted' THEN v.st WHEN s.contact_id % 50 = 7 THEN upper(v.st)
            WHEN s.contact_id % 50 = 8 THEN ' ' || v.st || ' ' WHEN s.contact_id % 50 = 9 THEN initcap(v.st) ELSE v.st END,
       s.at + make_interval(secs => v.off)
  FROM (SELECT c.id AS contact_id, k.id AS campaign_id, c.id * 1000 + k.id AS m,
               k.sent_at + make_interval(secs => floor(ref.u01(c.id * 1000 + k.id, 21) * 7200)) AS at,
               ref.u01(c.id * 1000 + k.id, 22) AS u, ref.u01(c.id, 2) < 0.03 AS dead,
               ref.u01(c.id, 3) < 0.45 AND ref.u01(c.id * 1000 + k.id, 24) < 0.6 AS is_read
          FROM sms.contacts c JOIN sms.campaigns k ON k.sent_at >= c.created_at AND k.id <= 130
         WHERE ref.u01(c.id * 1000 + k.id, 20) < 0.15 + 0.4 * ref.u01(c.id, 1)) s,
       LATERAL (VALUES ('accepted', -1, s.campaign_id = 130 AND s.contact_id % 37 = 0),
                       ('queued', 0, true),
                       ('sent', 2, s.u >= 0.01),
                       (CASE WHEN s.dead AND s.u < 0.5 THEN 'failed' WHEN s.dead THEN 'undelivered'
                             WHEN s.u < 0.05 THEN 'undelivered' ELSE 'failed' END,
                        9, s.u >= 0.01 AND (s.dead OR s.u < 0.07)),
                       ('delivered', 9, s.u >= 0.11 AND NOT s.dead),
                       ('read', 60 + floor(ref.u01(s.m, 23) * 3600)::int, s.u >= 0.11 AND NOT s.dead AND s.is_read))
               v(st, off, keep)
 WHERE v.keep
 ORDER BY hashint8(s.m), s.m, v.off;

-- Clicks on delivered messages, and on messages without a receipt (the carrier did not report):
-- more from active contacts, a second click now and then.
INSERT INTO sms.clicks (contact_id, campaign_id, url, clicked_at)
SELECT m.contact_id, m.campaign_id, 'https://sho.rt/c' || m.campaign_id, m.at + make_interval(secs => 60 + floor(ref.u01(m.k + n, 31) * 20000))
  FROM (SELECT contact_id, campaign_id, contact_id * 1000 + campaign_id AS k, min(status_at) AS at
          FROM sms.messages GROUP BY contact_id, campaign_id
        HAVING bool_or(lower(btrim(status)) = 'delivered')
            OR (bool_or(lower(btrim(status)) = 'sent') AND NOT bool_or(lower(btrim(status)) IN ('failed', 'undelivered')))) m,
       generate_series(1, 2) n
 WHERE ref.u01(m.k, 30) < 0.04 + 0.3 * ref.u01(m.contact_id, 1) AND (n = 1 OR ref.u01(m.k, 32) < 0.25)
 ORDER BY m.k, n;
-- Orders after a click (some free, 0 cents), organic orders of the active contacts (no campaign),
-- then refunds of about one in eight orders (negative amounts, three days later).
INSERT INTO sms.orders (contact_id, campaign_id, amount_cents, ordered_at)
SELECT c.contact_id, c.campaign_id,
       CASE WHEN ref.u01(c.id, 41) < 0.04 THEN 0 ELSE 500 + floor(ref.u01(c.id, 42) * 24500)::bigint END,
       least(c.clicked_at + make_interval(secs => 120 + floor(ref.u01(c.id, 43) * 86400)), t0)
  FROM sms.clicks c, ref.sms_t0 WHERE ref.u01(c.id, 40) < 0.3 ORDER BY c.id;
INSERT INTO sms.orders (contact_id, campaign_id, amount_cents, ordered_at)
SELECT c.id, NULL, 1000 + floor(ref.u01(c.id * 10 + n, 46) * 9000)::bigint,
       c.created_at + (t0 - c.created_at) * ref.u01(c.id * 10 + n, 47)
  FROM sms.contacts c, ref.sms_t0, generate_series(1, 3) n
 WHERE ref.u01(c.id, 1) > 0.7 AND ref.u01(c.id * 10 + n, 45) < 0.5 ORDER BY c.id, n;
INSERT INTO sms.orders (contact_id, campaign_id, amount_cents, ordered_at)
SELECT o.contact_id, o.campaign_id, -o.amount_cents, least(o.ordered_at + interval '3 days', t0)
  FROM sms.orders o, ref.sms_t0 WHERE o.amount_cents > 0 AND ref.u01(o.id, 44) < 0.12 ORDER BY o.id;

-- Replies to delivered messages: YES (as typed), STOP and UNSUBSCRIBE (as typed), and a START a
-- week after some of the STOPs (in the STOP's thread, or, one in three, without a campaign).  Two
-- STOPs from numbers that are no contact's.
INSERT INTO sms.replies (contact_id, campaign_id, from_number, body, received_at)
SELECT r.contact_id, r.campaign_id, c.phone, r.body, least(r.at, t0)
  FROM (SELECT d.contact_id, CASE WHEN v.body IN ('START', 'start') AND d.k % 3 = 0 THEN NULL ELSE d.campaign_id END AS campaign_id,
               v.body, d.at + v.after AS at
          FROM (SELECT contact_id, campaign_id, contact_id * 1000 + campaign_id AS k,
                       max(status_at) FILTER (WHERE lower(btrim(status)) = 'delivered') AS at
                  FROM sms.messages GROUP BY contact_id, campaign_id) d,
               LATERAL (VALUES ((ARRAY['YES', 'yes', 'Yes ', ' YES'])[1 + d.k % 4], interval '7 minutes',
                                ref.u01(d.k, 50) < 0.02 + 0.06 * ref.u01(d.contact_id, 1)),
                               ((ARRAY['STOP', 'stop ', 'Stop', 'UNSUBSCRIBE', 'unsubscribe'])[1 + d.k % 5], interval '3 minutes',
                                ref.u01(d.k, 51) < 0.012),
                               ((ARRAY['START', 'start'])[1 + d.k % 2], interval '7 days',
                                ref.u01(d.k, 51) < 0.012 AND ref.u01(d.k, 52) < 0.4)) v(body, after, keep)
         WHERE d.at IS NOT NULL AND v.keep) r
  JOIN sms.contacts c ON c.id = r.contact_id, ref.sms_t0
 ORDER BY r.at, r.contact_id, r.body;
INSERT INTO sms.replies (contact_id, campaign_id, from_number, body, received_at)
SELECT NULL::bigint, NULL::bigint, '+15559990001', 'STOP', t0 - interval '3 days' FROM ref.sms_t0
UNION ALL SELECT NULL, NULL, '+15559990002', ' Stop', t0 - interval '40 days' FROM ref.sms_t0;

-- Chosen contacts (one-to-one messages, no campaign), times in days before t0:
--   9001 STOP, then START nine days later          9002 STOP and START at the same instant
--   9003 four messages, all bounced                9004 two messages, both bounced (as 9003's first two)
--   9005 delivered, read, clicked, ordered, then three bounces
--   9006 the same, then one more message delivered (reached again: deliverable)
--   9007 joined ten days ago: reads, clicks, orders, replies (a champion's components, a new contact)
INSERT INTO sms.contacts
SELECT c, '+1555900' || lpad(c::text, 4, '0'), t0 - interval '70 days' + CASE WHEN c = 9007 THEN interval '60 days' ELSE '0' END
  FROM generate_series(9001, 9007) c, ref.sms_t0;
INSERT INTO sms.messages (sid, campaign_id, contact_id, status, status_at)
SELECT 'SM9' || v.c || '_' || v.day, NULL, v.c, st.status, t0 - v.day * interval '1 day' + st.off * interval '1 second'
  FROM ref.sms_t0,
       (VALUES (9001, 20, 'delivered'), (9001, 5, 'delivered'), (9001, 5, 'read'), (9002, 20, 'delivered'),
               (9002, 18, 'read'), (9003, 40, 'failed'), (9003, 33, 'undelivered'), (9003, 26, 'failed'),
               (9003, 19, 'failed'), (9004, 40, 'failed'), (9004, 33, 'undelivered'),
               (9005, 60, 'delivered'), (9005, 60, 'read'), (9005, 30, 'failed'), (9005, 23, 'undelivered'),
               (9005, 16, 'failed'),
               (9006, 60, 'delivered'), (9006, 60, 'read'), (9006, 30, 'failed'), (9006, 23, 'undelivered'),
               (9006, 16, 'failed'), (9006, 9, 'delivered'),
               (9007, 9, 'delivered'), (9007, 9, 'read'), (9007, 2, 'delivered'), (9007, 2, 'read')) v(c, day, final),
       LATERAL (VALUES ('queued', 0, v.final <> 'read'), ('sent', 1, v.final <> 'read'),
                       (v.final, CASE WHEN v.final = 'read' THEN 600 ELSE 5 END, true)) st(status, off, keep)
 WHERE st.keep;
INSERT INTO sms.replies (contact_id, campaign_id, from_number, body, received_at)
SELECT v.c, NULL, '+1555900' || lpad(v.c::text, 4, '0'), v.body, t0 - v.at
  FROM ref.sms_t0,
       (VALUES (9001, 'STOP', interval '19 days'), (9001, 'START', interval '10 days'),
               (9002, 'STOP', interval '10 days'), (9002, 'START', interval '10 days'),
               (9007, 'YES', interval '9 days' - interval '1 hour')) v(c, body, at);
INSERT INTO sms.clicks (contact_id, campaign_id, url, clicked_at)
SELECT v.c, NULL, 'https://sho.rt/one', t0 - v.at
  FROM ref.sms_t0, (VALUES (9005, interval '59 days'), (9006, interval '59 days'), (9007, interval '9 days' - interval '2 hours'),
                           (9007, interval '2 days' - interval '1 hour')) v(c, at);
INSERT INTO sms.orders (contact_id, campaign_id, amount_cents, ordered_at)
SELECT v.c, NULL, v.cents, t0 - v.at
  FROM ref.sms_t0, (VALUES (9005, 4500, interval '59 days'), (9006, 4500, interval '59 days'),
                           (9007, 15000, interval '8 days'), (9007, 8000, interval '1 day')) v(c, cents, at);

-- The source: one view over the CRM's tables, amounts in currency units.
CREATE VIEW sms.events AS
SELECT m.contact_id, m.campaign_id, m.status AS kind, m.status_at AS occurred_at, NULL::numeric AS amount FROM sms.messages m
UNION ALL
SELECT c.contact_id, c.campaign_id, 'click', c.clicked_at, NULL FROM sms.clicks c
UNION ALL
SELECT o.contact_id, o.campaign_id, 'order', o.ordered_at, o.amount_cents / 100.0 FROM sms.orders o
UNION ALL
SELECT r.contact_id, r.campaign_id, r.body, r.received_at, NULL FROM sms.replies r;

-- The reference's input: the CRM's rows mapped by hand, in plain SQL, as the source's kind map
-- says (ref.sms_fx: the view's currency factor), without the rows the model cannot read.
CREATE TABLE ref.sms_fx AS SELECT 1.0 AS factor;
CREATE VIEW ref.sms_mapped AS
SELECT x.contact_id, x.campaign_id, x.event_type, x.occurred_at, x.conversion_value
  FROM (SELECT m.contact_id, m.campaign_id,
               CASE lower(btrim(m.status)) WHEN 'delivered' THEN 'delivered' WHEN 'read' THEN 'opened'
                    WHEN 'undelivered' THEN 'bounced' WHEN 'failed' THEN 'bounced' END AS event_type,
               m.status_at AS occurred_at, NULL::numeric AS conversion_value
          FROM sms.messages m
        UNION ALL
        SELECT c.contact_id, c.campaign_id, 'clicked', c.clicked_at, NULL FROM sms.clicks c
        UNION ALL
        SELECT o.contact_id, o.campaign_id, 'converted', o.ordered_at, o.amount_cents / 100.0 * fx.factor
          FROM sms.orders o, ref.sms_fx fx WHERE o.amount_cents >= 0
        UNION ALL
        SELECT r.contact_id, r.campaign_id,
               CASE lower(btrim(r.body)) WHEN 'stop' THEN 'opted_out' WHEN 'unsubscribe' THEN 'opted_out'
                    WHEN 'start' THEN 'opted_in' WHEN 'yes' THEN 'responded' END,
               r.received_at, NULL
          FROM sms.replies r) x
 WHERE x.event_type IS NOT NULL AND x.contact_id IS NOT NULL;
-- (a copy of them, taken by ref.sms_snapshot() before each comparison: the reference reads it much
-- faster than the view)
CREATE TABLE ref.sms_rows AS SELECT * FROM ref.sms_mapped WITH NO DATA;
CREATE FUNCTION ref.sms_snapshot() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE ref.sms_rows;
    INSERT INTO ref.sms_rows SELECT * FROM ref.sms_mapped;
    ANALYZE ref.sms_rows;
    RETURN (SELECT count(*) FROM ref.sms_rows);
END $$;
SQL
q -c "SELECT (SELECT count(*) FROM sms.messages) AS messages, (SELECT count(*) FROM sms.clicks) AS clicks,
             (SELECT count(*) FROM sms.orders) AS orders, (SELECT count(*) FROM sms.replies) AS replies,
             (SELECT count(*) FROM ref.sms_mapped) AS mapped, (SELECT count(DISTINCT contact_id) FROM ref.sms_mapped) AS contacts" | sed 's/^/# rows: /'

# Errors as data: SQLSTATE | message | hint of a statement (or ok).
q <<'SQL'
CREATE FUNCTION ref.error_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; hint text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN st || ' | ' || msg || ' | ' || hint;
END $$;
SQL

# ------------------------------------------------------------------------------------------------
# 1. The source, its change tracking, the profile.
# ------------------------------------------------------------------------------------------------
q -c "SELECT engagement.define_event_source('sms.events',
        '{\"queued\": null, \"sent\": null, \"delivered\": \"delivered\", \"read\": \"opened\", \"undelivered\": \"bounced\",
          \"failed\": \"bounced\", \"click\": \"clicked\", \"order\": \"converted\", \"stop\": \"opted_out\",
          \"unsubscribe\": \"opted_out\", \"start\": \"opted_in\", \"yes\": \"responded\"}',
        contact_column => 'contact_id', kind_column => 'kind', time_column => 'occurred_at', value_column => 'amount',
        kind_match => 'trim_lower', campaign_column => 'campaign_id')" >/dev/null
err=$(q -c "SELECT ref.error_of(\$\$SELECT engagement.track_event_changes('sms.clicks')\$\$)")
check "track_event_changes on a table under the view without for_source: 22023 with a HINT naming for_source ($err)" \
    '[[ "$err" == "22023 | "*" | "*"for_source => '"'sms.events'"'"* ]]'
q -c "SELECT engagement.track_event_changes(t, for_source => 'sms.events')
        FROM unnest('{sms.messages,sms.clicks,sms.orders,sms.replies}'::regclass[]) t" >/dev/null
feeds=$(q -c "SELECT array_agg(f::text ORDER BY f::text) FROM engagement.event_sources s, unnest(s.changes_from) f
               WHERE s.relation = 'sms.events'::regclass")
check "the four tables feed the view's source ($feeds)" '[ "$feeds" = "{sms.clicks,sms.messages,sms.orders,sms.replies}" ]'
q -c "INSERT INTO engagement.scoring_profiles (name, events_relation, funnel_stages)
      VALUES ('sms', 'sms.events', '{delivered,clicked,converted}')"

# ------------------------------------------------------------------------------------------------
# 2. The first refresh: every row accounted for, as the CRM's own tables count them.
# ------------------------------------------------------------------------------------------------
out=$(q -c "SELECT engagement.refresh_scores('sms')" 2>&1)
n=$(grep -x "[0-9]*" <<<"$out" | head -1)
# what the CRM's tables say: contacts with a scored row; unmapped kinds as stored; kinds ignored
# on purpose; refunds and replies from numbers that are no contact's
expected=$(q -F ' ' <<'SQL'
SELECT (SELECT count(DISTINCT contact_id) FROM ref.sms_mapped),
       (SELECT count(*) FROM sms.messages WHERE lower(btrim(status)) NOT IN ('queued', 'sent', 'delivered', 'read', 'undelivered', 'failed'))
     + (SELECT count(*) FROM sms.replies WHERE contact_id IS NOT NULL AND lower(btrim(body)) NOT IN ('stop', 'unsubscribe', 'start', 'yes')),
       (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM sms.messages
                WHERE lower(btrim(status)) NOT IN ('queued', 'sent', 'delivered', 'read', 'undelivered', 'failed') GROUP BY status) u),
       (SELECT count(*) FROM sms.messages WHERE lower(btrim(status)) IN ('queued', 'sent')),
       (SELECT jsonb_strip_nulls(jsonb_build_object('negative value', nullif((SELECT count(*) FROM sms.orders WHERE amount_cents < 0), 0),
                                  'no contact', nullif((SELECT count(*) FROM sms.replies WHERE contact_id IS NULL), 0))))
SQL
)
got=$(q -F ' ' -c "SELECT contacts_rescored, unmapped_rows, unmapped_kinds, ignored_rows, invalid_rows FROM engagement.refresh_runs
                    WHERE profile = 'sms' ORDER BY id DESC LIMIT 1")
mode=$(q -c "SELECT mode FROM engagement.refresh_runs WHERE profile = 'sms' ORDER BY id DESC LIMIT 1")
check "the first refresh is full and scores every contact with a scored row ($mode, $n)" \
    '[ "$mode" = full ] && [ "$n" = "$(cut -d" " -f1 <<<"$expected")" ]'
check "refresh_runs counts every row as the CRM's tables do: rescored, unmapped rows, unmapped kinds, ignored (queued, sent), invalid (got: $got; CRM: $expected)" \
    '[ "$got" = "$expected" ]'
check "the unmapped kind is accepted alone, refunds are negative values, never unmapped ($got)" \
    '[[ "$got" == *"{\"accepted\": "* ]] && [[ "$got" == *"\"negative value\": "* ]] && [[ "$got" != *"order"* ]]'
check "the refresh's WARNING names the unmapped kind and the negative values, not the ignored kinds" \
    '[[ "$out" == *"WARNING"*"kinds not mapped (accepted: "* ]] && [[ "$out" == *"negative value: "* ]] && [[ "$out" != *"queued"* ]]'

# ------------------------------------------------------------------------------------------------
# 3. Every contact's stored score and live score against the reference model, fed the CRM's rows
# mapped in plain SQL (ref.sms_mapped), as of the stored score's calculated_at: every field the
# reference computes (ref.reference_mismatches, 1e-9 relative), and conversion_total,
# first_event_at and last_engaged_at from the CRM's rows; live = stored in every field.
# ------------------------------------------------------------------------------------------------
q <<'SQL'
-- The live score of every contact the profile stored a score of, as of its calculated_at, taken
-- once per comparison by ref.sms_take_live.
CREATE TABLE ref.sms_live (contact_id bigint PRIMARY KEY, calculated_at timestamptz NOT NULL, sc engagement.score);
CREATE FUNCTION ref.sms_take_live(prof text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE ref.sms_live;
    INSERT INTO ref.sms_live
    SELECT s.contact_id, s.calculated_at, engagement.engagement_score(s.contact_id, s.calculated_at, prof)
      FROM engagement.engagement_scores s WHERE s.profile = prof;
    RETURN (SELECT count(*) FROM ref.sms_live);
END $$;
-- The fields of the profile's stored (which = 'stored') or live scores that differ from the
-- reference's: one row each, a contact missing on either side one row too.
CREATE FUNCTION ref.sms_mismatches(prof text, which text)
RETURNS TABLE (contact_id bigint, field text, got text, expected text) LANGUAGE sql AS $$
    WITH s AS (
        SELECT st.contact_id, st.calculated_at, ref.as_score(st) AS sc
          FROM engagement.engagement_scores st WHERE st.profile = prof AND which = 'stored'
        UNION ALL
        SELECT l.contact_id, l.calculated_at, l.sc FROM ref.sms_live l WHERE which = 'live'),
    r AS (
        SELECT t.at, r.contact_id, r.s
          FROM (SELECT DISTINCT s.calculated_at AS at FROM s) t, LATERAL ref.scores('ref.sms_rows', t.at, prof) r),
    crm AS (
        SELECT t.at, m.contact_id, sum(m.conversion_value) FILTER (WHERE m.event_type = 'converted') AS conversion_total,
               min(m.occurred_at) AS first_event_at,
               max(m.occurred_at) FILTER (WHERE m.event_type IN ('opened', 'clicked', 'responded', 'converted')) AS last_engaged_at
          FROM (SELECT DISTINCT s.calculated_at AS at FROM s) t JOIN ref.sms_rows m ON m.occurred_at <= t.at
         GROUP BY t.at, m.contact_id)
    SELECT coalesce(s.contact_id, r.contact_id), 'missing', (s.contact_id IS NOT NULL)::text, (r.contact_id IS NOT NULL)::text
      FROM s FULL JOIN r ON r.contact_id = s.contact_id AND r.at = s.calculated_at
     WHERE (s.contact_id IS NULL OR r.contact_id IS NULL)
        -- (the reference scores every contact at every time: those stored at another time are not missing)
       AND NOT (s.contact_id IS NULL AND EXISTS (SELECT FROM s s2 WHERE s2.contact_id = r.contact_id))
    UNION ALL
    SELECT s.contact_id, d.field, d.got, d.expected
      FROM s JOIN r ON r.contact_id = s.contact_id AND r.at = s.calculated_at, LATERAL ref.reference_mismatches(s.sc, r.s) d
    UNION ALL
    SELECT s.contact_id, f.field, f.got, f.expected
      FROM s JOIN crm c ON c.contact_id = s.contact_id AND c.at = s.calculated_at,
           LATERAL (VALUES ('conversion_total', (s.sc).conversion_total::text, coalesce(c.conversion_total, 0)::text,
                            (s.sc).conversion_total = coalesce(c.conversion_total, 0)),
                           ('first_event_at', (s.sc).first_event_at::text, c.first_event_at::text,
                            (s.sc).first_event_at = c.first_event_at),
                           ('last_engaged_at', (s.sc).last_engaged_at::text, c.last_engaged_at::text,
                            (s.sc).last_engaged_at IS NOT DISTINCT FROM c.last_engaged_at)) f(field, got, expected, same)
     WHERE f.same IS NOT TRUE
$$;
-- The fields of the profile's live scores (as of each stored score's calculated_at) that differ
-- from the stored ones (floats within 1e-9 relative, the others exactly).
CREATE FUNCTION ref.sms_live_vs_stored(prof text)
RETURNS TABLE (contact_id bigint, field text, got text, expected text) LANGUAGE sql AS $$
    SELECT coalesce(s.contact_id, l.contact_id), d.field, d.got, d.expected
      FROM (SELECT * FROM engagement.engagement_scores WHERE profile = prof) s FULL JOIN ref.sms_live l USING (contact_id),
           LATERAL ref.score_mismatches(l.sc, ref.as_score(s)) d
$$;
SQL
# compare STEP: stored vs reference, live vs reference, live vs stored, for profile sms
compare() {
    local n stored live lvs
    quiet -c "SELECT ref.sms_snapshot(), ref.sms_take_live('sms')" >/dev/null
    n=$(q -c "SELECT count(*) FROM engagement.engagement_scores WHERE profile = 'sms'")
    stored=$(quiet -c "SELECT count(*) FROM ref.sms_mismatches('sms', 'stored')")
    live=$(quiet -c "SELECT count(*) FROM ref.sms_mismatches('sms', 'live')")
    lvs=$(quiet -c "SELECT count(*) FROM ref.sms_live_vs_stored('sms')")
    check "$1: the $n stored scores equal the reference model's in every field ($stored differences)" '[ "$n" -gt 0 ] && [ "$stored" = 0 ]' \
        || quiet -c "SELECT * FROM ref.sms_mismatches('sms', 'stored') LIMIT 10" | sed 's/^/#   /'
    check "$1: the live scores as of calculated_at equal the reference model's ($live differences)" '[ "$live" = 0 ]' \
        || quiet -c "SELECT * FROM ref.sms_mismatches('sms', 'live') LIMIT 10" | sed 's/^/#   /'
    check "$1: live = stored for every contact, every field ($lvs differences)" '[ "$lvs" = 0 ]' \
        || quiet -c "SELECT * FROM ref.sms_live_vs_stored('sms') LIMIT 10" | sed 's/^/#   /'
}
compare "after the first refresh"

# ------------------------------------------------------------------------------------------------
# 4. SMS semantics on chosen contacts (stored scores of the first refresh).
# ------------------------------------------------------------------------------------------------
got=$(q -F ' ' -c "SELECT s.opted_out, s.segment, r.n FROM engagement.engagement_scores s,
                     LATERAL (SELECT string_agg(body, ',' ORDER BY received_at) AS n FROM sms.replies WHERE contact_id = 9001) r
                    WHERE s.profile = 'sms' AND s.contact_id = 9001")
check "9001 sent STOP and later START: not opted out ($got)" '[[ "$got" == "f "*" STOP,START" ]] && [[ "$got" != *" opted_out "* ]]'
got=$(q -F ' ' -c "SELECT s.opted_out, s.segment, r.n FROM engagement.engagement_scores s,
                     LATERAL (SELECT count(DISTINCT received_at) || ' instant, ' || string_agg(body, ',' ORDER BY body DESC) AS n
                                FROM sms.replies WHERE contact_id = 9002) r
                    WHERE s.profile = 'sms' AND s.contact_id = 9002")
check "9002 sent STOP and START at the same instant: opted out ($got)" '[ "$got" = "t opted_out 1 instant, STOP,START" ]'
# every contact whose latest STOP or UNSUBSCRIBE (as typed: 'stop ', 'Stop', ...) is not followed
# by a START is opted out, and no other
got=$(q -F ' ' <<'SQL'
WITH crm AS (
    SELECT contact_id,
           coalesce(max(received_at) FILTER (WHERE lower(btrim(body)) IN ('stop', 'unsubscribe'))
                      >= max(received_at) FILTER (WHERE lower(btrim(body)) = 'start'),
                    bool_or(lower(btrim(body)) IN ('stop', 'unsubscribe'))) AS opted
      FROM sms.replies WHERE contact_id IS NOT NULL GROUP BY contact_id)
SELECT count(*) FILTER (WHERE crm.opted), count(*) FILTER (WHERE s.opted_out),
       count(*) FILTER (WHERE s.opted_out IS DISTINCT FROM coalesce(crm.opted, false)),
       count(*) FILTER (WHERE crm.opted AND NOT EXISTS (SELECT FROM sms.replies r WHERE r.contact_id = s.contact_id AND r.body IN ('STOP', 'UNSUBSCRIBE')))
  FROM engagement.engagement_scores s LEFT JOIN crm USING (contact_id) WHERE s.profile = 'sms'
SQL
)
check "opted out: exactly the contacts whose last STOP/UNSUBSCRIBE (as typed) no START followed (CRM, stored, differing, only lower-case or padded: $got)" \
    'read -r crm stored differ padded <<<"$got"; [ "$crm" -gt 5 ] && [ "$stored" = "$crm" ] && [ "$differ" = 0 ] && [ "$padded" -gt 0 ]'

pen=$(q -c "SELECT undeliverable_penalty FROM engagement.scoring_profiles WHERE name = 'sms'")
# 9003 (four bounces) and 9004 (two): the same summary, no engagement; 9005 and 9006: the same
# components, but 9006 was reached again after its three bounces
pair() {   # pair A B: A's flags and segment, B's, and whether A's predictions are B's times (1 - penalty)
    q -F ' ' -v a="$1" -v b="$2" <<'SQL'
SELECT a.undeliverable, a.segment, b.undeliverable, b.segment,
       ROW(a.x, a.t_x, a.t_c, a.n_days, a.conv_days, a.birth_at) = ROW(b.x, b.t_x, b.t_c, b.n_days, b.conv_days, b.birth_at),
       ref.close(a.engagement_probability, b.engagement_probability * (1 - p.undeliverable_penalty))
       AND ref.close(a.conversion_probability, b.conversion_probability * (1 - p.undeliverable_penalty))
       AND ref.close(a.expected_engagements_30d, b.expected_engagements_30d * (1 - p.undeliverable_penalty))
       AND ref.close(a.expected_value_30d, b.expected_value_30d * (1 - p.undeliverable_penalty))
       AND ref.close(1 - a.churn_risk, (1 - b.churn_risk) * (1 - p.undeliverable_penalty))
       AND ref.close(a.expected_conversion_value, b.expected_conversion_value)
       AND a.engagement_probability < b.engagement_probability AND a.churn_risk > b.churn_risk,
       ROW(a.recency, a.frequency, a.monetary, a.time_decay, a.diversity) = ROW(b.recency, b.frequency, b.monetary, b.time_decay, b.diversity),
       ref.close(a.composite, b.composite * (1 - p.undeliverable_penalty)),
       round(a.engagement_probability::numeric, 5) || '/' || round(b.engagement_probability::numeric, 5)
  FROM engagement.engagement_scores a, engagement.engagement_scores b, engagement.scoring_profiles p
 WHERE a.profile = 'sms' AND b.profile = 'sms' AND p.name = 'sms' AND a.contact_id = :a AND b.contact_id = :b
SQL
}
got=$(pair 9003 9004)
check "9003, all four messages bounced, is undeliverable; 9004 (two bounces) is not; same summary, predictions lowered by the penalty $pen ($got)" \
    '[[ "$got" == "t undeliverable f "*" t t "* ]] && [[ "$got" != *" f undeliverable "* ]]'
got=$(pair 9005 9006)
check "9005, three bounces since its last delivery, is undeliverable; 9006, reached after them, is not; same components, composite and predictions lowered by $pen ($got)" \
    '[[ "$got" == "t undeliverable f "*" t t t t "* ]] && [[ "$got" != *" f undeliverable "* ]]'
# the dead numbers of the generated CRM: every message bounced (at least three), nothing else
got=$(q -F ' ' <<'SQL'
WITH dead AS (
    SELECT contact_id FROM sms.messages GROUP BY contact_id
    HAVING count(*) FILTER (WHERE lower(btrim(status)) IN ('failed', 'undelivered')) >= 3
       AND NOT bool_or(lower(btrim(status)) IN ('delivered', 'read'))
       AND NOT EXISTS (SELECT FROM sms.clicks c WHERE c.contact_id = messages.contact_id)
       AND NOT EXISTS (SELECT FROM sms.replies r WHERE r.contact_id = messages.contact_id)
       AND NOT EXISTS (SELECT FROM sms.orders o WHERE o.contact_id = messages.contact_id))
SELECT count(*), count(*) FILTER (WHERE s.undeliverable AND s.segment = 'undeliverable')
  FROM dead LEFT JOIN engagement.engagement_scores s ON s.contact_id = dead.contact_id AND s.profile = 'sms'
SQL
)
check "every number of the CRM whose messages all bounced (3 or more) is undeliverable, in that segment (numbers, undeliverable: $got)" \
    'read -r dead und <<<"$got"; [ "$dead" -gt 3 ] && [ "$und" = "$dead" ]'

# New contacts: first reached less than new_contact_days before the score's time.
got=$(q -F ' ' <<'SQL'
WITH first AS (SELECT contact_id, min(occurred_at) AS first_at FROM ref.sms_mapped GROUP BY contact_id),
s AS (
    SELECT s.*, f.first_at > s.calculated_at - p.new_contact_days * interval '1 day' AS is_new,
           least(5, 1 + floor(s.recency / 20)) AS rq,
           floor((least(5, 1 + floor(s.frequency / 20)) + least(5, 1 + floor(s.monetary / 20))) / 2.0 + 0.5) AS fmq
      FROM engagement.engagement_scores s JOIN first f USING (contact_id), engagement.scoring_profiles p
     WHERE s.profile = 'sms' AND p.name = 'sms')
SELECT count(*) FILTER (WHERE is_new AND NOT opted_out AND NOT undeliverable),
       count(*) FILTER (WHERE is_new AND segment = 'new'),
       count(*) FILTER (WHERE segment = 'new'),
       count(*) FILTER (WHERE is_new AND segment = 'champions'),
       count(*) FILTER (WHERE is_new AND rq >= 4 AND fmq >= 4),
       count(*) FILTER (WHERE segment = 'champions'),
       (SELECT segment || ',' || (rq >= 4 AND fmq >= 4) FROM s WHERE contact_id = 9007)
  FROM s
SQL
)
check "contacts first reached within new_contact_days are in segment new and none is a champion (new, in new, segment new, new champions, new with a champion's quintiles, champions, 9007: $got)" \
    'read -r nw innew segnew champ like champs c9007 <<<"$got"; [ "$nw" -gt 5 ] && [ "$innew" = "$nw" ] && [ "$segnew" = "$nw" ] &&
     [ "$champ" = 0 ] && [ "$like" -gt 0 ] && [ "$champs" -gt 0 ] && [ "$c9007" = "new,true" ]'

# ------------------------------------------------------------------------------------------------
# 5. Campaign funnels of the profile (delivered > clicked > converted, then opted_out, opted_in,
# bounced) against plain SQL over the CRM's rows: a (contact, campaign) pair reaches a stage when
# it has events of that stage and of every earlier one in [since, until); opted_out and opted_in
# count the pairs that reached the first stage, bounced every pair with a bounce.
# ------------------------------------------------------------------------------------------------
q <<'SQL'
CREATE FUNCTION ref.sms_funnel(stages text[], campaign bigint, since timestamptz, until timestamptz)
RETURNS TABLE (stage text, contacts bigint, events bigint, rate_from_previous float8, rate_from_delivered float8)
LANGUAGE sql AS $$
    WITH w AS (SELECT * FROM ref.sms_rows m
                WHERE m.campaign_id IS NOT NULL AND (campaign IS NULL OR m.campaign_id = campaign)
                  AND m.occurred_at >= since AND m.occurred_at < until),
    -- each pair with the types of its events and their numbers
    pairs AS (SELECT t.contact_id, t.campaign_id, array_agg(t.event_type) AS types, jsonb_object_agg(t.event_type, t.n) AS n
                FROM (SELECT w.contact_id, w.campaign_id, w.event_type, count(*) AS n FROM w GROUP BY 1, 2, 3) t
               GROUP BY 1, 2),
    all_stages AS (SELECT s.stage, s.ord::int, true AS in_chain FROM unnest(stages) WITH ORDINALITY s(stage, ord)
                   UNION ALL VALUES ('opted_out', cardinality(stages) + 1, false), ('opted_in', cardinality(stages) + 2, false),
                                    ('bounced', cardinality(stages) + 3, false)),
    reached AS (   -- (stage, pair) for each pair counted at the stage: it has the stage's events, and
                   -- those of every earlier stage of the chain (opted_out, opted_in: of the first)
        SELECT st.stage, p.contact_id, p.campaign_id, (p.n ->> st.stage)::bigint AS events
          FROM all_stages st, pairs p
         WHERE st.stage = ANY (p.types)
           AND CASE WHEN st.in_chain THEN stages[1:st.ord - 1] <@ p.types
                    WHEN st.stage = 'bounced' THEN true
                    ELSE stages[1] = ANY (p.types) END),
    counted AS (
        SELECT st.stage, st.ord, st.in_chain,
               (SELECT count(DISTINCT r.contact_id) FROM reached r WHERE r.stage = st.stage) AS contacts,
               (SELECT coalesce(sum(r.events), 0) FROM reached r WHERE r.stage = st.stage) AS events
          FROM all_stages st)
    SELECT c.stage, c.contacts, c.events,
           CASE WHEN c.in_chain AND c.ord > 1
                THEN c.contacts::float8 / nullif((SELECT d.contacts FROM counted d WHERE d.ord = c.ord - 1), 0) END,
           CASE WHEN c.stage <> 'bounced' THEN c.contacts::float8 / nullif((SELECT d.contacts FROM counted d WHERE d.ord = 1), 0) END
      FROM counted c ORDER BY c.ord
$$;
SQL
funnel_cases="(105, '-infinity', 'infinity'), (118, '-infinity', 'infinity'), (129, '-infinity', 'infinity'),
              (NULL, '-infinity', 'infinity'),
              (118, (SELECT sent_at + interval '1 hour' FROM sms.campaigns WHERE id = 118), (SELECT sent_at + interval '1 day' FROM sms.campaigns WHERE id = 118))"
q -c "SELECT ref.sms_snapshot()" >/dev/null
got=$(q -F ' ' <<SQL
WITH cases(campaign, since, until) AS (VALUES $funnel_cases),
f AS (SELECT c.*, f.* FROM cases c, LATERAL engagement.funnel(c.campaign, c.since::timestamptz, c.until::timestamptz, profile => 'sms') f),
r AS (SELECT c.*, r.* FROM cases c, LATERAL ref.sms_funnel('{delivered,clicked,converted}', c.campaign, c.since::timestamptz, c.until::timestamptz) r)
SELECT count(*),
       count(*) FILTER (WHERE f.stage IS NULL OR r.stage IS NULL OR f.contacts <> r.contacts OR f.events <> r.events
                        OR NOT ref.close(f.rate_from_previous, r.rate_from_previous)
                        OR NOT ref.close(f.rate_from_delivered, r.rate_from_delivered)),
       string_agg(f.contacts::text, ',' ORDER BY f.campaign NULLS LAST, f.until, f.stage) FILTER (WHERE f.stage = 'converted'),
       string_agg(r.stage || '=' || r.contacts, ',' ORDER BY r.stage) FILTER (WHERE r.campaign IS NULL)
  FROM f FULL JOIN r ON r.campaign IS NOT DISTINCT FROM f.campaign AND r.since = f.since AND r.until = f.until AND r.stage = f.stage
SQL
)
check "funnel(campaign, since, until, profile => 'sms') of campaigns 105, 118, 129, all, and 118 from its second hour to a day after equals plain SQL over the CRM's rows, every stage, events and rates (rows, differing, converted per case, all campaigns: $got)" \
    'read -r rows differ conv all <<<"$got"; [ "$rows" = 30 ] && [ "$differ" = 0 ] && [[ "$all" == *"opted_in="[1-9]* ]] && [[ "$all" == *"opted_out="[1-9]* ]] && [[ "$all" == *"bounced="[1-9]* ]] &&
     [[ ",$conv," != *",0,"* ]]' \
    || q <<SQL | sed 's/^/#   /'
WITH cases(campaign, since, until) AS (VALUES $funnel_cases)
SELECT c.campaign, c.since, f.*, r.* FROM cases c, LATERAL engagement.funnel(c.campaign, c.since::timestamptz, c.until::timestamptz, profile => 'sms') f
  FULL JOIN LATERAL ref.sms_funnel('{delivered,clicked,converted}', c.campaign, c.since::timestamptz, c.until::timestamptz) r ON r.stage = f.stage
SQL
# the per-stage counts, each on its own: distinct contacts and events of the stage's type in the campaign
got=$(q -F ' ' <<'SQL'
SELECT count(*), count(*) FILTER (WHERE (f.contacts, f.events) IS DISTINCT FROM (coalesce(r.contacts, 0), coalesce(r.events, 0))),
       string_agg(f.stage || '=' || f.contacts || '/' || f.events, ',' ORDER BY f.stage)
  FROM engagement.funnel_independent(118, profile => 'sms') f
  LEFT JOIN (SELECT event_type, count(DISTINCT contact_id) AS contacts, count(*) AS events FROM ref.sms_rows
              WHERE campaign_id = 118 GROUP BY event_type) r ON r.event_type = f.stage
SQL
)
check "funnel_independent(118, profile => 'sms'): each stage's distinct contacts and events as the CRM's rows of the campaign (stages, differing, counts: $got)" \
    'read -r rows differ counts <<<"$got"; [ "$rows" = 6 ] && [ "$differ" = 0 ] && [[ "$counts" == *"converted="[1-9]* ]]'
# the stages are the profile's: opened (read receipts) is no stage of it
stages=$(q -c "SELECT string_agg(stage, ',') FROM engagement.funnel(118, profile => 'sms')")
check "the funnel's stages are the profile's chain, then opted_out, opted_in, bounced ($stages)" \
    '[ "$stages" = "delivered,clicked,converted,opted_out,opted_in,bounced" ]'
out=$(q -F ' ' -c "SELECT sum(contacts), sum(events), count(*) FROM engagement.funnel(131, profile => 'sms')" 2>&1)
check "campaign 131, scheduled, without events: a funnel of zeros and a NOTICE saying so ($(tr '\n' ' ' <<<"$out"))" \
    '[[ "$out" == *"NOTICE:  campaign 131 has no events"* ]] && [[ "$out" == *"0 0 6" ]]'
# a profile whose source has no campaign column
q -c "CREATE VIEW sms.events_plain AS SELECT contact_id, kind, occurred_at, amount FROM sms.events" \
  -c "SELECT engagement.define_event_source('sms.events_plain', (SELECT jsonb_object_agg(kind, event_type) FROM engagement.event_kind_map
                                                                   WHERE relation = 'sms.events'::regclass),
                                            kind_column => 'kind', value_column => 'amount', kind_match => 'trim_lower')" \
  -c "INSERT INTO engagement.scoring_profiles (name, events_relation, funnel_stages) VALUES ('sms_plain', 'sms.events_plain', '{delivered,clicked,converted}')" >/dev/null
err=$(q -c "SELECT ref.error_of(\$\$SELECT * FROM engagement.funnel(118, profile => 'sms_plain')\$\$)")
check "the funnel of a profile whose source has no campaign column: 55000 ($err)" '[[ "$err" == "55000 | "*"no campaign column"* ]]'

# refresh_runs' last row of profile sms against the CRM's tables, for the contacts a condition on
# c (a contact id) selects: mode, rescored, unmapped rows and kinds, ignored rows, invalid rows
run_vs_crm() {   # run_vs_crm MODE RESCORED CONDITION
    local got expected
    got=$(q -F ' ' -c "SELECT mode, contacts_rescored, unmapped_rows, coalesce(unmapped_kinds, '{}'), ignored_rows,
                              coalesce(invalid_rows, '{}')
                         FROM engagement.refresh_runs WHERE profile = 'sms' ORDER BY id DESC LIMIT 1")
    expected=$(q -F ' ' <<SQL
SELECT '$1', $2,
       (SELECT count(*) FROM sms.messages m WHERE $(sed 's/\bc\b/m.contact_id/g' <<<"$3")
           AND lower(btrim(status)) NOT IN ('queued', 'sent', 'delivered', 'read', 'undelivered', 'failed')),
       (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (
            SELECT status, count(*) AS n FROM sms.messages m WHERE $(sed 's/\bc\b/m.contact_id/g' <<<"$3")
               AND lower(btrim(status)) NOT IN ('queued', 'sent', 'delivered', 'read', 'undelivered', 'failed') GROUP BY status) u),
       (SELECT count(*) FROM sms.messages m WHERE $(sed 's/\bc\b/m.contact_id/g' <<<"$3") AND lower(btrim(status)) IN ('queued', 'sent')),
       jsonb_strip_nulls(jsonb_build_object(
           'negative value', nullif((SELECT count(*) FROM sms.orders o WHERE $(sed 's/\bc\b/o.contact_id/g' <<<"$3") AND amount_cents < 0), 0),
           -- (rows without a contact: counted by a full refresh)
           'no contact', CASE WHEN '$1' = 'full' THEN nullif((SELECT count(*) FROM sms.replies WHERE contact_id IS NULL), 0) END))
SQL
)
    echo "$got|$expected"
}

# ------------------------------------------------------------------------------------------------
# 6. Incremental: new messages (a flash sale) for five contacts, written into the tracked tables.
# ------------------------------------------------------------------------------------------------
five=$(q -c "SELECT string_agg(contact_id::text, ',' ORDER BY contact_id) FROM (
               SELECT contact_id FROM engagement.engagement_scores WHERE profile = 'sms' AND contact_id <= 1000
                ORDER BY hashint8(contact_id * 7) LIMIT 5) f")
stale_before=$(q -c "SELECT count(*) FILTER (WHERE is_stale) FROM engagement.contact_scores WHERE profile = 'sms'")
q <<SQL
INSERT INTO sms.campaigns SELECT 132, 'flash sale', t0 + interval '30 minutes' FROM ref.sms_t0;
INSERT INTO sms.messages (sid, campaign_id, contact_id, status, status_at)
SELECT 'SMflash' || c, 132, c, st, t0 + interval '30 minutes' + off * interval '1 second'
  FROM ref.sms_t0, unnest('{$five}'::bigint[]) c,
       (VALUES ('queued', 0), ('sent', 1), ('Delivered', 6), ('read', 300)) v(st, off);
INSERT INTO sms.clicks (contact_id, campaign_id, url, clicked_at)
SELECT c, 132, 'https://sho.rt/flash', t0 + interval '40 minutes' FROM ref.sms_t0, unnest(('{$five}'::bigint[])[1:2]) c;
INSERT INTO sms.orders (contact_id, campaign_id, amount_cents, ordered_at)
SELECT c, 132, 12999, t0 + interval '45 minutes' FROM ref.sms_t0, unnest(('{$five}'::bigint[])[1:1]) c;
SQL
stale=$(q -c "SELECT string_agg(contact_id::text, ',' ORDER BY contact_id) FROM engagement.contact_scores WHERE profile = 'sms' AND is_stale")
check "before the insert no score is stale ($stale_before); after it exactly the five contacts' ($stale; $five)" \
    '[ "$stale_before" = 0 ] && [ "$stale" = "$five" ]'
n=$(quiet -c "SELECT engagement.refresh_scores('sms')")
rescored=$(q -c "SELECT string_agg(contact_id::text, ',' ORDER BY contact_id) FROM engagement.engagement_scores
                  WHERE profile = 'sms' AND calculated_at = (SELECT max(calculated_at) FROM engagement.engagement_scores WHERE profile = 'sms')")
check "the incremental refresh rescores exactly the five contacts ($n: $rescored)" '[ "$n" = 5 ] && [ "$rescored" = "$five" ]'
got=$(run_vs_crm incremental 5 "c IN ($five)")
check "refresh_runs of the incremental refresh counts the five contacts' rows as the CRM's tables do (got|CRM: $got)" \
    '[ "${got%%|*}" = "${got#*|}" ]'
compare "after the incremental refresh"

# ------------------------------------------------------------------------------------------------
# 7. The view redefined (amounts converted to another currency): every score of the profile is
# stale, the next refresh rescores everyone (full), and the scores follow the new view.
# ------------------------------------------------------------------------------------------------
q -c "CREATE OR REPLACE VIEW sms.events AS
      SELECT m.contact_id, m.campaign_id, m.status AS kind, m.status_at AS occurred_at, NULL::numeric AS amount FROM sms.messages m
      UNION ALL
      SELECT c.contact_id, c.campaign_id, 'click', c.clicked_at, NULL FROM sms.clicks c
      UNION ALL
      SELECT o.contact_id, o.campaign_id, 'order', o.ordered_at, o.amount_cents / 100.0 * 0.92 FROM sms.orders o
      UNION ALL
      SELECT r.contact_id, r.campaign_id, r.body, r.received_at, NULL FROM sms.replies r" \
  -c "UPDATE ref.sms_fx SET factor = 0.92"
stale=$(q -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE is_stale) FROM engagement.contact_scores WHERE profile = 'sms'")
check "after CREATE OR REPLACE VIEW every stored score of the profile is stale (scores, stale: $stale)" \
    'read -r all st <<<"$stale"; [ "$all" -gt 900 ] && [ "$st" = "$all" ]'
total_before=$(q -c "SELECT sum(conversion_total) FROM engagement.engagement_scores WHERE profile = 'sms'")
n=$(quiet -c "SELECT engagement.refresh_scores('sms')")
got=$(run_vs_crm full "$(q -c "SELECT count(DISTINCT contact_id) FROM ref.sms_mapped")" "c IS NOT NULL")
check "the next (incremental) refresh is full and rescores every contact ($n), counting rows as the CRM's tables do (got|CRM: $got)" \
    '[ "${got%%|*}" = "${got#*|}" ] && [[ "$got" == "full $n "* ]]'
got=$(q -F ' ' -c "SELECT count(*) FILTER (WHERE is_stale), sum(conversion_total), sum(conversion_total) = $total_before * 0.92
                    FROM engagement.contact_scores WHERE profile = 'sms'")
check "after it no score is stale and the conversion totals are in the new currency (stale, total, = 0.92 x the old total $total_before: $got)" \
    'read -r st total same <<<"$got"; [ "$st" = 0 ] && [ "$same" = t ]'
compare "after the view's redefinition"

# ------------------------------------------------------------------------------------------------
# 8. Erasure by the CRM: a contact's rows deleted from its tables; the next refresh removes its
# score and its history.
# ------------------------------------------------------------------------------------------------
x=$(q -c "SELECT contact_id FROM engagement.engagement_score_history WHERE profile = 'sms' AND contact_id <= 1000
           GROUP BY contact_id ORDER BY count(*) DESC, contact_id LIMIT 1")
held() {   # held CONTACT: its scores, history rows, rows of engagement_events, pending rows, change-log rows
    q -F ' ' -v c="$1" <<'SQL'
SELECT (SELECT count(*) FROM engagement.engagement_scores WHERE contact_id = :c),
       (SELECT count(*) FROM engagement.engagement_score_history WHERE contact_id = :c),
       (SELECT count(*) FROM engagement.engagement_events WHERE contact_id = :c),
       (SELECT count(*) FROM engagement.pending_rescore WHERE contact_id = :c),
       (SELECT count(*) FROM engagement.event_changes WHERE contact_id = :c)
SQL
}
before=$(held "$x")
scores_before=$(q -c "SELECT count(*) FROM engagement.engagement_scores WHERE profile = 'sms'")
q -v c="$x" <<'SQL'
DELETE FROM sms.messages WHERE contact_id = :c;
DELETE FROM sms.clicks WHERE contact_id = :c;
DELETE FROM sms.orders WHERE contact_id = :c;
DELETE FROM sms.replies WHERE contact_id = :c;
DELETE FROM sms.contacts WHERE id = :c;
SQL
n=$(quiet -c "SELECT engagement.refresh_scores('sms')")
after=$(held "$x")
others=$(q -F ' ' -c "SELECT count(*), (SELECT contacts FROM engagement.score_distributions WHERE profile = 'sms')
                       FROM engagement.engagement_scores WHERE profile = 'sms'")
check "contact $x deleted from the CRM's tables: the next refresh ($n rescored) removes its score and history (scores history events pending changes: $before -> $after), and only those (scores, in the distribution: $others; were $scores_before)" \
    '[[ "$before" == "1 "[1-9]*" 0 0 0" ]] && [ "$after" = "0 0 0 0 0" ] && [ "$n" = 0 ] && [ "$others" = "$((scores_before - 1)) $((scores_before - 1))" ]'
got=$(run_vs_crm incremental 0 "c = $x")
check "... recorded as an incremental refresh that rescored no one and skipped none of the contact's rows, it has none (got|CRM: $got)" \
    '[ "${got%%|*}" = "${got#*|}" ] && [ "${got%%|*}" = "incremental 0 0 {} 0 {}" ]'

# ------------------------------------------------------------------------------------------------
# 9. forget_contact: a contact with rows in the CRM's tables and in engagement.engagement_events,
# scored by both profiles; the CRM deletes its own rows, a refresh of the default profile leaves
# it pending for sms; forget_contact removes everything the extension holds, table by table.
# ------------------------------------------------------------------------------------------------
y=$(q -c "SELECT contact_id FROM engagement.engagement_scores WHERE profile = 'sms' AND contact_id <= 1000 AND contact_id <> $x
           AND conversion_total > 0 ORDER BY hashint8(contact_id * 11) LIMIT 1")
q -v c="$y" <<'SQL' >/dev/null
INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value)
SELECT :c, 77, v.t::engagement.event_type, t0 - v.d * interval '1 day', v.val
  FROM ref.sms_t0, (VALUES ('delivered', 12, NULL), ('opened', 12, NULL), ('clicked', 11, NULL), ('converted', 11, 25.50),
                           ('delivered', 3, NULL), ('opened', 3, NULL)) v(t, d, val);
SELECT engagement.refresh_scores('default');
DELETE FROM sms.messages WHERE contact_id = :c;
DELETE FROM sms.clicks WHERE contact_id = :c;
DELETE FROM sms.orders WHERE contact_id = :c;
DELETE FROM sms.replies WHERE contact_id = :c;
DELETE FROM sms.contacts WHERE id = :c;
SELECT engagement.refresh_scores('default');
SQL
before=$(held "$y")
profiles=$(q -c "SELECT string_agg(profile, ',' ORDER BY profile) FROM engagement.engagement_scores WHERE contact_id = $y")
dist_before=$(q -c "SELECT string_agg(profile || '=' || contacts, ',' ORDER BY profile) FROM engagement.score_distributions")
forgot=$(q -F ' ' -c "SELECT string_agg(\"table\" || '=' || rows, ' ' ORDER BY ordinality) FROM engagement.forget_contact($y) WITH ORDINALITY")
after=$(held "$y")
read -r s_ h_ e_ p_ c_ <<<"$before"
check "forget_contact($y), scored in $profiles, reports every table it held the contact in with the rows held ($forgot; held: $before, the change log's row the one its deletion of the events logged)" \
    '[ "$forgot" = "engagement_scores=$s_ engagement_score_history=$h_ engagement_events=$e_ pending_rescore=$p_ event_changes=$((c_ + 1))" ] &&
     [ "$profiles" = "default,sms" ] && [ "$h_" -ge 2 ] && [ "$e_" = 6 ] && [ "$p_" = 1 ]'
check "... and nothing is left of it in any of those tables ($after)" '[ "$after" = "0 0 0 0 0" ]'
n=$(quiet -c "SELECT engagement.refresh_scores('sms') || ' ' || engagement.refresh_scores('default')")
after=$(held "$y")
dist=$(q -c "SELECT string_agg(d.profile || '=' || d.contacts, ',' ORDER BY d.profile) FROM engagement.score_distributions d")
dist_expected=$(q -c "SELECT string_agg(d.profile || '=' || ((SELECT count(*) FROM engagement.engagement_scores s WHERE s.profile = d.profile)
                                                             + CASE WHEN d.profile IN ('default', 'sms') THEN 1 ELSE 0 END), ',' ORDER BY d.profile)
                       FROM engagement.score_distributions d")
check "the refreshes after it ($n) do not bring it back ($after), and each distribution lost its score, as the stored scores (distributions: $dist, before: $dist_before)" \
    '[ "$after" = "0 0 0 0 0" ] && [ "$n" = "0 0" ] && [ "$dist_expected" = "$dist_before" ] &&
     [ "$dist" = "$(q -c "SELECT string_agg(profile || '"'='"' || n, '"','"' ORDER BY profile) FROM (SELECT d.profile, count(s.contact_id) AS n
                             FROM engagement.score_distributions d LEFT JOIN engagement.engagement_scores s USING (profile) GROUP BY 1) t")" ]'
compare "at the end"

[ -n "${ES_SMS_KEEP:-}" ] || psql -qXAt -d postgres -c "DROP DATABASE $DB"

-- setup: the extension, the independent SQL reference model, and a generated data set.
CREATE EXTENSION engagement_scoring;
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'engagement_scoring';
\set ECHO none
\i test/reference_model.sql
\set ECHO all

-- About 3,000 contacts over two years before 2026-06-01 12:00 UTC, all eight event types,
-- conversions with values (some NULL), opt-outs, bounces, a few future events; rows in scattered
-- order.  A regular table, so that parallel plans can use it.
CREATE TABLE ref.crm_events AS
WITH c AS (
    SELECT c AS contact_id, ref.u01(c, 1) AS activity
      FROM generate_series(1, 3000) c),
e AS (
    SELECT c.contact_id, i, ref.u01(c.contact_id * 1000 + i, 3) AS u_type,
           ref.u01(c.contact_id * 1000 + i, 4) AS u_time, ref.u01(c.contact_id * 1000 + i, 5) AS u_value
      FROM c, generate_series(1, 1 + floor(c.activity * c.activity * 60)::int) i)
SELECT e.contact_id,
       (CASE WHEN e.u_type < 0.40 THEN 'delivered' WHEN e.u_type < 0.65 THEN 'opened'
             WHEN e.u_type < 0.80 THEN 'clicked' WHEN e.u_type < 0.88 THEN 'responded'
             WHEN e.u_type < 0.95 THEN 'converted' WHEN e.u_type < 0.995 THEN 'bounced'
             WHEN e.u_type < 0.998 THEN 'opted_out' ELSE 'opted_in' END)::engagement.event_type AS event_type,
       -- ages skewed towards recent, in whole seconds; 1% in the future (ignored by the model)
       timestamptz '2026-06-01 12:00:00+00'
         + CASE WHEN e.u_time > 0.99 THEN make_interval(secs => floor((e.u_time - 0.99) * 300 * 86400))
                ELSE -make_interval(secs => floor(power(e.u_time / 0.99, 2.5) * 730 * 86400)) END AS occurred_at,
       e.u_value
  FROM e
 ORDER BY hashint8(e.contact_id * 1000 + e.i);
ALTER TABLE ref.crm_events ADD conversion_value numeric(14,2);
UPDATE ref.crm_events SET conversion_value = round((exp(u_value * 7) - 1)::numeric, 2)
 WHERE event_type = 'converted' AND u_value > 0.1;
ALTER TABLE ref.crm_events DROP u_value;
VACUUM ANALYZE ref.crm_events;
SELECT count(DISTINCT contact_id) AS contacts, count(*) > 30000 AS many_events,
       count(DISTINCT event_type) AS event_types,
       count(*) FILTER (WHERE occurred_at > '2026-06-01 12:00:00+00') > 0 AS some_future,
       count(*) FILTER (WHERE conversion_value IS NULL AND event_type = 'converted') > 0 AS some_null_values
  FROM ref.crm_events;

-- The same events in the extension's table, for engagement_score().
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT contact_id, event_type, occurred_at, conversion_value FROM ref.crm_events;
ANALYZE engagement.engagement_events;

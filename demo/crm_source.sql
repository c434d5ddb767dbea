-- demo/crm_source.sql
--
-- The same CRM as its own tables would hold it, scored through a source (define_event_source)
-- rather than engagement_events: Twilio-like message statuses, link clicks, orders in cents with
-- refunds, inbound texts as typed (STOP, "stop ", UNSUBSCRIBE, START, YES).  Written from the
-- demo's engagement_events rows, so both profiles see the same behaviour:
--
--   psql -v as_of="'2026-11-24 00:00:00+00'" -f demo/crm_source.sql
--
-- Then a profile "sms" reads the view crm.engagement with its own kinds map (queued and sent
-- ignored on purpose) and an SMS funnel (delivered -> clicked -> converted: most phones never send
-- a read receipt).

\set ON_ERROR_STOP on
\set QUIET on
\if :{?as_of} \else \set as_of '''2026-11-24 00:00:00+00''' \endif

BEGIN;
SET LOCAL client_min_messages = warning;
CREATE SCHEMA crm;

-- Every message's status changes: queued and sent before the carrier's answer (delivered,
-- undelivered or failed), read when the phone sends a receipt.
CREATE TABLE crm.messages (id bigserial PRIMARY KEY, contact_id bigint NOT NULL, campaign_id bigint,
                           status text NOT NULL, status_at timestamptz NOT NULL);
INSERT INTO crm.messages (contact_id, campaign_id, status, status_at)
SELECT e.contact_id, e.campaign_id, s.status, e.occurred_at - s.before
  FROM engagement.engagement_events e
 CROSS JOIN LATERAL (VALUES ('queued', interval '40 seconds'), ('sent', interval '20 seconds'),
                            (CASE WHEN e.event_type = 'delivered' THEN 'delivered'
                                  WHEN e.metadata ->> 'reason' = 'invalid_number' THEN 'failed'
                                  ELSE 'undelivered' END, interval '0')) s(status, before)
 WHERE e.event_type IN ('delivered', 'bounced')
UNION ALL
SELECT contact_id, campaign_id, 'read', occurred_at FROM engagement.engagement_events WHERE event_type = 'opened'
 ORDER BY 4, 1;
CREATE INDEX ON crm.messages (contact_id, status_at);

CREATE TABLE crm.link_clicks (id bigserial PRIMARY KEY, contact_id bigint NOT NULL, campaign_id bigint,
                              clicked_at timestamptz NOT NULL);
INSERT INTO crm.link_clicks (contact_id, campaign_id, clicked_at)
SELECT contact_id, campaign_id, occurred_at FROM engagement.engagement_events WHERE event_type = 'clicked'
 ORDER BY occurred_at, contact_id;
CREATE INDEX ON crm.link_clicks (contact_id, clicked_at);

-- Orders in cents; one in 40 refunded 2 to 10 days later (a negative amount).
CREATE TABLE crm.orders (id bigserial PRIMARY KEY, contact_id bigint NOT NULL, campaign_id bigint,
                         ordered_at timestamptz NOT NULL, amount_cents bigint);
INSERT INTO crm.orders (contact_id, campaign_id, ordered_at, amount_cents)
SELECT contact_id, campaign_id, occurred_at, (conversion_value * 100)::bigint
  FROM engagement.engagement_events WHERE event_type = 'converted'
 ORDER BY occurred_at, contact_id;
INSERT INTO crm.orders (contact_id, campaign_id, ordered_at, amount_cents)
SELECT contact_id, campaign_id, ordered_at + (2 + id % 9) * interval '1 day', -amount_cents
  FROM crm.orders
 WHERE id % 40 = 7 AND amount_cents IS NOT NULL AND ordered_at + (2 + id % 9) * interval '1 day' <= (:as_of)::timestamptz;
CREATE INDEX ON crm.orders (contact_id, ordered_at);

-- Inbound texts as people type them.
CREATE TABLE crm.inbound (id bigserial PRIMARY KEY, contact_id bigint NOT NULL, campaign_id bigint,
                          received_at timestamptz NOT NULL, body text NOT NULL);
INSERT INTO crm.inbound (contact_id, campaign_id, received_at, body)
SELECT contact_id, campaign_id, occurred_at,
       CASE event_type
            WHEN 'responded' THEN (ARRAY['YES', 'yes', 'Yes '])[1 + id % 3]
            WHEN 'opted_out' THEN (ARRAY['STOP', 'stop ', 'UNSUBSCRIBE', 'Stop'])[1 + id % 4]
            ELSE 'START' END
  FROM engagement.engagement_events WHERE event_type IN ('responded', 'opted_out', 'opted_in')
 ORDER BY occurred_at, contact_id;
CREATE INDEX ON crm.inbound (contact_id, received_at);

-- One relation of every engagement, as the scoring reads it: the kind, the time, the value in
-- dollars, the campaign.
CREATE VIEW crm.engagement AS
SELECT contact_id, campaign_id, status AS kind, status_at AS at, NULL::numeric AS amount FROM crm.messages
UNION ALL
SELECT contact_id, campaign_id, 'click', clicked_at, NULL FROM crm.link_clicks
UNION ALL
SELECT contact_id, campaign_id, 'order', ordered_at, amount_cents / 100.0 FROM crm.orders
UNION ALL
SELECT contact_id, campaign_id, body, received_at, NULL FROM crm.inbound;
ANALYZE crm.messages, crm.link_clicks, crm.orders, crm.inbound;

SELECT engagement.define_event_source('crm.engagement',
           '{"queued": null, "sent": null, "delivered": "delivered", "undelivered": "bounced", "failed": "bounced",
             "read": "opened", "click": "clicked", "order": "converted", "yes": "responded",
             "stop": "opted_out", "unsubscribe": "opted_out", "start": "opted_in"}',
           kind_column => 'kind', time_column => 'at', value_column => 'amount', kind_match => 'trim_lower',
           campaign_column => 'campaign_id');
-- Changes to the tables under the view make its contacts' scores stale.
SELECT engagement.track_event_changes(t, for_source => 'crm.engagement')
  FROM unnest('{crm.messages,crm.link_clicks,crm.orders,crm.inbound}'::regclass[]) t;

-- The profile: the default one's fitted models, this source, an SMS funnel.
INSERT INTO engagement.scoring_profiles (name, description, events_relation, funnel_stages,
                                         model_r, model_alpha, model_a, model_b, gg_p, gg_q, gg_v)
SELECT 'sms', 'The CRM''s own tables (crm.engagement)', 'crm.engagement', '{delivered,clicked,converted}',
       model_r, model_alpha, model_a, model_b, gg_p, gg_q, gg_v
  FROM engagement.scoring_profiles WHERE name = 'default';
COMMIT;

SELECT 'crm.messages' AS crm_table, count(*) AS rows, string_agg(DISTINCT status, ', ') AS kinds FROM crm.messages
UNION ALL SELECT 'crm.link_clicks', count(*), NULL FROM crm.link_clicks
UNION ALL SELECT 'crm.orders', count(*), count(*) FILTER (WHERE amount_cents < 0) || ' refunds' FROM crm.orders
UNION ALL SELECT 'crm.inbound', count(*), string_agg(DISTINCT quote_literal(body), ', ') FROM crm.inbound;

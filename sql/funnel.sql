-- funnel and contact_events on hand-counted fixtures (campaign 424242, contacts 7000001..7000005).
-- Every contact here took the stages in order, so the nested funnel counts what each stage's
-- events show; the bounced contact has no rate (a bounce is a message not delivered).
INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value)
VALUES (7000001, 424242, 'delivered', '2026-03-01 10:00+00', NULL),
       (7000002, 424242, 'delivered', '2026-03-01 10:00+00', NULL),
       (7000003, 424242, 'delivered', '2026-03-01 10:00+00', NULL),
       (7000004, 424242, 'delivered', '2026-03-01 10:00+00', NULL),
       (7000005, 424242, 'delivered', '2026-03-01 10:00+00', NULL),
       (7000001, 424242, 'opened',    '2026-03-01 10:05+00', NULL),
       (7000001, 424242, 'opened',    '2026-03-02 09:00+00', NULL),   -- twice: 2 events, 1 contact
       (7000002, 424242, 'opened',    '2026-03-01 11:00+00', NULL),
       (7000003, 424242, 'opened',    '2026-03-03 08:00+00', NULL),
       (7000001, 424242, 'clicked',   '2026-03-01 10:06+00', NULL),
       (7000002, 424242, 'clicked',   '2026-03-01 11:01+00', NULL),
       (7000001, 424242, 'responded', '2026-03-01 10:10+00', NULL),
       (7000001, 424242, 'converted', '2026-03-01 10:20+00', 99.00),
       (7000004, 424242, 'opted_out', '2026-03-01 12:00+00', NULL),
       (7000005, 424242, 'bounced',   '2026-03-01 10:00+00', NULL),
       (7000001, 424243, 'delivered', '2026-03-01 10:00+00', NULL);  -- another campaign
SELECT * FROM engagement.funnel(424242);
-- [since, until): the events of March 1st only.
SELECT stage, contacts, events, rate_from_previous, rate_from_delivered
  FROM engagement.funnel(424242, '2026-03-01 00:00+00', '2026-03-02 00:00+00');
SELECT stage, contacts, events FROM engagement.funnel(424243);
SELECT stage, contacts, rate_from_previous, rate_from_delivered FROM engagement.funnel(-1);   -- no events: zeros, no division by zero
-- funnel_independent (1.1 to 1.3's funnel: each stage counted on its own) without a campaign:
-- every event, the same counts as a GROUP BY: the stages that differ.  (The nested funnel is
-- sql/presentation.sql's.)
SELECT stage, f.contacts AS funnel_contacts, g.contacts AS group_by_contacts,
       f.events AS funnel_events, g.events AS group_by_events
  FROM engagement.funnel_independent() f
  FULL JOIN (SELECT event_type::text AS stage, count(DISTINCT contact_id) AS contacts, count(*) AS events
               FROM engagement.engagement_events GROUP BY event_type) g USING (stage)
 WHERE f.contacts IS DISTINCT FROM g.contacts OR f.events IS DISTINCT FROM g.events
 ORDER BY stage;
EXPLAIN (COSTS OFF) SELECT count(*) FROM engagement.engagement_events WHERE campaign_id = 424242;
SELECT ref.sqlstate_of($$SELECT * FROM engagement.funnel(1, NULL)$$) AS null_since;

-- Funnels read the profile's source: a CRM's view with columns of its own.  Without a campaign
-- column named (and none called campaign_id) a campaign's funnel is refused, saying what to set;
-- named, the same funnel as engagement_events', and a campaign without events gets a NOTICE.
BEGIN;
CREATE VIEW public.crm_funnel_source AS
SELECT contact_id AS phone_id, campaign_id AS blast, upper(event_type::text) AS status, occurred_at AS at,
       conversion_value AS amount
  FROM engagement.engagement_events;
SELECT engagement.define_event_source('public.crm_funnel_source',
           (SELECT jsonb_object_agg(upper(t::text), t::text) FROM unnest(enum_range(NULL::engagement.event_type)) t),
           contact_column => 'phone_id', kind_column => 'status', time_column => 'at', value_column => 'amount');
INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('crm_funnel', 'public.crm_funnel_source');
SELECT ref.sqlstate_of($$SELECT * FROM engagement.funnel(424242, profile => 'crm_funnel')$$) AS without_campaign_column;
SELECT ref.sqlstate_of($$SELECT * FROM engagement.funnel_independent(424242, profile => 'crm_funnel')$$) AS independent_without;
SELECT count(*) AS every_event_without_campaign FROM engagement.funnel_independent(profile => 'crm_funnel');
SELECT engagement.define_event_source('public.crm_funnel_source',
           (SELECT jsonb_object_agg(upper(t::text), t::text) FROM unnest(enum_range(NULL::engagement.event_type)) t),
           contact_column => 'phone_id', kind_column => 'status', time_column => 'at', value_column => 'amount',
           campaign_column => 'blast');
-- (the rows that differ from engagement_events' funnels)
(SELECT 'nested', * FROM engagement.funnel(424242, profile => 'crm_funnel')
 EXCEPT SELECT 'nested', * FROM engagement.funnel(424242))
UNION ALL
(SELECT 'independent', * FROM engagement.funnel_independent(424242, profile => 'crm_funnel')
 EXCEPT SELECT 'independent', * FROM engagement.funnel_independent(424242));
SELECT stage, contacts FROM engagement.funnel(-5, profile => 'crm_funnel') LIMIT 1;
-- A campaign column that is not an integer: refused when the source is defined.
SELECT ref.sqlstate_of($$SELECT engagement.define_event_source('public.crm_funnel_source', NULL,
                            contact_column => 'phone_id', kind_column => 'status', time_column => 'at',
                            value_column => 'amount', campaign_column => 'status')$$) AS text_campaign_column;
ROLLBACK;

-- contact_events: newest first, a page at a time, ties broken by id, no overlap.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
SELECT 7000009, 'opened', timestamptz '2026-04-01 00:00+00' + (i / 2) * interval '1 hour' FROM generate_series(1, 7) i;
CREATE TEMP TABLE pages (page int, rn bigint, id bigint, occurred_at timestamptz);
INSERT INTO pages SELECT 1, rn, id, occurred_at FROM engagement.contact_events(7000009, NULL, 3) WITH ORDINALITY e(id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel, device_type, parent_event_id, metadata, created_at, rn);
-- The cursor is the last (oldest) event of the previous page.
INSERT INTO pages SELECT 2, rn, id, occurred_at FROM engagement.contact_events(7000009, (SELECT id FROM pages WHERE page = 1 ORDER BY rn DESC LIMIT 1), 3) WITH ORDINALITY e(id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel, device_type, parent_event_id, metadata, created_at, rn);
INSERT INTO pages SELECT 3, rn, id, occurred_at FROM engagement.contact_events(7000009, (SELECT id FROM pages WHERE page = 2 ORDER BY rn DESC LIMIT 1), 3) WITH ORDINALITY e(id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel, device_type, parent_event_id, metadata, created_at, rn);
SELECT page, count(*) FROM pages GROUP BY page ORDER BY page;
-- The pages one after the other against the contact's 7 events newest first, ties by id: the
-- positions where they differ (an event missing, repeated or out of place).
SELECT coalesce(p.pos, e.pos) AS position, p.id AS paged, p.occurred_at AS paged_at, e.id AS expected,
       e.occurred_at AS expected_at
  FROM (SELECT row_number() OVER (ORDER BY page, rn) AS pos, id, occurred_at FROM pages) p
  FULL JOIN (SELECT row_number() OVER (ORDER BY occurred_at DESC, id DESC) AS pos, id, occurred_at
               FROM engagement.engagement_events WHERE contact_id = 7000009) e ON e.pos = p.pos
 WHERE p.id IS DISTINCT FROM e.id
 ORDER BY 1;
-- After the last page: nothing (the events listed if not).
SELECT id AS past_the_end, occurred_at
  FROM engagement.contact_events(7000009, (SELECT id FROM pages WHERE page = 3 ORDER BY rn DESC LIMIT 1), 3);
SELECT ref.sqlstate_of($$SELECT * FROM engagement.contact_events(7000009, NULL, 0)$$) AS zero_page;
SELECT split_part(ref.sqlstate_of($$SELECT * FROM engagement.contact_events(7000009, (SELECT min(id) FROM engagement.engagement_events WHERE contact_id = 7000001))$$), ':', 1) AS cursor_of_other_contact;

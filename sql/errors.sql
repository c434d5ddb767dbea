-- errors: bad input to the scoring functions gets a clear error with the right SQLSTATE.
SELECT ref.sqlstate_of($$SELECT engagement.engagement_score(1, now(), 'no_such_profile')$$) AS unknown_profile;
SELECT ref.sqlstate_of($$SELECT engagement.engagement_score(-42, now(), 'no_such_profile')$$) AS unknown_profile_no_events;
SELECT ref.sqlstate_of($$SELECT engagement.explain_score(1, now(), 'no_such_profile')$$) AS explain_unknown_profile;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), 'no_such_profile')$$) AS aggregate_unknown_profile;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), repeat('x', 100))$$) AS long_profile_name;
SELECT ref.sqlstate_of($$SELECT engagement.engagement_score(1, 'infinity')$$) AS infinite_as_of;
SELECT ref.sqlstate_of($$SELECT engagement.engagement_score(-42, '-infinity')$$) AS infinite_as_of_no_events;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, 'infinity')$$) AS aggregate_infinite_as_of;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', '-infinity', NULL, now())$$) AS aggregate_infinite_time;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('converted', now(), -1, now())$$) AS negative_value;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('converted', now(), 'NaN', now())$$) AS nan_value;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, a)
                           FROM (VALUES (now()), (now() - interval '1 day')) v(a)$$) AS as_of_varies;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), p)
                           FROM (VALUES ('default'), ('recency_only')) v(p)$$) AS profile_varies;
-- NULL inputs: strict functions give NULL; the aggregates skip rows with NULLs like strict ones.
-- (the calls that gave something else, with what they gave)
SELECT v.call, v.result
  FROM (VALUES ('engagement_score(NULL)', engagement.engagement_score(NULL)::text),
               ('engagement_score(1, NULL)', engagement.engagement_score(1, NULL)::text),
               ('explain_score(1, now(), NULL)', engagement.explain_score(1, now(), NULL))) v(call, result)
 WHERE v.result IS NOT NULL;
SELECT (engagement.score_events(t, o, NULL, '2026-06-01')).event_count
  FROM (VALUES ('opened'::engagement.event_type, timestamptz '2026-05-01'), (NULL, '2026-05-02'),
               ('clicked', NULL)) v(t, o);
-- A value on a non-conversion row of a foreign rowset is not counted (the model counts conversions only).
SELECT (engagement.score_events('clicked', '2026-05-01', 50, '2026-06-01')).conversion_total;
-- Explanations.
SELECT engagement.explain_score(c, '2026-06-01 12:00:00+00')
  FROM (SELECT contact_id AS c FROM ref.crm_events GROUP BY contact_id
         ORDER BY count(*) DESC, contact_id LIMIT 1) top;
SELECT engagement.explain_score(-42, '2026-06-01 12:00:00+00');
-- An opted-out contact's explanation mentions the opt-out: the explanation if it does not.
SELECT x.explanation AS without_opt_out
  FROM (SELECT engagement.explain_events(event_type, occurred_at, conversion_value, '2026-06-01', 'default') AS explanation
          FROM (VALUES ('opened'::engagement.event_type, timestamptz '2026-05-30', NULL::numeric),
                       ('opted_out', '2026-05-31', NULL)) v(event_type, occurred_at, conversion_value)) x
 WHERE (x.explanation LIKE '%opted out on 2026-05-31 % opt_out_penalty 0.9%') IS NOT TRUE;
-- Opted back in: no penalty, and the explanation says why (the explanation if it does not).
SELECT x.explanation AS opted_back_in
  FROM (SELECT engagement.explain_events(event_type, occurred_at, conversion_value, '2026-06-01', 'default') AS explanation
          FROM (VALUES ('opened'::engagement.event_type, timestamptz '2026-05-29', NULL::numeric),
                       ('opted_out', '2026-05-30', NULL), ('opted_in', '2026-05-31', NULL)) v(event_type, occurred_at, conversion_value)) x
 WHERE (x.explanation NOT LIKE '%opt_out_penalty%' AND x.explanation LIKE '%opted in on 2026-05-31 % after opting out on 2026-05-30 %: no longer opted out%') IS NOT TRUE;

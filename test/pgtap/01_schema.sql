-- pgTAP: the schema the extension installs, its constraints, function properties and privileges.
BEGIN;
SELECT plan(93);

SELECT has_schema('engagement');
SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'engagement_scoring'),
          'engagement', 'the extension lives in schema engagement');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'engagement_scoring'), false, 'not relocatable');
SELECT enum_has_labels('engagement', 'event_type',
    ARRAY['delivered', 'opened', 'clicked', 'responded', 'converted', 'opted_out', 'opted_in', 'bounced']);

SELECT tables_are('engagement', ARRAY['engagement_events', 'scoring_profiles', 'engagement_scores',
                                      'engagement_score_history', 'event_changes', 'pending_rescore',
                                      'score_distributions', 'model_fits', 'event_sources', 'event_kind_map',
                                      'refresh_runs']);
SELECT views_are('engagement', ARRAY['contact_scores']);
SELECT columns_are('engagement', 'engagement_events', ARRAY['id', 'contact_id', 'campaign_id', 'event_type',
    'occurred_at', 'conversion_value', 'channel', 'device_type', 'parent_event_id', 'metadata', 'created_at']);
SELECT col_is_pk('engagement', 'engagement_events', 'id', 'col_is_pk engagement engagement_events id');
SELECT col_type_is('engagement', 'engagement_events', 'id', 'bigint', 'col_type_is engagement engagement_events id bigint');
SELECT col_type_is('engagement', 'engagement_events', 'conversion_value', 'numeric(14,2)', 'col_type_is engagement engagement_events conversion_value numeric(14,2)');
SELECT col_type_is('engagement', 'engagement_events', 'metadata', 'jsonb', 'col_type_is engagement engagement_events metadata jsonb');
SELECT col_not_null('engagement', 'engagement_events', 'contact_id', 'col_not_null engagement engagement_events contact_id');
SELECT col_not_null('engagement', 'engagement_events', 'occurred_at', 'col_not_null engagement engagement_events occurred_at');
SELECT col_not_null('engagement', 'engagement_events', 'event_type', 'col_not_null engagement engagement_events event_type');
SELECT col_default_is('engagement', 'engagement_events', 'channel', 'sms', 'col_default_is engagement engagement_events channel sms');
SELECT col_default_is('engagement', 'engagement_events', 'metadata', '{}', 'col_default_is engagement engagement_events metadata {}');
SELECT is((SELECT attidentity FROM pg_attribute WHERE attrelid = 'engagement.engagement_events'::regclass
            AND attname = 'id'), 'a'::"char", 'id is GENERATED ALWAYS AS IDENTITY');
SELECT fk_ok('engagement', 'engagement_events', 'parent_event_id', 'engagement', 'engagement_events', 'id');
SELECT has_check('engagement', 'engagement_events', 'events have check constraints');
SELECT is((SELECT count(*)::int FROM pg_constraint WHERE conrelid = 'engagement.engagement_events'::regclass
            AND contype = 'c'), 7, 'seven check constraints on events');
-- Indexes: exactly the ones a query of the API uses.
SELECT indexes_are('engagement', 'engagement_events',
    ARRAY['engagement_events_pkey', 'engagement_events_contact_time_idx', 'engagement_events_parent_idx',
          'engagement_events_campaign_idx']);
SELECT indexes_are('engagement', 'event_changes', ARRAY[]::name[], 'the change log has no index: cheap bulk ingest');
-- Change tracking is statement-level, with transition tables.
SELECT is((SELECT array_agg(tgname::text ORDER BY tgname) FROM pg_trigger
            WHERE tgrelid = 'engagement.engagement_events'::regclass AND NOT tgisinternal
              AND (tgtype & 1) = 0),   -- TRIGGER_TYPE_ROW bit clear: FOR EACH STATEMENT
          ARRAY['engagement_events_track_delete', 'engagement_events_track_insert',
                'engagement_events_track_truncate', 'engagement_events_track_update'],
          'change tracking triggers are statement-level');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'engagement.engagement_events'::regclass
            AND NOT tgisinternal AND (tgtype & 1) = 1), 0, 'no row-level trigger on events');
SELECT is((SELECT attstorage FROM pg_attribute WHERE attrelid = 'engagement.score_distributions'::regclass
            AND attname = 'sorted_composites'), 'e'::"char", 'distributions stored uncompressed out of line');
SELECT index_is_type('engagement', 'engagement_events', 'engagement_events_contact_time_idx', 'btree');
SELECT has_index('engagement', 'engagement_events', 'engagement_events_contact_time_idx',
                 ARRAY['contact_id', 'occurred_at', 'event_type', 'conversion_value']);
-- (keyed by contact and time; the other two columns the model reads are carried for index-only scans)
SELECT is((SELECT i.indnkeyatts FROM pg_index i
            WHERE i.indexrelid = 'engagement.engagement_events_contact_time_idx'::regclass), 2::int2,
          'the contact-time index has two key columns and includes event_type and conversion_value');

SELECT col_is_pk('engagement', 'scoring_profiles', 'name', 'col_is_pk engagement scoring_profiles name');
SELECT is((SELECT count(*)::int FROM information_schema.columns
            WHERE table_schema = 'engagement' AND table_name = 'scoring_profiles'), 49,
          'scoring_profiles: name, description, the 34 model parameters, the funnel''s stages, 3 refresh parameters, 3 facts of the fit, the fits'' penalty, version, 2 timestamps, events_relation and who set it');
SELECT results_eq($$SELECT name FROM engagement.scoring_profiles$$, ARRAY['default'], 'profile default exists');
SELECT has_trigger('engagement', 'scoring_profiles', 'scoring_profiles_bump_version', 'scoring_profiles.scoring_profiles_bump_version exists');
SELECT has_trigger('engagement', 'scoring_profiles', 'scoring_profiles_replace_builtin_default', 'scoring_profiles.scoring_profiles_replace_builtin_default exists');
SELECT has_trigger('engagement', 'scoring_profiles', 'scoring_profiles_create_distribution', 'scoring_profiles.scoring_profiles_create_distribution exists');
SELECT has_trigger('engagement', 'score_distributions', 'score_distributions_replace_empty', 'score_distributions.score_distributions_replace_empty exists');
SELECT results_eq($$SELECT p.name FROM engagement.scoring_profiles p
                     WHERE NOT EXISTS (SELECT FROM engagement.score_distributions d WHERE d.profile = p.name)$$,
                  ARRAY[]::text[], 'every profile has its distribution row (the lock of its refreshes)');
SELECT throws_ok($$INSERT INTO engagement.scoring_profiles (name, weight_diversity) VALUES ('x', 0.2)$$,
                 '23514', NULL, 'weights must sum to 1');
SELECT throws_ok($$INSERT INTO engagement.scoring_profiles (name, half_life_days) VALUES ('x', -14)$$,
                 '23514', NULL, 'half-life must be positive');
SELECT lives_ok($$INSERT INTO engagement.scoring_profiles (name, half_life_days) VALUES ('x', 7)$$,
                'a valid profile is accepted');

SELECT col_is_pk('engagement', 'engagement_scores', ARRAY['profile', 'contact_id'], 'col_is_pk engagement engagement_scores ARRAY[profile contact_id]');
SELECT fk_ok('engagement', 'engagement_scores', 'profile', 'engagement', 'scoring_profiles', 'name');
SELECT fk_ok('engagement', 'engagement_score_history', 'profile', 'engagement', 'scoring_profiles', 'name');
SELECT has_column('engagement', 'engagement_scores', 'percentile_rank', 'engagement_scores.percentile_rank exists');
SELECT has_column('engagement', 'engagement_scores', 'score_version', 'engagement_scores.score_version exists');
SELECT has_column('engagement', 'engagement_scores', 'profile_version', 'engagement_scores.profile_version exists');
SELECT has_column('engagement', 'engagement_scores', 'calculated_at', 'engagement_scores.calculated_at exists');
SELECT has_index('engagement', 'engagement_score_history', 'engagement_score_history_contact_idx',
                 ARRAY['profile', 'contact_id', 'recorded_at']);

SELECT has_type('engagement', 'score', 'type engagement.score exists');
-- (the fields themselves are test/reference_model.sql's, which compares every one by name)
SELECT is((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
             FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
            WHERE t.oid = 'engagement.score'::regtype AND a.attnum > 2 AND NOT a.attisdropped),
          (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
             FROM pg_attribute a
            WHERE a.attrelid = 'engagement.engagement_scores'::regclass AND a.attnum > 0 AND NOT a.attisdropped
              AND a.attname IN (SELECT f.attname FROM pg_attribute f
                                 WHERE f.attrelid = (SELECT typrelid FROM pg_type WHERE oid = 'engagement.score'::regtype)
                                   AND f.attnum > 2)),
          'engagement.score''s fields after as_of and profile are columns of engagement_scores, of the same types, in the same order');
SELECT is((SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
            WHERE t.oid = 'engagement.score'::regtype AND a.attnum <= 3),
          'as_of,profile,composite', 'engagement.score begins with as_of, profile and composite');

-- Functions and aggregates: volatility, strictness, parallel safety.
SELECT has_function('engagement', 'engagement_score', ARRAY['bigint', 'timestamp with time zone', 'text']);
SELECT has_function('engagement', 'predict', ARRAY['text', 'double precision']);
SELECT has_function('engagement', 'predict', ARRAY['bigint', 'double precision', 'text']);
SELECT has_function('engagement', 'customer_lifetime_value', ARRAY['text', 'integer', 'double precision']);
SELECT volatility_is('engagement', 'engagement_score', ARRAY['bigint', 'timestamp with time zone', 'text'], 'stable');
SELECT is_strict('engagement', 'engagement_score', ARRAY['bigint', 'timestamp with time zone', 'text']);
SELECT volatility_is('engagement', 'explain_score', ARRAY['bigint', 'timestamp with time zone', 'text'], 'stable');
SELECT is_aggregate('engagement', 'score_events',
    ARRAY['engagement.event_type', 'timestamp with time zone', 'numeric', 'timestamp with time zone', 'text']);
SELECT is_aggregate('engagement', 'score_events',
    ARRAY['engagement.event_type', 'timestamp with time zone', 'numeric', 'timestamp with time zone']);
SELECT is_aggregate('engagement', 'explain_events',
    ARRAY['engagement.event_type', 'timestamp with time zone', 'numeric', 'timestamp with time zone', 'text']);
SELECT is_aggregate('engagement', 'time_decay',
    ARRAY['double precision', 'timestamp with time zone', 'timestamp with time zone', 'double precision']);
SELECT results_eq($$SELECT p.oid::regprocedure::text FROM pg_proc p
                     WHERE p.pronamespace = 'engagement'::regnamespace AND p.proparallel <> 's'
                       AND p.prorettype <> 'trigger'::regtype ORDER BY p.oid::regprocedure::text COLLATE "C"$$,
                  ARRAY['engagement._bind_events_relation(engagement.scoring_profiles)',
                        'engagement._citus_sql_functions()',
                        'engagement._citus_track(regclass,name)',
                        'engagement._citus_write_scores(engagement.scoring_profiles,timestamp with time zone,boolean)',
                        'engagement._comment_score_columns(regclass)',
                        'engagement._create_statement_tracking_triggers(regclass,text,text)',
                        'engagement._drop_tracking_triggers(regclass)',
                        'engagement._events_read_begin(engagement.scoring_profiles,regclass)',
                        'engagement._events_read_end(text,text)',
                        'engagement._refresh(text,boolean)',
                        'engagement._refresh_choose_targets(engagement.scoring_profiles,timestamp with time zone,boolean,boolean)',
                        'engagement._refresh_distribution(engagement.scoring_profiles,timestamp with time zone,boolean)',
                        'engagement._refresh_drain_changes(engagement.scoring_profiles)',
                        'engagement._refresh_few_targets(engagement.scoring_profiles)',
                        'engagement._refresh_keep_pending(engagement.scoring_profiles)',
                        'engagement._refresh_score_contacts(engagement.scoring_profiles,text,timestamp with time zone,boolean,boolean)',
                        'engagement._refresh_write_scores(engagement.scoring_profiles,timestamp with time zone,boolean)',
                        'engagement._unbind_events_relation(text)',
                        'engagement._validation(timestamp with time zone,timestamp with time zone,text,boolean)',
                        'engagement.citus_distribute(regclass)',
                        'engagement.define_event_source(regclass,jsonb,name,name,name,name,text,text,regclass[],name)',
                        'engagement.fit_model(text,timestamp with time zone,text)',
                        'engagement.forget_contact(bigint)',
                        'engagement.grant_admin_access(regrole)',
                        'engagement.grant_application_access(regrole)',
                        'engagement.refresh_scores(text,boolean,text)',
                        'engagement.schedule_refresh(text,text,text,text)',
                        'engagement.track_event_changes(regclass,regclass,name)',
                        'engagement.unschedule_refresh(text)',
                        'engagement.untrack_event_changes(regclass)',
                        'engagement.validate_lift(timestamp with time zone,timestamp with time zone,text,text,boolean)',
                        'engagement.validate_model(timestamp with time zone,timestamp with time zone,text,boolean)',
                        'engagement.validate_model_summary(timestamp with time zone,timestamp with time zone,text,boolean)'],
                  'every function and aggregate but the writing ones (refresh_scores and its steps, fit_model, the validation''s temporary table among them) is PARALLEL SAFE');
SELECT volatility_is('engagement', 'refresh_scores', ARRAY['text', 'boolean', 'text'], 'volatile');
SELECT is_empty($$SELECT a.aggfnoid::regprocedure FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
                   WHERE p.pronamespace = 'engagement'::regnamespace
                     AND (a.aggcombinefn = 0 OR (a.aggtranstype = 'internal'::regtype
                                                 AND (a.aggserialfn = 0 OR a.aggdeserialfn = 0)))$$,
                'every aggregate has a combine function, and serialize and deserialize functions for an internal state');
SELECT results_eq($$SELECT DISTINCT a.aggfnoid::regproc::text || ' ' || a.aggtranstype::regtype::text FROM pg_aggregate a
                     JOIN pg_proc p ON p.oid = a.aggfnoid
                    WHERE p.pronamespace = 'engagement'::regnamespace AND a.aggtranstype <> 'internal'::regtype ORDER BY 1$$,
                  ARRAY['engagement.fit_bgnbd engagement.btyd_fit_state',
                        'engagement.fit_gammagamma engagement.gammagamma_fit_state',
                        'engagement.fit_mbgnbd engagement.btyd_fit_state',
                        'engagement.time_decay engagement.decay_state'],
                  'time_decay and the fits have text-round-trippable state types (Citus splits them)');
SELECT is_aggregate('engagement', 'score_events',
    ARRAY['engagement.event_type', 'timestamp with time zone', 'numeric', 'timestamp with time zone', 'jsonb']);
SELECT col_type_is('engagement', 'scoring_profiles', 'events_relation', 'regclass',
                   'col_type_is engagement scoring_profiles events_relation regclass');
SELECT is_empty($$SELECT a.aggcombinefn::regprocedure FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggcombinefn
                   WHERE p.pronamespace = 'engagement'::regnamespace AND p.proisstrict$$,
                'combine functions are not strict (they handle NULL states)');
SELECT results_eq($$SELECT p.oid::regprocedure::text FROM pg_proc p
                     WHERE p.pronamespace = 'engagement'::regnamespace AND p.prolang IN
                           (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql'))
                       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
                     ORDER BY p.oid::regprocedure::text COLLATE "C"$$,
                  ARRAY['engagement._events_read_begin(engagement.scoring_profiles,regclass)',
                        'engagement._events_read_end(text,text)',
                        'engagement._in_citus_shard_query()',
                        'engagement._predictions(text,text,double precision)',
                        'engagement.customer_lifetime_value(text,integer,double precision)',
                        'engagement.predict(bigint,double precision,text)',
                        'engagement.predict(text,double precision)',
                        'engagement.readable_scores(text)',
                        'engagement.readable_segments(text)',
                        'engagement.segment_summary(text)'],
                  'every SQL and PL/pgSQL function pins search_path but the inlined ones (sql/search_path.sql runs them under a hostile one) and the events read''s role switch (a SET clause would undo it; its callers pin it), every name in them qualified');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
                   WHERE p.pronamespace = 'engagement'::regnamespace AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
                     AND p.proconfig IS NOT NULL$$,
                'no SET on the C functions (they are hot)');
SELECT results_eq($$SELECT p.oid::regprocedure::text FROM pg_proc p
                     WHERE p.pronamespace = 'engagement'::regnamespace AND p.prosecdef ORDER BY p.oid::regprocedure::text COLLATE "C"$$,
                  ARRAY['engagement._track_event_change()', 'engagement._track_event_changes()', 'engagement._track_shard_changes()'],
                  'no SECURITY DEFINER function but the change-tracking triggers (they alone write the change log)');
SELECT results_eq($$SELECT p.oid::regprocedure::text FROM pg_proc p
                     WHERE p.pronamespace = 'engagement'::regnamespace
                       AND NOT has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY p.oid::regprocedure::text COLLATE "C"$$,
                  ARRAY['engagement._citus_sql_functions()',
                        'engagement._track_distributed_truncate()',
                        'engagement._track_event_change()',
                        'engagement._track_event_changes()',
                        'engagement._track_shard_changes()',
                        'engagement.citus_distribute(regclass)',
                        'engagement.define_event_source(regclass,jsonb,name,name,name,name,text,text,regclass[],name)',
                        'engagement.fit_model(text,timestamp with time zone,text)',
                        'engagement.forget_contact(bigint)',
                        'engagement.grant_admin_access(regrole)',
                        'engagement.grant_application_access(regrole)',
                        'engagement.refresh_scores(text,boolean,text)',
                        'engagement.schedule_refresh(text,text,text,text)',
                        'engagement.track_event_changes(regclass,regclass,name)',
                        'engagement.unschedule_refresh(text)',
                        'engagement.untrack_event_changes(regclass)'],
                  'the writing functions (the change-tracking triggers among them) are not executable by PUBLIC');

-- \df+, \d+ and \dT+ document the API: every function and aggregate a user calls (not the
-- _internal ones), every table, view and type, and every column of them has a comment.
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
                   WHERE p.pronamespace = 'engagement'::regnamespace AND p.proname !~ '^_'
                     AND obj_description(p.oid, 'pg_proc') IS NULL$$,
                'every function and aggregate has a comment');
SELECT is_empty($$SELECT c.oid::regclass FROM pg_class c
                   WHERE c.relnamespace = 'engagement'::regnamespace AND c.relkind IN ('r', 'v')
                     AND obj_description(c.oid, 'pg_class') IS NULL$$,
                'every table and view has a comment');
SELECT is_empty($$SELECT t.oid::regtype FROM pg_type t
                   WHERE t.typnamespace = 'engagement'::regnamespace AND t.typelem = 0
                     AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
                     AND obj_description(t.oid, 'pg_type') IS NULL$$,
                'every type (enum, composite, state) has a comment');
SELECT is_empty($$SELECT c.oid::regclass || '.' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                   WHERE c.relnamespace = 'engagement'::regnamespace AND c.relkind IN ('r', 'v', 'c')
                     AND a.attnum > 0 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL$$,
                'every column of every table, view and composite type has a comment');

-- Privileges: nothing on the tables for PUBLIC.
SELECT table_privs_are('engagement', 'engagement_events', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'scoring_profiles', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'engagement_scores', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'engagement_score_history', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'event_changes', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'pending_rescore', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'score_distributions', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'model_fits', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'event_sources', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'event_kind_map', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'refresh_runs', 'public', ARRAY[]::text[]);
SELECT table_privs_are('engagement', 'contact_scores', 'public', ARRAY[]::text[]);
SELECT is((SELECT 'security_invoker=true' = ANY (reloptions) FROM pg_class WHERE oid = 'engagement.contact_scores'::regclass),
          true, 'contact_scores checks the reader''s privileges (security_invoker)');
SELECT schema_privs_are('engagement', 'public', ARRAY['USAGE']);
SELECT sequence_privs_are('engagement', 'engagement_events_id_seq', 'public', ARRAY[]::text[]);
SELECT sequence_privs_are('engagement', 'model_fits_id_seq', 'public', ARRAY[]::text[]);
-- A role without table privileges cannot read events through the scoring functions.
CREATE ROLE es_tap_nobody;
SET LOCAL ROLE es_tap_nobody;
SELECT throws_ok($$SELECT engagement.engagement_score(1)$$, '42501', NULL,
                 'scoring reads tables with the caller''s privileges');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

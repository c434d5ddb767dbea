-- score_distribution: the sorted composites each refresh stores for score_percentile.  A profile
-- has its (empty) distribution from the moment it exists, the row its refreshes lock; the packed
-- form is checked wherever SQL can hand one in; a distribution out of step with the stored scores
-- is rebuilt, not fatal.

-- Made with the profile, empty until its first refresh; a dumped one replaces the empty one.
INSERT INTO engagement.scoring_profiles (name) VALUES ('distribution_new');
SELECT profile, length(sorted_composites) AS bytes, contacts, profile_version, refreshed_at, model_version
  FROM engagement.score_distributions WHERE profile = 'distribution_new';
SELECT engagement.score_percentile(50, 'distribution_new') AS percentile_before_a_refresh;
BEGIN;
INSERT INTO engagement.score_distributions (profile, sorted_composites, contacts, profile_version, refreshed_at, model_version)
VALUES ('distribution_new', engagement._pack_sorted('{10,20,30}'), 3, 1, '2026-06-01', 2);
SELECT profile, contacts, refreshed_at FROM engagement.score_distributions WHERE profile = 'distribution_new';
SELECT engagement.score_percentile(25, 'distribution_new') AS percentile_of_the_dumped_row;
ROLLBACK;
-- A refreshed one is not replaced: a second row of the profile is a duplicate.
SELECT ref.sqlstate_of($$INSERT INTO engagement.score_distributions (profile, sorted_composites, contacts, profile_version, refreshed_at, model_version)
                         VALUES ('default', '', 0, 1, now(), 2)$$) AS second_row;
-- Renamed and dropped with its profile.
UPDATE engagement.scoring_profiles SET name = 'distribution_renamed' WHERE name = 'distribution_new';
SELECT profile FROM engagement.score_distributions WHERE profile LIKE 'distribution_%';
DELETE FROM engagement.scoring_profiles WHERE name = 'distribution_renamed';
SELECT count(*) AS left_behind FROM engagement.score_distributions WHERE profile LIKE 'distribution_%';
-- Deleted by hand, it is made again by the next refresh.
INSERT INTO engagement.scoring_profiles (name) VALUES ('distribution_deleted');
DELETE FROM engagement.score_distributions WHERE profile = 'distribution_deleted';
SELECT engagement.refresh_scores('distribution_deleted') > 0 AS refreshed_without_it;
SELECT contacts > 0 AS made_again FROM engagement.score_distributions WHERE profile = 'distribution_deleted';
DELETE FROM engagement.scoring_profiles WHERE name = 'distribution_deleted';

-- A stored score edited by hand no longer matches the distribution: the next incremental refresh
-- rebuilds it from the stored scores (with a WARNING) instead of failing every time.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (920001, 'clicked', now() - interval '2 days');
SELECT engagement.refresh_scores() IS NOT NULL AS refreshed;
UPDATE engagement.engagement_scores SET composite = composite / 2 + 0.125 WHERE profile = 'default' AND contact_id = 920001;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (920001, 'opened', now() - interval '1 hour');
SELECT engagement.refresh_scores() AS rescored_after_edit;
SELECT d.contacts AS distribution_contacts, count(*) AS stored_scores
  FROM engagement.score_distributions d JOIN engagement.engagement_scores s ON s.profile = d.profile
 WHERE d.profile = 'default'
 GROUP BY d.profile, d.contacts, d.sorted_composites
HAVING d.contacts <> count(*) OR d.sorted_composites <> engagement._pack_sorted(array_agg(s.composite));


-- _merge_distribution: a value to remove that the distribution lacks (a score edited behind the
-- refresh's back) is 22000, in every form, so that the refresh can catch exactly that.
SELECT c AS out_of_step, ref.sqlstate_of(format('SELECT engagement._merge_distribution(engagement._pack_sorted(%L), %L, %L)',
                                                d, rem, added)) AS result
  FROM (VALUES ('between values', '{1,2,3}', '{2.5}', '{}'),
               ('below every value', '{1,2,3}', '{0}', '{7}'),
               ('above every value', '{1,2,3}', '{4}', '{0}'),
               ('removed twice', '{1,2,3}', '{2,2}', '{}'),
               ('more removed than there are', '{1,2}', '{1,2,3}', '{4,5}'),
               ('from an empty distribution', '{}', '{1}', '{1}')) v(c, d, rem, added);
-- (and what it does when the values are there: one occurrence of each removed, the added merged in)
SELECT engagement._merge_distribution(engagement._pack_sorted('{1,2,2,3}'), '{2,3}', '{0,2.5,9}')
         = engagement._pack_sorted('{0,1,2,2.5,9}') AS merged_as_expected;

-- Malformed distributions (bytea anyone can pass): 22P03, whether the value is small, stored out
-- of line and read in slices (one call), or read whole once for many calls.
SELECT c AS malformed, ref.sqlstate_of(q) AS result
  FROM (VALUES ('count_below: 2 bytes', $$SELECT engagement._count_below('\x0102', 1)$$),
               ('count_below: 9 bytes', $$SELECT engagement._count_below(engagement._pack_sorted('{1}') || '\x00'::bytea, 1)$$),
               ('count_below: NaN', $$SELECT engagement._count_below('\x000000000000f87f', 1)$$),
               ('count_below: out of order', $$SELECT engagement._count_below(engagement._pack_sorted('{2}') || engagement._pack_sorted('{1}'), 1)$$),
               ('merge: 1 byte', $$SELECT engagement._merge_distribution('\x01', '{}', '{}')$$),
               ('merge: NaN', $$SELECT engagement._merge_distribution(engagement._pack_sorted('{1}') || '\x000000000000f87f'::bytea, '{}', '{2}')$$),
               ('merge: out of order', $$SELECT engagement._merge_distribution(engagement._pack_sorted('{2}') || engagement._pack_sorted('{1}'), '{}', '{}')$$))
       v(c, q);
-- 10,000 values stored out of line, uncompressed (as score_distributions stores them), one of
-- them NaN where a binary search looks first.
CREATE TEMP TABLE dist (name text, d bytea);
ALTER TABLE dist ALTER d SET STORAGE EXTERNAL;
INSERT INTO dist
SELECT 'good', engagement._pack_sorted(array_agg(i::float8)) FROM generate_series(1, 10000) i
UNION ALL
SELECT 'nan', overlay(engagement._pack_sorted(array_agg(i::float8)) PLACING '\x000000000000f87f' FROM 5000 * 8 + 1 FOR 8)
  FROM generate_series(1, 10000) i;
SELECT name, pg_column_size(d) AS stored_bytes, length(d) AS bytes FROM dist ORDER BY name;
SELECT ref.sqlstate_of($$SELECT engagement._count_below(d, 100) FROM dist WHERE name = 'nan'$$) AS one_call_in_slices,
       ref.sqlstate_of($$SELECT engagement._count_below(d, s) FROM dist, generate_series(1, 5) s WHERE name = 'nan'$$) AS many_calls_read_whole;
SELECT array_agg(engagement._count_below(d, s) ORDER BY s) AS good_counts
  FROM dist, unnest(ARRAY[-1, 1, 1.5, 5000, 10000, 10001]::float8[]) s WHERE name = 'good';
SELECT engagement._count_below(d, 5000.5) AS good_one_call FROM dist WHERE name = 'good';

DELETE FROM engagement.engagement_events WHERE contact_id = 920001;

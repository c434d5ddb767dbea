-- engagement_scoring 1.5 -> 1.6.  The scoring model is unchanged: stored scores stay current.
-- Written by `make update-script` from src/sql/updates/1.5--1.6.sql (what is written by hand: the
-- ALTERs and data moves) and the functions of src/sql/.

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.6'" to load this file. \quit

-- Every profile has its distribution row from the moment it exists (the lock of its refreshes):
-- empty (refreshed_at NULL) until its first refresh.
ALTER TABLE @extschema@.score_distributions ALTER COLUMN refreshed_at DROP NOT NULL;
COMMENT ON TABLE @extschema@.score_distributions IS
    'Per profile, the sorted composites as of the last refresh (for score_percentile); the row is also the lock of the profile''s refreshes';
COMMENT ON COLUMN @extschema@.score_distributions.refreshed_at IS 'When the last refresh ran (NULL: never)';

-- @functions

CREATE TRIGGER scoring_profiles_create_distribution AFTER INSERT ON @extschema@.scoring_profiles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._profile_create_distribution();
CREATE TRIGGER score_distributions_replace_empty BEFORE INSERT ON @extschema@.score_distributions
    FOR EACH ROW EXECUTE FUNCTION @extschema@._distribution_replace_empty();
INSERT INTO @extschema@.score_distributions (profile, sorted_composites, contacts, profile_version, model_version)
SELECT p.name, '', 0, 0, 0 FROM @extschema@.scoring_profiles p
 WHERE NOT EXISTS (SELECT FROM @extschema@.score_distributions d WHERE d.profile = p.name);

-- scheduling.sql: scheduled refreshes with pg_cron.

------------------------------------------------------------------------------------------------
-- Scheduled refreshes with pg_cron.  No dependency in the control file: pg_cron is reached by
-- dynamic SQL, and these functions say how to enable it when it is missing.  Jobs are named
-- engagement_scoring/<profile>/<kind> and run as the role that scheduled them.
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Add pg_cron to shared_preload_libraries and set cron.database_name = %L in postgresql.conf, '
                                'restart PostgreSQL, then run CREATE EXTENSION pg_cron in this database.',
                                current_database());
    END IF;
END $$;

CREATE FUNCTION @extschema@._job_name(profile text, kind text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'engagement_scoring/' || profile || '/' || kind
$$;

-- The jobs with pg_cron's record of their last run, and for refreshes the extension's own
-- (refresh_runs): what the last run of that kind did, skipped or why it failed.
CREATE FUNCTION @extschema@.refresh_jobs()
RETURNS TABLE (job_name text, profile text, kind text, jobid bigint, schedule text, command text, active boolean,
               last_status text, last_start timestamptz, last_end timestamptz, last_message text,
               last_refresh_at timestamptz, last_refresh_rescored bigint, last_refresh_skipped boolean,
               last_refresh_unmapped bigint, last_refresh_error text)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require_pg_cron();
    RETURN QUERY EXECUTE $q$
        SELECT j.jobname::text, split_part(j.jobname, '/', 2), split_part(j.jobname, '/', 3), j.jobid::bigint,
               j.schedule::text, j.command::text, j.active, d.status::text, d.start_time, d.end_time,
               d.return_message::text, rr.started_at, rr.contacts_rescored, rr.skipped, rr.unmapped_rows, rr.error
          FROM cron.job j
          LEFT JOIN LATERAL (SELECT r.status, r.start_time, r.end_time, r.return_message
                               FROM cron.job_run_details r WHERE r.jobid = j.jobid
                              ORDER BY r.start_time DESC NULLS LAST LIMIT 1) d ON true
          -- (an incremental refresh may turn into a full one: the incremental job shows either)
          LEFT JOIN LATERAL (SELECT r.* FROM @extschema@.refresh_runs r
                              WHERE r.profile = split_part(j.jobname, '/', 2)
                                AND split_part(j.jobname, '/', 3) IN ('incremental', 'full')
                                AND (split_part(j.jobname, '/', 3) = 'incremental' OR r.mode = 'full')
                              ORDER BY r.started_at DESC LIMIT 1) rr ON true
         WHERE j.jobname LIKE 'engagement\_scoring/%'
         ORDER BY j.jobname $q$;
END $$;
COMMENT ON FUNCTION @extschema@.refresh_jobs() IS
    'The pg_cron jobs of engagement_scoring with pg_cron''s status of their last run and, for refreshes, the last refresh_runs record of that kind (when, rescored, skipped, unmapped rows, error)';

CREATE FUNCTION @extschema@.unschedule_refresh(profile text DEFAULT 'default') RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text;
    removed integer := 0;
BEGIN
    PERFORM @extschema@._arguments_not_null('unschedule_refresh(profile)', profile IS NULL);
    PERFORM @extschema@._require_pg_cron();
    FOR name IN EXECUTE 'SELECT jobname::text FROM cron.job WHERE jobname IN ($1, $2, $3)'
                USING @extschema@._job_name(profile, 'incremental'), @extschema@._job_name(profile, 'full'),
                      @extschema@._job_name(profile, 'refit')
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING name;
        removed := removed + 1;
    END LOOP;
    RETURN removed;
END $$;
COMMENT ON FUNCTION @extschema@.unschedule_refresh(text) IS 'Removes the pg_cron jobs of a profile; returns how many';

CREATE FUNCTION @extschema@.schedule_refresh(profile text DEFAULT 'default',
                                             incremental_schedule text DEFAULT '*/5 * * * *',
                                             full_schedule text DEFAULT '17 3 * * *',
                                             refit_schedule text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles;
    job record;
BEGIN
    IF profile IS NULL THEN
        RAISE EXCEPTION 'profile must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    p := @extschema@._profile_or_error(profile);
    PERFORM @extschema@._require_pg_cron();
    FOR job IN
        SELECT * FROM (VALUES
            -- a refresh that fails is recorded in refresh_runs (and warns); the job goes on
            ('incremental', incremental_schedule, format('SELECT @extschema@.refresh_scores(%L, on_error => %L)', p.name, 'record')),
            ('full', full_schedule, format('SELECT @extschema@.refresh_scores(%L, true, %L)', p.name, 'record')),
            -- a refit that does not converge warns and keeps the previous parameters: the job goes on
            ('refit', refit_schedule, format('SELECT @extschema@.fit_model(%L, on_failure => %L)', p.name, 'warning'))) v(kind, schedule, command)
    LOOP
        IF job.schedule IS NULL THEN
            -- No schedule: no job of that kind.
            IF EXISTS (SELECT FROM @extschema@.refresh_jobs() r WHERE r.job_name = @extschema@._job_name(p.name, job.kind)) THEN
                EXECUTE 'SELECT cron.unschedule($1)' USING @extschema@._job_name(p.name, job.kind);
            END IF;
        ELSE
            -- cron.schedule with a job name replaces that job: calling this twice leaves one job.
            RETURN QUERY EXECUTE 'SELECT cron.schedule($1, $2, $3)'
                USING @extschema@._job_name(p.name, job.kind), job.schedule, job.command;
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION @extschema@.schedule_refresh(text, text, text, text) IS
    'Creates or updates the pg_cron jobs of a profile: incremental and full refreshes, and optionally a model refit (NULL: no job); returns their job ids';

REVOKE EXECUTE ON FUNCTION @extschema@.schedule_refresh(text, text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.unschedule_refresh(text) FROM PUBLIC;

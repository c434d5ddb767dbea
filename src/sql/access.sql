-- access.sql: the least-privilege access model.

------------------------------------------------------------------------------------------------
-- Access: nothing on the tables for PUBLIC.  Two grants make the least-privilege model:
--   application: inserts events, reads events, scores, history and profiles, calls the scoring
--                and query functions; cannot change profiles, scores or existing events.
--   admin:       everything, including profiles, refresh, fitting and scheduling.
-- The functions run with the caller's privileges (no SECURITY DEFINER, but for the change-tracking
-- triggers, which alone write the change log), so the table grants are the whole policy; the
-- writing functions are also kept from PUBLIC.
------------------------------------------------------------------------------------------------
-- The role, or 42704 for a role that does not exist (0::regrole, or one dropped since).
CREATE FUNCTION @extschema@._role_or_error(role_name regrole) RETURNS regrole
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = role_name) THEN
        RAISE EXCEPTION 'role with OID % does not exist', role_name::oid USING ERRCODE = 'undefined_object';
    END IF;
    RETURN role_name;
END $$;

CREATE FUNCTION @extschema@.grant_application_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('grant_application_access(role_name)', role_name IS NULL);
    PERFORM @extschema@._role_or_error(role_name);
    -- (on Citus, a grant on the reference tables after one on the distributed tables needs one
    -- connection per worker: sequential for the rest of the transaction, as in fit_model)
    IF @extschema@._on_citus() THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', role_name);
    -- INSERT of every column but id: OVERRIDING SYSTEM VALUE would take identity values that other
    -- writers then collide with.  (The REVOKE turns a table-wide grant of an older version into it.)
    EXECUTE format('REVOKE INSERT ON @extschema@.engagement_events FROM %s', role_name);
    EXECUTE format('GRANT SELECT, INSERT (contact_id, campaign_id, event_type, occurred_at, conversion_value, channel,
                    device_type, parent_event_id, metadata, created_at) ON @extschema@.engagement_events TO %s', role_name);
    -- contact_scores reads the change log; only the change-tracking triggers write it
    EXECUTE format('REVOKE INSERT ON @extschema@.event_changes FROM %s', role_name);
    EXECUTE format('GRANT SELECT ON @extschema@.event_changes TO %s', role_name);
    EXECUTE format('GRANT SELECT ON @extschema@.scoring_profiles, @extschema@.engagement_scores,
                    @extschema@.engagement_score_history, @extschema@.pending_rescore,
                    @extschema@.score_distributions, @extschema@.contact_scores, @extschema@.model_fits,
                    @extschema@.event_sources, @extschema@.event_kind_map, @extschema@.refresh_runs TO %s', role_name);
END $$;
COMMENT ON FUNCTION @extschema@.grant_application_access(regrole) IS
    'Lets a role insert and read events, read scores, history and profiles, and call the scoring and query functions';

CREATE FUNCTION @extschema@.grant_admin_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('grant_admin_access(role_name)', role_name IS NULL);
    PERFORM @extschema@._role_or_error(role_name);
    -- (on Citus, a grant on the reference tables after one on the distributed tables needs one
    -- connection per worker: sequential for the rest of the transaction, as in fit_model)
    IF @extschema@._on_citus() THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA @extschema@ TO %s', role_name);
    -- refresh_scores works in temporary tables
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %s', current_database(), role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean, text), @extschema@.fit_model(text, timestamptz, text),
                    @extschema@.schedule_refresh(text, text, text, text), @extschema@.unschedule_refresh(text),
                    @extschema@.forget_contact(bigint),
                    @extschema@.track_event_changes(regclass, regclass, name), @extschema@.untrack_event_changes(regclass),
                    @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[], name),
                    @extschema@._track_event_changes(), @extschema@._track_event_change(),
                    @extschema@._track_shard_changes(), @extschema@._track_distributed_truncate() TO %s', role_name);
    -- (on Citus the shards' tracking triggers are made on the workers, where Citus does not
    -- propagate a grant on an extension's function)
    IF @extschema@._on_citus() THEN
        IF EXISTS (SELECT FROM run_command_on_workers(format('GRANT EXECUTE ON FUNCTION @extschema@._track_shard_changes(),
                                                             @extschema@._track_distributed_truncate() TO %s', role_name)) w
                    WHERE NOT w.success) THEN
            RAISE EXCEPTION 'could not grant % the change tracking of distributed tables on every worker', role_name
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;
END $$;
COMMENT ON FUNCTION @extschema@.grant_admin_access(regrole) IS
    'Lets a role do everything: events, profiles, scores, refresh_scores, fitting and scheduling';

REVOKE EXECUTE ON FUNCTION @extschema@.grant_application_access(regrole) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.grant_admin_access(regrole) FROM PUBLIC;

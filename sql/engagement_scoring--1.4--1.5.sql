-- engagement_scoring 1.4 -> 1.5: Citus (citus_distribute, change tracking on distributed events,
-- refresh and fits on a distributed layout) and performance work.  The scoring model is unchanged
-- (model version 2): stored scores stay current.

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.5'" to load this file. \quit

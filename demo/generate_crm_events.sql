-- demo/generate_crm_events.sql
--
-- Deterministic synthetic CRM engagement data for engagement.engagement_events:
-- the last 456 days (~15 months) of an SMS CRM's events, ending at :as_of.
--
--   psql -v contacts=5000 -v as_of="'2026-11-24 00:00:00+00'" -v seed=42 \
--        -f demo/generate_crm_events.sql
--
-- Variables (all optional):
--   contacts   number of contacts, contact_id 1..contacts          (default 5000)
--   as_of      quoted timestamptz literal, end of the data; give it
--              an explicit UTC offset                               (default '2026-11-24 00:00:00+00')
--   seed       any bigint; the data is a pure function of
--              (contacts, as_of, seed, campaigns)                   (default 42)
--   campaigns  number of campaigns, campaign_id 1..campaigns       (default 60)
--
-- About 30 events per contact.  Everything is set-based (no loops) and every
-- pseudo-random number is a hash of (seed, contact or campaign, stage salt), so
-- the same inputs give the same rows whatever the plan, the session's TimeZone,
-- DateStyle or float settings.  Rows are inserted in (contact_id, occurred_at)
-- order, stage by stage, with parent_event_id resolved from the ids RETURNed
-- by the previous stages; nothing but the inserted rows is left behind (the
-- helpers live in pg_temp, the work tables are dropped at commit).
--
-- The model, briefly:
--   * contacts get an archetype: champions (5%), loyal (15%), casual (22%),
--     fading (10%, engagement faded 20-150 days ago), long faded (10%, 200-430
--     days ago), new (6%, joined in the last 60 days), dormant (32%); each with
--     its own open / click / reply / conversion propensities, a device, a
--     carrier and a US time zone.  A quarter of the others joined during the
--     period (a 'delivered' welcome message, often answered).
--   * campaigns go out on a campaign day at a local hour of the day to a
--     hash-selected share of the contacts (engaged ones a little more often):
--     delivered -> opened -> clicked (parent: the open, else the delivery)
--     -> converted (parent: the click, else the reply); responded (parent: the
--     open, else the delivery).  Delays are log-spread (seconds to days);
--     engagement that would fall in the contact's local night moves to the
--     next morning.
--   * organic web/app sessions and inbound texts (campaign_id NULL), some of
--     them converting.
--   * ~1.5% of contacts opt out (a STOP reply to a delivery, or a web
--     unsubscribe; nothing is delivered and nothing engages after it; a fifth
--     of them text START 1 to 30 days later), ~2.5%
--     bounce (1-2 transient bounces, or 3 and no more sends).
--   * channels: campaigns are sms, some mms, 1 in 16 email; conversions and
--     organic sessions mostly web, some app.
--   * conversion_value is log-normal, ~2% NULL.

\set ON_ERROR_STOP on
\set QUIET on
\if :{?contacts} \else \set contacts 5000 \endif
\if :{?as_of} \else \set as_of '''2026-11-24 00:00:00+00''' \endif
\if :{?seed} \else \set seed 42 \endif
\if :{?campaigns} \else \set campaigns 60 \endif

-- ---------------------------------------------------------------------------
-- Helpers (pg_temp, inlinable SQL functions).
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pg_temp.gen_check(ok boolean, msg text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'generate_crm_events: %', msg USING ERRCODE = '22023';
    END IF;
END
$$;

SELECT pg_temp.gen_check((:contacts)::bigint BETWEEN 1 AND 100000000, 'contacts must be in 1..100000000'),
       pg_temp.gen_check((:campaigns)::int BETWEEN 1 AND 10000, 'campaigns must be in 1..10000'),
       pg_temp.gen_check(isfinite((:as_of)::timestamptz), 'as_of must be finite'),
       pg_temp.gen_check((:seed)::bigint IS NOT NULL, 'seed must be a bigint')
\gset gen_check_

-- Uniform in [0, 1) with 53 bits, from (seed, a, b).
CREATE OR REPLACE FUNCTION pg_temp.gen_u(a bigint, b bigint) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (hashint8extended(a # hashint8extended(b, (:seed)::bigint), (:seed)::bigint)
        & 9007199254740991)::float8 / 9007199254740992::float8;

-- Standard normal (Box-Muller) from the uniforms (a, b) and (a, b + 1).
CREATE OR REPLACE FUNCTION pg_temp.gen_n(a bigint, b bigint) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN sqrt(-2 * ln(1 - pg_temp.gen_u(a, b))) * cos(2 * pi() * pg_temp.gen_u(a, b + 1));

-- Engagement activity at epoch t: 1 until the fade time, then decaying to a floor.
CREATE OR REPLACE FUNCTION pg_temp.gen_act(t float8, t_fade float8, tau float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN t_fade IS NULL OR t < t_fade THEN 1.0
            ELSE greatest(exp(greatest((t_fade - t) / tau, -30)), 0.03) END;

-- Moves an epoch that falls in the local night (23:00-07:00 at UTC offset tz
-- seconds) to the next local morning, 07:00-08:30; otherwise leaves it alone.
CREATE OR REPLACE FUNCTION pg_temp.gen_day(t float8, tz float8, u float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN (t + tz) - 86400 * floor((t + tz) / 86400) < 25200
                 THEN t + 25200 - ((t + tz) - 86400 * floor((t + tz) / 86400)) + 5400 * u
            WHEN (t + tz) - 86400 * floor((t + tz) / 86400) >= 82800
                 THEN t + 111600 - ((t + tz) - 86400 * floor((t + tz) / 86400)) + 5400 * u
            ELSE t END;

-- Constants, as exact literals.
SELECT extract(epoch FROM (:as_of)::timestamptz) AS gen_t_end,
       extract(epoch FROM (:as_of)::timestamptz) - 456 * 86400 AS gen_t_start
\gset

BEGIN;
SET LOCAL work_mem = '256MB';
SET LOCAL client_min_messages = warning;

-- ---------------------------------------------------------------------------
-- Contacts.  Salts: contact-level draws use (contact_id, 1..99).
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE g_contact ON COMMIT DROP AS
SELECT contact_id, arch, t_join, t_fade, tau, p_open, p_click, p_resp, p_conv, p_org,
       target_mult, mu_val, tz, sendjit, dev, carrier,
       CASE WHEN bounce_grp THEN t_lo + pg_temp.gen_u(contact_id, 23) * ((:gen_t_end)::float8 - t_lo) END AS t_bounce,
       CASE WHEN pg_temp.gen_u(contact_id, 24) < 0.35 THEN 1
            WHEN pg_temp.gen_u(contact_id, 24) < 0.55 THEN 2 ELSE 3 END AS bounce_k,
       CASE WHEN NOT bounce_grp
             AND pg_temp.gen_u(contact_id, 21) < (ARRAY[0.004, 0.008, 0.012, 0.025, 0.02, 0.015, 0.02])[arch]
            THEN t_lo + pg_temp.gen_u(contact_id, 22) * ((:gen_t_end)::float8 - t_lo) END AS t_optdraw
FROM (
    SELECT contact_id, arch, t_join, t_fade, tau, dev, carrier, tz, bounce_grp,
           greatest(t_join, (:gen_t_start)::float8) AS t_lo,
           CASE WHEN arch = 7 THEN 0.04 * u4 * u4
                ELSE (ARRAY[0.55, 0.28, 0.08, 0.35, 0.25, 0.20])[arch]
                     + (ARRAY[0.30, 0.22, 0.14, 0.30, 0.25, 0.35])[arch] * u4 END AS p_open,
           ((ARRAY[0.45, 0.30, 0.15, 0.30, 0.20, 0.25, 0.05])[arch]
            + (ARRAY[0.30, 0.25, 0.25, 0.25, 0.25, 0.30, 0.20])[arch] * pg_temp.gen_u(contact_id, 5))
           * CASE WHEN dev = 'feature_phone' THEN 0.25 ELSE 1 END AS p_click,
           (ARRAY[0.06, 0.03, 0.01, 0.03, 0.02, 0.04, 0.002])[arch]
           + (ARRAY[0.09, 0.05, 0.03, 0.05, 0.03, 0.06, 0.008])[arch] * pg_temp.gen_u(contact_id, 6) AS p_resp,
           (ARRAY[0.25, 0.15, 0.05, 0.15, 0.08, 0.10, 0.02])[arch]
           + (ARRAY[0.25, 0.15, 0.13, 0.15, 0.12, 0.20, 0.06])[arch] * pg_temp.gen_u(contact_id, 7) AS p_conv,
           (ARRAY[0.45, 0.20, 0.06, 0.25, 0.15, 0.25, 0.01])[arch]
           * (0.5 + pg_temp.gen_u(contact_id, 8)) AS p_org,
           (ARRAY[1.45, 1.2, 1.0, 1.1, 1.0, 1.0, 0.95])[arch] AS target_mult,
           ln(40) + 0.5 * pg_temp.gen_n(contact_id, 16) + CASE WHEN arch = 1 THEN 0.3 ELSE 0 END AS mu_val,
           900 * pg_temp.gen_u(contact_id, 12) AS sendjit
    FROM (
        SELECT contact_id, arch, u4, dev, carrier, tz,
               pg_temp.gen_u(contact_id, 20) < 0.026 AS bounce_grp,
               -- a local day, then a local time of day 08:00-22:00
               86400 * floor((CASE WHEN arch = 6
                                       THEN (:gen_t_end)::float8 - (3 + 57 * pg_temp.gen_u(contact_id, 2)) * 86400
                                   WHEN arch IN (4, 5) OR pg_temp.gen_u(contact_id, 3) < 0.72
                                       THEN (:gen_t_start)::float8 - (1 + 700 * pg_temp.gen_u(contact_id, 2)) * 86400
                                   ELSE (:gen_t_start)::float8 + pg_temp.gen_u(contact_id, 2)
                                        * ((:gen_t_end)::float8 - 90 * 86400 - (:gen_t_start)::float8)
                              END + tz) / 86400)
               + 3600 * (8 + 14 * pg_temp.gen_u(contact_id, 18)) - tz AS t_join,
               CASE arch WHEN 4 THEN (:gen_t_end)::float8 - (20 + 130 * pg_temp.gen_u(contact_id, 9)) * 86400
                         WHEN 5 THEN (:gen_t_end)::float8 - (200 + 230 * pg_temp.gen_u(contact_id, 9)) * 86400
               END AS t_fade,
               (5 + 25 * pg_temp.gen_u(contact_id, 11)) * 86400 AS tau
        FROM (
            SELECT contact_id,
                   CASE WHEN ua < 0.05 THEN 1 WHEN ua < 0.20 THEN 2 WHEN ua < 0.42 THEN 3
                        WHEN ua < 0.52 THEN 4 WHEN ua < 0.62 THEN 5 WHEN ua < 0.68 THEN 6 ELSE 7 END AS arch,
                   u4,
                   CASE WHEN ud < 0.46 THEN 'iphone' WHEN ud < 0.89 THEN 'android'
                        WHEN ud < 0.95 THEN 'feature_phone' END AS dev,
                   (ARRAY['verizon', 'verizon', 'verizon', 'att', 'att', 'att', 'tmobile', 'tmobile',
                          'tmobile', 'uscellular', 'cricket', 'other'])[1 + floor(12 * uc)::int] AS carrier,
                   CASE WHEN ut < 0.47 THEN -18000 WHEN ut < 0.76 THEN -21600
                        WHEN ut < 0.86 THEN -25200 ELSE -28800 END::float8 AS tz
            FROM (
                SELECT i AS contact_id,
                       pg_temp.gen_u(i, 1) AS ua, pg_temp.gen_u(i, 4) AS u4, pg_temp.gen_u(i, 13) AS ud,
                       pg_temp.gen_u(i, 14) AS uc, pg_temp.gen_u(i, 15) AS ut
                FROM generate_series(1::bigint, (:contacts)::bigint) AS i
                OFFSET 0
            ) r0
            OFFSET 0
        ) r1
        OFFSET 0
    ) r2
    OFFSET 0
) r3;
ALTER TABLE g_contact ADD PRIMARY KEY (contact_id);
ANALYZE g_contact;

-- ---------------------------------------------------------------------------
-- Campaigns.  Salts: (-campaign_id, 1..99).  t_day is a UTC day start; the
-- send goes out at send_sod seconds past local midnight in each contact's zone.
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE g_campaign ON COMMIT DROP AS
SELECT j AS campaign_id,
       86400 * floor(((:gen_t_start)::float8
                      + ((j - 0.5) + 0.6 * (pg_temp.gen_u(-j, 1) - 0.5)) * 456 * 86400 / (:campaigns)::int)
                     / 86400) AS t_day,
       900 * floor(40 + 36 * pg_temp.gen_u(-j, 2)) AS send_sod,          -- 10:00-18:45 local
       0.25 + 0.29 * pg_temp.gen_u(-j, 3) AS share,
       0.6 + 0.8 * pg_temp.gen_u(-j, 4) AS appeal,
       0.6 + 0.8 * pg_temp.gen_u(-j, 5) AS link,
       CASE WHEN pg_temp.gen_u(-j, 6) < 0.2 THEN 2.5 + 2 * pg_temp.gen_u(-j, 7)
            ELSE 0.4 + 0.6 * pg_temp.gen_u(-j, 7) END AS reply,
       0.5 + pg_temp.gen_u(-j, 8) AS offer,
       0.7 + 0.8 * pg_temp.gen_u(-j, 9) AS val_mult,
       CASE WHEN j % 16 = 9 THEN 'email'                                  -- 1 in 16
            WHEN pg_temp.gen_u(-j, 10) < 0.22 THEN 'mms' ELSE 'sms' END AS channel
FROM generate_series(1, (:campaigns)::int) AS j;
ALTER TABLE g_campaign ADD PRIMARY KEY (campaign_id);
ANALYZE g_campaign;

-- ---------------------------------------------------------------------------
-- Sends: who gets which campaign, and when it is delivered.
-- Salts: (contact_id, campaign_id * 256 + 0..255).
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE g_send ON COMMIT DROP AS
SELECT contact_id, campaign_id, t_deliv
FROM (
    SELECT c.contact_id, m.campaign_id, c.t_join,
           m.t_day + m.send_sod - c.tz + c.sendjit
           + 60 * pg_temp.gen_u(c.contact_id, m.campaign_id * 256 + 1) AS t_deliv
    FROM g_contact c CROSS JOIN g_campaign m
    WHERE pg_temp.gen_u(c.contact_id, m.campaign_id * 256) < least(0.95, m.share * c.target_mult)
    OFFSET 0
) s
WHERE t_deliv > t_join AND t_deliv <= (:gen_t_end)::float8;

-- Opt-outs: the contact answers STOP to the first delivery at or after its
-- draw; nothing is sent after that one.  No delivery after the draw: the
-- contact unsubscribes on the web at the draw.
CREATE TEMP TABLE g_stop ON COMMIT DROP AS
SELECT DISTINCT ON (s.contact_id) s.contact_id, s.campaign_id, s.t_deliv
FROM g_send s JOIN g_contact c USING (contact_id)
WHERE c.t_optdraw IS NOT NULL AND s.t_deliv >= c.t_optdraw
ORDER BY s.contact_id, s.t_deliv, s.campaign_id;
ALTER TABLE g_stop ADD PRIMARY KEY (contact_id);

CREATE TEMP TABLE g_optout ON COMMIT DROP AS
SELECT o.contact_id, o.campaign_id, m.channel,
       pg_temp.gen_day(o.t_deliv + 60 * exp(pg_temp.gen_u(o.contact_id, o.campaign_id * 256 + 40) * ln(360)),
                       c.tz, pg_temp.gen_u(o.contact_id, o.campaign_id * 256 + 41)) AS t_opt
FROM g_stop o JOIN g_contact c USING (contact_id) JOIN g_campaign m USING (campaign_id)
UNION ALL
SELECT c.contact_id, NULL, 'web', c.t_optdraw
FROM g_contact c
WHERE c.t_optdraw IS NOT NULL AND NOT EXISTS (SELECT 1 FROM g_stop o WHERE o.contact_id = c.contact_id);
DELETE FROM g_optout WHERE t_opt > (:gen_t_end)::float8;
ALTER TABLE g_optout ADD PRIMARY KEY (contact_id);

DELETE FROM g_send s USING g_stop o WHERE s.contact_id = o.contact_id AND s.t_deliv > o.t_deliv;

-- Bounces: from the draw on, the next bounce_k sends bounce; after 3 the
-- number is suppressed, after 1 or 2 delivery resumes.
CREATE TEMP TABLE g_bounce ON COMMIT DROP AS
SELECT contact_id, campaign_id, rn <= bounce_k AS bounced
FROM (
    SELECT s.contact_id, s.campaign_id, c.bounce_k,
           row_number() OVER (PARTITION BY s.contact_id ORDER BY s.t_deliv, s.campaign_id) AS rn
    FROM g_send s JOIN g_contact c USING (contact_id)
    WHERE c.t_bounce IS NOT NULL AND s.t_deliv >= c.t_bounce
) b
WHERE rn <= bounce_k OR bounce_k = 3;
DELETE FROM g_send s USING g_bounce b
 WHERE s.contact_id = b.contact_id AND s.campaign_id = b.campaign_id AND NOT b.bounced;
DELETE FROM g_bounce WHERE NOT bounced;
ALTER TABLE g_bounce ADD PRIMARY KEY (contact_id, campaign_id);
ANALYZE g_send;
ANALYZE g_stop;
ANALYZE g_bounce;
ANALYZE g_optout;

-- ---------------------------------------------------------------------------
-- Engagement with each delivered send (not bounced, not the STOP one); none
-- after the contact's opt-out.  Stage salts 2..17 of the send.  Times are
-- epoch seconds (float8).
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE g_eng ON COMMIT DROP AS
SELECT contact_id, campaign_id, channel,
       CASE WHEN t_open < t_opt THEN t_open END AS t_open,
       CASE WHEN t_click < t_opt THEN t_click END AS t_click, click_on_open,
       CASE WHEN t_resp < t_opt THEN t_resp END AS t_resp, resp_on_open,
       CASE WHEN t_conv < t_opt THEN t_conv END AS t_conv, conv_on_click, conv_value, conv_channel
FROM (
SELECT contact_id, campaign_id, channel, t_opt, t_open, t_click, click_on_open, t_resp, resp_on_open,
       CASE WHEN converted THEN pg_temp.gen_day(CASE WHEN clicked THEN t_click ELSE t_resp END + d_conv, tz, u_nconv) END AS t_conv,
       converted AND clicked AS conv_on_click,
       CASE WHEN converted AND u_vnull >= 0.02
            THEN round(least(exp(mu_val + 0.85 * z_val) * val_mult, 500000)::numeric, 2) END AS conv_value,
       CASE WHEN u_cch < 0.75 OR (u_cch < 0.9 AND dev IS DISTINCT FROM 'iphone' AND dev IS DISTINCT FROM 'android')
                 THEN 'web'
            WHEN u_cch < 0.9 THEN 'app'
            ELSE channel END AS conv_channel
FROM (
    SELECT e3.*,
           CASE WHEN clicked THEN coalesce(t_open, t_deliv) + d_click END AS t_click,
           CASE WHEN responded THEN pg_temp.gen_day(coalesce(t_open, t_deliv) + d_resp, tz, u_nresp) END AS t_resp
    FROM (
        SELECT e2.*,
               CASE WHEN opened THEN pg_temp.gen_day(t_deliv + d_open, tz, u_nopen) END AS t_open
        FROM (
            SELECT e1.*,
                   opened AS click_on_open, opened AS resp_on_open,
                   CASE WHEN clicked THEN pg_temp.gen_u(contact_id, b + 6) < least(0.85, p_conv * offer)
                        WHEN responded THEN pg_temp.gen_u(contact_id, b + 6) < 0.35 * p_conv * offer
                        ELSE false END AS converted,
                   15 * exp(power(pg_temp.gen_u(contact_id, b + 7), 1.7) * ln(4 * 86400 / 15.0)) AS d_open,
                   5 * exp(power(pg_temp.gen_u(contact_id, b + 8), 2) * ln(6 * 3600 / 5.0)) AS d_click,
                   20 * exp(power(pg_temp.gen_u(contact_id, b + 9), 1.5) * ln(12 * 3600 / 20.0)) AS d_resp,
                   30 * exp(power(pg_temp.gen_u(contact_id, b + 10), 1.5) * ln(5 * 86400 / 30.0)) AS d_conv,
                   pg_temp.gen_u(contact_id, b + 11) AS u_nopen,
                   pg_temp.gen_u(contact_id, b + 12) AS u_nresp,
                   pg_temp.gen_u(contact_id, b + 13) AS u_nconv,
                   pg_temp.gen_n(contact_id, b + 14) AS z_val,             -- uses b + 14, b + 15
                   pg_temp.gen_u(contact_id, b + 16) AS u_vnull,
                   pg_temp.gen_u(contact_id, b + 17) AS u_cch
            FROM (
                SELECT e0.*,
                       u_o < p_o AS opened,
                       u_c < CASE WHEN u_o < p_o THEN least(0.9, p_click * link) ELSE 0.06 * p_o * p_click * link END AS clicked,
                       u_r < least(0.8, p_r * CASE WHEN u_o < p_o THEN 1 ELSE 0.25 END) AS responded
                FROM (
                    SELECT s.contact_id, s.campaign_id, s.campaign_id * 256 AS b, s.t_deliv,
                           coalesce(oo.t_opt, 'Infinity') AS t_opt,
                           c.tz, c.dev, c.p_click, c.p_conv, c.mu_val,
                           m.channel, m.link, m.offer, m.val_mult,
                           least(0.95, c.p_open * m.appeal * pg_temp.gen_act(s.t_deliv, c.t_fade, c.tau)) AS p_o,
                           c.p_resp * m.reply * pg_temp.gen_act(s.t_deliv, c.t_fade, c.tau) AS p_r,
                           pg_temp.gen_u(s.contact_id, s.campaign_id * 256 + 2) AS u_o,
                           pg_temp.gen_u(s.contact_id, s.campaign_id * 256 + 3) AS u_c,
                           pg_temp.gen_u(s.contact_id, s.campaign_id * 256 + 4) AS u_r
                    FROM g_send s
                    JOIN g_contact c USING (contact_id)
                    JOIN g_campaign m USING (campaign_id)
                    LEFT JOIN g_optout oo ON oo.contact_id = s.contact_id
                    WHERE NOT EXISTS (SELECT 1 FROM g_bounce x WHERE x.contact_id = s.contact_id AND x.campaign_id = s.campaign_id)
                      AND NOT EXISTS (SELECT 1 FROM g_stop x WHERE x.contact_id = s.contact_id AND x.campaign_id = s.campaign_id)
                    OFFSET 0
                ) e0
                OFFSET 0
            ) e1
            WHERE opened OR clicked OR responded
            OFFSET 0
        ) e2
        OFFSET 0
    ) e3
    OFFSET 0
) e4
) e5;
ANALYZE g_eng;

-- ---------------------------------------------------------------------------
-- Organic activity (campaign_id NULL): up to 6 candidate sessions per contact,
-- at a daytime local hour, kept with a probability that follows the contact's
-- activity.  Salts: (contact_id, (1000000 + k) * 256 + 0..255).
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE g_org ON COMMIT DROP AS
SELECT DISTINCT ON (contact_id, ts)
       contact_id, k, is_click, ts, carrier, dev,
       CASE WHEN NOT is_click THEN 'sms'
            WHEN u_ch < 0.35 AND dev IN ('iphone', 'android') THEN 'app' ELSE 'web' END AS channel,
       CASE WHEN is_click AND u_cv < 0.6 * p_conv THEN to_timestamp(t + 60 * exp(u_dv * ln(90))) END AS ts_conv,
       CASE WHEN is_click AND u_cv < 0.6 * p_conv AND u_vnull >= 0.02
            THEN round(least(exp(mu_val + 0.85 * z_val), 500000)::numeric, 2) END AS conv_value
FROM (
    SELECT o.*, to_timestamp(t) AS ts,
           pg_temp.gen_u(contact_id, b + 4) < 0.75 AS is_click,
           pg_temp.gen_u(contact_id, b + 5) AS u_ch,
           pg_temp.gen_u(contact_id, b + 6) AS u_cv,
           pg_temp.gen_u(contact_id, b + 7) AS u_dv,
           pg_temp.gen_n(contact_id, b + 8) AS z_val,                      -- uses b + 8, b + 9
           pg_temp.gen_u(contact_id, b + 10) AS u_vnull
    FROM (
        SELECT c.contact_id, k, (1000000 + k) * 256 AS b, c.dev, c.carrier, c.p_conv, c.mu_val,
               c.t_join, c.t_fade, c.tau, c.p_org, x.t_opt,
               86400 * floor((t_lo + pg_temp.gen_u(c.contact_id, (1000000 + k) * 256) * ((:gen_t_end)::float8 - t_lo)
                              + c.tz) / 86400)
               + 3600 * (7 + 8 * (pg_temp.gen_u(c.contact_id, (1000000 + k) * 256 + 1)
                                  + pg_temp.gen_u(c.contact_id, (1000000 + k) * 256 + 2)))
               - c.tz AS t                                                 -- local 07:00-23:00, peak 15:00
        FROM g_contact c
        CROSS JOIN generate_series(1::bigint, 6) AS k
        CROSS JOIN LATERAL (SELECT greatest(c.t_join, (:gen_t_start)::float8) AS t_lo) l
        LEFT JOIN g_optout x USING (contact_id)
        OFFSET 0
    ) o
    WHERE t > t_join AND t >= (:gen_t_start)::float8 AND t <= (:gen_t_end)::float8 AND (t_opt IS NULL OR t < t_opt)
      AND pg_temp.gen_u(contact_id, b + 3) < p_org * pg_temp.gen_act(t, t_fade, tau)
    OFFSET 0
) o2
ORDER BY contact_id, ts, k;
ANALYZE g_org;

-- Welcome messages for contacts who joined during the period (campaign_id
-- NULL), often answered (double opt-in).  Salts (contact_id, 30..39).
CREATE TEMP TABLE g_welcome ON COMMIT DROP AS
SELECT contact_id, dev, carrier, to_timestamp(t_join + 2 + 10 * pg_temp.gen_u(contact_id, 30)) AS ts,
       CASE WHEN pg_temp.gen_u(contact_id, 31) < CASE WHEN arch = 7 THEN 0.3 ELSE 0.75 END
            THEN to_timestamp(t_join + 12 + 10 * exp(power(pg_temp.gen_u(contact_id, 32), 1.5) * ln(360))) END AS ts_resp
FROM g_contact
WHERE t_join >= (:gen_t_start)::float8;

-- ---------------------------------------------------------------------------
-- Insert, stage by stage; each stage's RETURNING gives the parents of the next.
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE g_stat (event_type engagement.event_type, n bigint, contacts bigint, campaigns bigint);
CREATE TEMP TABLE g_seen (contact_id bigint) ON COMMIT DROP;
CREATE TEMP TABLE g_map_d (contact_id bigint, campaign_id bigint, id bigint) ON COMMIT DROP;
CREATE TEMP TABLE g_map_o (contact_id bigint, campaign_id bigint, id bigint) ON COMMIT DROP;
CREATE TEMP TABLE g_map_c (contact_id bigint, campaign_id bigint, occurred_at timestamptz, id bigint) ON COMMIT DROP;
CREATE TEMP TABLE g_map_r (contact_id bigint, campaign_id bigint, id bigint) ON COMMIT DROP;

-- 1. delivered, bounced (campaigns) and welcome deliveries.
WITH ins AS (
    INSERT INTO engagement.engagement_events
           (contact_id, campaign_id, event_type, occurred_at, channel, device_type, metadata)
    SELECT contact_id, campaign_id, event_type, occurred_at, channel, device_type, metadata
    FROM (
        SELECT s.contact_id, s.campaign_id,
               CASE WHEN b.contact_id IS NULL THEN 'delivered' ELSE 'bounced' END::engagement.event_type AS event_type,
               to_timestamp(s.t_deliv + CASE WHEN b.contact_id IS NULL THEN 0
                                             ELSE 1 + 20 * pg_temp.gen_u(s.contact_id, s.campaign_id * 256 + 42) END) AS occurred_at,
               m.channel, c.dev AS device_type,
               CASE WHEN b.contact_id IS NULL THEN jsonb_build_object('source', 'demo', 'carrier', c.carrier)
                    ELSE jsonb_build_object('source', 'demo', 'carrier', c.carrier, 'reason',
                           CASE WHEN c.bounce_k = 3 THEN 'invalid_number' ELSE 'carrier_rejected' END) END AS metadata
        FROM g_send s
        JOIN g_contact c USING (contact_id)
        JOIN g_campaign m USING (campaign_id)
        LEFT JOIN g_bounce b USING (contact_id, campaign_id)
        UNION ALL
        SELECT contact_id, NULL, 'delivered', ts, 'sms', dev,
               jsonb_build_object('source', 'demo', 'carrier', carrier, 'message', 'welcome')
        FROM g_welcome
    ) x
    WHERE occurred_at <= (:as_of)::timestamptz
    ORDER BY contact_id, occurred_at, campaign_id
    RETURNING id, contact_id, campaign_id, event_type
), st AS (
    INSERT INTO g_stat
    SELECT event_type, count(*), count(DISTINCT contact_id), count(DISTINCT campaign_id) FROM ins GROUP BY event_type
), sn AS (
    INSERT INTO g_seen SELECT DISTINCT contact_id FROM ins
)
INSERT INTO g_map_d
SELECT contact_id, coalesce(campaign_id, 0), id FROM ins WHERE event_type = 'delivered';
ANALYZE g_map_d;

-- 2. opened (parent: the delivery).
WITH ins AS (
    INSERT INTO engagement.engagement_events
           (contact_id, campaign_id, event_type, occurred_at, channel, device_type, metadata, parent_event_id)
    SELECT e.contact_id, e.campaign_id, 'opened', to_timestamp(e.t_open), e.channel, c.dev,
           jsonb_build_object('source', 'demo', 'carrier', c.carrier), d.id
    FROM g_eng e
    JOIN g_contact c USING (contact_id)
    JOIN g_map_d d ON d.contact_id = e.contact_id AND d.campaign_id = e.campaign_id
    WHERE e.t_open IS NOT NULL AND to_timestamp(e.t_open) <= (:as_of)::timestamptz
    ORDER BY e.contact_id, 4, e.campaign_id
    RETURNING id, contact_id, campaign_id, event_type
), st AS (
    INSERT INTO g_stat
    SELECT event_type, count(*), count(DISTINCT contact_id), count(DISTINCT campaign_id) FROM ins GROUP BY event_type
), sn AS (
    INSERT INTO g_seen SELECT DISTINCT contact_id FROM ins
)
INSERT INTO g_map_o SELECT contact_id, campaign_id, id FROM ins;
ANALYZE g_map_o;

-- 3. clicked (parent: the open, else the delivery) and organic sessions.
WITH ins AS (
    INSERT INTO engagement.engagement_events
           (contact_id, campaign_id, event_type, occurred_at, channel, device_type, metadata, parent_event_id)
    SELECT contact_id, campaign_id, 'clicked', occurred_at, channel, device_type, metadata, parent_event_id
    FROM (
        SELECT e.contact_id, e.campaign_id, to_timestamp(e.t_click) AS occurred_at, e.channel, c.dev AS device_type,
               jsonb_build_object('source', 'demo', 'carrier', c.carrier) AS metadata,
               CASE WHEN e.click_on_open THEN o.id ELSE d.id END AS parent_event_id
        FROM g_eng e
        JOIN g_contact c USING (contact_id)
        JOIN g_map_d d ON d.contact_id = e.contact_id AND d.campaign_id = e.campaign_id
        LEFT JOIN g_map_o o ON o.contact_id = e.contact_id AND o.campaign_id = e.campaign_id
        WHERE e.t_click IS NOT NULL
        UNION ALL
        SELECT contact_id, NULL, ts, channel, dev,
               jsonb_build_object('source', 'demo', 'carrier', carrier, 'origin', 'organic'), NULL
        FROM g_org
        WHERE is_click
    ) x
    WHERE occurred_at <= (:as_of)::timestamptz
    ORDER BY contact_id, occurred_at, campaign_id
    RETURNING id, contact_id, campaign_id, event_type, occurred_at
), st AS (
    INSERT INTO g_stat
    SELECT event_type, count(*), count(DISTINCT contact_id), count(DISTINCT campaign_id) FROM ins GROUP BY event_type
), sn AS (
    INSERT INTO g_seen SELECT DISTINCT contact_id FROM ins
)
INSERT INTO g_map_c SELECT contact_id, coalesce(campaign_id, 0), occurred_at, id FROM ins;
ANALYZE g_map_c;

-- 4. responded (parent: the open, else the delivery; the welcome), inbound texts.
WITH ins AS (
    INSERT INTO engagement.engagement_events
           (contact_id, campaign_id, event_type, occurred_at, channel, device_type, metadata, parent_event_id)
    SELECT contact_id, campaign_id, 'responded', occurred_at, channel, device_type, metadata, parent_event_id
    FROM (
        SELECT e.contact_id, e.campaign_id, to_timestamp(e.t_resp) AS occurred_at, e.channel, c.dev AS device_type,
               jsonb_build_object('source', 'demo', 'carrier', c.carrier) AS metadata,
               CASE WHEN e.resp_on_open THEN o.id ELSE d.id END AS parent_event_id
        FROM g_eng e
        JOIN g_contact c USING (contact_id)
        JOIN g_map_d d ON d.contact_id = e.contact_id AND d.campaign_id = e.campaign_id
        LEFT JOIN g_map_o o ON o.contact_id = e.contact_id AND o.campaign_id = e.campaign_id
        WHERE e.t_resp IS NOT NULL
        UNION ALL
        SELECT w.contact_id, NULL, w.ts_resp, 'sms', w.dev,
               jsonb_build_object('source', 'demo', 'carrier', w.carrier, 'message', 'welcome_reply'), d.id
        FROM g_welcome w
        JOIN g_map_d d ON d.contact_id = w.contact_id AND d.campaign_id = 0
        WHERE w.ts_resp IS NOT NULL
        UNION ALL
        SELECT contact_id, NULL, ts, channel, dev,
               jsonb_build_object('source', 'demo', 'carrier', carrier, 'origin', 'organic'), NULL
        FROM g_org
        WHERE NOT is_click
    ) x
    WHERE occurred_at <= (:as_of)::timestamptz
    ORDER BY contact_id, occurred_at, campaign_id
    RETURNING id, contact_id, campaign_id, event_type
), st AS (
    INSERT INTO g_stat
    SELECT event_type, count(*), count(DISTINCT contact_id), count(DISTINCT campaign_id) FROM ins GROUP BY event_type
), sn AS (
    INSERT INTO g_seen SELECT DISTINCT contact_id FROM ins
)
INSERT INTO g_map_r SELECT contact_id, campaign_id, id FROM ins WHERE campaign_id IS NOT NULL;
ANALYZE g_map_r;

-- 5. converted (parent: the click, else the reply; organic: the session).
WITH ins AS (
    INSERT INTO engagement.engagement_events
           (contact_id, campaign_id, event_type, occurred_at, conversion_value, channel, device_type, metadata,
            parent_event_id)
    SELECT contact_id, campaign_id, 'converted', occurred_at, conversion_value, channel, device_type, metadata,
           parent_event_id
    FROM (
        SELECT e.contact_id, e.campaign_id, to_timestamp(e.t_conv) AS occurred_at, e.conv_value AS conversion_value,
               e.conv_channel AS channel, c.dev AS device_type,
               jsonb_build_object('source', 'demo', 'carrier', c.carrier) AS metadata,
               CASE WHEN e.conv_on_click THEN k.id ELSE r.id END AS parent_event_id
        FROM g_eng e
        JOIN g_contact c USING (contact_id)
        LEFT JOIN g_map_c k ON k.contact_id = e.contact_id AND k.campaign_id = e.campaign_id
        LEFT JOIN g_map_r r ON r.contact_id = e.contact_id AND r.campaign_id = e.campaign_id
        WHERE e.t_conv IS NOT NULL
        UNION ALL
        SELECT g.contact_id, NULL, g.ts_conv, g.conv_value, g.channel, g.dev,
               jsonb_build_object('source', 'demo', 'carrier', g.carrier, 'origin', 'organic'), k.id
        FROM g_org g
        JOIN g_map_c k ON k.contact_id = g.contact_id AND k.campaign_id = 0 AND k.occurred_at = g.ts
        WHERE g.ts_conv IS NOT NULL
    ) x
    WHERE occurred_at <= (:as_of)::timestamptz
    ORDER BY contact_id, occurred_at, campaign_id
    RETURNING id, contact_id, campaign_id, event_type
)
INSERT INTO g_stat
SELECT event_type, count(*), count(DISTINCT contact_id), count(DISTINCT campaign_id) FROM ins GROUP BY event_type;

-- 6. opted_out (parent: the delivery answered STOP; web unsubscribes).
WITH ins AS (
    INSERT INTO engagement.engagement_events
           (contact_id, campaign_id, event_type, occurred_at, channel, device_type, metadata, parent_event_id)
    SELECT x.contact_id, x.campaign_id, 'opted_out', to_timestamp(x.t_opt), x.channel, c.dev,
           CASE WHEN x.campaign_id IS NULL
                THEN jsonb_build_object('source', 'demo', 'carrier', c.carrier, 'origin', 'web_unsubscribe')
                ELSE jsonb_build_object('source', 'demo', 'carrier', c.carrier, 'keyword', 'STOP') END,
           d.id
    FROM g_optout x
    JOIN g_contact c USING (contact_id)
    LEFT JOIN g_map_d d ON d.contact_id = x.contact_id AND d.campaign_id = x.campaign_id
    WHERE to_timestamp(x.t_opt) <= (:as_of)::timestamptz
    ORDER BY x.contact_id
    RETURNING id, contact_id, campaign_id, event_type
)
INSERT INTO g_stat
SELECT event_type, count(*), count(DISTINCT contact_id), count(DISTINCT campaign_id) FROM ins GROUP BY event_type;

-- 7. opted_in: a fifth of the opted-out contacts text START 1 to 30 days later (salt 43).
WITH ins AS (
    INSERT INTO engagement.engagement_events
           (contact_id, campaign_id, event_type, occurred_at, channel, device_type, metadata)
    SELECT x.contact_id, NULL, 'opted_in', to_timestamp(x.t_opt + 86400 * (1 + 29 * pg_temp.gen_u(x.contact_id, 44))),
           'sms', c.dev, jsonb_build_object('source', 'demo', 'carrier', c.carrier, 'keyword', 'START')
    FROM g_optout x
    JOIN g_contact c USING (contact_id)
    WHERE pg_temp.gen_u(x.contact_id, 43) < 0.2
      AND to_timestamp(x.t_opt + 86400 * (1 + 29 * pg_temp.gen_u(x.contact_id, 44))) <= (:as_of)::timestamptz
    ORDER BY x.contact_id
    RETURNING id, contact_id, campaign_id, event_type
)
INSERT INTO g_stat
SELECT event_type, count(*), count(DISTINCT contact_id), count(DISTINCT campaign_id) FROM ins GROUP BY event_type;

INSERT INTO g_stat
SELECT NULL, sum(n), (SELECT count(DISTINCT contact_id) FROM g_seen),
       (SELECT campaigns FROM g_stat WHERE event_type = 'delivered')
FROM g_stat;

COMMIT;

ANALYZE engagement.engagement_events;

SELECT coalesce(event_type::text, 'total') AS event_type, n AS events, contacts,
       CASE WHEN event_type IS NULL OR event_type = 'delivered' THEN campaigns END AS campaigns
FROM g_stat
ORDER BY g_stat.event_type NULLS LAST;

DROP TABLE g_stat;

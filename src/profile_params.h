/*
 * profile_params.h: the parameters of a scoring profile, listed once.
 *
 * ES_PROFILE_PARAMS(X) calls X(column, member, default_value, rule) for each of
 * the 34 parameters, in the order of es_profile's fields, which is also the
 * order of their columns in engagement.scoring_profiles
 * (src/sql/schema.sql; test/unit/test_profile_params.cpp checks the two agree):
 *   column         the SQL column name, an identifier (#column is its string);
 *   member         the es_profile member it fills, as a member expression;
 *   default_value  the column's DEFAULT (docs/model.md's defaults);
 *   rule           the column's CHECK: ES_BETWEEN(lo, hi), lo <= value <= hi
 *                  (SQL "column BETWEEN lo AND hi"), or ES_ABOVE(lo, hi),
 *                  lo < value <= hi (SQL "column > lo AND column <= hi"), with
 *                  lo and hi written as the SQL writes them; an initializer of
 *                  struct es_param_range.  Their columns are float8, but for
 *                  ES_INTEGER_BETWEEN(lo, hi): an integer column with the CHECK
 *                  of ES_BETWEEN, whose value the kernel checks is integral.
 * The scoring kernel generates es_default_profile() and the per-parameter
 * checks of es_validate_profile() from this list, and asserts at compile time
 * that it names every field of es_profile in order.
 *
 * The ranges keep every field of a score finite, for any events a contact can
 * have (see scoring_kernel.h): every bound is finite, so NaN and infinities are
 * refused too.  Each range's reason is given beside it.
 *
 * Valid C and C++, no PostgreSQL headers.
 */
#ifndef ENGAGEMENT_PROFILE_PARAMS_H
#define ENGAGEMENT_PROFILE_PARAMS_H

#include "scoring_kernel.h" /* es_profile, and the event types indexing type_weight */

/* Whether a parameter's lower bound is included. */
enum es_param_rule {
    ES_PARAM_BETWEEN, /* lo <= value <= hi */
    ES_PARAM_ABOVE,   /* lo < value <= hi */
    ES_PARAM_INTEGER  /* lo <= value <= hi, an integer */
};

/* What a parameter's CHECK constraint requires (a rule of ES_PROFILE_PARAMS). */
typedef struct es_param_range {
    enum es_param_rule rule;
    double lo, hi;
    const char *lo_text, *hi_text; /* the bounds as written, here and in the SQL */
} es_param_range;

#define ES_BETWEEN(lo, hi) {ES_PARAM_BETWEEN, lo, hi, #lo, #hi}
#define ES_ABOVE(lo, hi) {ES_PARAM_ABOVE, lo, hi, #lo, #hi}
#define ES_INTEGER_BETWEEN(lo, hi) {ES_PARAM_INTEGER, lo, hi, #lo, #hi}

/*
 * The ranges, by kind:
 * - durations in days, [1e-6, 1e9]: from about a tenth of a second (so that n / frequency_min_days
 *   stays below 1e25 for any bigint n) to beyond the ~1.1e8 days PostgreSQL's timestamps span (so
 *   "every event" stays expressible); horizon_days too (the MBG/NBD expectation, at most
 *   (r + x) horizon / alpha, stays below ~1e27);
 * - references, [1e-9, 1e18]: any positive scale keeps its component in [0, 100]; the bounds keep
 *   the ratios finite;
 * - time-decay weights, [-1e6, 1e6]: a bigint count of events then sums to at most ~1e25, far from
 *   overflowing (a weight of 1e308 made the sum infinite, and the composite NaN);
 * - composite weights and the two penalties, [0, 1];
 * - undeliverable_after, a count of bounces: 1 to ES_UNDELIVERABLE_AFTER_MAX (the bounces a
 *   contact's state keeps);
 * - shapes of the models (r, a, b, p, q) and the conversion share's prior counts, [1e-9, 1e9]
 *   (q > 1: a finite population mean): every fit that converges (shapes within e^+-20) fits, and
 *   the MBG/NBD expectation can be evaluated over the whole range (btyd_kernel.h);
 * - scales: alpha [1e-9, 1e18] days (a converged fit's alpha lies within e^+-20 of the longest
 *   observation, at least a day, and below the search box, e^40), v [1e-18, 1e18] (within the
 *   search box, e^+-40).
 */
#define ES_PROFILE_PARAMS(X)                                                                           \
    X(lookback_days,          lookback_days,                365,   ES_BETWEEN(1e-6, 1e9))              \
    X(recency_tau_days,       recency_tau_days,             30,    ES_BETWEEN(1e-6, 1e9))              \
    X(frequency_min_days,     frequency_min_days,           30,    ES_BETWEEN(1e-6, 1e9))              \
    X(frequency_ref_rate,     frequency_ref_rate,           0.1,   ES_BETWEEN(1e-9, 1e18))             \
    X(monetary_ref_value,     monetary_ref_value,           1000,  ES_BETWEEN(1e-9, 1e18))             \
    X(half_life_days,         half_life_days,               14,    ES_BETWEEN(1e-6, 1e9))              \
    X(time_decay_ref,         time_decay_ref,               5,     ES_BETWEEN(1e-9, 1e18))             \
    X(decay_weight_delivered, type_weight[ES_DELIVERED],    0,     ES_BETWEEN(-1e6, 1e6))              \
    X(decay_weight_opened,    type_weight[ES_OPENED],       1,     ES_BETWEEN(-1e6, 1e6))              \
    X(decay_weight_clicked,   type_weight[ES_CLICKED],      2,     ES_BETWEEN(-1e6, 1e6))              \
    X(decay_weight_responded, type_weight[ES_RESPONDED],    3,     ES_BETWEEN(-1e6, 1e6))              \
    X(decay_weight_converted, type_weight[ES_CONVERTED],    10,    ES_BETWEEN(-1e6, 1e6))              \
    X(decay_weight_opted_out, type_weight[ES_OPTED_OUT],    -10,   ES_BETWEEN(-1e6, 1e6))              \
    X(decay_weight_opted_in,  type_weight[ES_OPTED_IN],     0,     ES_BETWEEN(-1e6, 1e6))              \
    X(decay_weight_bounced,   type_weight[ES_BOUNCED],      -1,    ES_BETWEEN(-1e6, 1e6))              \
    X(weight_recency,         weight_recency,               0.30,  ES_BETWEEN(0, 1))                   \
    X(weight_frequency,       weight_frequency,             0.25,  ES_BETWEEN(0, 1))                   \
    X(weight_monetary,        weight_monetary,              0.20,  ES_BETWEEN(0, 1))                   \
    X(weight_time_decay,      weight_time_decay,            0.15,  ES_BETWEEN(0, 1))                   \
    X(weight_diversity,       weight_diversity,             0.10,  ES_BETWEEN(0, 1))                   \
    X(opt_out_penalty,        opt_out_penalty,              0.9,   ES_BETWEEN(0, 1))                   \
    X(undeliverable_penalty,  undeliverable_penalty,        0.9,   ES_BETWEEN(0, 1))                   \
    X(undeliverable_after,    undeliverable_after,          3,     ES_INTEGER_BETWEEN(1, 10))          \
    X(new_contact_days,       new_contact_days,             30,    ES_BETWEEN(1e-6, 1e9))              \
    X(model_r,                model_r,                      0.25,  ES_BETWEEN(1e-9, 1e9))              \
    X(model_alpha,            model_alpha,                  10,    ES_BETWEEN(1e-9, 1e18))             \
    X(model_a,                model_a,                      0.5,   ES_BETWEEN(1e-9, 1e9))              \
    X(model_b,                model_b,                      2.5,   ES_BETWEEN(1e-9, 1e9))              \
    X(horizon_days,           horizon_days,                 30,    ES_BETWEEN(1e-6, 1e9))              \
    X(conv_prior_a,           conv_prior_a,                 1,     ES_BETWEEN(1e-9, 1e9))              \
    X(conv_prior_b,           conv_prior_b,                 9,     ES_BETWEEN(1e-9, 1e9))              \
    X(gg_p,                   gg_p,                         6.25,  ES_BETWEEN(1e-9, 1e9))              \
    X(gg_q,                   gg_q,                         3.74,  ES_ABOVE(1, 1e9))                   \
    X(gg_v,                   gg_v,                         15.44, ES_BETWEEN(1e-18, 1e18))

/*
 * The column list of the parameters as one string literal, in es_profile's
 * order, each column cast to float8 and followed by ", ":
 *   "lookback_days::pg_catalog.float8, ..., gg_v::pg_catalog.float8, "
 * so that "SELECT " ES_PROFILE_COLUMNS "name FROM ..." reads a profile row's
 * values in field order as doubles (the integer columns too), then its name.
 */
#define ES_PROFILE_COLUMN_AND_COMMA(column, member, default_value, rule) #column "::pg_catalog.float8, "
#define ES_PROFILE_COLUMNS ES_PROFILE_PARAMS(ES_PROFILE_COLUMN_AND_COMMA)

#endif /* ENGAGEMENT_PROFILE_PARAMS_H */

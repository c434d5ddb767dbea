/*
 * profile_params.h: the parameters of a scoring profile, listed once.
 *
 * ES_PROFILE_PARAMS(X) calls X(column, member, default_value, rule) for each of
 * the 30 parameters, in the order of es_profile's fields, which is also the
 * order of their columns in engagement.scoring_profiles
 * (src/sql/schema.sql; test/unit/test_profile_params.cpp checks the two agree):
 *   column         the SQL column name, an identifier (#column is its string);
 *   member         the es_profile member it fills, as a member expression;
 *   default_value  the column's DEFAULT (docs/model.md's defaults);
 *   rule           the column's CHECK, an enum es_param_rule.
 * The scoring kernel generates es_default_profile() and the per-parameter
 * checks of es_validate_profile() from this list, and asserts at compile time
 * that it names every field of es_profile in order.
 *
 * Valid C and C++, no PostgreSQL headers.
 */
#ifndef ENGAGEMENT_PROFILE_PARAMS_H
#define ENGAGEMENT_PROFILE_PARAMS_H

#include "scoring_kernel.h" /* es_profile, and the event types indexing type_weight */

/* What a parameter's CHECK constraint requires. */
enum es_param_rule {
    ES_PARAM_POSITIVE,     /* finite and > 0 */
    ES_PARAM_FINITE,       /* finite */
    ES_PARAM_UNIT_INTERVAL, /* in [0, 1] */
    ES_PARAM_ABOVE_ONE      /* finite and > 1 */
};

#define ES_PROFILE_PARAMS(X)                                                                  \
    X(lookback_days,          lookback_days,                365,  ES_PARAM_POSITIVE)          \
    X(recency_tau_days,       recency_tau_days,             30,   ES_PARAM_POSITIVE)          \
    X(frequency_min_days,     frequency_min_days,           7,    ES_PARAM_POSITIVE)          \
    X(frequency_ref_rate,     frequency_ref_rate,           0.1,  ES_PARAM_POSITIVE)          \
    X(monetary_ref_value,     monetary_ref_value,           1000, ES_PARAM_POSITIVE)          \
    X(half_life_days,         half_life_days,               14,   ES_PARAM_POSITIVE)          \
    X(time_decay_ref,         time_decay_ref,               5,    ES_PARAM_POSITIVE)          \
    X(decay_weight_delivered, type_weight[ES_DELIVERED],    0,    ES_PARAM_FINITE)            \
    X(decay_weight_opened,    type_weight[ES_OPENED],       1,    ES_PARAM_FINITE)            \
    X(decay_weight_clicked,   type_weight[ES_CLICKED],      2,    ES_PARAM_FINITE)            \
    X(decay_weight_responded, type_weight[ES_RESPONDED],    3,    ES_PARAM_FINITE)            \
    X(decay_weight_converted, type_weight[ES_CONVERTED],    10,   ES_PARAM_FINITE)            \
    X(decay_weight_opted_out, type_weight[ES_OPTED_OUT],    -10,  ES_PARAM_FINITE)            \
    X(decay_weight_bounced,   type_weight[ES_BOUNCED],      -1,   ES_PARAM_FINITE)            \
    X(weight_recency,         weight_recency,               0.30, ES_PARAM_UNIT_INTERVAL)     \
    X(weight_frequency,       weight_frequency,             0.25, ES_PARAM_UNIT_INTERVAL)     \
    X(weight_monetary,        weight_monetary,              0.20, ES_PARAM_UNIT_INTERVAL)     \
    X(weight_time_decay,      weight_time_decay,            0.15, ES_PARAM_UNIT_INTERVAL)     \
    X(weight_diversity,       weight_diversity,             0.10, ES_PARAM_UNIT_INTERVAL)     \
    X(opt_out_penalty,        opt_out_penalty,              0.9,  ES_PARAM_UNIT_INTERVAL)     \
    X(model_r,                model_r,                      0.25, ES_PARAM_POSITIVE)          \
    X(model_alpha,            model_alpha,                  10,   ES_PARAM_POSITIVE)          \
    X(model_a,                model_a,                      0.5,  ES_PARAM_POSITIVE)          \
    X(model_b,                model_b,                      2.5,  ES_PARAM_POSITIVE)          \
    X(horizon_days,           horizon_days,                 30,   ES_PARAM_POSITIVE)          \
    X(conv_prior_a,           conv_prior_a,                 1,    ES_PARAM_POSITIVE)          \
    X(conv_prior_b,           conv_prior_b,                 9,    ES_PARAM_POSITIVE)          \
    X(gg_p,                   gg_p,                         6.25, ES_PARAM_POSITIVE)          \
    X(gg_q,                   gg_q,                         3.74, ES_PARAM_ABOVE_ONE)         \
    X(gg_v,                   gg_v,                         15.44, ES_PARAM_POSITIVE)

/*
 * The column list of the parameters as one string literal, in es_profile's
 * order, each column followed by ", ":
 *   "lookback_days, recency_tau_days, ..., conv_prior_b, "
 * so that "SELECT " ES_PROFILE_COLUMNS "name FROM ..." reads a profile row's
 * values in field order, then its name.
 */
#define ES_PROFILE_COLUMN_AND_COMMA(column, member, default_value, rule) #column ", "
#define ES_PROFILE_COLUMNS ES_PROFILE_PARAMS(ES_PROFILE_COLUMN_AND_COMMA)

#endif /* ENGAGEMENT_PROFILE_PARAMS_H */

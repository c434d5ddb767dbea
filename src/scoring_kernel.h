/*
 * scoring_kernel.h: the engagement scoring model of docs/model.md.
 *
 * The kernel is C++17 with no PostgreSQL headers.  This header is also valid C
 * so that the PostgreSQL glue (src/glue/) can stay plain C: no C++
 * frame ever lies between PostgreSQL and an ereport() longjmp, and no C++
 * exception can reach PostgreSQL (every function here is noexcept and reports
 * failures through a status code and a message buffer).
 *
 * Times are PostgreSQL-style microseconds since 2000-01-01 00:00:00 UTC, within
 * PostgreSQL's timestamp range (4713 BC to 294276 AD).  The two ends of that
 * range lie more than INT64_MAX microseconds apart: ages are computed so that
 * no difference of two times overflows.
 * The accumulator is plain data: the glue allocates it (and the array of
 * engagement-day keys, and the latest bounces) in PostgreSQL memory contexts, so
 * nothing here allocates on the aggregation path.
 */
#ifndef ENGAGEMENT_SCORING_KERNEL_H
#define ENGAGEMENT_SCORING_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define ES_NOEXCEPT noexcept
#else
#define ES_NOEXCEPT
#endif

/* Event types, in the order of the SQL enum engagement.event_type. */
enum es_event_type {
    ES_DELIVERED = 0,
    ES_OPENED = 1,
    ES_CLICKED = 2,
    ES_RESPONDED = 3,
    ES_CONVERTED = 4,
    ES_OPTED_OUT = 5,
    ES_OPTED_IN = 6, /* consent given again after an opt-out (SMS START, UNSTOP) */
    ES_BOUNCED = 7
};
#define ES_EVENT_TYPES 8
/* The engaging types are ES_OPENED to ES_CONVERTED, contiguous. */
#define ES_ENGAGING_TYPES 4
/* The version of docs/model.md this kernel computes; stored with every score, so scores
 * of an older version are known to be stale. */
#define ES_MODEL_VERSION 3
/* The largest undeliverable_after a profile may have (profile_params.h): how many of the latest
 * bounces es_bounces keeps. */
#define ES_UNDELIVERABLE_AFTER_MAX 10
#define ES_USECS_PER_DAY INT64_C(86400000000)
/* Seconds from the Unix epoch to the PostgreSQL epoch (2000-01-01). */
#define ES_PG_EPOCH_UNIX_SECS INT64_C(946684800)

/* Every parameter of a scoring profile (one row of engagement.scoring_profiles): the
 * doubles listed, with their defaults and checks, by ES_PROFILE_PARAMS (profile_params.h),
 * in the same order. */
typedef struct es_profile {
    double lookback_days;
    double recency_tau_days;
    double frequency_min_days;
    double frequency_ref_rate;
    double monetary_ref_value;
    double half_life_days;
    double time_decay_ref;
    double type_weight[ES_EVENT_TYPES]; /* time-decay weight per event type */
    double weight_recency;
    double weight_frequency;
    double weight_monetary;
    double weight_time_decay;
    double weight_diversity;
    double opt_out_penalty;
    double undeliverable_penalty;
    double undeliverable_after;  /* an integer, 1 to ES_UNDELIVERABLE_AFTER_MAX */
    double new_contact_days;
    double model_r;
    double model_alpha;
    double model_a;
    double model_b;
    double horizon_days;
    double conv_prior_a;
    double conv_prior_b;
    double gg_p;  /* Gamma-Gamma value model */
    double gg_q;
    double gg_v;
} es_profile;

/* A Neumaier-compensated sum: order-independent to the last bit in practice,
 * so serial and parallel aggregation agree. */
typedef struct es_sum {
    double sum;
    double compensation;
} es_sum;

/*
 * Running state for one contact's events, as of one time.  Everything the
 * model needs except the set of engagement days and the latest bounces, which
 * the caller keeps apart (an array of day keys and an es_bounces; see
 * es_accumulate), so that a contact without bounces carries nothing for them.
 * Two accumulators with the same as_of and profile merge exactly (es_merge).
 * The latest times are ES_NO_TIME until an event sets them: a minus infinity
 * that every timestamp follows.
 */
#define ES_NO_TIME INT64_MIN
typedef struct es_accum {
    int64_t as_of;               /* T */
    int64_t event_count;         /* events at or before T, any type */
    int64_t engaging_count;      /* engaging events at or before T */
    int64_t first_event_at;      /* min occurred_at at or before T (valid if event_count > 0) */
    int64_t last_engaged_at;     /* max engaging occurred_at at or before T (valid if engaging_count > 0) */
    int64_t last_reached_at;     /* max occurred_at of a delivered or engaging event at or before T */
    int64_t last_opted_out_at;   /* max occurred_at of an opted_out event at or before T */
    int64_t last_opted_in_at;    /* max occurred_at of an opted_in event at or before T */
    int64_t window_event_count;  /* events in the lookback window, any type */
    int64_t window_oldest_at;    /* min occurred_at in the window (valid if window_event_count > 0) */
    int64_t window_engaging_count[ES_ENGAGING_TYPES]; /* per engaging type, [type - ES_OPENED] */
    /* The two sums of conversion values stay at the largest double once they reach it (values
     * can be any finite double): never infinite or NaN. */
    es_sum window_value;         /* sum of conversion values in the window */
    es_sum decay_raw;            /* sum of weight(type) * 2^(-age / half_life) in the window */
    es_sum conversion_total;     /* sum of conversion values at or before T */
} es_accum;

/*
 * The latest bounce times at or before T, newest first, ties kept: at most
 * ES_UNDELIVERABLE_AFTER_MAX of them.  The K-th latest bounce follows
 * last_reached_at exactly when K or more bounces do, for every K a profile may
 * have.  Two merge exactly, in any order (es_bounces_merge): the result is the
 * latest of their union.
 */
typedef struct es_bounces {
    int64_t n;                                   /* times kept */
    int64_t at[ES_UNDELIVERABLE_AFTER_MAX];
} es_bounces;

/* Everything the model computes for one contact, with the facts behind it. */
typedef struct es_result {
    double composite;            /* after the opt-out and undeliverable penalties */
    double composite_unpenalised;
    double recency, frequency, monetary, time_decay, diversity;
    double engagement_probability, conversion_probability, churn_risk; /* penalised */
    double p_alive;              /* es_btyd_p_alive (MBG/NBD), before the penalties */
    int opted_out;
    int undeliverable;
    int segment;                 /* enum es_segment */
    int recency_quintile, frequency_quintile, monetary_quintile, fm_quintile;
    /* facts */
    double tenure_days;          /* age of the first event, any type */
    int64_t birth_at;            /* the start (00:00 UTC) of the birth day b0 */
    int64_t last_opted_out_at;   /* ES_NO_TIME when none */
    int64_t last_opted_in_at;    /* ES_NO_TIME when none */
    int64_t last_reached_at;     /* ES_NO_TIME when never reached */
    int64_t bounces_since;       /* bounces after last_reached_at, counted up to ES_UNDELIVERABLE_AFTER_MAX */
    double recency_age_days;     /* age of the last engaging event in the window; -1 if none */
    int64_t window_engaging;     /* n */
    int64_t window_events;
    double observed_days;        /* clamp(age of oldest window event, ...); 0 if the window is empty */
    double rate_per_day;
    double window_value;         /* V */
    double decay_raw;
    double entropy;              /* H */
    int engaging_types_seen;     /* number of c_k > 0 */
    int64_t engagement_days;     /* n_days: days with an engaging event, the birth day b0 included */
    int64_t repeat_days;         /* x: those after b0 */
    int64_t t_x_days;            /* t_x */
    int64_t t_c_days;            /* Tc */
    int64_t conversion_days;     /* days with a converted event */
    int64_t valued_conversion_days; /* x_v: conversion days whose value is > 0 */
    double conversion_value_total;  /* x_v * m_v: every conversion value at or before as_of */
    double mean_conversion_value;   /* m_v: conversion_value_total / x_v, 0 when x_v = 0 */
    double conversion_share;     /* q */
    /* MBG/NBD expected engagement days over horizon_days (es_btyd_expected), penalised:
     * docs/model.md's expected_engagements_30d. */
    double expected_engagements_horizon;
    double expected_conversion_value; /* Gamma-Gamma: the next conversion day's expected value */
    double expected_value_horizon;    /* docs/model.md's expected_value_30d, penalised */
} es_result;

/*
 * The score's fields from 1.6 on, in the order of engagement.score's attributes after
 * expected_value_30d (its 22nd on): X(member of es_result, SQL type: bool, float8, int8 or
 * timestamptz).  The glue builds their types and values from this list: a new score field the
 * kernel computes is appended here, to es_result, to the SQL type and to the table.
 */
#define ES_SCORE_FIELDS_SINCE_1_6(X)      \
    X(undeliverable, bool)                \
    X(tenure_days, float8)                \
    X(birth_at, timestamptz)              \
    X(repeat_days, int8)                  \
    X(t_x_days, int8)                     \
    X(t_c_days, int8)                     \
    X(engagement_days, int8)              \
    X(conversion_days, int8)              \
    X(valued_conversion_days, int8)       \
    X(mean_conversion_value, float8)

/*
 * The segments, in the order their rules are tried:
 * X(ID, name, rq_min, rq_max, fmq_min, fmq_max).  opted_out, undeliverable and
 * new are decided by the contact's flags and tenure (their bounds 0); every
 * other segment holds the contacts with rq_min <= Rq <= rq_max and
 * fmq_min <= FMq <= fmq_max that no earlier rule took (lost: all the rest).
 */
#define ES_SEGMENT_LIST(X)                              \
    X(OPTED_OUT,          opted_out,          0, 0, 0, 0) \
    X(UNDELIVERABLE,      undeliverable,      0, 0, 0, 0) \
    X(NEW,                new,                0, 0, 0, 0) \
    X(CHAMPIONS,          champions,          4, 5, 4, 5) \
    X(LOYAL,              loyal,              3, 5, 4, 5) \
    X(POTENTIAL_LOYALIST, potential_loyalist, 4, 5, 2, 5) \
    X(PROMISING,          promising,          3, 5, 1, 2) \
    X(NEED_ATTENTION,     need_attention,     3, 3, 3, 3) \
    X(AT_RISK,            at_risk,            2, 2, 3, 5) \
    X(CANNOT_LOSE,        cannot_lose,        1, 1, 4, 5) \
    X(ABOUT_TO_SLEEP,     about_to_sleep,     2, 2, 1, 2) \
    X(HIBERNATING,        hibernating,        1, 1, 2, 5) \
    X(LOST,               lost,               1, 5, 1, 5)

enum es_segment {
#define ES_SEGMENT_ENUM(id, name, rq_min, rq_max, fmq_min, fmq_max) ES_SEG_##id,
    ES_SEGMENT_LIST(ES_SEGMENT_ENUM)
#undef ES_SEGMENT_ENUM
    ES_SEGMENTS
};

/* Status codes; the glue maps them to SQLSTATEs. */
enum es_status {
    ES_OK = 0,
    ES_INVALID_PARAMETER = 1, /* 22023 */
    ES_OUT_OF_RANGE = 2,      /* 22003 */
    ES_OUT_OF_MEMORY = 3,     /* 53200 */
    ES_INTERNAL = 4           /* XX000 */
};

/* The profile of docs/model.md's defaults. */
es_profile es_default_profile(void) ES_NOEXCEPT;

/* Checks a profile as the profile table's constraints do (the ranges of
 * profile_params.h and the two cross-column rules).  ES_OK or
 * ES_INVALID_PARAMETER with a message in err (errlen bytes, NUL-terminated). */
int es_validate_profile(const es_profile *p, char *err, size_t errlen) ES_NOEXCEPT;

/* day(t) = floor(epoch(t) / 86400), t in PostgreSQL microseconds. */
int64_t es_day_number(int64_t ts) ES_NOEXCEPT;

/* A fresh accumulator for events scored as of as_of. */
void es_accum_init(es_accum *acc, int64_t as_of) ES_NOEXCEPT;

/*
 * Adds one event.  value is the conversion value (0 when NULL or not a
 * conversion; the caller rejects NaN and negatives).  Returns what the caller
 * keeps apart, for an event at or before as_of:
 *   ES_ACC_DAY     an engaging event: *day_key is set, for the contact's
 *                  day-key array.  A key is 4 * day(t) plus flag bits
 *                  (ES_DAY_CONVERTED, ES_DAY_VALUED), so keys of one day sort
 *                  together; es_day_of_key() gives the day back;
 *   ES_ACC_BOUNCE  a bounce: the caller adds occurred_at to the contact's
 *                  es_bounces (es_bounces_add), made on the first;
 *   ES_ACC_NONE    anything else (events after as_of are ignored).
 */
#define ES_ACC_NONE 0
#define ES_ACC_DAY 1
#define ES_ACC_BOUNCE 2
#define ES_DAY_CONVERTED 1 /* the day holds a converted event */
#define ES_DAY_VALUED 2    /* ... one with a conversion value > 0 */
#define ES_DAY_KEY_SHIFT 2
/* floor(key / 4) (an arithmetic shift, also for days before 1970) */
#define es_day_of_key(key) ((int64_t) ((key) >> ES_DAY_KEY_SHIFT))

int es_accumulate(es_accum *acc, const es_profile *p, int type, int64_t occurred_at,
                  double value, int32_t *day_key) ES_NOEXCEPT;

/* An empty es_bounces; adding a bounce time; merging src into dst. */
void es_bounces_init(es_bounces *b) ES_NOEXCEPT;
void es_bounces_add(es_bounces *b, int64_t occurred_at) ES_NOEXCEPT;
void es_bounces_merge(es_bounces *dst, const es_bounces *src) ES_NOEXCEPT;

/* Merges src into dst (same as_of and profile).  Day-key arrays are simply
 * concatenated by the caller, es_bounces merged by es_bounces_merge. */
void es_merge(es_accum *dst, const es_accum *src) ES_NOEXCEPT;

/* Sorts day keys in place and collapses them to one key per day (the
 * flag bits OR-ed).  Returns the new length.  Never allocates. */
size_t es_compact_day_keys(int32_t *keys, size_t n) ES_NOEXCEPT;

/* Merges two compact day-key arrays (as es_compact_day_keys leaves them) into out, which has
 * room for na + nb keys and overlaps neither: the compaction of their concatenation, in linear
 * time.  Returns its length. */
size_t es_merge_day_keys(const int32_t *a, size_t na, const int32_t *b, size_t nb, int32_t *out) ES_NOEXCEPT;

/* The contact's summaries for the models, as docs/model.md defines them, in days.  MBG/NBD:
 * x engagement days after the birth day (the first event's), t_x the last of them (0 when x = 0),
 * t_c = day(as_of) - birth.  Gamma-Gamma: value_days (x_v) conversion days with a value > 0, and
 * value_total (x_v * m_v) the sum of every conversion value.  keys must be compacted;
 * acc->event_count > 0. */
typedef struct es_model_summary {
    int64_t x, t_x, t_c;
    int64_t value_days;
    double value_total;
} es_model_summary;
es_model_summary es_summarize(const es_accum *acc, const int32_t *keys, size_t nkeys) ES_NOEXCEPT;

/* Scores the contact.  keys must be compacted; bounces is NULL when the
 * contact has no bounce.  acc->event_count must be > 0
 * (a contact with no event at or before as_of has no score).  Fails with
 * es_btyd_expected's status and message when the profile's model parameters are
 * too extreme for expected_engagements_horizon (ES_OUT_OF_RANGE), which no
 * profile es_validate_profile accepts has: for those, every field of the result
 * is finite, whatever the events (the composite at most 100.0000001, the bound
 * of engagement_scores, which only rounding can reach; expected_value_horizon
 * the largest double where the product overflows). */
int es_finalize(const es_accum *acc, const int32_t *keys, size_t nkeys, const es_bounces *bounces,
                const es_profile *p, es_result *out, char *err, size_t errlen) ES_NOEXCEPT;

/*
 * The summary a stored score keeps (docs/model.md "Stored summary and any horizon"): all that the
 * predictions at any horizon need, without the events.  es_finalize's result holds it
 * (repeat_days, t_x_days, t_c_days, engagement_days, conversion_days, valued_conversion_days,
 * mean_conversion_value, opted_out, undeliverable).
 */
typedef struct es_stored_summary {
    int64_t x, t_x, t_c;        /* MBG/NBD: repeat engagement days, day of the last, day(T) - birth */
    int64_t n_days, conv_days;  /* engagement days (the birth day included), conversion days */
    int64_t x_v;                /* conversion days whose value is > 0 */
    double m_v;                 /* their mean value (0 when x_v = 0) */
    int opted_out, undeliverable;
} es_stored_summary;

/* The predictions over a horizon of h days after the summary's T, penalised as the stored ones. */
typedef struct es_prediction {
    double engagement_probability;
    double conversion_probability;
    double expected_engagements;  /* engagement days in (T, T + h] */
    double expected_value;        /* conversion value in (T, T + h] */
} es_prediction;

/* The largest horizon, in days, of es_predict (es_btyd_expected's accurate range), and the most
 * months of es_lifetime_value (a century). */
#define ES_HORIZON_MAX 1e9
#define ES_LIFETIME_MONTHS_MAX 1200
#define ES_DAYS_PER_MONTH 30

/*
 * What es_predict and es_lifetime_value may keep between the calls of one query: the MBG/NBD part
 * of a summary's predictions, which depends only on (x, t_x, t_c), the profile's r, alpha, a, b
 * and the horizon (or the months and the discount rate).  Summaries repeat (every contact born on
 * the same day with no engagement day since shares one), and each is computed once while it stays
 * in its slot (direct-mapped; 256 kB, so that a lookup stays in the CPU's cache).  Results are the
 * same, bit for bit, with or without a memo.  Plain data owned by the caller; zeroed, it is empty.
 */
#define ES_FORECAST_MEMO_SLOTS 8192
#define ES_FORECAST_MEMO_BITS 19  /* x, t_x and t_c each below 2^19 (1,435 years of days), else not kept */
typedef struct es_forecast_memo_slot {
    uint64_t key;     /* generation << 57 | x << 38 | t_x << 19 | t_c; 0: empty */
    double alive[3];  /* es_predict: P(alive), E, P(an engagement day | alive); es_lifetime_value: its days */
} es_forecast_memo_slot;
typedef struct es_forecast_memo {
    double inputs[7];     /* what the slots were computed with: the function, r, alpha, a, b, its arguments */
    uint64_t generation;  /* 1..127, advanced when the inputs change: the slots of another are empty */
    es_forecast_memo_slot slots[ES_FORECAST_MEMO_SLOTS];
} es_forecast_memo;

/*
 * The predictions of summary s over horizon days (0 < horizon <= ES_HORIZON_MAX) with p's model
 * parameters, priors and penalties.  At horizon = p->horizon_days they equal es_finalize's
 * fields bit for bit (both evaluate the same expressions).  ES_INVALID_PARAMETER for a horizon
 * that is not finite and > 0 or a summary no score can hold, ES_OUT_OF_RANGE above the largest.
 * memo: NULL, or the query's (above).
 */
int es_predict(const es_stored_summary *s, const es_profile *p, double horizon, es_forecast_memo *memo,
               es_prediction *out, char *err, size_t errlen) ES_NOEXCEPT;

/* The checks of es_predict's horizon and es_lifetime_value's months and discount rate, for a caller
 * that checks its arguments once before it calls them per summary. */
int es_check_horizon(double horizon, char *err, size_t errlen) ES_NOEXCEPT;
int es_check_lifetime(int months, double monthly_discount_rate, char *err, size_t errlen) ES_NOEXCEPT;

/*
 * Lifetime value over the next months (1..ES_LIFETIME_MONTHS_MAX) of ES_DAYS_PER_MONTH days, by
 * lifetimes' customer_lifetime_value: for month k, the expected engagement days in it,
 * E(30k) - E(30(k - 1)), times q and the expected conversion value, divided by
 * (1 + monthly_discount_rate)^k; summed, then penalised.  monthly_discount_rate finite and >= 0.
 * memo: NULL, or the query's (es_predict's).
 */
int es_lifetime_value(const es_stored_summary *s, const es_profile *p, int months, double monthly_discount_rate,
                      es_forecast_memo *memo, double *out, char *err, size_t errlen) ES_NOEXCEPT;

/* Quintile score q(s), and the segment of ES_SEGMENT_LIST's first rule that matches (is_new:
 * tenure_days < new_contact_days). */
int es_quintile(double s) ES_NOEXCEPT;
int es_segment_of(int opted_out, int undeliverable, int is_new, int rq, int fq, int mq) ES_NOEXCEPT;
const char *es_segment_name(int segment) ES_NOEXCEPT;
const char *es_event_type_name(int type) ES_NOEXCEPT;
int es_is_engaging(int type) ES_NOEXCEPT;

/* The human-readable explanation of a result.  On ES_OK, *text is a malloc()ed
 * NUL-terminated string the caller must free(). */
int es_explain(const es_result *r, const es_profile *p, char **text, char *err,
               size_t errlen) ES_NOEXCEPT;

/* Neumaier summation, exposed for the glue's other aggregates. */
void es_sum_add(es_sum *s, double v) ES_NOEXCEPT;
void es_sum_merge(es_sum *s, const es_sum *o) ES_NOEXCEPT;
double es_sum_value(const es_sum *s) ES_NOEXCEPT;

/* weight * 2^(-age / half_life), age in days from the timestamps. */
double es_decayed_weight(double weight, int64_t occurred_at, int64_t as_of,
                         double half_life_days) ES_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* ENGAGEMENT_SCORING_KERNEL_H */

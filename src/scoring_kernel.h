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
 * engagement-day keys) in PostgreSQL memory contexts, so nothing here allocates
 * on the aggregation path.
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
    ES_BOUNCED = 6
};
#define ES_EVENT_TYPES 7
/* The version of docs/model.md this kernel computes; stored with every score, so scores
 * of an older version are known to be stale. */
#define ES_MODEL_VERSION 2
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
 * model needs except the set of engagement days, which the caller keeps as an
 * array of day keys (see es_accumulate).  Two accumulators with the same as_of
 * and profile merge exactly (es_merge).
 */
typedef struct es_accum {
    int64_t as_of;               /* T */
    int64_t event_count;         /* events at or before T, any type */
    int64_t engaging_count;      /* engaging events at or before T */
    int64_t first_event_at;      /* min occurred_at at or before T (valid if event_count > 0) */
    int64_t last_engaged_at;     /* max engaging occurred_at at or before T (valid if engaging_count > 0) */
    int64_t window_event_count;  /* events in the lookback window */
    int64_t window_oldest_at;    /* min occurred_at in the window (valid if window_event_count > 0) */
    int64_t window_type_count[ES_EVENT_TYPES];
    /* The two sums of conversion values stay at the largest double once they reach it (values
     * can be any finite double): never infinite or NaN. */
    es_sum window_value;         /* sum of conversion values in the window */
    es_sum decay_raw;            /* sum of weight(type) * 2^(-age / half_life) in the window */
    es_sum conversion_total;     /* sum of conversion values at or before T */
    int32_t opted_out;           /* any opted_out event at or before T */
    int32_t ignored_future;      /* events after T (ignored by the model) */
} es_accum;

/* Everything the model computes for one contact, with the facts behind it. */
typedef struct es_result {
    double composite;            /* after the opt-out penalty */
    double composite_unpenalised;
    double recency, frequency, monetary, time_decay, diversity;
    double engagement_probability, conversion_probability, churn_risk;
    double p_alive;              /* es_btyd_p_alive (MBG/NBD), before the opt-out adjustment */
    int opted_out;
    int segment;                 /* enum es_segment */
    int recency_quintile, frequency_quintile, monetary_quintile, fm_quintile;
    /* facts */
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
    double conversion_share;     /* q */
    /* MBG/NBD expected engagement days over horizon_days (es_btyd_expected), opt-out penalised:
     * docs/model.md's expected_engagements_30d. */
    double expected_engagements_horizon;
    double expected_conversion_value; /* Gamma-Gamma: the next conversion day's expected value */
    double expected_value_horizon;    /* docs/model.md's expected_value_30d, opt-out penalised */
} es_result;

enum es_segment {
    ES_SEG_OPTED_OUT = 0,
    ES_SEG_CHAMPIONS,
    ES_SEG_LOYAL,
    ES_SEG_POTENTIAL_LOYALIST,
    ES_SEG_NEW,
    ES_SEG_PROMISING,
    ES_SEG_NEED_ATTENTION,
    ES_SEG_AT_RISK,
    ES_SEG_CANNOT_LOSE,
    ES_SEG_ABOUT_TO_SLEEP,
    ES_SEG_HIBERNATING,
    ES_SEG_LOST,
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
 * conversion; the caller rejects NaN and negatives).  Returns 1 and sets
 * *day_key when the event is engaging and at or before as_of: the caller adds
 * the key to the contact's day-key array.  A key is 4 * day(t) plus flag bits
 * (ES_DAY_CONVERTED, ES_DAY_VALUED), so keys of one day sort together;
 * es_day_of_key() gives the day back.
 */
#define ES_DAY_CONVERTED 1 /* the day holds a converted event */
#define ES_DAY_VALUED 2    /* ... one with a conversion value > 0 */
#define ES_DAY_KEY_SHIFT 2
/* floor(key / 4) (an arithmetic shift, also for days before 1970) */
#define es_day_of_key(key) ((int64_t) ((key) >> ES_DAY_KEY_SHIFT))

int es_accumulate(es_accum *acc, const es_profile *p, int type, int64_t occurred_at,
                  double value, int32_t *day_key) ES_NOEXCEPT;

/* Merges src into dst (same as_of and profile).  Day-key arrays are simply
 * concatenated by the caller. */
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

/* Scores the contact.  keys must be compacted.  acc->event_count must be > 0
 * (a contact with no event at or before as_of has no score).  Fails with
 * es_btyd_expected's status and message when the profile's model parameters are
 * too extreme for expected_engagements_horizon (ES_OUT_OF_RANGE), which no
 * profile es_validate_profile accepts has: for those, every field of the result
 * is finite, whatever the events (the composite at most 100.0000001, the bound
 * of engagement_scores, which only rounding can reach; expected_value_horizon
 * the largest double where the product overflows). */
int es_finalize(const es_accum *acc, const int32_t *keys, size_t nkeys, const es_profile *p,
                es_result *out, char *err, size_t errlen) ES_NOEXCEPT;

/* Quintile score q(s) and the segment rules. */
int es_quintile(double s) ES_NOEXCEPT;
int es_segment_of(int opted_out, int rq, int fq, int mq) ES_NOEXCEPT;
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

// scoring_kernel.cpp: the engagement scoring model (docs/model.md), pure C++17.
#include "scoring_kernel.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

#include "btyd_kernel.h"
#include "gammagamma_kernel.h"
#include "kernel_status.h"
#include "profile_params.h"

namespace {

constexpr double kUsecsPerDay = 86400000000.0;

// as_of - t in days.  The difference of two PostgreSQL timestamps fits int64 unless they lie more
// than ~292,000 years apart (the timestamp range spans ~299,000): then it is taken in doubles,
// which round each timestamp to 2^-53 of itself, far below a day at those spans.  Every ordinary
// difference stays exact in int64, with one rounding when converting to days.
double age_days(int64_t as_of, int64_t t) {
    int64_t diff;
    if (__builtin_sub_overflow(as_of, t, &diff))
        return (static_cast<double>(as_of) - static_cast<double>(t)) / kUsecsPerDay;
    return static_cast<double>(diff) / kUsecsPerDay;
}

// es_profile is the doubles of ES_PROFILE_PARAMS, in its order: the glue fills it column by column.
#define ES_PARAM_OFFSET(column, member, default_value, rule) offsetof(es_profile, member),
constexpr size_t kParamOffsets[] = {ES_PROFILE_PARAMS(ES_PARAM_OFFSET)};
#undef ES_PARAM_OFFSET
constexpr size_t kProfileParams = sizeof kParamOffsets / sizeof kParamOffsets[0];

constexpr bool params_are_the_fields_in_order() {
    for (size_t i = 0; i < kProfileParams; ++i)
        if (kParamOffsets[i] != i * sizeof(double)) return false;
    return sizeof(es_profile) == kProfileParams * sizeof(double);
}
static_assert(kProfileParams == 34, "a scoring profile has 34 parameters");
static_assert(params_are_the_fields_in_order(), "ES_PROFILE_PARAMS lists every field of es_profile, in order");

// undeliverable_after's range ends at the number of bounces es_bounces keeps.
constexpr bool same_text(const char *a, const char *b) {
    while (*a != '\0' && *a == *b) ++a, ++b;
    return *a == *b;
}
struct NamedRange {
    const char *column;
    es_param_range range;
};
#define ES_PARAM_NAMED_RANGE(column, member, default_value, rule) {#column, rule},
constexpr NamedRange kRanges[] = {ES_PROFILE_PARAMS(ES_PARAM_NAMED_RANGE)};
#undef ES_PARAM_NAMED_RANGE
constexpr bool undeliverable_after_is_bounded_by_the_bounces_kept() {
    for (const NamedRange &r : kRanges)
        if (same_text(r.column, "undeliverable_after"))
            return r.range.rule == ES_PARAM_INTEGER && r.range.lo >= 1 && r.range.hi == ES_UNDELIVERABLE_AFTER_MAX;
    return false;
}
static_assert(undeliverable_after_is_bounded_by_the_bounces_kept(),
              "undeliverable_after is an integer from 1 to ES_UNDELIVERABLE_AFTER_MAX");
static_assert(ES_OPENED == 1 && ES_CONVERTED == ES_OPENED + ES_ENGAGING_TYPES - 1,
              "the engaging types are ES_OPENED to ES_CONVERTED");

// One parameter of a profile, to check against its column's range.
struct ParamValue {
    const char *column;
    double value;
    es_param_range range;
};

bool satisfies(const ParamValue &v) {
    const es_param_range &r = v.range;
    const bool above_lo = r.rule == ES_PARAM_ABOVE ? v.value > r.lo : v.value >= r.lo;
    if (!(above_lo && v.value <= r.hi)) return false;  // false for NaN; the bounds are finite
    return r.rule != ES_PARAM_INTEGER || v.value == std::floor(v.value);
}

// weight * 2^(-age / half_life): the time-decay term of one event.
double decayed(double weight, double age, double half_life_days) {
    return weight * std::exp2(-age / half_life_days);
}

// The largest composite: the weights sum to at most 1 + 1e-9 and every component is at most 100, so
// only rounding can exceed 100 (1 + 1e-9); engagement_scores' CHECK allows exactly that.
constexpr double kCompositeMax = 100.0000001;

constexpr double kMaxDouble = std::numeric_limits<double>::max();

bool saturated(const es_sum &s) { return s.sum == kMaxDouble && s.compensation == 0.0; }

// es_sum_add for a sum of conversion values (each finite and >= 0): a sum that reaches the largest
// double stays there instead of overflowing (to infinity, then NaN in the compensation).  Below
// that it is es_sum_add exactly.
void value_sum_add(es_sum *s, double v) {
    if (saturated(*s)) return;
    es_sum_add(s, v);
    if (!(s->sum + s->compensation < kMaxDouble)) {
        s->sum = kMaxDouble;
        s->compensation = 0.0;
    }
}

void value_sum_merge(es_sum *s, const es_sum *o) {
    if (saturated(*o)) {
        *s = *o;
        return;
    }
    value_sum_add(s, o->sum);
    value_sum_add(s, o->compensation);
}

// x * y for x, y >= 0, the largest double where the product overflows.
double saturating_product(double x, double y) {
    const double v = x * y;
    return v < kMaxDouble ? v : kMaxDouble;
}

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

// The penalties' factor (docs/model.md "Opted-out and undeliverable contacts"): each flag's, both
// when both, 1 when neither.
double penalty_factor(const es_profile *p, bool opted_out, bool undeliverable) {
    double keep = 1.0;
    if (opted_out) keep *= 1.0 - p->opt_out_penalty;
    if (undeliverable) keep *= 1.0 - p->undeliverable_penalty;
    return keep;
}

// The predictions of one stored summary: what does not depend on the horizon, once (prepare),
// then any horizon (predict).  es_finalize and es_predict share it, so the stored fields and
// the predictions at the profile's horizon_days are the same expressions.  The MBG/NBD part
// (prepare_alive, alive_part) depends on (x, t_x, t_c) and r, alpha, a, b only: a memo keeps it.
struct Forecaster {
    const es_profile *p = nullptr;
    double x = 0, t_x = 0, t_c = 0;
    double p_alive = 0;           // MBG/NBD P(alive), unpenalised
    double share = 0;             // q: the chance that an engagement day holds a conversion
    double conversion_value = 0;  // Gamma-Gamma: the next conversion day's expected value
    double keep = 1;              // the penalties' factor
    bool penalised = false;

    // The MBG/NBD part over one horizon, unpenalised.
    struct Alive {
        double p_alive, expected, engage_if_alive;
    };

    int prepare(const es_stored_summary &s, const es_profile *profile, char *err, size_t errlen) {
        const int rc = prepare_alive(s, profile, err, errlen);
        return rc != ES_OK ? rc : prepare_value(s, err, errlen);
    }

    int prepare_alive(const es_stored_summary &s, const es_profile *profile, char *err, size_t errlen) {
        p = profile;
        x = static_cast<double>(s.x);
        t_x = static_cast<double>(s.t_x);
        t_c = static_cast<double>(s.t_c);
        // The BTYD kernel's P(alive): its log ratio stays accurate when Tc is close to t_x.
        return es_btyd_p_alive(ES_MODEL_MBGNBD, x, t_x, t_c, p->model_r, p->model_alpha, p->model_a, p->model_b,
                               &p_alive, err, errlen);
    }

    // What the Gamma-Gamma model, the conversion share and the penalties add (p set).
    int prepare_value(const es_stored_summary &s, char *err, size_t errlen) {
        share = (static_cast<double>(s.conv_days) + p->conv_prior_a) /
                (static_cast<double>(s.n_days) + p->conv_prior_a + p->conv_prior_b);
        const int rc = es_gg_expected_value(static_cast<double>(s.x_v), s.m_v, p->gg_p, p->gg_q, p->gg_v,
                                            &conversion_value, err, errlen);
        if (rc != ES_OK) return rc;
        keep = penalty_factor(p, s.opted_out, s.undeliverable);
        penalised = s.opted_out || s.undeliverable;
        return ES_OK;
    }

    // MBG/NBD expected engagement days in (T, T + horizon], unpenalised (P_alive is known).
    int expected(double horizon, double *e, char *err, size_t errlen) const {
        return es_btyd_expected_given_p_alive(p_alive, horizon, x, t_c, p->model_r, p->model_alpha, p->model_a,
                                              p->model_b, e, err, errlen);
    }

    int alive_part(double horizon, Alive *out, char *err, size_t errlen) const {
        out->p_alive = p_alive;
        // 1 - ((alpha + Tc) / (alpha + Tc + h))^(r + x) = -expm1(-(r + x) * log1p(h / (alpha + Tc)))
        out->engage_if_alive = -std::expm1(-(p->model_r + x) * std::log1p(horizon / (p->model_alpha + t_c)));
        return expected(horizon, &out->expected, err, errlen);
    }

    void combine(const Alive &a, es_prediction *out) const {
        out->engagement_probability = a.p_alive * a.engage_if_alive;
        out->conversion_probability = out->engagement_probability * share;
        out->expected_engagements = a.expected;
        // (the largest double when it overflows: a conversion value can be any finite double)
        out->expected_value = saturating_product(a.expected * share, conversion_value);
        if (penalised) {
            out->engagement_probability *= keep;
            out->conversion_probability *= keep;
            out->expected_engagements *= keep;
            out->expected_value *= keep;
        }
    }

    int predict(double horizon, es_prediction *out, char *err, size_t errlen) const {
        Alive a;
        const int rc = alive_part(horizon, &a, err, errlen);
        if (rc == ES_OK) combine(a, out);
        return rc;
    }

    // Lifetime value's discounted engagement days: each month's are the difference of the
    // cumulative expectations.
    int discounted_days(int months, double monthly_discount_rate, double *days, char *err, size_t errlen) const {
        double sum = 0, previous = 0;
        for (int k = 1; k <= months; ++k) {
            double e;
            const int rc = expected(static_cast<double>(ES_DAYS_PER_MONTH) * k, &e, err, errlen);
            if (rc != ES_OK) return rc;
            sum += (e - previous) / std::pow(1.0 + monthly_discount_rate, k);
            previous = e;
        }
        *days = sum;
        return ES_OK;
    }
};

// The memo's slot for summary s computed with inputs (es_forecast_memo), prefetched (the caller
// compares its key after its own checks), and s's key in it; no slot for a summary too large
// for a key.  Inputs other than the memo's empty it first.
es_forecast_memo_slot *memo_slot(es_forecast_memo *memo, const double (&inputs)[7], const es_stored_summary &s,
                                 uint64_t *key) {
    static_assert(sizeof inputs == sizeof memo->inputs, "a memo's inputs");
    static_assert((ES_FORECAST_MEMO_SLOTS & (ES_FORECAST_MEMO_SLOTS - 1)) == 0, "a power of 2");
    constexpr int bits = ES_FORECAST_MEMO_BITS;
    constexpr uint64_t limit = uint64_t{1} << bits, generations = uint64_t{1} << (64 - 3 * bits);
    if (!(s.x >= 0 && s.t_x >= 0 && s.t_c >= 0 && static_cast<uint64_t>(s.x) < limit &&
          static_cast<uint64_t>(s.t_x) < limit && static_cast<uint64_t>(s.t_c) < limit))
        return nullptr;
    if (memo->generation == 0 || std::memcmp(memo->inputs, inputs, sizeof inputs) != 0) {
        std::memcpy(memo->inputs, inputs, sizeof inputs);
        if (++memo->generation >= generations) {  // (the old generations' numbers come back: empty every slot)
            std::memset(memo->slots, 0, sizeof memo->slots);
            memo->generation = 1;
        }
    }
    const uint64_t summary = static_cast<uint64_t>(s.x) << (2 * bits) | static_cast<uint64_t>(s.t_x) << bits |
                             static_cast<uint64_t>(s.t_c);
    *key = memo->generation << (3 * bits) | summary;
    es_forecast_memo_slot *slot = &memo->slots[(summary * 0x9E3779B97F4A7C15u) >> 32 & (ES_FORECAST_MEMO_SLOTS - 1)];
    __builtin_prefetch(slot);
    return slot;
}

void memo_fill(es_forecast_memo_slot *slot, uint64_t key, double a0, double a1, double a2) {
    slot->key = key;
    slot->alive[0] = a0;
    slot->alive[1] = a1;
    slot->alive[2] = a2;
}

// A summary read back from a table (es_predict, es_lifetime_value): one es_summarize could have made.
// es_finalize's own summaries are so by construction, and are not checked again.
int summary_error(const es_stored_summary &s, char *err, size_t errlen) {
    if (s.x >= 0 && s.t_x >= 0 && s.t_x <= s.t_c && s.n_days >= s.x && s.conv_days >= 0 && s.conv_days <= s.n_days &&
        s.x_v >= 0 && s.x_v <= s.conv_days && std::isfinite(s.m_v) && s.m_v >= 0 && (s.x > 0) == (s.t_x > 0))
        return ES_OK;
    return es::fail(err, errlen, ES_INVALID_PARAMETER,
                    "not a stored summary: x = %lld, t_x = %lld, t_c = %lld, n_days = %lld, conv_days = %lld, "
                    "x_v = %lld, m_v = %g",
                    static_cast<long long>(s.x), static_cast<long long>(s.t_x), static_cast<long long>(s.t_c),
                    static_cast<long long>(s.n_days), static_cast<long long>(s.conv_days),
                    static_cast<long long>(s.x_v), s.m_v);
}

}  // namespace

extern "C" {

int es_check_horizon(double horizon, char *err, size_t errlen) noexcept {
    if (!(std::isfinite(horizon) && horizon > 0))
        return es::fail(err, errlen, ES_INVALID_PARAMETER, "a horizon must be a finite number of days > 0, not %.17g", horizon);
    if (horizon > ES_HORIZON_MAX)
        return es::fail(err, errlen, ES_OUT_OF_RANGE, "a horizon of %.17g days is out of range (at most 1e9)", horizon);
    return ES_OK;
}

int es_check_lifetime(int months, double monthly_discount_rate, char *err, size_t errlen) noexcept {
    if (months < 1 || months > ES_LIFETIME_MONTHS_MAX)
        return es::fail(err, errlen, ES_INVALID_PARAMETER, "months must be between 1 and %d, not %d",
                        ES_LIFETIME_MONTHS_MAX, months);
    if (!(std::isfinite(monthly_discount_rate) && monthly_discount_rate >= 0))
        return es::fail(err, errlen, ES_INVALID_PARAMETER,
                        "a monthly discount rate must be a finite number >= 0 (0.01 for 1%% a month), not %.17g",
                        monthly_discount_rate);
    return ES_OK;
}


es_profile es_default_profile(void) noexcept {
    es_profile p{};
#define ES_SET_DEFAULT(column, member, default_value, rule) p.member = default_value;
    ES_PROFILE_PARAMS(ES_SET_DEFAULT)
#undef ES_SET_DEFAULT
    return p;
}

int es_validate_profile(const es_profile *p, char *err, size_t errlen) noexcept {
#define ES_PARAM_VALUE(column, member, default_value, rule) {#column, p->member, rule},
    const ParamValue params[] = {ES_PROFILE_PARAMS(ES_PARAM_VALUE)};
#undef ES_PARAM_VALUE
    for (const ParamValue &v : params) {
        if (satisfies(v)) continue;
        if (v.range.rule == ES_PARAM_ABOVE)
            return es::fail(err, errlen, ES_INVALID_PARAMETER, "%s must be greater than %s and at most %s, not %g",
                            v.column, v.range.lo_text, v.range.hi_text, v.value);
        if (v.range.rule == ES_PARAM_INTEGER)
            return es::fail(err, errlen, ES_INVALID_PARAMETER, "%s must be an integer between %s and %s, not %.17g",
                            v.column, v.range.lo_text, v.range.hi_text, v.value);
        return es::fail(err, errlen, ES_INVALID_PARAMETER, "%s must be between %s and %s, not %g", v.column,
                        v.range.lo_text, v.range.hi_text, v.value);
    }
    // The table's two cross-column constraints.
    if (p->frequency_min_days > p->lookback_days)
        return es::fail(err, errlen, ES_INVALID_PARAMETER,
                        "frequency_min_days (%g) must not exceed lookback_days (%g)", p->frequency_min_days,
                        p->lookback_days);
    const double total =
        p->weight_recency + p->weight_frequency + p->weight_monetary + p->weight_time_decay + p->weight_diversity;
    if (std::fabs(total - 1.0) > 1e-9)
        return es::fail(err, errlen, ES_INVALID_PARAMETER,
                        "the component weights must sum to 1 (within 1e-9), not %.17g", total);
    return ES_OK;
}

int64_t es_day_number(int64_t ts) noexcept {
    // floor(epoch / 86400) with epoch in Unix seconds: shift by whole days, then floor.
    return floor_div(ts, ES_USECS_PER_DAY) + ES_PG_EPOCH_UNIX_SECS / 86400;
}

int es_is_engaging(int type) noexcept {
    return type == ES_OPENED || type == ES_CLICKED || type == ES_RESPONDED || type == ES_CONVERTED;
}

void es_sum_add(es_sum *s, double v) noexcept {
    // Neumaier's variant of Kahan summation.
    double t = s->sum + v;
    if (std::fabs(s->sum) >= std::fabs(v))
        s->compensation += (s->sum - t) + v;
    else
        s->compensation += (v - t) + s->sum;
    s->sum = t;
}

void es_sum_merge(es_sum *s, const es_sum *o) noexcept {
    es_sum_add(s, o->sum);
    es_sum_add(s, o->compensation);
}

double es_sum_value(const es_sum *s) noexcept { return s->sum + s->compensation; }

double es_decayed_weight(double weight, int64_t occurred_at, int64_t as_of, double half_life_days) noexcept {
    if (weight == 0.0) return 0.0;
    return decayed(weight, age_days(as_of, occurred_at), half_life_days);
}

void es_accum_init(es_accum *acc, int64_t as_of) noexcept {
    std::memset(acc, 0, sizeof *acc);
    acc->as_of = as_of;
    acc->first_event_at = ES_NO_TIME;
    acc->last_engaged_at = ES_NO_TIME;
    acc->last_reached_at = ES_NO_TIME;
    acc->last_opted_out_at = ES_NO_TIME;
    acc->last_opted_in_at = ES_NO_TIME;
    acc->window_oldest_at = ES_NO_TIME;
}

int es_accumulate(es_accum *acc, const es_profile *p, int type, int64_t occurred_at, double value,
                  int32_t *day_key) noexcept {
    if (occurred_at > acc->as_of) return ES_ACC_NONE;
    const bool engaging = es_is_engaging(type);
    const bool first = acc->event_count == 0;
    acc->event_count++;
    if (first || occurred_at < acc->first_event_at) acc->first_event_at = occurred_at;
    if (type == ES_OPTED_OUT) acc->last_opted_out_at = std::max(acc->last_opted_out_at, occurred_at);
    if (type == ES_OPTED_IN) acc->last_opted_in_at = std::max(acc->last_opted_in_at, occurred_at);
    if (type == ES_DELIVERED || engaging) acc->last_reached_at = std::max(acc->last_reached_at, occurred_at);
    if (type == ES_CONVERTED) value_sum_add(&acc->conversion_total, value);
    if (engaging) {
        if (acc->engaging_count == 0 || occurred_at > acc->last_engaged_at) acc->last_engaged_at = occurred_at;
        acc->engaging_count++;
    }

    const double age = age_days(acc->as_of, occurred_at);
    if (age <= p->lookback_days) {
        if (acc->window_event_count == 0 || occurred_at < acc->window_oldest_at)
            acc->window_oldest_at = occurred_at;
        acc->window_event_count++;
        if (engaging) acc->window_engaging_count[type - ES_OPENED]++;
        if (type == ES_CONVERTED) value_sum_add(&acc->window_value, value);
        const double w = p->type_weight[type];
        if (w != 0.0) es_sum_add(&acc->decay_raw, decayed(w, age, p->half_life_days));
    }

    if (type == ES_BOUNCED) return ES_ACC_BOUNCE;
    if (!engaging) return ES_ACC_NONE;
    int32_t flags = 0;
    if (type == ES_CONVERTED) flags = value > 0.0 ? ES_DAY_CONVERTED | ES_DAY_VALUED : ES_DAY_CONVERTED;
    // PostgreSQL's day numbers lie within +-1.1e8: 4 * day fits an int32.
    *day_key = static_cast<int32_t>(es_day_number(occurred_at) * (1 << ES_DAY_KEY_SHIFT) + flags);
    return ES_ACC_DAY;
}

void es_merge(es_accum *dst, const es_accum *src) noexcept {
    if (src->event_count > 0) {
        if (dst->event_count == 0 || src->first_event_at < dst->first_event_at)
            dst->first_event_at = src->first_event_at;
    }
    if (src->engaging_count > 0) {
        if (dst->engaging_count == 0 || src->last_engaged_at > dst->last_engaged_at)
            dst->last_engaged_at = src->last_engaged_at;
    }
    if (src->window_event_count > 0) {
        if (dst->window_event_count == 0 || src->window_oldest_at < dst->window_oldest_at)
            dst->window_oldest_at = src->window_oldest_at;
    }
    dst->last_reached_at = std::max(dst->last_reached_at, src->last_reached_at);
    dst->last_opted_out_at = std::max(dst->last_opted_out_at, src->last_opted_out_at);
    dst->last_opted_in_at = std::max(dst->last_opted_in_at, src->last_opted_in_at);
    dst->event_count += src->event_count;
    dst->engaging_count += src->engaging_count;
    dst->window_event_count += src->window_event_count;
    for (int k = 0; k < ES_ENGAGING_TYPES; ++k) dst->window_engaging_count[k] += src->window_engaging_count[k];
    value_sum_merge(&dst->window_value, &src->window_value);
    es_sum_merge(&dst->decay_raw, &src->decay_raw);
    value_sum_merge(&dst->conversion_total, &src->conversion_total);
}

void es_bounces_init(es_bounces *b) noexcept { std::memset(b, 0, sizeof *b); }

void es_bounces_add(es_bounces *b, int64_t occurred_at) noexcept {
    // Newest first, ties kept: occurred_at goes after the times at or after it.
    int64_t i;
    if (b->n < ES_UNDELIVERABLE_AFTER_MAX)
        i = b->n++;
    else if (occurred_at <= b->at[ES_UNDELIVERABLE_AFTER_MAX - 1])
        return;  // (the latest ES_UNDELIVERABLE_AFTER_MAX stay the same times)
    else
        i = ES_UNDELIVERABLE_AFTER_MAX - 1;  // the oldest falls off
    for (; i > 0 && b->at[i - 1] < occurred_at; --i) b->at[i] = b->at[i - 1];
    b->at[i] = occurred_at;
}

void es_bounces_merge(es_bounces *dst, const es_bounces *src) noexcept {
    for (int64_t i = 0; i < src->n; ++i) es_bounces_add(dst, src->at[i]);
}

namespace {
// Appends key to the compact keys out[0..n): a key of the last one's day ORs its flags into it.
inline size_t append_day_key(int32_t *out, size_t n, int32_t key) {
    if (n > 0 && es_day_of_key(out[n - 1]) == es_day_of_key(key)) {
        out[n - 1] |= key;
        return n;
    }
    out[n] = key;
    return n + 1;
}
}  // namespace

size_t es_compact_day_keys(int32_t *keys, size_t n) noexcept {
    if (n < 2) return n;
    std::sort(keys, keys + n);
    size_t out = 0;
    for (size_t i = 0; i < n; ++i) out = append_day_key(keys, out, keys[i]);
    return out;
}

size_t es_merge_day_keys(const int32_t *a, size_t na, const int32_t *b, size_t nb, int32_t *out) noexcept {
    size_t i = 0, j = 0, n = 0;
    while (i < na && j < nb) n = append_day_key(out, n, a[i] <= b[j] ? a[i++] : b[j++]);
    while (i < na) n = append_day_key(out, n, a[i++]);
    while (j < nb) n = append_day_key(out, n, b[j++]);
    return n;
}

int es_quintile(double s) noexcept {
    const double q = 1.0 + std::floor(s / 20.0);
    return q >= 5.0 ? 5 : static_cast<int>(q);
}

int es_predict(const es_stored_summary *s, const es_profile *p, double horizon, es_forecast_memo *memo,
               es_prediction *out, char *err, size_t errlen) noexcept {
    std::memset(out, 0, sizeof *out);
    es_forecast_memo_slot *slot = nullptr;
    uint64_t key = 0;
    if (memo != nullptr) {
        const double inputs[7] = {1, p->model_r, p->model_alpha, p->model_a, p->model_b, horizon, 0};
        slot = memo_slot(memo, inputs, *s, &key);
    }
    int rc = es_check_horizon(horizon, err, errlen);
    if (rc == ES_OK) rc = summary_error(*s, err, errlen);
    if (rc != ES_OK) return rc;
    Forecaster f;
    f.p = p;
    Forecaster::Alive a;
    if (slot != nullptr && slot->key == key) {
        a = {slot->alive[0], slot->alive[1], slot->alive[2]};
    } else {
        rc = f.prepare_alive(*s, p, err, errlen);
        if (rc == ES_OK) rc = f.alive_part(horizon, &a, err, errlen);
        if (rc != ES_OK) return rc;
        if (slot != nullptr) memo_fill(slot, key, a.p_alive, a.expected, a.engage_if_alive);
    }
    rc = f.prepare_value(*s, err, errlen);
    if (rc == ES_OK) f.combine(a, out);
    return rc;
}

int es_lifetime_value(const es_stored_summary *s, const es_profile *p, int months, double monthly_discount_rate,
                      es_forecast_memo *memo, double *out, char *err, size_t errlen) noexcept {
    *out = 0;
    const int checked = es_check_lifetime(months, monthly_discount_rate, err, errlen);
    if (checked != ES_OK) return checked;
    es_forecast_memo_slot *slot = nullptr;
    uint64_t key = 0;
    if (memo != nullptr) {
        const double inputs[7] = {2, p->model_r, p->model_alpha, p->model_a, p->model_b, static_cast<double>(months),
                                  monthly_discount_rate};
        slot = memo_slot(memo, inputs, *s, &key);
    }
    int rc = summary_error(*s, err, errlen);
    if (rc != ES_OK) return rc;
    Forecaster f;
    f.p = p;
    double days;
    if (slot != nullptr && slot->key == key) {
        days = slot->alive[0];
    } else {
        rc = f.prepare_alive(*s, p, err, errlen);
        if (rc == ES_OK) rc = f.discounted_days(months, monthly_discount_rate, &days, err, errlen);
        if (rc != ES_OK) return rc;
        if (slot != nullptr) memo_fill(slot, key, days, 0, 0);
    }
    rc = f.prepare_value(*s, err, errlen);
    if (rc != ES_OK) return rc;
    *out = saturating_product(days * f.share, f.conversion_value);
    if (f.penalised) *out *= f.keep;
    return ES_OK;
}

}  // extern "C"

namespace {

// A segment of ES_SEGMENT_LIST: its name and quintile bounds (0 for the segments of flags).
struct SegmentRule {
    const char *name;
    int rq_min, rq_max, fmq_min, fmq_max;
};
#define ES_SEGMENT_RULE(id, name, rq_min, rq_max, fmq_min, fmq_max) {#name, rq_min, rq_max, fmq_min, fmq_max},
constexpr SegmentRule kSegments[ES_SEGMENTS] = {ES_SEGMENT_LIST(ES_SEGMENT_RULE)};
#undef ES_SEGMENT_RULE
static_assert(ES_SEG_OPTED_OUT == 0 && ES_SEG_UNDELIVERABLE == 1 && ES_SEG_NEW == 2 && ES_SEG_LOST == ES_SEGMENTS - 1,
              "the segments of flags come first, lost last");

constexpr bool quintile_rules_are_bounded() {
    for (int s = 0; s < ES_SEGMENTS; ++s) {
        const SegmentRule &r = kSegments[s];
        const bool flag = s <= ES_SEG_NEW;
        if (flag != (r.rq_min == 0)) return false;
        if (!flag && !(1 <= r.rq_min && r.rq_min <= r.rq_max && r.rq_max <= 5 && 1 <= r.fmq_min &&
                       r.fmq_min <= r.fmq_max && r.fmq_max <= 5))
            return false;
    }
    const SegmentRule &lost = kSegments[ES_SEG_LOST];
    return lost.rq_min == 1 && lost.rq_max == 5 && lost.fmq_min == 1 && lost.fmq_max == 5;
}
static_assert(quintile_rules_are_bounded(), "every quintile rule lies within 1..5, and lost takes every quintile");

int fm_quintile(int fq, int mq) { return (fq + mq + 1) / 2; }  // round((Fq + Mq) / 2), half up

}  // namespace

extern "C" {

int es_segment_of(int opted_out, int undeliverable, int is_new, int rq, int fq, int mq) noexcept {
    if (opted_out) return ES_SEG_OPTED_OUT;
    if (undeliverable) return ES_SEG_UNDELIVERABLE;
    if (is_new) return ES_SEG_NEW;
    const int fmq = fm_quintile(fq, mq);
    for (int s = ES_SEG_NEW + 1; s < ES_SEG_LOST; ++s) {
        const SegmentRule &r = kSegments[s];
        if (r.rq_min <= rq && rq <= r.rq_max && r.fmq_min <= fmq && fmq <= r.fmq_max) return s;
    }
    return ES_SEG_LOST;
}

const char *es_segment_name(int segment) noexcept {
    return segment >= 0 && segment < ES_SEGMENTS ? kSegments[segment].name : "unknown";
}

const char *es_event_type_name(int type) noexcept {
    static const char *const names[ES_EVENT_TYPES] = {"delivered", "opened",    "clicked",  "responded",
                                                      "converted", "opted_out", "opted_in", "bounced"};
    return type >= 0 && type < ES_EVENT_TYPES ? names[type] : "unknown";
}

es_model_summary es_summarize(const es_accum *acc, const int32_t *keys, size_t nkeys) noexcept {
    const int64_t b0 = es_day_number(acc->first_event_at);
    es_model_summary s;
    // Keys are sorted by day, and no engaging event precedes the first event: only keys[0] can be b0.
    s.x = static_cast<int64_t>(nkeys) - (nkeys > 0 && es_day_of_key(keys[0]) == b0 ? 1 : 0);
    s.t_x = s.x > 0 ? es_day_of_key(keys[nkeys - 1]) - b0 : 0;
    s.t_c = es_day_number(acc->as_of) - b0;
    s.value_days = 0;
    for (size_t i = 0; i < nkeys; ++i) s.value_days += (keys[i] & ES_DAY_VALUED) != 0;
    // A conversion day without value adds nothing: the valued days' values sum to the total.
    s.value_total = es_sum_value(&acc->conversion_total);
    return s;
}

int es_finalize(const es_accum *acc, const int32_t *keys, size_t nkeys, const es_bounces *bounces,
                const es_profile *p, es_result *out, char *err, size_t errlen) noexcept {
    std::memset(out, 0, sizeof *out);
    if (acc->event_count <= 0) {
        return es::fail(err, errlen, ES_INVALID_PARAMETER, "no event at or before as_of: nothing to score");
    }
    const int64_t T = acc->as_of;
    const double L = p->lookback_days;

    // Recency: the newest engaging event, if it lies in the window.
    out->recency_age_days = -1;
    if (acc->engaging_count > 0) {
        const double d = age_days(T, acc->last_engaged_at);
        if (d <= L) {
            out->recency_age_days = d;
            out->recency = 100.0 * std::exp(-d / p->recency_tau_days);
        }
    }

    // Frequency.
    int64_t n = 0;
    for (int k = 0; k < ES_ENGAGING_TYPES; ++k) n += acc->window_engaging_count[k];
    out->window_engaging = n;
    out->window_events = acc->window_event_count;
    if (acc->window_event_count > 0) {
        const double oldest = age_days(T, acc->window_oldest_at);
        out->observed_days = std::min(std::max(oldest, p->frequency_min_days), L);
        out->rate_per_day = static_cast<double>(n) / out->observed_days;
        out->frequency = -100.0 * std::expm1(-out->rate_per_day / p->frequency_ref_rate);
    }

    // Monetary.
    out->window_value = es_sum_value(&acc->window_value);
    if (out->window_value > 0.0)
        out->monetary = std::min(100.0, 100.0 * std::log1p(out->window_value) / std::log1p(p->monetary_ref_value));

    // Time decay.
    out->decay_raw = es_sum_value(&acc->decay_raw);
    out->time_decay = -100.0 * std::expm1(-std::max(out->decay_raw, 0.0) / p->time_decay_ref);

    // Diversity: Shannon entropy of the engaging types, normalised by ln 4.
    if (n > 0) {
        double h = 0;
        for (int k = 0; k < ES_ENGAGING_TYPES; ++k) {
            const int64_t c = acc->window_engaging_count[k];
            if (c == 0) continue;
            const double pk = static_cast<double>(c) / static_cast<double>(n);
            h -= pk * std::log(pk);
            out->engaging_types_seen++;
        }
        out->entropy = h;
        out->diversity = 100.0 * h / std::log(4.0);
    }

    // The flags, from every event at or before T.  Opted out: the latest opt-out is at or after
    // the latest opt-in (at the same instant the opt-out wins).  Undeliverable: the K-th latest
    // bounce follows the last delivery or engagement (ES_NO_TIME, before every time, when none).
    out->last_opted_out_at = acc->last_opted_out_at;
    out->last_opted_in_at = acc->last_opted_in_at;
    out->opted_out = acc->last_opted_out_at != ES_NO_TIME && acc->last_opted_out_at >= acc->last_opted_in_at;
    out->last_reached_at = acc->last_reached_at;
    if (bounces != nullptr)
        while (out->bounces_since < bounces->n && bounces->at[out->bounces_since] > acc->last_reached_at)
            out->bounces_since++;
    out->undeliverable = out->bounces_since >= static_cast<int64_t>(p->undeliverable_after);
    out->tenure_days = age_days(T, acc->first_event_at);
    out->birth_at = floor_div(acc->first_event_at, ES_USECS_PER_DAY) * ES_USECS_PER_DAY;

    const double keep = penalty_factor(p, out->opted_out, out->undeliverable);
    const bool penalised = out->opted_out || out->undeliverable;
    out->composite_unpenalised = std::min(p->weight_recency * out->recency + p->weight_frequency * out->frequency +
                                              p->weight_monetary * out->monetary +
                                              p->weight_time_decay * out->time_decay +
                                              p->weight_diversity * out->diversity,
                                          kCompositeMax);
    out->composite = penalised ? out->composite_unpenalised * keep : out->composite_unpenalised;

    // MBG/NBD over engagement days: the birth day b0 starts the relationship, x counts the
    // engagement days after it.
    int64_t conv_days = 0;
    for (size_t i = 0; i < nkeys; ++i) conv_days += (keys[i] & ES_DAY_CONVERTED) != 0;
    const int64_t n_days = static_cast<int64_t>(nkeys);
    const es_model_summary summary = es_summarize(acc, keys, nkeys);
    const int64_t x = summary.x;
    out->engagement_days = n_days;
    out->repeat_days = x;
    out->conversion_days = conv_days;
    out->valued_conversion_days = summary.value_days;
    out->conversion_value_total = summary.value_total;
    out->t_x_days = summary.t_x;
    out->t_c_days = summary.t_c;
    out->mean_conversion_value = summary.value_days > 0 ? summary.value_total / static_cast<double>(summary.value_days) : 0.0;
    const es_stored_summary stored = {x, summary.t_x, summary.t_c, n_days, conv_days, summary.value_days,
                                      out->mean_conversion_value, out->opted_out, out->undeliverable};
    Forecaster f;
    int rc = f.prepare(stored, p, err, errlen);
    if (rc != ES_OK) return rc;
    es_prediction at_horizon;
    rc = f.predict(p->horizon_days, &at_horizon, err, errlen);
    if (rc != ES_OK) return rc;
    out->p_alive = f.p_alive;
    out->churn_risk = 1.0 - f.p_alive;
    if (penalised) out->churn_risk = 1.0 - (1.0 - out->churn_risk) * keep;
    out->conversion_share = f.share;
    out->expected_conversion_value = f.conversion_value;
    out->engagement_probability = at_horizon.engagement_probability;
    out->conversion_probability = at_horizon.conversion_probability;
    out->expected_engagements_horizon = at_horizon.expected_engagements;
    out->expected_value_horizon = at_horizon.expected_value;

    out->recency_quintile = es_quintile(out->recency);
    out->frequency_quintile = es_quintile(out->frequency);
    out->monetary_quintile = es_quintile(out->monetary);
    out->fm_quintile = fm_quintile(out->frequency_quintile, out->monetary_quintile);
    out->segment = es_segment_of(out->opted_out, out->undeliverable, out->tenure_days < p->new_contact_days,
                                 out->recency_quintile, out->frequency_quintile, out->monetary_quintile);
    return ES_OK;
}

}  // extern "C"

namespace {

__attribute__((format(printf, 1, 2))) std::string format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list copy;
    va_copy(copy, ap);
    const int len = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (len < 0) {
        va_end(ap);
        throw std::runtime_error("formatting failed");
    }
    std::string s(static_cast<size_t>(len) + 1, '\0');
    std::vsnprintf(&s[0], s.size(), fmt, ap);
    va_end(ap);
    s.resize(static_cast<size_t>(len));
    return s;
}

std::string plural(int64_t n, const char *one, const char *many) {
    return format("%" PRId64 " %s", n, n == 1 ? one : many);
}

std::string component_line(const char *name, double value, double weight, const std::string &why) {
    return format("  %-11s %6.2f x %.2f = %6.2f  %s\n", name, value, weight, value * weight, why.c_str());
}

// A time (PostgreSQL microseconds) as "2026-05-01 10:00:00 UTC", or its day as "2026-05-01", in the
// proleptic Gregorian calendar as PostgreSQL prints it ("... BC" before year 1).
std::string format_time(int64_t t, bool clock = true) {
    const int64_t day = floor_div(t, ES_USECS_PER_DAY);
    const int64_t secs = (t - day * ES_USECS_PER_DAY) / 1000000;
    // civil_from_days (H. Hinnant), from days since 1970-01-01
    const int64_t z = day + ES_PG_EPOCH_UNIX_SECS / 86400 + 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    const int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const int64_t m = mp < 10 ? mp + 3 : mp - 9;
    const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
    const std::string date = format("%04" PRId64 "-%02" PRId64 "-%02" PRId64, y > 0 ? y : 1 - y, m, d);
    const std::string era_suffix = y > 0 ? "" : " BC";
    if (!clock) return date + era_suffix;
    return date + format(" %02" PRId64 ":%02" PRId64 ":%02" PRId64 " UTC", secs / 3600, secs / 60 % 60, secs % 60) +
           era_suffix;
}

// "4 bounces since last reached on ...", or "... and never reached".
std::string bounces_since(const es_result &r) {
    std::string s = format("%s%s", r.bounces_since == ES_UNDELIVERABLE_AFTER_MAX ? "at least " : "",
                           plural(r.bounces_since, "bounce", "bounces").c_str());
    if (r.last_reached_at == ES_NO_TIME) return s + " and never reached";
    return s + " since last reached on " + format_time(r.last_reached_at);
}

// What decided the segment: the rule of ES_SEGMENT_LIST that matched first.
std::string segment_rule(const es_result &r, const es_profile &p) {
    switch (r.segment) {
        case ES_SEG_OPTED_OUT:
            return "opted out on " + format_time(r.last_opted_out_at) +
                   (r.last_opted_in_at != ES_NO_TIME ? ", not opted in since" : "");
        case ES_SEG_UNDELIVERABLE:
            return format("%s, undeliverable_after %g", bounces_since(r).c_str(), p.undeliverable_after);
        case ES_SEG_NEW:
            return format("known for %.1f days, under new_contact_days %g", r.tenure_days, p.new_contact_days);
        case ES_SEG_LOST:
            return format("Rq %d and FMq %d match no other rule", r.recency_quintile, r.fm_quintile);
        default:
            break;
    }
    const SegmentRule &rule = kSegments[r.segment];
    auto bound = [](const char *name, int q, int lo, int hi) {
        if (lo == hi) return format("%s %d = %d", name, q, lo);
        if (hi == 5) return format("%s %d >= %d", name, q, lo);
        if (lo == 1) return format("%s %d <= %d", name, q, hi);
        return format("%d <= %s %d <= %d", lo, name, q, hi);
    };
    return bound("Rq", r.recency_quintile, rule.rq_min, rule.rq_max) + " and " +
           bound("FMq", r.fm_quintile, rule.fmq_min, rule.fmq_max);
}

std::string explain(const es_result &r, const es_profile &p) {
    std::string s = format("score %.2f, segment %s\n", r.composite, es_segment_name(r.segment));

    std::string why;
    if (r.recency_age_days >= 0)
        why = format("last engaged %.1f days ago (tau %g days)", r.recency_age_days, p.recency_tau_days);
    else
        why = format("no engagement in the last %g days", p.lookback_days);
    s += component_line("recency", r.recency, p.weight_recency, why);

    if (r.window_events > 0)
        why = format("%s in %.1f days observed = %.3f/day (reference %g/day)",
                     plural(r.window_engaging, "engaging event", "engaging events").c_str(), r.observed_days,
                     r.rate_per_day, p.frequency_ref_rate);
    else
        why = format("no event in the last %g days", p.lookback_days);
    s += component_line("frequency", r.frequency, p.weight_frequency, why);

    if (r.window_value > 0)
        why = format("%.2f converted in the window (reference %g)", r.window_value, p.monetary_ref_value);
    else
        why = "no conversion value in the window";
    s += component_line("monetary", r.monetary, p.weight_monetary, why);

    why = format("decayed weight sum %.3f (half-life %g days, reference %g)", r.decay_raw, p.half_life_days,
                 p.time_decay_ref);
    s += component_line("time decay", r.time_decay, p.weight_time_decay, why);

    if (r.window_engaging > 0)
        why = format("%d of 4 engaging types, entropy %.3f", r.engaging_types_seen, r.entropy);
    else
        why = "no engaging events in the window";
    s += component_line("diversity", r.diversity, p.weight_diversity, why);

    if (r.opted_out || r.undeliverable) {
        std::string flags, factors;
        if (r.opted_out) {
            flags = "opted out on " + format_time(r.last_opted_out_at);
            factors = format(" x (1 - opt_out_penalty %g)", p.opt_out_penalty);
        }
        if (r.undeliverable) {
            flags += (r.opted_out ? " and undeliverable (" : "undeliverable (") + bounces_since(r) + ")";
            factors += format(" x (1 - undeliverable_penalty %g)", p.undeliverable_penalty);
        }
        s += format("  %s: composite %.2f%s = %.2f, the predictions penalised alike\n", flags.c_str(),
                    r.composite_unpenalised, factors.c_str(), r.composite);
    }
    if (!r.opted_out && r.last_opted_out_at != ES_NO_TIME)
        s += "  opted in on " + format_time(r.last_opted_in_at) + " after opting out on " +
             format_time(r.last_opted_out_at) + ": no longer opted out\n";
    if (!r.undeliverable && r.bounces_since > 0)
        s += format("  %s: deliverable, under undeliverable_after %g\n", bounces_since(r).c_str(),
                    p.undeliverable_after);

    s += format("  predictions (MBG/NBD, r=%g alpha=%g a=%g b=%g): P(alive) %.3f, engagement in next %g days %.3f, "
                "conversion %.3f, churn risk %.3f\n",
                p.model_r, p.model_alpha, p.model_a, p.model_b, r.p_alive, p.horizon_days,
                r.engagement_probability, r.conversion_probability, r.churn_risk);
    s += format("  from %s (%" PRId64 " after the first contact day, %" PRId64 " with a conversion) since first "
                "contact %" PRId64 " days ago, the last repeat on day %" PRId64 "\n",
                plural(r.engagement_days, "engagement day", "engagement days").c_str(), r.repeat_days,
                r.conversion_days, r.t_c_days, r.t_x_days);
    if (r.valued_conversion_days > 0)
        why = format("%s, mean %.2f", plural(r.valued_conversion_days, "valued conversion day", "valued conversion days").c_str(),
                     r.conversion_value_total / static_cast<double>(r.valued_conversion_days));
    else
        why = "no conversion value yet: the population mean";
    s += format("  value (Gamma-Gamma, p=%g q=%g v=%g): next conversion day worth %.2f (%s), expected value in next "
                "%g days %.2f\n",
                p.gg_p, p.gg_q, p.gg_v, r.expected_conversion_value, why.c_str(), p.horizon_days,
                r.expected_value_horizon);
    s += format("  known for %.1f days, since its first event on %s\n", r.tenure_days,
                format_time(r.birth_at, false).c_str());
    s += format("  segment %s: %s (quintiles R=%d F=%d M=%d)", es_segment_name(r.segment),
                segment_rule(r, p).c_str(), r.recency_quintile, r.frequency_quintile, r.monetary_quintile);
    return s;
}

}  // namespace

extern "C" int es_explain(const es_result *r, const es_profile *p, char **text, char *err, size_t errlen) noexcept {
    *text = nullptr;
    try {
        const std::string s = explain(*r, *p);
        char *buf = static_cast<char *>(std::malloc(s.size() + 1));
        if (buf == nullptr) throw std::bad_alloc();
        std::memcpy(buf, s.c_str(), s.size() + 1);
        *text = buf;
        return ES_OK;
    } catch (const std::bad_alloc &) {
        return es::fail(err, errlen, ES_OUT_OF_MEMORY, "out of memory while explaining a score");
    } catch (const std::exception &e) {
        return es::fail(err, errlen, ES_INTERNAL, "%s", e.what());
    } catch (...) {
        return es::fail(err, errlen, ES_INTERNAL, "unknown error while explaining a score");
    }
}

// Unit tests of the profile ranges (profile_params.h): no accepted profile gives NaN or an infinity
// in any field of a score or in its explanation, for any events a contact can have (issue 29).
// Every parameter is taken at each bound and the doubles just inside, alone and together, against
// adversarial contacts: events at both ends of PostgreSQL's timestamp range, counts near a bigint's
// limit, conversion values up to the largest double, opt-outs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "btyd_kernel.h"
#include "gammagamma_kernel.h"
#include "profile_params.h"
#include "scoring_kernel.h"

namespace {

struct Param {
    std::string column;
    size_t offset;
    double default_value;
    es_param_range range;
};

#define ES_TEST_PARAM(column, member, default_value, rule) {#column, offsetof(es_profile, member), default_value, rule},
const std::vector<Param> kParams = {ES_PROFILE_PARAMS(ES_TEST_PARAM)};
#undef ES_TEST_PARAM

double &field(es_profile &p, const Param &param) {
    return *reinterpret_cast<double *>(reinterpret_cast<char *>(&p) + param.offset);
}
double field(const es_profile &p, const Param &param) {
    return *reinterpret_cast<const double *>(reinterpret_cast<const char *>(&p) + param.offset);
}

const Param &param_named(const std::string &column) {
    for (const Param &p : kParams)
        if (p.column == column) return p;
    std::abort();
}

// The smallest and largest accepted values, and the values just inside them (the doubles next to
// them; the next integers for an integer parameter).
double lowest(const Param &p) {
    return p.range.rule == ES_PARAM_ABOVE ? std::nextafter(p.range.lo, INFINITY) : p.range.lo;
}
double highest(const Param &p) { return p.range.hi; }
std::vector<double> extremes(const Param &p) {
    if (p.range.rule == ES_PARAM_INTEGER) return {lowest(p), lowest(p) + 1, highest(p) - 1, highest(p)};
    return {lowest(p), std::nextafter(lowest(p), INFINITY), std::nextafter(highest(p), -INFINITY), highest(p)};
}

// Restores the table's two cross-column rules after `changed` was set: frequency_min_days <=
// lookback_days (moving the other one), and weights summing to 1 (the other weights scaled).
void keep_cross_rules(es_profile &p, const std::string &changed) {
    if (changed == "frequency_min_days") p.lookback_days = std::max(p.lookback_days, p.frequency_min_days);
    if (p.frequency_min_days > p.lookback_days) p.frequency_min_days = p.lookback_days;
    double *w[] = {&p.weight_recency, &p.weight_frequency, &p.weight_monetary, &p.weight_time_decay,
                   &p.weight_diversity};
    const char *names[] = {"weight_recency", "weight_frequency", "weight_monetary", "weight_time_decay",
                           "weight_diversity"};
    int fixed = -1;
    for (int i = 0; i < 5; ++i)
        if (changed == names[i]) fixed = i;
    double others = 0;
    for (int i = 0; i < 5; ++i)
        if (i != fixed) others += *w[i];
    const double want = 1.0 - (fixed >= 0 ? *w[fixed] : 0.0);
    for (int i = 0; i < 5; ++i) {
        if (i == fixed) continue;
        // (the share first: others may be a denormal, whose products lose their digits)
        *w[i] = others > 0 ? *w[i] / others * want : (i == (fixed + 1) % 5 ? want : 0.0);
    }
}

// ---------------------------------------------------------------- adversarial contacts

constexpr int64_t kDay = ES_USECS_PER_DAY;
// PostgreSQL's timestamp range: 4713-11-24 00:00 BC to 294276-12-31 23:59:59.999999 AD.
constexpr int64_t kMinTime = INT64_C(-211813488000000000);
constexpr int64_t kMaxTime = INT64_C(9223371331200000000) - 1;
constexpr int64_t kNow = INT64_C(9648) * kDay;  // 2026-06-01
constexpr double kNumericMax = 999999999999.99;  // numeric(14,2)

struct Ev {
    int type;
    int64_t at;
    double value;
};

struct Contact {
    std::string name;
    int64_t as_of;
    std::vector<Ev> events;
    int doublings = 0;  // the events merged with themselves this many times (2^n copies)
};

std::vector<Contact> adversarial_contacts() {
    std::vector<Contact> cs;
    cs.push_back({"one open now", kNow, {{ES_OPENED, kNow, 0}}});
    // Every type at both ends of time, as of the last microsecond: ages of ~1.1e8 days and 0.
    Contact ends{"both ends of time", kMaxTime, {}};
    for (int t = 0; t < ES_EVENT_TYPES; ++t) {
        const double v = t == ES_CONVERTED ? DBL_MAX : 0;
        ends.events.push_back({t, kMinTime, v});
        ends.events.push_back({t, kMaxTime, v});
    }
    cs.push_back(ends);
    cs.push_back({"born at the first microsecond", kMinTime, {{ES_CONVERTED, kMinTime, DBL_MAX}}});
    cs.push_back({"one engagement at each end", kMaxTime, {{ES_DELIVERED, kMinTime, 0}, {ES_OPENED, kMinTime + kDay, 0},
                                                          {ES_BOUNCED, kMaxTime, 0}}});
    // 7 * 2^60 events (a bigint counts 9.2e18): every count, decayed sum and value sum doubled 60 times
    // (every type but opted_in, which "opted out, all types now" has).
    Contact many{"7 * 2^60 events", kNow, {}, 60};
    for (int t = 0; t < ES_EVENT_TYPES; ++t)
        if (t != ES_OPTED_IN) many.events.push_back({t, kNow - t * kDay / 7, t == ES_CONVERTED ? DBL_MAX : 0});
    cs.push_back(many);
    Contact cents{"2^40 conversions of numeric(14,2)'s largest value", kNow, {{ES_CONVERTED, kNow, kNumericMax},
                                                                             {ES_OPENED, kNow - kDay, 0}}, 40};
    cs.push_back(cents);
    // 100,000 engagement days over 300,000 years, each third with a conversion of the largest double.
    Contact days{"100,000 engagement days", kMaxTime, {{ES_DELIVERED, kMinTime, 0}}};
    const int64_t stride = (kMaxTime / kDay - kMinTime / kDay) / 100001;
    for (int64_t i = 1; i <= 100000; ++i) {
        const int64_t offset = i * stride, half = offset / 2;  // (the whole range exceeds an int64 of microseconds)
        const int64_t at = kMinTime + half * kDay + (offset - half) * kDay;
        days.events.push_back({i % 3 == 0 ? ES_CONVERTED : ES_CLICKED, at, i % 3 == 0 ? DBL_MAX : 0});
    }
    days.events.push_back({ES_RESPONDED, kMaxTime, 0});
    cs.push_back(days);
    cs.push_back({"opted out only", kNow, {{ES_OPTED_OUT, kNow, 0}, {ES_OPTED_OUT, kMinTime, 0}}, 61});
    cs.push_back({"opted in at both ends, out between", kMaxTime,
                  {{ES_OPTED_IN, kMinTime, 0}, {ES_OPTED_OUT, kNow, 0}, {ES_OPTED_IN, kMaxTime, 0}}, 20});
    // Bounces: 10 after the last delivery at each end of time, never reached, and 2^62 of them.
    Contact bounced{"bounced at both ends of time", kMaxTime, {{ES_DELIVERED, kMinTime, 0}, {ES_OPENED, kMinTime, 0}}};
    for (int i = 0; i < 10; ++i) {
        bounced.events.push_back({ES_BOUNCED, kMinTime + i, 0});
        bounced.events.push_back({ES_BOUNCED, kMaxTime - i, 0});
    }
    cs.push_back(bounced);
    cs.push_back({"never reached, bounced 2^61 times", kNow, {{ES_BOUNCED, kNow, 0}, {ES_OPTED_OUT, kNow, 0}}, 61});
    // Every type now, 2^58 times each: decayed sums of both signs, near-equal type counts.
    Contact mixed{"opted out, all types now", kNow, {}, 58};
    for (int t = 0; t < ES_EVENT_TYPES; ++t) mixed.events.push_back({t, kNow, t == ES_CONVERTED ? 5e-324 : 0});
    cs.push_back(mixed);
    return cs;
}

struct Scored {
    int status;
    std::string err;
    es_result r;
    std::string explanation;
    int explain_status;
};

Scored score(const Contact &c, const es_profile &p) {
    es_accum acc;
    es_accum_init(&acc, c.as_of);
    std::vector<int32_t> keys;
    es_bounces bounces;
    es_bounces_init(&bounces);
    for (const Ev &e : c.events) {
        int32_t key;
        const int kept = es_accumulate(&acc, &p, e.type, e.at, e.value, &key);
        if (kept == ES_ACC_DAY) keys.push_back(key);
        if (kept == ES_ACC_BOUNCE) es_bounces_add(&bounces, e.at);
    }
    keys.resize(es_compact_day_keys(keys.data(), keys.size()));
    for (int i = 0; i < c.doublings; ++i) {  // as a parallel aggregation combines partial states
        const es_accum copy = acc;
        es_merge(&acc, &copy);
        std::vector<int32_t> merged(2 * keys.size());
        merged.resize(es_merge_day_keys(keys.data(), keys.size(), keys.data(), keys.size(), merged.data()));
        keys = merged;
        const es_bounces bounces_copy = bounces;
        es_bounces_merge(&bounces, &bounces_copy);
    }
    Scored s{};
    char err[256] = "";
    s.status = es_finalize(&acc, keys.data(), keys.size(), bounces.n > 0 ? &bounces : nullptr, &p, &s.r, err,
                           sizeof err);
    s.err = err;
    if (s.status == ES_OK) {
        char *text = nullptr;
        s.explain_status = es_explain(&s.r, &p, &text, err, sizeof err);
        if (text != nullptr) {
            s.explanation = text;
            std::free(text);
        }
    }
    return s;
}

std::string lower(std::string s) {
    for (char &ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

// Every field finite, components in [0, 100] and probabilities in [0, 1] (up to rounding, which
// engagement_scores' CHECKs allow), the explanation without NaN or infinity.
void expect_sound(const Scored &s, const std::string &what) {
    ASSERT_EQ(s.status, ES_OK) << what << ": " << s.err;
    const es_result &r = s.r;
    const struct {
        const char *name;
        double v, lo, hi;
    } fields[] = {
        {"composite", r.composite, 0, 100.0000001},
        {"composite_unpenalised", r.composite_unpenalised, 0, 100.0000001},
        {"recency", r.recency, 0, 100},
        {"frequency", r.frequency, 0, 100},
        {"monetary", r.monetary, 0, 100},
        {"time_decay", r.time_decay, 0, 100},
        {"diversity", r.diversity, 0, 100 * (1 + 1e-15)},  // the entropy of near-equal counts: ln 4 + an ulp
        {"engagement_probability", r.engagement_probability, 0, 1},
        {"conversion_probability", r.conversion_probability, 0, 1},
        {"churn_risk", r.churn_risk, 0, 1},
        {"p_alive", r.p_alive, 0, 1},
        {"expected_engagements_30d", r.expected_engagements_horizon, 0, DBL_MAX},
        {"expected_conversion_value", r.expected_conversion_value, 0, DBL_MAX},
        {"expected_value_30d", r.expected_value_horizon, 0, DBL_MAX},
        {"recency_age_days", r.recency_age_days, -1, DBL_MAX},
        {"observed_days", r.observed_days, 0, DBL_MAX},
        {"rate_per_day", r.rate_per_day, 0, DBL_MAX},
        {"window_value", r.window_value, 0, DBL_MAX},
        {"decay_raw", r.decay_raw, -DBL_MAX, DBL_MAX},
        {"entropy", r.entropy, 0, 2},
        {"conversion_value_total", r.conversion_value_total, 0, DBL_MAX},
        {"conversion_share", r.conversion_share, 0, 1},
        {"tenure_days", r.tenure_days, 0, 1.1e8},
        {"mean_conversion_value", r.mean_conversion_value, 0, DBL_MAX},
    };
    for (const auto &f : fields) EXPECT_TRUE(f.v >= f.lo && f.v <= f.hi) << what << ": " << f.name << " = " << f.v;
    EXPECT_TRUE(r.birth_at >= kMinTime && r.birth_at <= kMaxTime && r.birth_at % kDay == 0) << what << ": birth_at";
    EXPECT_TRUE(r.bounces_since >= 0 && r.bounces_since <= ES_UNDELIVERABLE_AFTER_MAX) << what << ": bounces_since";
    ASSERT_EQ(s.explain_status, ES_OK) << what;
    const std::string text = lower(s.explanation);
    EXPECT_EQ(text.find("nan"), std::string::npos) << what << ":\n" << s.explanation;
    EXPECT_EQ(text.find("inf"), std::string::npos) << what << ":\n" << s.explanation;
}

std::string describe(const es_profile &p) {
    std::string s;
    char buf[64];
    for (size_t i = 0; i < kParams.size(); ++i) {
        std::snprintf(buf, sizeof buf, "%s=%.17g ", kParams[i].column.c_str(), field(p, kParams[i]));
        s += buf;
    }
    return s;
}

void expect_valid(const es_profile &p) {
    char err[256] = "";
    ASSERT_EQ(es_validate_profile(&p, err, sizeof err), ES_OK) << err << "\n" << describe(p);
}

// ---------------------------------------------------------------- tests

TEST(ProfileBounds, Issue29WeightAndEveryValueOutsideARangeAreRefused) {
    // The weight of issue 29 gave composite NaN (the decayed sum overflowed); now refused, and so
    // is every value just outside a range.
    es_profile p = es_default_profile();
    p.type_weight[ES_OPENED] = 1e308;
    char err[256] = "";
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    for (const Param &param : kParams) {
        for (double outside : {std::nextafter(param.range.lo, -INFINITY), std::nextafter(param.range.hi, INFINITY)}) {
            es_profile q = es_default_profile();
            field(q, param) = outside;
            keep_cross_rules(q, param.column);
            EXPECT_EQ(es_validate_profile(&q, err, sizeof err), ES_INVALID_PARAMETER) << param.column << " = " << outside;
        }
    }
}

TEST(ProfileBounds, EachParameterAtItsBoundsScoresEveryContact) {
    const std::vector<Contact> contacts = adversarial_contacts();
    for (const Param &param : kParams) {
        for (double v : extremes(param)) {
            es_profile p = es_default_profile();
            field(p, param) = v;
            keep_cross_rules(p, param.column);
            expect_valid(p);
            for (const Contact &c : contacts) expect_sound(score(c, p), param.column + " = " + std::to_string(v) + ", " + c.name);
        }
    }
}

TEST(ProfileBounds, EveryParameterAtOnceScoresEveryContact) {
    // All parameters at their lowest, all at their highest, and random mixes of bounds, the doubles
    // just inside them and defaults.
    const std::vector<Contact> contacts = adversarial_contacts();
    std::vector<es_profile> profiles;
    for (bool high : {false, true}) {
        es_profile p = es_default_profile();
        for (const Param &param : kParams) field(p, param) = high ? highest(param) : lowest(param);
        // but the weights sum to 1
        p.weight_recency = p.weight_frequency = p.weight_monetary = p.weight_time_decay = p.weight_diversity = 0;
        p.weight_recency = 1;
        profiles.push_back(p);
    }
    std::mt19937_64 rng(29);
    for (int i = 0; i < 60; ++i) {
        es_profile p = es_default_profile();
        for (const Param &param : kParams) {
            const std::vector<double> e = extremes(param);
            const size_t k = rng() % 5;
            field(p, param) = k < 4 ? e[k] : param.default_value;
        }
        const double w = static_cast<double>(rng() % 1000) / 1000.0;
        p.weight_recency = w;
        keep_cross_rules(p, "weight_recency");
        profiles.push_back(p);
    }
    for (const es_profile &p : profiles) {
        expect_valid(p);
        for (const Contact &c : contacts) expect_sound(score(c, p), c.name + " under " + describe(p));
    }
}

TEST(ProfileBounds, CompositeNeverExceedsTheTablesBound) {
    // Weights summing to 1 + 1e-9 (accepted) and every component 100: the composite is at most the
    // 100.0000001 engagement_scores allows, whatever the rounding of the weighted sum.
    const es_profile base = es_default_profile();
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    Contact all{"every component 100", kNow, {}, 10};
    for (int t : {ES_OPENED, ES_CLICKED, ES_RESPONDED, ES_CONVERTED}) all.events.push_back({t, kNow, 1e6});
    int tried = 0;
    for (int i = 0; i < 20000; ++i) {
        es_profile p = base;
        double w[5], sum = 0;
        for (double &x : w) sum += x = unif(rng);
        for (double &x : w) x /= sum;
        w[i % 5] += 1e-9 * (1 - 1e-6 * unif(rng)) + (1.0 - (w[0] + w[1] + w[2] + w[3] + w[4]));
        p.weight_recency = w[0];
        p.weight_frequency = w[1];
        p.weight_monetary = w[2];
        p.weight_time_decay = w[3];
        p.weight_diversity = w[4];
        char err[256];
        if (es_validate_profile(&p, err, sizeof err) != ES_OK) continue;
        ++tried;
        const Scored s = score(all, p);
        ASSERT_EQ(s.status, ES_OK) << s.err;
        ASSERT_EQ(s.r.recency, 100);
        ASSERT_EQ(s.r.frequency, 100);
        ASSERT_EQ(s.r.monetary, 100);
        ASSERT_EQ(s.r.time_decay, 100);
        ASSERT_EQ(s.r.diversity, 100);
        ASSERT_LE(s.r.composite, 100.0000001) << describe(p);
    }
    EXPECT_GT(tried, 10000);
}

TEST(ProfileBounds, ConversionValueSumsSaturateInsteadOfOverflowing) {
    // Conversion values up to the largest double (a CRM's own events relation can hold any): sums
    // that would overflow stay at the largest double, in one pass and merged alike, and sums that
    // do not are the plain compensated sums.
    const es_profile p = es_default_profile();
    es_accum acc;
    es_accum_init(&acc, kNow);
    int32_t key;
    for (int i = 0; i < 3; ++i) es_accumulate(&acc, &p, ES_CONVERTED, kNow - i * kDay, DBL_MAX, &key);
    EXPECT_EQ(es_sum_value(&acc.conversion_total), DBL_MAX);
    EXPECT_EQ(es_sum_value(&acc.window_value), DBL_MAX);
    es_accum part;
    es_accum_init(&part, kNow);
    es_accumulate(&part, &p, ES_CONVERTED, kNow, DBL_MAX / 2, &key);
    es_accum whole = part;
    es_merge(&whole, &part);
    es_merge(&whole, &part);
    EXPECT_EQ(es_sum_value(&whole.conversion_total), DBL_MAX);
    es_accum small;
    es_accum_init(&small, kNow);
    es_sum plain{0, 0};
    for (double v : {0.1, 1e16, 0.2, -0.0, 3.3}) {
        es_accumulate(&small, &p, ES_CONVERTED, kNow, v, &key);
        es_sum_add(&plain, v);
    }
    EXPECT_EQ(small.conversion_total.sum, plain.sum);
    EXPECT_EQ(small.conversion_total.compensation, plain.compensation);
}

// The summaries (x, t_x, T) a contact can have: x engagement days after its birth, at most one a
// day over PostgreSQL's ~1.09e8 days.
constexpr double kMaxDays = 109203489;

TEST(ProfileBounds, PredictionsAtEveryCornerOfTheModelsRanges) {
    // What es_finalize computes from the model parameters and the summary, for every corner of the
    // ranges of r, alpha, a, b and horizon_days and summaries es_finalize cannot be handed in a
    // unit test (10^8 engagement days): P(alive), the expectation, and the value model.
    const Param &r = param_named("model_r"), &alpha = param_named("model_alpha"), &a = param_named("model_a"),
                &b = param_named("model_b"), &h = param_named("horizon_days");
    auto corners = [](const Param &p) { return std::vector<double>{lowest(p), p.default_value, highest(p)}; };
    const struct {
        double x, tx, T;
    } summaries[] = {{0, 0, 0}, {0, 0, kMaxDays}, {1, 1, kMaxDays}, {kMaxDays - 1, kMaxDays - 1, kMaxDays},
                     {1e6, 2e6, 3e6}, {std::floor(kMaxDays / 2), kMaxDays - 1, kMaxDays}};
    int n = 0;
    for (double vr : corners(r))
        for (double valpha : corners(alpha))
            for (double va : corners(a))
                for (double vb : corners(b))
                    for (double vh : corners(h))
                        for (const auto &s : summaries) {
                            char err[256] = "";
                            double alive = NAN, expected = NAN;
                            ASSERT_EQ(es_btyd_p_alive(ES_MODEL_MBGNBD, s.x, s.tx, s.T, vr, valpha, va, vb, &alive, err,
                                                      sizeof err),
                                      ES_OK)
                                << err;
                            ASSERT_TRUE(alive >= 0 && alive <= 1);
                            ASSERT_EQ(es_btyd_expected(ES_MODEL_MBGNBD, vh, s.x, s.tx, s.T, vr, valpha, va, vb,
                                                       &expected, err, sizeof err),
                                      ES_OK)
                                << err << " r=" << vr << " alpha=" << valpha << " a=" << va << " b=" << vb
                                << " h=" << vh << " x=" << s.x << " t_x=" << s.tx << " T=" << s.T;
                            // At most an immortal contact's expectation.
                            ASSERT_TRUE(expected >= 0 && expected <= (vr + s.x) * vh / (valpha + s.T) * (1 + 1e-8))
                                << expected;
                            ++n;
                        }
    EXPECT_EQ(n, 243 * 6);
    const Param &gp = param_named("gg_p"), &gq = param_named("gg_q"), &gv = param_named("gg_v");
    for (double vp : corners(gp))
        for (double vq : corners(gq))
            for (double vv : corners(gv))
                for (double x : {0.0, 1.0, kMaxDays})
                    for (double m : {0.01, kNumericMax, DBL_MAX / std::max(x, 1.0), DBL_MAX}) {
                        double value = NAN;
                        char err[256] = "";
                        ASSERT_EQ(es_gg_expected_value(x, x > 0 ? m : 0, vp, vq, vv, &value, err, sizeof err), ES_OK)
                            << err;
                        ASSERT_TRUE(value >= 0 && value <= DBL_MAX);
                    }
}

TEST(ProfileBounds, ConcentratedDropoutExpectationIsAccurate) {
    // a and b + x both ~1e8: the Beta mixing distribution is ~1e-4 wide, where the Beta-integral
    // quadrature falls short of its accuracy and the logit quadrature takes over.  Against the
    // second-order expansion E phi(q) = phi(mu) + phi''(mu) var / 2 (the next terms are ~var^2,
    // ~1e-17 here): f = ((a + beta - 1) / (a - 1)) E phi(q), q ~ Beta(a - 1, beta), phi(q) =
    // 1 - (1 + q u)^-n.
    const struct {
        double r, alpha, a, b, h, x, tx, T;
    } cases[] = {{0.25, 10, 1e8, 1e8, 30, 1, 1, 2},      {2.0, 3.0, 1e9, 1e9, 30, 3, 5, 40},
                 {0.5, 100, 3e8, 5e8, 1000, 0, 0, 7},    {1e-3, 1e4, 1e9, 1e9, 1e5, 10, 20, 400},
                 {1, 1, 3e7, 1e8, 30, 1, 1, 1}};
    for (const auto &c : cases) {
        const double n = c.r + c.x, beta = c.b + c.x + 1, ap = c.a - 1, u = c.h / (c.alpha + c.T);
        const double mu = ap / (ap + beta), var = ap * beta / ((ap + beta) * (ap + beta) * (ap + beta + 1));
        const double phi = -std::expm1(-n * std::log1p(mu * u));
        const double phi2 = -n * (n + 1) * u * u * std::pow(1 + mu * u, -n - 2);
        const double alive_expectation = (c.a + beta - 1) / ap * (phi + phi2 * var / 2);
        double alive = NAN, expected = NAN;
        char err[256] = "";
        ASSERT_EQ(es_btyd_p_alive(ES_MODEL_MBGNBD, c.x, c.tx, c.T, c.r, c.alpha, c.a, c.b, &alive, err, sizeof err),
                  ES_OK);
        ASSERT_EQ(es_btyd_expected(ES_MODEL_MBGNBD, c.h, c.x, c.tx, c.T, c.r, c.alpha, c.a, c.b, &expected, err,
                                   sizeof err),
                  ES_OK)
            << err;
        EXPECT_NEAR(expected, alive * alive_expectation, 1e-11 * alive * alive_expectation) << "a=" << c.a;
    }
}

}  // namespace

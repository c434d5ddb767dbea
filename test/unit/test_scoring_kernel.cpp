// Unit tests of the scoring kernel against hand-computed values of docs/model.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "btyd_kernel.h"
#include "scoring_kernel.h"

namespace {

constexpr int64_t kDay = ES_USECS_PER_DAY;
// 2026-06-01 00:00:00 UTC in PostgreSQL microseconds (days since 2000-01-01: 9648).
constexpr int64_t kAsOf = INT64_C(9648) * kDay;

struct Event {
    int type;
    double age_days;
    double value = 0;
};

// Scores events through the same path the aggregate uses: accumulate, compact, finalize.
struct Scored {
    int status;
    es_result r;
    es_accum acc;
    std::vector<int32_t> keys;
};

Scored score(const std::vector<Event> &events, const es_profile &p = es_default_profile(), int64_t as_of = kAsOf) {
    Scored s{};
    es_accum_init(&s.acc, as_of);
    for (const Event &e : events) {
        int32_t key;
        const int64_t t = as_of - static_cast<int64_t>(std::llround(e.age_days * static_cast<double>(kDay)));
        if (es_accumulate(&s.acc, &p, e.type, t, e.value, &key)) s.keys.push_back(key);
    }
    s.keys.resize(es_compact_day_keys(s.keys.data(), s.keys.size()));
    char err[256];
    s.status = es_finalize(&s.acc, s.keys.data(), s.keys.size(), &p, &s.r, err, sizeof err);
    return s;
}

double p_alive(double x, double tx, double tc, const es_profile &p = es_default_profile()) {
    return 1.0 / (1.0 + (p.model_a / (p.model_b + x)) *
                            std::pow((p.model_alpha + tc) / (p.model_alpha + tx), p.model_r + x));
}

// lifetimes' ModifiedBetaGeoFitter.conditional_expected_number_of_purchases_up_to_time (closed form
// with 2F1): expected_engagements_30d of docs/model.md before the opt-out penalty.
double lifetimes_expected(double x, double tx, double tc, const es_profile &p = es_default_profile()) {
    const double r = p.model_r, alpha = p.model_alpha, a = p.model_a, b = p.model_b, t = p.horizon_days;
    double hyp = NAN;
    char err[256] = "";
    EXPECT_EQ(es_hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + tc + t), &hyp, err, sizeof err), ES_OK) << err;
    const double numerator = (a + b + x) / (a - 1) * (1 - hyp * std::pow((alpha + tc) / (alpha + t + tc), r + x));
    return numerator / (1 + (a / (b + x)) * std::pow((alpha + tc) / (alpha + tx), r + x));
}

#define EXPECT_REL(actual, expected) EXPECT_NEAR((actual), (expected), 1e-12 * std::max(1.0, std::fabs(expected)))

TEST(ScoringKernel, OneOpenTwoDaysAgo) {
    const Scored s = score({{ES_OPENED, 2.0}});
    ASSERT_EQ(s.status, ES_OK);
    const double R = 100 * std::exp(-2.0 / 30);
    const double F = 100 * (1 - std::exp(-(1.0 / 7) / 0.1));  // observed clamps up to 7 days
    const double TD = 100 * (1 - std::exp(-std::pow(2.0, -2.0 / 14) / 5));
    EXPECT_REL(s.r.recency, R);
    EXPECT_REL(s.r.frequency, F);
    EXPECT_EQ(s.r.monetary, 0.0);
    EXPECT_REL(s.r.time_decay, TD);
    EXPECT_EQ(s.r.diversity, 0.0);
    EXPECT_REL(s.r.composite, 0.30 * R + 0.25 * F + 0.15 * TD);
    // The open is on the birth day: n_days = 1 but x = 0 repeat days, t_x = 0, Tc = 2
    EXPECT_EQ(s.r.engagement_days, 1);
    EXPECT_EQ(s.r.repeat_days, 0);
    EXPECT_EQ(s.r.t_x_days, 0);
    EXPECT_EQ(s.r.t_c_days, 2);
    const double pa = p_alive(0, 0, 2);
    EXPECT_REL(s.r.churn_risk, 1 - pa);
    const double ep = pa * (1 - std::pow(12.0 / 42.0, 0.25));
    EXPECT_REL(s.r.engagement_probability, ep);
    EXPECT_REL(s.r.conversion_probability, ep * (1.0 / 11.0));  // q = (0 + 1) / (n_days 1 + 1 + 9)
    const double e30 = lifetimes_expected(0, 0, 2);
    EXPECT_NEAR(s.r.expected_engagements_horizon, e30, 1e-10 * e30);
    // No conversion value: the Gamma-Gamma population mean p v / (q - 1)
    EXPECT_EQ(s.r.valued_conversion_days, 0);
    const double ecv = 6.25 * 15.44 / (3.74 - 1);
    EXPECT_REL(s.r.expected_conversion_value, ecv);
    EXPECT_NEAR(s.r.expected_value_horizon, e30 * (1.0 / 11.0) * ecv, 1e-10 * e30 * ecv);
    // Rq = 5, Fq = 4, Mq = 1, FMq = round(2.5) = 3
    EXPECT_EQ(s.r.recency_quintile, 5);
    EXPECT_EQ(s.r.frequency_quintile, 4);
    EXPECT_EQ(s.r.fm_quintile, 3);
    EXPECT_STREQ(es_segment_name(s.r.segment), "potential_loyalist");
}

TEST(ScoringKernel, NoEventsHasNoScore) {
    const Scored s = score({});
    EXPECT_EQ(s.status, ES_INVALID_PARAMETER);
    EXPECT_EQ(s.acc.event_count, 0);
}

TEST(ScoringKernel, OnlyFutureEventsAreIgnored) {
    const Scored s = score({{ES_CONVERTED, -1.0, 50}, {ES_OPENED, -0.001}});
    EXPECT_EQ(s.status, ES_INVALID_PARAMETER);
    EXPECT_EQ(s.acc.event_count, 0);
    EXPECT_EQ(s.acc.ignored_future, 2);
    EXPECT_TRUE(s.keys.empty());
}

TEST(ScoringKernel, FutureEventsDoNotChangeAScore) {
    const Scored a = score({{ES_OPENED, 3.0}, {ES_CLICKED, 1.0}});
    const Scored b = score({{ES_OPENED, 3.0}, {ES_CLICKED, 1.0}, {ES_OPTED_OUT, -2.0}, {ES_CONVERTED, -1.0, 999}});
    EXPECT_EQ(a.r.composite, b.r.composite);
    EXPECT_EQ(a.r.churn_risk, b.r.churn_risk);
    EXPECT_FALSE(b.r.opted_out);
}

TEST(ScoringKernel, OnlyNonEngagingEvents) {
    const Scored s = score({{ES_DELIVERED, 10.0}, {ES_BOUNCED, 5.0}});
    ASSERT_EQ(s.status, ES_OK);
    EXPECT_EQ(s.r.recency, 0.0);
    EXPECT_EQ(s.r.frequency, 0.0);  // n = 0 over a non-empty window
    EXPECT_EQ(s.r.monetary, 0.0);
    EXPECT_EQ(s.r.time_decay, 0.0);  // the decay sum is negative: counts as 0
    EXPECT_LT(s.r.decay_raw, 0.0);
    EXPECT_EQ(s.r.diversity, 0.0);
    EXPECT_EQ(s.r.composite, 0.0);
    EXPECT_EQ(s.r.engagement_days, 0);
    EXPECT_EQ(s.r.t_c_days, 10);
    EXPECT_REL(s.r.churn_risk, 1 - p_alive(0, 0, 10));
    EXPECT_REL(s.r.engagement_probability, p_alive(0, 0, 10) * (1 - std::pow(20.0 / 50.0, 0.25)));
    EXPECT_REL(s.r.conversion_probability, s.r.engagement_probability / 10);
    EXPECT_STREQ(es_segment_name(s.r.segment), "lost");
}

TEST(ScoringKernel, LookbackEdgeIsInclusive) {
    const Scored in = score({{ES_OPENED, 365.0}});
    EXPECT_REL(in.r.recency, 100 * std::exp(-365.0 / 30));
    EXPECT_REL(in.r.frequency, 100 * (1 - std::exp(-(1.0 / 365) / 0.1)));
    EXPECT_GT(in.r.time_decay, 0.0);

    Scored out{};
    es_profile p = es_default_profile();
    es_accum_init(&out.acc, kAsOf);
    int32_t key;
    ASSERT_EQ(es_accumulate(&out.acc, &p, ES_OPENED, kAsOf - 365 * kDay - 1, 0, &key), 1);
    out.keys.push_back(key);
    char err[64];
    ASSERT_EQ(es_finalize(&out.acc, out.keys.data(), 1, &p, &out.r, err, sizeof err), ES_OK);
    EXPECT_EQ(out.r.recency, 0.0);
    EXPECT_EQ(out.r.frequency, 0.0);
    EXPECT_EQ(out.r.time_decay, 0.0);
    EXPECT_EQ(out.r.window_events, 0);
    EXPECT_EQ(out.r.engagement_days, 1);  // predictions use every event up to as_of
}

TEST(ScoringKernel, FrequencyObservedSpanIsClamped) {
    // Oldest window event of any type 100 days ago: 4 engaging events over 100 days.
    const Scored s = score({{ES_DELIVERED, 100.0}, {ES_OPENED, 50}, {ES_OPENED, 40}, {ES_CLICKED, 3}, {ES_CLICKED, 1}});
    EXPECT_REL(s.r.observed_days, 100.0);
    EXPECT_REL(s.r.frequency, 100 * (1 - std::exp(-(4.0 / 100) / 0.1)));
    // An old event outside the window does not stretch the span.
    const Scored t = score({{ES_DELIVERED, 900.0}, {ES_OPENED, 20}});
    EXPECT_REL(t.r.observed_days, 20.0);
}

TEST(ScoringKernel, MonetaryScaleAndCap) {
    EXPECT_REL(score({{ES_CONVERTED, 1, 1000}}).r.monetary, 100.0);
    EXPECT_REL(score({{ES_CONVERTED, 1, 5000}}).r.monetary, 100.0);
    EXPECT_EQ(score({{ES_CONVERTED, 1, 0}}).r.monetary, 0.0);
    EXPECT_REL(score({{ES_CONVERTED, 1, 9.99}, {ES_CONVERTED, 400, 100}}).r.monetary,
               100 * std::log(1 + 9.99) / std::log(1001.0));
    const Scored s = score({{ES_CONVERTED, 1, 9.99}, {ES_CONVERTED, 400, 100}});
    EXPECT_REL(es_sum_value(&s.acc.conversion_total), 109.99);
}

TEST(ScoringKernel, TimeDecayWeights) {
    const Scored s = score({{ES_OPENED, 0}, {ES_CLICKED, 14}, {ES_RESPONDED, 28}, {ES_CONVERTED, 14, 5},
                            {ES_BOUNCED, 0}, {ES_DELIVERED, 0}});
    const double raw = 1 + 2 * 0.5 + 3 * 0.25 + 10 * 0.5 - 1;
    EXPECT_REL(s.r.decay_raw, raw);
    EXPECT_REL(s.r.time_decay, 100 * (1 - std::exp(-raw / 5)));
}

TEST(ScoringKernel, DiversityEntropy) {
    EXPECT_REL(score({{ES_OPENED, 1}, {ES_CLICKED, 1}, {ES_RESPONDED, 1}, {ES_CONVERTED, 1}}).r.diversity, 100.0);
    EXPECT_REL(score({{ES_OPENED, 1}, {ES_OPENED, 2}, {ES_CLICKED, 1}, {ES_CLICKED, 2}}).r.diversity, 50.0);
    // 3 opens, 1 click: H = -(3/4 ln 3/4 + 1/4 ln 1/4)
    const double h = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
    EXPECT_REL(score({{ES_OPENED, 1}, {ES_OPENED, 2}, {ES_OPENED, 3}, {ES_CLICKED, 4}, {ES_DELIVERED, 4}}).r.diversity,
               100 * h / std::log(4.0));
}

TEST(ScoringKernel, OptOutPenalisesCompositeAndPredictionsNotComponents) {
    const Scored o = score({{ES_OPENED, 1}, {ES_OPTED_OUT, 3}});
    const Scored n = score({{ES_OPENED, 1}, {ES_DELIVERED, 3}});
    EXPECT_TRUE(o.r.opted_out);
    EXPECT_STREQ(es_segment_name(o.r.segment), "opted_out");
    EXPECT_EQ(o.r.recency, n.r.recency);
    EXPECT_EQ(o.r.frequency, n.r.frequency);
    EXPECT_EQ(o.r.time_decay, 0.0);  // 2^(-1/14) - 10 * 2^(-3/14) < 0
    EXPECT_REL(o.r.composite, 0.1 * o.r.composite_unpenalised);
    EXPECT_REL(o.r.engagement_probability, 0.1 * n.r.engagement_probability);
    EXPECT_REL(o.r.conversion_probability, 0.1 * n.r.conversion_probability);
    EXPECT_REL(o.r.churn_risk, 1 - (1 - n.r.churn_risk) * 0.1);
    EXPECT_REL(o.r.expected_engagements_horizon, 0.1 * n.r.expected_engagements_horizon);
    EXPECT_GT(n.r.expected_engagements_horizon, 0.0);
    // An opt-out never expires: one 1,000 days ago still counts.
    EXPECT_TRUE(score({{ES_OPENED, 1}, {ES_OPTED_OUT, 1000}}).r.opted_out);
}

TEST(ScoringKernel, EngagementDaysAreDistinctUtcDays) {
    // Three opens and a conversion on one UTC day, a click on another: x = 2, one conversion day.
    const Scored s = score({{ES_OPENED, 3.9}, {ES_OPENED, 3.5}, {ES_CONVERTED, 3.1, 5}, {ES_CLICKED, 1.5},
                            {ES_DELIVERED, 6}});
    EXPECT_EQ(s.r.engagement_days, 2);
    EXPECT_EQ(s.r.repeat_days, 2);  // the birth day (the delivery 6 days ago) holds no engagement
    EXPECT_EQ(s.r.conversion_days, 1);
    EXPECT_EQ(s.r.valued_conversion_days, 1);
    EXPECT_EQ(s.r.t_c_days, 6);
    EXPECT_EQ(s.r.t_x_days, 6 - 2);  // the click is on day -2 (1.5 days before midnight)
    EXPECT_REL(s.r.conversion_share, (1.0 + 1) / (2 + 1 + 9));
}

TEST(ScoringKernel, ThousandsOfEngagementDays) {
    std::vector<Event> ev;
    for (int d = 1; d <= 3000; ++d) ev.push_back({ES_OPENED, static_cast<double>(d)});
    const Scored s = score(ev);
    // The oldest open is the birth day (3,000 days ago): x = 2999 repeat days, the last one day ago.
    EXPECT_EQ(s.r.engagement_days, 3000);
    EXPECT_EQ(s.r.repeat_days, 2999);
    EXPECT_EQ(s.r.t_x_days, 2999);
    EXPECT_EQ(s.r.t_c_days, 3000);
    EXPECT_REL(s.r.churn_risk, 1 - 1 / (1 + (0.5 / 3001.5) * std::pow(3010.0 / 3009.0, 2999.25)));

    // First reached 5,000 days ago, 3,000 engagement days, silent for 2,000: the naive power overflows.
    std::vector<Event> old;
    for (int d = 0; d < 3000; ++d) old.push_back({ES_OPENED, 2000.0 + d});
    old.push_back({ES_DELIVERED, 5000});
    const Scored o = score(old);
    EXPECT_TRUE(std::isinf(std::pow(5010.0 / 3010.0, 3000.25)));
    EXPECT_EQ(o.r.p_alive, 0.0);
    EXPECT_EQ(o.r.churn_risk, 1.0);
    EXPECT_EQ(o.r.engagement_probability, 0.0);
    EXPECT_FALSE(std::isnan(o.r.conversion_probability));
}

// A random contact: up to ~n events of random types over span days, a few in the future.
std::vector<Event> random_events(std::mt19937_64 &rng, int n, double span) {
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    std::vector<Event> ev;
    const int count = 1 + static_cast<int>(unif(rng) * n);
    for (int i = 0; i < count; ++i) {
        const int type = static_cast<int>(unif(rng) * ES_EVENT_TYPES) % ES_EVENT_TYPES;
        if (type == ES_OPTED_OUT && unif(rng) < 0.8) continue;
        ev.push_back({type, unif(rng) < 0.02 ? -1.0 : unif(rng) * span, type == ES_CONVERTED ? 25.0 : 0.0});
    }
    return ev;
}

// A profile with random MBG/NBD parameters and horizon (the rest default).
es_profile random_model_profile(std::mt19937_64 &rng) {
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    auto logu = [&](double lo, double hi) { return lo * std::pow(hi / lo, unif(rng)); };
    es_profile p = es_default_profile();
    p.model_r = logu(0.01, 10);
    p.model_alpha = logu(0.1, 1000);
    p.model_a = logu(0.01, 10);
    p.model_b = logu(0.01, 100);
    p.horizon_days = logu(1, 1000);
    return p;
}

TEST(ScoringKernel, PAliveIsTheBtydKernels) {
    // One implementation of P(alive): the score's is es_btyd_p_alive's MBG/NBD value at the
    // contact's (x, t_x, Tc), to the last bit.
    std::mt19937_64 rng(11);
    for (int i = 0; i < 500; ++i) {
        const es_profile p = i % 2 ? random_model_profile(rng) : es_default_profile();
        const Scored s = score(random_events(rng, i % 50 == 0 ? 5000 : 60, i % 7 == 0 ? 3000 : 400), p);
        if (s.status != ES_OK) continue;  // only future events
        double want = NAN;
        char err[256] = "";
        ASSERT_EQ(es_btyd_p_alive(ES_MODEL_MBGNBD, static_cast<double>(s.r.repeat_days),
                                  static_cast<double>(s.r.t_x_days), static_cast<double>(s.r.t_c_days), p.model_r,
                                  p.model_alpha, p.model_a, p.model_b, &want, err, sizeof err),
                  ES_OK)
            << err;
        EXPECT_EQ(s.r.p_alive, want) << "contact " << i;
        if (!s.r.opted_out) {
            EXPECT_EQ(s.r.churn_risk, 1 - want) << "contact " << i;
        }
    }
}

TEST(ScoringKernel, PAliveAccurateWhenTheLastEngagementIsRecent) {
    // 3,000 engagement days ending yesterday, the first on the birth day: x = 2999, t_x = 2999,
    // Tc = 3000.  The ratio (alpha + Tc) / (alpha + t_x) is 1 + 1/3009; its log as
    // ln(3010) - ln(3009) loses 4 digits, which the power 2999.25 turns into a relative error of
    // ~3e-12 in churn_risk.
    std::vector<Event> ev;
    for (int d = 1; d <= 3000; ++d) ev.push_back({ES_OPENED, static_cast<double>(d)});
    const Scored s = score(ev);
    ASSERT_EQ(s.status, ES_OK);
    // 1 - 1 / (1 + (0.5 / 3001.5) (3010 / 3009)^2999.25), to 22 digits (mpmath, 50 digits).
    const double churn = 4.510773729192350781311e-4;
    EXPECT_NEAR(s.r.churn_risk, churn, 1e-12 * churn);
}

TEST(ScoringKernel, ExpectedEngagementsAreTheBtydKernels) {
    // The kernel owns expected_engagements_30d: es_btyd_expected's MBG/NBD value over horizon_days
    // at the contact's (x, t_x, Tc), times (1 - opt_out_penalty) when opted out, to the last bit.
    std::mt19937_64 rng(12);
    int opted_out = 0;
    for (int i = 0; i < 500; ++i) {
        es_profile p = i % 2 ? random_model_profile(rng) : es_default_profile();
        p.opt_out_penalty = i % 3 ? 0.9 : 0.25;
        const Scored s = score(random_events(rng, i % 50 == 0 ? 5000 : 60, i % 7 == 0 ? 3000 : 400), p);
        if (s.status != ES_OK) continue;  // only future events
        double expected = NAN;
        char err[256] = "";
        ASSERT_EQ(es_btyd_expected(ES_MODEL_MBGNBD, p.horizon_days, static_cast<double>(s.r.repeat_days),
                                   static_cast<double>(s.r.t_x_days), static_cast<double>(s.r.t_c_days), p.model_r,
                                   p.model_alpha, p.model_a, p.model_b, &expected, err, sizeof err),
                  ES_OK)
            << err;
        opted_out += s.r.opted_out;
        EXPECT_EQ(s.r.expected_engagements_horizon, s.r.opted_out ? expected * (1.0 - p.opt_out_penalty) : expected)
            << "contact " << i;
    }
    EXPECT_GT(opted_out, 20);
}

TEST(ScoringKernel, ExpectedEngagementsFailLikeTheBtydKernel) {
    // Parameters whose expectation the BTYD kernel cannot evaluate accurately: es_finalize fails
    // with es_btyd_expected's status and message rather than return an inaccurate score.  No
    // valid profile has such parameters (test_profile_bounds.cpp): this one is refused.
    es_profile p = es_default_profile();
    p.model_r = 1e-300;
    p.model_alpha = 0.5;
    p.model_a = 1e300;
    p.model_b = 1e9;
    char err[256] = "";
    ASSERT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    double v;
    char want[256] = "";
    const int want_status = es_btyd_expected(ES_MODEL_MBGNBD, p.horizon_days, 1, 1, 2, p.model_r, p.model_alpha,
                                             p.model_a, p.model_b, &v, want, sizeof want);
    ASSERT_EQ(want_status, ES_OUT_OF_RANGE);

    const Scored s = score({{ES_DELIVERED, 2.0}, {ES_OPENED, 1.0}}, p);  // x = 1, t_x = 1, Tc = 2
    es_result r;
    EXPECT_EQ(es_finalize(&s.acc, s.keys.data(), s.keys.size(), &p, &r, err, sizeof err), want_status);
    EXPECT_STREQ(err, want);
}

TEST(ScoringKernel, DayNumbersFloorBeforeTheEpoch) {
    EXPECT_EQ(es_day_number(0), 10957);  // 2000-01-01
    EXPECT_EQ(es_day_number(-1), 10956);
    EXPECT_EQ(es_day_number(-INT64_C(946684800) * 1000000), 0);  // 1970-01-01
    EXPECT_EQ(es_day_number(-INT64_C(946684800) * 1000000 - 1), -1);
}

TEST(ScoringKernel, CompactDayKeysMergesTheDaysFlags) {
    const int32_t C = ES_DAY_CONVERTED, V = ES_DAY_VALUED;
    std::vector<int32_t> keys = {4 * 5, 4 * -3 + C, 4 * 5 + C, 4 * -3, 4 * 7, 4 * 5 + (C | V), 4 * -4, 4 * 7 + C};
    keys.resize(es_compact_day_keys(keys.data(), keys.size()));
    const std::vector<int32_t> want = {4 * -4, 4 * -3 + C, 4 * 5 + (C | V), 4 * 7 + C};
    EXPECT_EQ(keys, want);
    EXPECT_EQ(es_day_of_key(4 * -3 + C), -3);  // floor, before 1970 too
}

TEST(ScoringKernel, MergedDayKeysAreTheCompactedConcatenation) {
    // Keys of days -3..12 with every flag combination, overlapping days in both arrays and
    // arrays empty, alone or together: the merge equals sorting and compacting both at once.
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> day(-3, 12), flags(0, 3), len(0, 12);
    for (int round = 0; round < 500; ++round) {
        std::vector<int32_t> a(len(rng)), b(len(rng));
        for (int32_t &k : a) k = day(rng) * (1 << ES_DAY_KEY_SHIFT) + flags(rng);
        for (int32_t &k : b) k = day(rng) * (1 << ES_DAY_KEY_SHIFT) + flags(rng);
        a.resize(es_compact_day_keys(a.data(), a.size()));
        b.resize(es_compact_day_keys(b.data(), b.size()));
        std::vector<int32_t> both(a);
        both.insert(both.end(), b.begin(), b.end());
        both.resize(es_compact_day_keys(both.data(), both.size()));
        std::vector<int32_t> merged(a.size() + b.size());
        merged.resize(es_merge_day_keys(a.data(), a.size(), b.data(), b.size(), merged.data()));
        ASSERT_EQ(merged, both) << "round " << round;
    }
}

TEST(ScoringKernel, MergedPartialStatesEqualOnePass) {
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> age(-5, 500);
    std::uniform_int_distribution<int> type(0, ES_EVENT_TYPES - 1);
    std::vector<Event> ev;
    for (int i = 0; i < 2000; ++i) {
        const int t = type(rng);
        ev.push_back({t, age(rng), t == ES_CONVERTED ? std::floor(age(rng) * 100) / 100 + 5 : 0});
    }
    const Scored whole = score(ev);
    ASSERT_EQ(whole.status, ES_OK);

    // Three "workers" take rows at random, then combine (keys concatenated, as the glue does).
    const es_profile p = es_default_profile();
    es_accum parts[3];
    std::vector<int32_t> keys[3];
    for (auto &a : parts) es_accum_init(&a, kAsOf);
    std::uniform_int_distribution<int> worker(0, 2);
    for (const Event &e : ev) {
        const int w = worker(rng);
        int32_t key;
        const int64_t t = kAsOf - static_cast<int64_t>(std::llround(e.age_days * static_cast<double>(kDay)));
        if (es_accumulate(&parts[w], &p, e.type, t, e.value, &key)) keys[w].push_back(key);
    }
    es_accum acc;
    es_accum_init(&acc, kAsOf);
    std::vector<int32_t> all;
    for (int w = 2; w >= 0; --w) {
        es_merge(&acc, &parts[w]);
        keys[w].resize(es_compact_day_keys(keys[w].data(), keys[w].size()));
        all.insert(all.end(), keys[w].begin(), keys[w].end());
    }
    all.resize(es_compact_day_keys(all.data(), all.size()));
    EXPECT_EQ(all, whole.keys);
    es_result r;
    char err[64];
    ASSERT_EQ(es_finalize(&acc, all.data(), all.size(), &p, &r, err, sizeof err), ES_OK);
    EXPECT_EQ(acc.event_count, whole.acc.event_count);
    EXPECT_EQ(acc.first_event_at, whole.acc.first_event_at);
    EXPECT_EQ(acc.window_oldest_at, whole.acc.window_oldest_at);
    EXPECT_EQ(r.engagement_days, whole.r.engagement_days);
    EXPECT_EQ(r.churn_risk, whole.r.churn_risk);
    EXPECT_REL(r.composite, whole.r.composite);
    EXPECT_REL(r.time_decay, whole.r.time_decay);
    EXPECT_REL(r.monetary, whole.r.monetary);
}

TEST(ScoringKernel, CompositeUsesProfileWeights) {
    es_profile p = es_default_profile();
    p.weight_recency = 0;
    p.weight_frequency = 0;
    p.weight_monetary = 0;
    p.weight_time_decay = 0;
    p.weight_diversity = 1;
    const Scored s = score({{ES_OPENED, 1}, {ES_CLICKED, 2}}, p);
    EXPECT_REL(s.r.composite, s.r.diversity);
    EXPECT_REL(s.r.composite, 50.0);
}

TEST(ScoringKernel, ProfileValidation) {
    char err[256];
    es_profile p = es_default_profile();
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_OK);
    // The defaults sum to 1 only within floating point: 0.30 + 0.25 + 0.20 + 0.15 + 0.10.
    p.weight_recency = 0.31;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_NE(std::string(err).find("sum to 1"), std::string::npos);
    p = es_default_profile();
    p.weight_recency += 5e-10;  // within 1e-9
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_OK);
    p = es_default_profile();
    p.half_life_days = 0;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_NE(std::string(err).find("half_life_days"), std::string::npos);
    p = es_default_profile();
    p.half_life_days = std::nan("");
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    p = es_default_profile();
    p.model_alpha = INFINITY;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    p = es_default_profile();
    p.opt_out_penalty = 1.5;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    p = es_default_profile();
    p.type_weight[ES_BOUNCED] = -INFINITY;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    p = es_default_profile();
    p.frequency_min_days = 400;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
}

TEST(ScoringKernel, QuintilesAndSegmentRules) {
    EXPECT_EQ(es_quintile(0), 1);
    EXPECT_EQ(es_quintile(19.999), 1);
    EXPECT_EQ(es_quintile(20), 2);
    EXPECT_EQ(es_quintile(79.99), 4);
    EXPECT_EQ(es_quintile(80), 5);
    EXPECT_EQ(es_quintile(100), 5);
    struct Case {
        int opted, rq, fq, mq;
        const char *segment;
    };
    const Case cases[] = {
        {1, 5, 5, 5, "opted_out"},      {0, 4, 4, 4, "champions"},       {0, 5, 5, 3, "champions"},  // FMq = 4
        {0, 3, 5, 4, "loyal"},          {0, 4, 3, 3, "potential_loyalist"}, {0, 5, 2, 1, "potential_loyalist"},
        {0, 4, 1, 1, "new"},            {0, 3, 2, 2, "promising"},       {0, 3, 3, 3, "need_attention"},
        {0, 3, 3, 2, "need_attention"}, {0, 2, 3, 3, "at_risk"},          {0, 1, 4, 4, "cannot_lose"},
        {0, 2, 2, 2, "about_to_sleep"}, {0, 1, 2, 2, "hibernating"},      {0, 1, 3, 3, "hibernating"},
        {0, 1, 1, 1, "lost"},           {0, 1, 2, 1, "hibernating"},      // FMq = round(1.5) = 2
    };
    for (const Case &c : cases)
        EXPECT_STREQ(es_segment_name(es_segment_of(c.opted, c.rq, c.fq, c.mq)), c.segment)
            << "Rq=" << c.rq << " Fq=" << c.fq << " Mq=" << c.mq;
}

TEST(ScoringKernel, DecayedWeight) {
    EXPECT_REL(es_decayed_weight(4, kAsOf - 14 * kDay, kAsOf, 14), 2.0);
    EXPECT_REL(es_decayed_weight(4, kAsOf - 28 * kDay, kAsOf, 7), 0.25);
    EXPECT_EQ(es_decayed_weight(0, kAsOf - kDay, kAsOf, 14), 0.0);
}

// PostgreSQL's timestamp range: 4713-11-24 BC 00:00 UTC to 294276-12-31 23:59:59.999999 UTC, in
// microseconds since 2000-01-01.  Its two ends lie further apart than INT64_MAX microseconds.
constexpr int64_t kMinTimestamp = -INT64_C(211813488000000000);
constexpr int64_t kMaxTimestamp = INT64_C(9223371331200000000) - 1;
// 1900-01-01 and 294276-12-31 23:59:59 UTC, the reproducer: ~292,376 years apart.
constexpr int64_t k1900 = -INT64_C(3155673600000000);
constexpr int64_t k294276 = INT64_C(9223371331199000000);

TEST(ScoringKernel, AgesBeyondTheInt64RangeDoNotOverflow) {
    const double days = (static_cast<double>(k294276) - static_cast<double>(k1900)) / static_cast<double>(kDay);
    ASSERT_GT(days, 1.0e8);  // as_of - occurred_at itself is beyond INT64_MAX microseconds
    // time_decay never exceeds the weight, however long the half-life.
    const double w = es_decayed_weight(1, k1900, k294276, 1e12);
    EXPECT_LT(w, 1.0);
    EXPECT_REL(w, std::exp2(-days / 1e12));
    EXPECT_EQ(es_decayed_weight(1, kMinTimestamp, kMaxTimestamp, 14), 0.0);

    // An open in 1900 scored in 294276 lies far outside the window: finite, no recency.
    const es_profile p = es_default_profile();
    es_accum acc;
    es_accum_init(&acc, k294276);
    int32_t key;
    ASSERT_EQ(es_accumulate(&acc, &p, ES_OPENED, k1900, 0, &key), 1);
    EXPECT_EQ(acc.window_event_count, 0);
    es_result r;
    char err[256] = "";
    ASSERT_EQ(es_finalize(&acc, &key, 1, &p, &r, err, sizeof err), ES_OK) << err;
    EXPECT_EQ(r.recency, 0.0);
    EXPECT_EQ(r.recency_age_days, -1.0);
    EXPECT_EQ(r.frequency, 0.0);
    EXPECT_EQ(r.time_decay, 0.0);
    EXPECT_EQ(r.composite, 0.0);
    EXPECT_EQ(r.t_c_days, es_day_number(k294276) - es_day_number(k1900));
    EXPECT_TRUE(std::isfinite(r.churn_risk) && std::isfinite(r.expected_engagements_horizon));
}

TEST(ScoringKernel, OrdinaryAgesAreTheExactInt64Difference) {
    // Where the difference fits int64 the age is that exact difference, rounded once: bit-identical
    // to what the kernel always computed.
    std::mt19937_64 rng(11);
    std::uniform_int_distribution<int64_t> ts(kMinTimestamp, kMaxTimestamp);
    for (int i = 0; i < 10000; ++i) {
        int64_t a = ts(rng), b = ts(rng);
        if (a < b) std::swap(a, b);
        if (static_cast<double>(a) - static_cast<double>(b) >= 9.2e18) continue;
        const double age = static_cast<double>(a - b) / static_cast<double>(kDay);
        EXPECT_EQ(es_decayed_weight(3, b, a, 1e9), 3 * std::exp2(-age / 1e9)) << a << " " << b;
    }
    // Ages of either end of the range from every other point.
    EXPECT_EQ(es_decayed_weight(1, kMinTimestamp, kMinTimestamp, 1), 1.0);
    EXPECT_EQ(es_decayed_weight(1, kMaxTimestamp, kMaxTimestamp, 1), 1.0);
    const double full = (static_cast<double>(kMaxTimestamp) - static_cast<double>(kMinTimestamp)) /
                        static_cast<double>(kDay);
    EXPECT_REL(es_decayed_weight(1, kMinTimestamp, kMaxTimestamp, 1e15), std::exp2(-full / 1e15));
}

TEST(ScoringKernel, NeumaierSumIsExactWhereNaiveIsNot) {
    es_sum s{};
    es_sum_add(&s, 1e16);
    es_sum_add(&s, 1.0);
    es_sum_add(&s, -1e16);
    EXPECT_EQ(es_sum_value(&s), 1.0);
}

TEST(ScoringKernel, ExplanationStatesTheFacts) {
    const Scored s = score({{ES_OPENED, 3.2}, {ES_CONVERTED, 5, 25}, {ES_OPTED_OUT, 1}});
    char *text = nullptr;
    char err[256];
    const es_profile p = es_default_profile();
    ASSERT_EQ(es_explain(&s.r, &p, &text, err, sizeof err), ES_OK);
    const std::string t(text);
    std::free(text);
    EXPECT_NE(t.find("last engaged 3.2 days ago"), std::string::npos) << t;
    EXPECT_NE(t.find("segment opted_out"), std::string::npos) << t;
    EXPECT_NE(t.find("opted out: composite"), std::string::npos) << t;
    EXPECT_NE(t.find("25.00 converted in the window"), std::string::npos) << t;
    EXPECT_NE(t.find("x 0.30"), std::string::npos) << t;
    EXPECT_NE(t.find("P(alive)"), std::string::npos) << t;
    EXPECT_NE(t.find("2 engagement days"), std::string::npos) << t;
}

}  // namespace

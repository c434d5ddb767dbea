// Unit tests of the scoring kernel against hand-computed values of docs/model.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
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

// A contact's state as the aggregate keeps it: the accumulator, the day keys and the latest
// bounces (made at the first bounce).
struct State {
    es_accum acc;
    std::vector<int32_t> keys;
    bool bounced = false;
    es_bounces bounces;

    explicit State(int64_t as_of) {
        es_accum_init(&acc, as_of);
        es_bounces_init(&bounces);
    }
    void add(const es_profile &p, int type, int64_t at, double value) {
        int32_t key;
        switch (es_accumulate(&acc, &p, type, at, value, &key)) {
            case ES_ACC_DAY:
                keys.push_back(key);
                break;
            case ES_ACC_BOUNCE:
                bounced = true;
                es_bounces_add(&bounces, at);
                break;
        }
    }
    // Merges another state into this one, as the combine function does.
    void merge(const State &o) {
        es_merge(&acc, &o.acc);
        std::vector<int32_t> a = keys, b = o.keys;
        a.resize(es_compact_day_keys(a.data(), a.size()));
        b.resize(es_compact_day_keys(b.data(), b.size()));
        keys.resize(a.size() + b.size());
        keys.resize(es_merge_day_keys(a.data(), a.size(), b.data(), b.size(), keys.data()));
        if (o.bounced) es_bounces_merge(&bounces, &o.bounces);
        bounced = bounced || o.bounced;
    }
    int finalize(const es_profile &p, es_result *r, char *err, size_t errlen) {
        keys.resize(es_compact_day_keys(keys.data(), keys.size()));
        return es_finalize(&acc, keys.data(), keys.size(), bounced ? &bounces : nullptr, &p, r, err, errlen);
    }
};

// Scores events through the same path the aggregate uses: accumulate, compact, finalize.
struct Scored {
    int status;
    es_result r;
    es_accum acc;
    std::vector<int32_t> keys;
};

int64_t at_age(double age_days, int64_t as_of = kAsOf) {
    return as_of - static_cast<int64_t>(std::llround(age_days * static_cast<double>(kDay)));
}

Scored score(const std::vector<Event> &events, const es_profile &p = es_default_profile(), int64_t as_of = kAsOf) {
    State st(as_of);
    for (const Event &e : events) st.add(p, e.type, at_age(e.age_days, as_of), e.value);
    Scored s{};
    char err[256];
    s.status = st.finalize(p, &s.r, err, sizeof err);
    s.acc = st.acc;
    s.keys = st.keys;
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
    const double F = 100 * (1 - std::exp(-(1.0 / 30) / 0.1));  // observed clamps up to 30 days
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
    // Rq = 5, Fq = 2 (F = 28.3), Mq = 1, FMq = round(1.5) = 2; known for 2 days: new
    EXPECT_EQ(s.r.recency_quintile, 5);
    EXPECT_EQ(s.r.frequency_quintile, 2);
    EXPECT_EQ(s.r.fm_quintile, 2);
    EXPECT_EQ(s.r.tenure_days, 2.0);
    EXPECT_STREQ(es_segment_name(s.r.segment), "new");
    // Known for 30 days or more, the same events are a potential loyalist (Rq 5 >= 4, FMq 2 >= 2).
    es_profile p = es_default_profile();
    p.new_contact_days = 2;
    EXPECT_STREQ(es_segment_name(score({{ES_OPENED, 2.0}}, p).r.segment), "potential_loyalist");
}

TEST(ScoringKernel, NoEventsHasNoScore) {
    const Scored s = score({});
    EXPECT_EQ(s.status, ES_INVALID_PARAMETER);
    EXPECT_EQ(s.acc.event_count, 0);
}

TEST(ScoringKernel, OnlyFutureEventsAreIgnored) {
    const Scored s = score({{ES_CONVERTED, -1.0, 50}, {ES_OPENED, -0.001}, {ES_BOUNCED, -0.5}});
    EXPECT_EQ(s.status, ES_INVALID_PARAMETER);
    EXPECT_EQ(s.acc.event_count, 0);
    EXPECT_TRUE(s.keys.empty());
    const es_profile p = es_default_profile();
    es_accum acc;
    es_accum_init(&acc, kAsOf);
    int32_t key;
    for (int t = 0; t < ES_EVENT_TYPES; ++t) EXPECT_EQ(es_accumulate(&acc, &p, t, kAsOf + 1, 1, &key), ES_ACC_NONE);
    EXPECT_EQ(acc.event_count, 0);
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
    EXPECT_FALSE(s.r.undeliverable);  // one bounce since the delivery, under undeliverable_after 3
    EXPECT_STREQ(es_segment_name(s.r.segment), "new");  // known for 10 days
    es_profile p = es_default_profile();
    p.new_contact_days = 10;
    EXPECT_STREQ(es_segment_name(score({{ES_DELIVERED, 10.0}, {ES_BOUNCED, 5.0}}, p).r.segment), "lost");
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
    ASSERT_EQ(es_accumulate(&out.acc, &p, ES_OPENED, kAsOf - 365 * kDay - 1, 0, &key), ES_ACC_DAY);
    out.keys.push_back(key);
    char err[64];
    ASSERT_EQ(es_finalize(&out.acc, out.keys.data(), 1, nullptr, &p, &out.r, err, sizeof err), ES_OK);
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
    const Scored t = score({{ES_DELIVERED, 900.0}, {ES_OPENED, 40}});
    EXPECT_REL(t.r.observed_days, 40.0);
    // The span is at least frequency_min_days (30).
    const Scored u = score({{ES_DELIVERED, 900.0}, {ES_OPENED, 20}});
    EXPECT_EQ(u.r.observed_days, 30.0);
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
        if (!s.r.opted_out && !s.r.undeliverable) {
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
    // at the contact's (x, t_x, Tc), times (1 - opt_out_penalty) when opted out and
    // (1 - undeliverable_penalty) when undeliverable.
    std::mt19937_64 rng(12);
    int opted_out = 0, undeliverable = 0;
    for (int i = 0; i < 500; ++i) {
        es_profile p = i % 2 ? random_model_profile(rng) : es_default_profile();
        p.opt_out_penalty = i % 3 ? 0.9 : 0.25;
        p.undeliverable_penalty = i % 5 ? 0.9 : 0.5;
        p.undeliverable_after = 1 + i % 3;
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
        undeliverable += s.r.undeliverable;
        double keep = 1.0;
        if (s.r.opted_out) keep *= 1.0 - p.opt_out_penalty;
        if (s.r.undeliverable) keep *= 1.0 - p.undeliverable_penalty;
        // (the scoring kernel multiplies its P_alive by E[events | alive], es_btyd_expected adds logs:
        // equal within a few units of the last place)
        const double want = s.r.opted_out || s.r.undeliverable ? expected * keep : expected;
        EXPECT_NEAR(s.r.expected_engagements_horizon, want, 1e-13 * std::fabs(want)) << "contact " << i;
    }
    EXPECT_GT(opted_out, 20);
    EXPECT_GT(undeliverable, 20);
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
    EXPECT_EQ(es_finalize(&s.acc, s.keys.data(), s.keys.size(), nullptr, &p, &r, err, sizeof err), want_status);
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

    // Three "workers" take rows at random, then combine (keys merged, bounces merged).
    const es_profile p = es_default_profile();
    std::vector<State> parts(3, State(kAsOf));
    std::uniform_int_distribution<int> worker(0, 2);
    for (const Event &e : ev) parts[worker(rng)].add(p, e.type, at_age(e.age_days), e.value);
    State all(kAsOf);
    for (int w = 2; w >= 0; --w) all.merge(parts[w]);
    es_result r;
    char err[64];
    ASSERT_EQ(all.finalize(p, &r, err, sizeof err), ES_OK);
    EXPECT_EQ(all.keys, whole.keys);
    const es_accum &acc = all.acc;
    EXPECT_EQ(acc.event_count, whole.acc.event_count);
    EXPECT_EQ(acc.last_reached_at, whole.acc.last_reached_at);
    EXPECT_EQ(acc.last_opted_out_at, whole.acc.last_opted_out_at);
    EXPECT_EQ(acc.last_opted_in_at, whole.acc.last_opted_in_at);
    EXPECT_EQ(r.opted_out, whole.r.opted_out);
    EXPECT_EQ(r.undeliverable, whole.r.undeliverable);
    EXPECT_EQ(r.bounces_since, whole.r.bounces_since);
    EXPECT_EQ(r.tenure_days, whole.r.tenure_days);
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
        int opted, undeliverable, is_new, rq, fq, mq;
        const char *segment;
    };
    const Case cases[] = {
        {1, 1, 1, 5, 5, 5, "opted_out"},      {0, 1, 1, 5, 5, 5, "undeliverable"},
        {0, 0, 1, 5, 5, 5, "new"},            {0, 0, 1, 1, 1, 1, "new"},
        {0, 0, 0, 4, 4, 4, "champions"},      {0, 0, 0, 5, 5, 3, "champions"},  // FMq = 4
        {0, 0, 0, 3, 5, 4, "loyal"},          {0, 0, 0, 4, 3, 3, "potential_loyalist"},
        {0, 0, 0, 5, 2, 1, "potential_loyalist"},
        {0, 0, 0, 4, 1, 1, "promising"},      // version 2: new (Rq >= 4 and FMq = 1)
        {0, 0, 0, 5, 1, 1, "promising"},      {0, 0, 0, 3, 2, 2, "promising"},
        {0, 0, 0, 3, 3, 3, "need_attention"}, {0, 0, 0, 3, 3, 2, "need_attention"},
        {0, 0, 0, 2, 3, 3, "at_risk"},        {0, 0, 0, 1, 4, 4, "cannot_lose"},
        {0, 0, 0, 2, 2, 2, "about_to_sleep"}, {0, 0, 0, 1, 2, 2, "hibernating"},
        {0, 0, 0, 1, 3, 3, "hibernating"},    {0, 0, 0, 1, 1, 1, "lost"},
        {0, 0, 0, 1, 2, 1, "hibernating"},    // FMq = round(1.5) = 2
    };
    for (const Case &c : cases)
        EXPECT_STREQ(es_segment_name(es_segment_of(c.opted, c.undeliverable, c.is_new, c.rq, c.fq, c.mq)), c.segment)
            << "Rq=" << c.rq << " Fq=" << c.fq << " Mq=" << c.mq;
    // Every input against the contract's table, written out here.
    auto contract = [](int opted, int undeliverable, int is_new, int rq, int fq, int mq) -> std::string {
        const int fmq = static_cast<int>(std::floor((fq + mq) / 2.0 + 0.5));
        if (opted) return "opted_out";
        if (undeliverable) return "undeliverable";
        if (is_new) return "new";
        if (rq >= 4 && fmq >= 4) return "champions";
        if (rq >= 3 && fmq >= 4) return "loyal";
        if (rq >= 4 && fmq >= 2) return "potential_loyalist";
        if (rq >= 3 && fmq <= 2) return "promising";
        if (rq == 3 && fmq == 3) return "need_attention";
        if (rq == 2 && fmq >= 3) return "at_risk";
        if (rq == 1 && fmq >= 4) return "cannot_lose";
        if (rq == 2 && fmq <= 2) return "about_to_sleep";
        if (rq == 1 && fmq >= 2) return "hibernating";
        return "lost";
    };
    for (int flags = 0; flags < 8; ++flags)
        for (int rq = 1; rq <= 5; ++rq)
            for (int fq = 1; fq <= 5; ++fq)
                for (int mq = 1; mq <= 5; ++mq) {
                    const int o = flags & 1, u = (flags >> 1) & 1, n = (flags >> 2) & 1;
                    EXPECT_EQ(es_segment_name(es_segment_of(o, u, n, rq, fq, mq)), contract(o, u, n, rq, fq, mq))
                        << flags << " Rq=" << rq << " Fq=" << fq << " Mq=" << mq;
                }
    EXPECT_STREQ(es_segment_name(ES_SEG_UNDELIVERABLE), "undeliverable");
    EXPECT_EQ(ES_SEG_UNDELIVERABLE, ES_SEG_OPTED_OUT + 1);
    EXPECT_STREQ(es_segment_name(ES_SEGMENTS), "unknown");
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
    ASSERT_EQ(es_accumulate(&acc, &p, ES_OPENED, k1900, 0, &key), ES_ACC_DAY);
    EXPECT_EQ(acc.window_event_count, 0);
    es_result r;
    char err[256] = "";
    ASSERT_EQ(es_finalize(&acc, &key, 1, nullptr, &p, &r, err, sizeof err), ES_OK) << err;
    EXPECT_EQ(r.recency, 0.0);
    EXPECT_EQ(r.recency_age_days, -1.0);
    EXPECT_EQ(r.frequency, 0.0);
    EXPECT_EQ(r.time_decay, 0.0);
    EXPECT_EQ(r.composite, 0.0);
    EXPECT_EQ(r.t_c_days, es_day_number(k294276) - es_day_number(k1900));
    EXPECT_REL(r.tenure_days, days);  // the same age arithmetic: no overflow
    EXPECT_EQ(r.birth_at, k1900);     // 1900-01-01 00:00 UTC
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
    EXPECT_NE(t.find("opted out on 2026-05-31 00:00:00 UTC: composite"), std::string::npos) << t;
    EXPECT_NE(t.find("x (1 - opt_out_penalty 0.9)"), std::string::npos) << t;
    EXPECT_NE(t.find("segment opted_out: opted out on 2026-05-31 00:00:00 UTC"), std::string::npos) << t;
    EXPECT_NE(t.find("25.00 converted in the window"), std::string::npos) << t;
    EXPECT_NE(t.find("x 0.30"), std::string::npos) << t;
    EXPECT_NE(t.find("P(alive)"), std::string::npos) << t;
    EXPECT_NE(t.find("2 engagement days"), std::string::npos) << t;
}


// ---------------------------------------------------------------- model version 3

// An event at an exact time (PostgreSQL microseconds).
struct At {
    int type;
    int64_t at;
    double value = 0;
};

Scored score_at(const std::vector<At> &events, const es_profile &p = es_default_profile(), int64_t as_of = kAsOf) {
    State st(as_of);
    for (const At &e : events) st.add(p, e.type, e.at, e.value);
    Scored s{};
    char err[256];
    s.status = st.finalize(p, &s.r, err, sizeof err);
    s.acc = st.acc;
    s.keys = st.keys;
    return s;
}

std::string explanation(const es_result &r, const es_profile &p = es_default_profile()) {
    char *text = nullptr;
    char err[256];
    EXPECT_EQ(es_explain(&r, &p, &text, err, sizeof err), ES_OK) << err;
    const std::string t = text != nullptr ? text : "";
    std::free(text);
    return t;
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST(ScoringKernelV3, OptInLiftsAnOptOut) {
    // Opted out iff the latest of the opt-outs and opt-ins at or before T is an opt-out.
    const Scored lifted = score({{ES_OPENED, 1}, {ES_OPTED_OUT, 5}, {ES_OPTED_IN, 3}});
    ASSERT_EQ(lifted.status, ES_OK);
    EXPECT_FALSE(lifted.r.opted_out);
    EXPECT_EQ(lifted.r.composite, lifted.r.composite_unpenalised);
    EXPECT_STRNE(es_segment_name(lifted.r.segment), "opted_out");
    EXPECT_EQ(lifted.r.last_opted_out_at, kAsOf - 5 * kDay);
    EXPECT_EQ(lifted.r.last_opted_in_at, kAsOf - 3 * kDay);
    const Scored never = score({{ES_OPENED, 1}, {ES_DELIVERED, 5}});
    EXPECT_EQ(lifted.r.churn_risk, never.r.churn_risk);
    EXPECT_EQ(lifted.r.engagement_probability, never.r.engagement_probability);
    // An opt-in before the opt-out lifts nothing; out, in, out again is out.
    EXPECT_TRUE(score({{ES_OPENED, 1}, {ES_OPTED_IN, 5}, {ES_OPTED_OUT, 3}}).r.opted_out);
    EXPECT_TRUE(score({{ES_OPTED_OUT, 9}, {ES_OPTED_IN, 6}, {ES_OPTED_OUT, 2}}).r.opted_out);
    EXPECT_FALSE(score({{ES_OPTED_OUT, 9}, {ES_OPTED_IN, 6}, {ES_OPTED_OUT, 2}, {ES_OPTED_IN, 0}}).r.opted_out);
    // An opt-in alone changes nothing; one after T is ignored; neither expires with the window.
    EXPECT_FALSE(score({{ES_OPENED, 1}, {ES_OPTED_IN, 3}}).r.opted_out);
    EXPECT_TRUE(score({{ES_OPENED, 1}, {ES_OPTED_OUT, 2}, {ES_OPTED_IN, -1}}).r.opted_out);
    EXPECT_FALSE(score({{ES_OPENED, 1}, {ES_OPTED_OUT, 1000}, {ES_OPTED_IN, 500}}).r.opted_out);
    // opted_in weighs its profile's decay_weight_opted_in in the time decay (0 by default).
    EXPECT_EQ(score({{ES_OPTED_IN, 14}}).r.decay_raw, 0.0);
    es_profile p = es_default_profile();
    p.type_weight[ES_OPTED_IN] = 4;
    EXPECT_EQ(score({{ES_OPTED_IN, 14}}, p).r.decay_raw, 2.0);  // 4 * 2^(-14 / 14)
    // Not engaging: no engagement day, no recency, no frequency.
    const Scored in = score({{ES_OPTED_IN, 2}});
    EXPECT_EQ(in.r.engagement_days, 0);
    EXPECT_EQ(in.r.recency, 0.0);
    EXPECT_EQ(in.r.frequency, 0.0);
    EXPECT_EQ(in.acc.event_count, 1);
}

TEST(ScoringKernelV3, SameInstantOptOutWins) {
    const int64_t t = kAsOf - 2 * kDay + 12345;
    EXPECT_TRUE(score_at({{ES_OPTED_IN, t}, {ES_OPTED_OUT, t}}).r.opted_out);
    EXPECT_TRUE(score_at({{ES_OPTED_OUT, t}, {ES_OPTED_IN, t}}).r.opted_out);
    EXPECT_TRUE(score_at({{ES_OPTED_OUT, t}, {ES_OPTED_IN, t}, {ES_OPTED_IN, t - 1}}).r.opted_out);
    EXPECT_FALSE(score_at({{ES_OPTED_OUT, t}, {ES_OPTED_IN, t + 1}}).r.opted_out);  // a microsecond later
}

TEST(ScoringKernelV3, UndeliverableCountsBouncesSinceLastReached) {
    const int64_t d = kAsOf - 10 * kDay;  // the last delivery
    auto bounces = [](std::vector<At> ev, std::initializer_list<int64_t> times) {
        for (int64_t t : times) ev.push_back({ES_BOUNCED, t});
        return ev;
    };
    // Bounces before the last delivery do not count; K - 1 = 2 after it are not enough, K = 3 are.
    const Scored two = score_at(bounces({{ES_DELIVERED, d}}, {d - 2 * kDay, d + kDay, d + 2 * kDay}));
    EXPECT_EQ(two.r.bounces_since, 2);
    EXPECT_FALSE(two.r.undeliverable);
    EXPECT_EQ(two.r.last_reached_at, d);
    const Scored three = score_at(bounces({{ES_DELIVERED, d}}, {d - 2 * kDay, d + kDay, d + 2 * kDay, d + 3 * kDay}));
    EXPECT_EQ(three.r.bounces_since, 3);
    EXPECT_TRUE(three.r.undeliverable);
    EXPECT_STREQ(es_segment_name(three.r.segment), "undeliverable");
    // A bounce at the same microsecond as the last delivery does not count; one a microsecond later does.
    const Scored same = score_at(bounces({{ES_DELIVERED, d}}, {d, d, d}));
    EXPECT_EQ(same.r.bounces_since, 0);
    EXPECT_FALSE(same.r.undeliverable);
    EXPECT_TRUE(score_at(bounces({{ES_DELIVERED, d}}, {d, d, d + 1, d + 1, d + 1})).r.undeliverable);
    // Bounces at one instant count one by one.
    EXPECT_EQ(score_at(bounces({{ES_DELIVERED, d}}, {d + 5, d + 5, d + 5, d + 5})).r.bounces_since, 4);
    // An engagement reaches the contact too; an opt-in, an opt-out or a bounce does not.
    const int64_t o = kAsOf - 5 * kDay;
    EXPECT_FALSE(score_at(bounces({{ES_OPENED, o}}, {o - 1, o - 2, o - 3})).r.undeliverable);
    EXPECT_TRUE(score_at(bounces({{ES_OPENED, o}}, {o + 1, o + 2, o + 3})).r.undeliverable);
    EXPECT_FALSE(score_at(bounces({{ES_CONVERTED, o, 5}}, {o - 1, o + 2, o + 3})).r.undeliverable);
    EXPECT_TRUE(score_at(bounces({{ES_DELIVERED, d}, {ES_OPTED_IN, o + 4}, {ES_OPTED_OUT, o + 5}},
                                 {o + 1, o + 2, o + 3}))
                    .r.undeliverable);
    // Never reached: every bounce counts.
    const Scored never = score_at(bounces({}, {o, o + 1, o + 2}));
    EXPECT_TRUE(never.r.undeliverable);
    EXPECT_EQ(never.r.last_reached_at, ES_NO_TIME);
    // Bounces after T are ignored; the undeliverable flag has no window (a year and more ago).
    EXPECT_FALSE(score_at(bounces({{ES_DELIVERED, d}}, {d + 1, d + 2, kAsOf + 1})).r.undeliverable);
    const int64_t old = kAsOf - 1000 * kDay;
    EXPECT_TRUE(score_at(bounces({{ES_DELIVERED, old}}, {old + 1, old + 2, old + 3})).r.undeliverable);
    // undeliverable_after comes from the profile: 1 and 10, each at K - 1 and K bounces.
    es_profile p = es_default_profile();
    p.undeliverable_after = 1;
    EXPECT_FALSE(score_at({{ES_DELIVERED, d}}, p).r.undeliverable);
    EXPECT_TRUE(score_at(bounces({{ES_DELIVERED, d}}, {d + 1}), p).r.undeliverable);
    p.undeliverable_after = 10;
    std::vector<At> nine = {{ES_DELIVERED, d}};
    for (int i = 1; i <= 9; ++i) nine.push_back({ES_BOUNCED, d + i * 1000});
    EXPECT_FALSE(score_at(nine, p).r.undeliverable);
    nine.push_back({ES_BOUNCED, d - 1});
    EXPECT_FALSE(score_at(nine, p).r.undeliverable);
    nine.push_back({ES_BOUNCED, kAsOf});  // at T: counts
    EXPECT_TRUE(score_at(nine, p).r.undeliverable);
    // More bounces than a state keeps: counted up to ES_UNDELIVERABLE_AFTER_MAX.
    for (int i = 0; i < 5; ++i) nine.push_back({ES_BOUNCED, d + 5});
    EXPECT_EQ(score_at(nine, p).r.bounces_since, ES_UNDELIVERABLE_AFTER_MAX);
}

TEST(ScoringKernelV3, LatestBouncesKeptAreTheLatestOfTheirUnion) {
    // es_bounces keeps the ES_UNDELIVERABLE_AFTER_MAX latest times, newest first, ties kept,
    // whatever the order they come in and however they are merged.
    std::mt19937_64 rng(3);
    for (int round = 0; round < 300; ++round) {
        std::vector<int64_t> times(static_cast<size_t>(rng() % 25));
        for (int64_t &t : times) t = static_cast<int64_t>(rng() % 8);  // many ties
        std::vector<int64_t> want = times;
        std::sort(want.rbegin(), want.rend());
        want.resize(std::min<size_t>(want.size(), ES_UNDELIVERABLE_AFTER_MAX));
        es_bounces whole, parts[3];
        es_bounces_init(&whole);
        for (es_bounces &b : parts) es_bounces_init(&b);
        for (int64_t t : times) {
            es_bounces_add(&whole, t);
            es_bounces_add(&parts[rng() % 3], t);
        }
        es_bounces merged;
        es_bounces_init(&merged);
        for (int i : {2, 0, 1}) es_bounces_merge(&merged, &parts[i]);
        for (const es_bounces *b : {&whole, &merged}) {
            ASSERT_EQ(b->n, static_cast<int64_t>(want.size())) << "round " << round;
            for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(b->at[i], want[i]) << "round " << round;
        }
    }
}

TEST(ScoringKernelV3, PenaltiesOfBothFlags) {
    // Events whose last reach (the open a day ago) three bounces follow: undeliverable.  Against the
    // same events under penalties of 0, by hand: each flag's factor, both when both.
    const std::vector<Event> undeliverable = {{ES_DELIVERED, 40}, {ES_CLICKED, 3}, {ES_OPENED, 1},
                                              {ES_BOUNCED, 0.5}, {ES_BOUNCED, 0.4}, {ES_BOUNCED, 0.3}};
    std::vector<Event> both = undeliverable;
    both.push_back({ES_OPTED_OUT, 2});
    es_profile none = es_default_profile();
    none.opt_out_penalty = 0;
    none.undeliverable_penalty = 0;
    es_profile p = es_default_profile();
    p.opt_out_penalty = 0.5;
    p.undeliverable_penalty = 0.8;
    struct Case {
        const std::vector<Event> &events;
        double keep;
        const char *segment;
    };
    for (const Case &c : {Case{undeliverable, 0.2, "undeliverable"}, Case{both, 0.5 * 0.2, "opted_out"}}) {
        const Scored s = score(c.events, p), z = score(c.events, none);
        ASSERT_EQ(s.status, ES_OK);
        EXPECT_TRUE(s.r.undeliverable);
        EXPECT_EQ(s.r.opted_out, &c.events == &both);
        EXPECT_STREQ(es_segment_name(s.r.segment), c.segment);
        EXPECT_STREQ(es_segment_name(z.r.segment), c.segment);  // a penalty of 0 still flags
        // components unpenalised
        EXPECT_EQ(s.r.recency, z.r.recency);
        EXPECT_EQ(s.r.frequency, z.r.frequency);
        EXPECT_EQ(s.r.monetary, z.r.monetary);
        EXPECT_EQ(s.r.time_decay, z.r.time_decay);
        EXPECT_EQ(s.r.diversity, z.r.diversity);
        EXPECT_EQ(s.r.composite_unpenalised, z.r.composite);
        EXPECT_GT(z.r.composite, 0.0);
        EXPECT_REL(s.r.composite, z.r.composite * c.keep);
        EXPECT_REL(s.r.engagement_probability, z.r.engagement_probability * c.keep);
        EXPECT_REL(s.r.conversion_probability, z.r.conversion_probability * c.keep);
        EXPECT_REL(s.r.expected_engagements_horizon, z.r.expected_engagements_horizon * c.keep);
        EXPECT_REL(s.r.expected_value_horizon, z.r.expected_value_horizon * c.keep);
        EXPECT_REL(s.r.churn_risk, 1 - (1 - z.r.churn_risk) * c.keep);
        EXPECT_EQ(s.r.p_alive, z.r.p_alive);
        EXPECT_EQ(s.r.expected_conversion_value, z.r.expected_conversion_value);
    }
    // The defaults: 0.9 each, so both keep 1% of the composite.
    const Scored d = score(both);
    EXPECT_REL(d.r.composite, d.r.composite_unpenalised * (0.1 * 0.1));
    // Full penalties: nothing left.
    p.undeliverable_penalty = 1;
    const Scored full = score(undeliverable, p);
    EXPECT_EQ(full.r.composite, 0.0);
    EXPECT_EQ(full.r.engagement_probability, 0.0);
    EXPECT_EQ(full.r.churn_risk, 1.0);
}

TEST(ScoringKernelV3, TenureAndTheNewSegmentAtItsBoundary) {
    // tenure_days = (T - the first event of any type) / 1 day; new while under new_contact_days (30).
    const Scored at30 = score_at({{ES_DELIVERED, kAsOf - 30 * kDay}});
    EXPECT_EQ(at30.r.tenure_days, 30.0);
    EXPECT_STREQ(es_segment_name(at30.r.segment), "lost");
    const Scored under = score_at({{ES_DELIVERED, kAsOf - 30 * kDay + 1}});
    EXPECT_EQ(under.r.tenure_days, static_cast<double>(30 * kDay - 1) / static_cast<double>(kDay));
    EXPECT_LT(under.r.tenure_days, 30.0);
    EXPECT_STREQ(es_segment_name(under.r.segment), "new");
    // The first event of any type: a bounce 40 days ago makes a contact engaged today not new.
    EXPECT_EQ(score({{ES_BOUNCED, 40}, {ES_OPENED, 0}}).r.tenure_days, 40.0);
    EXPECT_STRNE(es_segment_name(score({{ES_BOUNCED, 40}, {ES_OPENED, 0}}).r.segment), "new");
    // Events after T do not count; events outside the window do.
    EXPECT_EQ(score({{ES_OPENED, 3}, {ES_DELIVERED, -50}}).r.tenure_days, 3.0);
    EXPECT_EQ(score({{ES_OPENED, 3}, {ES_DELIVERED, 500}}).r.tenure_days, 500.0);
    // A new contact ranks as new whatever its quintiles (a champion's here), after the flags.
    std::vector<Event> keen = {{ES_DELIVERED, 5}, {ES_CONVERTED, 0.5, 5000}};
    for (int i = 0; i < 40; ++i) keen.push_back({i % 2 ? ES_CLICKED : ES_RESPONDED, 0.1 * i});
    const Scored k = score(keen);
    EXPECT_EQ(k.r.recency_quintile, 5);
    EXPECT_EQ(k.r.fm_quintile, 5);
    EXPECT_STREQ(es_segment_name(k.r.segment), "new");
    es_profile p = es_default_profile();
    p.new_contact_days = 2.5;
    EXPECT_STREQ(es_segment_name(score(keen, p).r.segment), "champions");
    EXPECT_STREQ(es_segment_name(score({{ES_DELIVERED, 2.4}}, p).r.segment), "new");
    EXPECT_STREQ(es_segment_name(score({{ES_DELIVERED, 2.5}}, p).r.segment), "lost");
    keen.push_back({ES_OPTED_OUT, 0.05});
    EXPECT_STREQ(es_segment_name(score(keen).r.segment), "opted_out");
}

TEST(ScoringKernelV3, PromisingTakesRecentContactsOfLowFrequencyAndValue) {
    // Known for 100 days, one open a day ago: R = 100 e^(-1/30) (Rq 5), F = 100 (1 - e^(-0.01 / 0.1))
    // (Fq 1), M = 0 (Mq 1): FMq 1.  Version 2 called it new (Rq >= 4 and FMq = 1); version 3
    // promising (Rq >= 3 and FMq <= 2).
    const Scored s = score({{ES_DELIVERED, 100}, {ES_OPENED, 1}});
    EXPECT_REL(s.r.recency, 100 * std::exp(-1.0 / 30));
    EXPECT_REL(s.r.frequency, 100 * (1 - std::exp(-0.1)));
    EXPECT_EQ(s.r.recency_quintile, 5);
    EXPECT_EQ(s.r.fm_quintile, 1);
    EXPECT_STREQ(es_segment_name(s.r.segment), "promising");
    EXPECT_HAS(explanation(s.r), "segment promising: Rq 5 >= 3 and FMq 1 <= 2");
    // Rq 3 (R = 50: an open 30 ln 2 days ago) and FMq 2 too.
    const Scored t = score({{ES_DELIVERED, 100}, {ES_OPENED, 30 * std::log(2.0)}, {ES_OPENED, 60}});
    EXPECT_EQ(t.r.recency_quintile, 3);
    EXPECT_STREQ(es_segment_name(t.r.segment), "promising");
}

TEST(ScoringKernelV3, FrequencyMinDaysIs30ByDefault) {
    // docs/model.md's new contact: 3 engaging events in its first 4 days.  With frequency_min_days
    // 7 (version 2) rate 3/7 and F = 98.6; with 30, rate 0.1 and F = 63.2.
    EXPECT_EQ(es_default_profile().frequency_min_days, 30.0);
    const std::vector<Event> ev = {{ES_DELIVERED, 4}, {ES_OPENED, 3}, {ES_CLICKED, 2}, {ES_RESPONDED, 1}};
    const Scored s = score(ev);
    EXPECT_EQ(s.r.observed_days, 30.0);
    EXPECT_REL(s.r.rate_per_day, 0.1);
    EXPECT_REL(s.r.frequency, 100 * (1 - std::exp(-1.0)));
    es_profile p = es_default_profile();
    p.frequency_min_days = 7;
    EXPECT_REL(score(ev, p).r.frequency, 100 * (1 - std::exp(-(3.0 / 7) / 0.1)));
}

TEST(ScoringKernelV3, TheSummaryOfTheStoredScore) {
    // birth_at is the start of the birth day; x, t_x, Tc, n_days, conv_days, x_v and m_v as
    // docs/model.md defines them.
    const int64_t first = kAsOf - 2 * kDay - (13 * 60 + 45) * 60 * INT64_C(1000000);  // 2026-05-29 10:15
    const Scored s = score_at({{ES_DELIVERED, first},
                               {ES_OPENED, first + 60000000},               // birth day
                               {ES_CONVERTED, kAsOf - kDay - 1, 10},        // 2026-05-30
                               {ES_CONVERTED, kAsOf - kDay + 1, 30},        // 2026-05-31
                               {ES_CONVERTED, kAsOf - 2, 0},                // 2026-05-31, no value
                               {ES_CONVERTED, kAsOf, 0}});                  // 2026-06-01, no value
    ASSERT_EQ(s.status, ES_OK);
    EXPECT_EQ(s.r.birth_at, kAsOf - 3 * kDay);
    EXPECT_EQ(s.r.tenure_days, static_cast<double>(kAsOf - first) / static_cast<double>(kDay));
    EXPECT_EQ(s.r.engagement_days, 4);
    EXPECT_EQ(s.r.repeat_days, 3);
    EXPECT_EQ(s.r.t_x_days, 3);
    EXPECT_EQ(s.r.t_c_days, 3);
    EXPECT_EQ(s.r.conversion_days, 3);
    EXPECT_EQ(s.r.valued_conversion_days, 2);
    EXPECT_EQ(s.r.mean_conversion_value, 20.0);
    EXPECT_EQ(score({{ES_OPENED, 1}}).r.mean_conversion_value, 0.0);
    // Before 2000 and 1970 the day still floors.
    EXPECT_EQ(score_at({{ES_OPENED, -1}}).r.birth_at, -kDay);
    EXPECT_EQ(score_at({{ES_OPENED, -INT64_C(946684800) * 1000000 - 1}}).r.birth_at,
              -INT64_C(946684800) * 1000000 - kDay);
}

// A contact with every type, times on a coarse grid (ties of one microsecond), values in cents.
std::vector<At> tied_events(std::mt19937_64 &rng, int n) {
    std::vector<At> ev;
    for (int i = 0; i < n; ++i) {
        const int type = static_cast<int>(rng() % ES_EVENT_TYPES);
        const int64_t at = kAsOf - static_cast<int64_t>(rng() % 12) * (kDay / 4) + (rng() % 5 == 0 ? kDay : 0);
        ev.push_back({type, at, type == ES_CONVERTED ? static_cast<double>(rng() % 10000) / 100 : 0});
    }
    return ev;
}

bool same_bits(const es_result &a, const es_result &b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::string describe(const es_result &r) {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "composite %.17g TD %.17g M %.17g opted_out %d undeliverable %d bounces %lld tenure %.17g "
                  "segment %s churn %.17g",
                  r.composite, r.time_decay, r.monetary, r.opted_out, r.undeliverable,
                  static_cast<long long>(r.bounces_since), r.tenure_days, es_segment_name(r.segment), r.churn_risk);
    return buf;
}

TEST(ScoringKernelV3, ShuffledEventsGiveBitIdenticalResults) {
    std::mt19937_64 rng(31);
    for (int contact = 0; contact < 200; ++contact) {
        es_profile p = es_default_profile();
        p.undeliverable_after = 1 + contact % 4;
        std::vector<At> ev = tied_events(rng, 2 + contact % 40);
        const Scored first = score_at(ev, p);
        if (first.status != ES_OK) continue;
        for (int round = 0; round < 10; ++round) {
            std::shuffle(ev.begin(), ev.end(), rng);
            const Scored again = score_at(ev, p);
            ASSERT_EQ(again.status, ES_OK);
            EXPECT_TRUE(same_bits(first.r, again.r))
                << "contact " << contact << "\n" << describe(first.r) << "\n" << describe(again.r);
        }
    }
}

TEST(ScoringKernelV3, EverySplitIntoPartialStatesMergedInAnyOrderIsBitIdentical) {
    // Each event to one of three partial states, in every way; the partial states merged in every
    // order into an empty one (as the combine function does), and pairwise.
    std::mt19937_64 rng(37);
    int compared = 0;
    for (int contact = 0; contact < 6; ++contact) {
        es_profile p = es_default_profile();
        p.undeliverable_after = 1 + contact % 3;
        std::vector<At> ev = tied_events(rng, 7);
        if (contact == 0)  // the flags' edge cases, split apart
            ev = {{ES_DELIVERED, kAsOf - kDay}, {ES_BOUNCED, kAsOf - kDay}, {ES_BOUNCED, kAsOf - 5},
                  {ES_BOUNCED, kAsOf - 5},      {ES_OPTED_OUT, kAsOf - 7}, {ES_OPTED_IN, kAsOf - 7},
                  {ES_OPENED, kAsOf - 2 * kDay}};
        const Scored whole = score_at(ev, p);
        ASSERT_EQ(whole.status, ES_OK);
        int splits = 1;
        for (size_t i = 0; i < ev.size(); ++i) splits *= 3;
        for (int split = 0; split < splits; ++split) {
            std::vector<State> parts(3, State(kAsOf));
            for (int i = 0, code = split; i < static_cast<int>(ev.size()); ++i, code /= 3)
                parts[code % 3].add(p, ev[i].type, ev[i].at, ev[i].value);
            int order[3] = {0, 1, 2};
            do {
                State all(kAsOf);
                for (int w : order) all.merge(parts[w]);
                State pairwise = parts[order[1]];
                pairwise.merge(parts[order[2]]);
                State tree = parts[order[0]];
                tree.merge(pairwise);
                for (State *st : {&all, &tree}) {
                    es_result r;
                    char err[256];
                    ASSERT_EQ(st->finalize(p, &r, err, sizeof err), ES_OK) << err;
                    ASSERT_TRUE(same_bits(r, whole.r)) << "contact " << contact << " split " << split << "\n"
                                                       << describe(whole.r) << "\n" << describe(r);
                    ++compared;
                }
            } while (std::next_permutation(order, order + 3));
        }
    }
    EXPECT_EQ(compared, 6 * 2187 * 6 * 2);
}

TEST(ScoringKernelV3, ExplanationNamesTheRule) {
    EXPECT_HAS(explanation(score({{ES_OPENED, 3.2}}).r), "segment new: known for 3.2 days, under new_contact_days 30");
    EXPECT_HAS(explanation(score({{ES_OPENED, 3.2}}).r), "known for 3.2 days, since its first event on 2026-05-28");

    std::vector<Event> champion = {{ES_DELIVERED, 60}, {ES_CONVERTED, 2, 1000}};
    for (int d = 0; d < 60; ++d) champion.push_back({ES_OPENED, d + 0.5});
    const Scored c = score(champion);
    EXPECT_STREQ(es_segment_name(c.r.segment), "champions");
    EXPECT_HAS(explanation(c.r), "segment champions: Rq 5 >= 4 and FMq 5 >= 4");

    // Delivered 2026-05-01 10:00 UTC, then 4 bounces.
    const int64_t reached = kAsOf - 31 * kDay + 10 * 3600 * INT64_C(1000000);
    std::vector<At> ev = {{ES_DELIVERED, reached}, {ES_OPENED, reached - kDay}};
    for (int i = 1; i <= 4; ++i) ev.push_back({ES_BOUNCED, reached + i * kDay});
    const Scored u = score_at(ev);
    EXPECT_STREQ(es_segment_name(u.r.segment), "undeliverable");
    const std::string ut = explanation(u.r);
    EXPECT_HAS(ut, "segment undeliverable: 4 bounces since last reached on 2026-05-01 10:00:00 UTC, "
                   "undeliverable_after 3");
    EXPECT_HAS(ut, "undeliverable (4 bounces since last reached on 2026-05-01 10:00:00 UTC): composite");
    EXPECT_HAS(ut, " x (1 - undeliverable_penalty 0.9) = ");

    // Both flags: both factors named.
    ev.push_back({ES_OPTED_OUT, kAsOf - kDay});
    const std::string bt = explanation(score_at(ev).r);
    EXPECT_HAS(bt, "opted out on 2026-05-31 00:00:00 UTC and undeliverable (4 bounces");
    EXPECT_HAS(bt, " x (1 - opt_out_penalty 0.9) x (1 - undeliverable_penalty 0.9) = ");
    EXPECT_HAS(bt, "segment opted_out: opted out on 2026-05-31 00:00:00 UTC");

    // The opt-in that lifted an opt-out.
    const std::string lt = explanation(score({{ES_DELIVERED, 100}, {ES_OPENED, 1}, {ES_OPTED_OUT, 5}, {ES_OPTED_IN, 3}}).r);
    EXPECT_HAS(lt, "opted in on 2026-05-29 00:00:00 UTC after opting out on 2026-05-27 00:00:00 UTC: no longer opted out");
    EXPECT_EQ(lt.find("opt_out_penalty"), std::string::npos) << lt;
    EXPECT_EQ(explanation(score({{ES_OPENED, 1}, {ES_OPTED_IN, 3}}).r).find("opted in on"), std::string::npos);

    // Bounces under the threshold, and never reached.
    EXPECT_HAS(explanation(score({{ES_DELIVERED, 100}, {ES_BOUNCED, 50}, {ES_BOUNCED, 40}}).r),
               "2 bounces since last reached on 2026-02-21 00:00:00 UTC: deliverable, under undeliverable_after 3");
    EXPECT_HAS(explanation(score({{ES_BOUNCED, 50}, {ES_BOUNCED, 40}, {ES_BOUNCED, 30}}).r),
               "segment undeliverable: 3 bounces and never reached, undeliverable_after 3");
    std::vector<Event> many = {{ES_DELIVERED, 100}};
    for (int i = 0; i < 12; ++i) many.push_back({ES_BOUNCED, 50.0 - i});
    EXPECT_HAS(explanation(score(many).r), "segment undeliverable: at least 10 bounces since last reached on");

    // lost, and the times of the calendar's ends.
    EXPECT_HAS(explanation(score({{ES_DELIVERED, 100}}).r), "segment lost: Rq 1 and FMq 1 match no other rule");
    const int64_t bc = -INT64_C(211813488000000000);  // 4714-11-24 00:00 UTC BC, the first timestamp
    EXPECT_HAS(explanation(score_at({{ES_DELIVERED, bc}, {ES_BOUNCED, bc + 1}, {ES_BOUNCED, bc + 2}}).r),
               "2 bounces since last reached on 4714-11-24 00:00:00 UTC BC");
    const int64_t leap = 59 * kDay + (12 * 3600 + 34 * 60 + 56) * INT64_C(1000000);  // 2000-02-29 12:34:56
    EXPECT_HAS(explanation(score_at({{ES_DELIVERED, leap}, {ES_BOUNCED, leap + 1}}, es_default_profile(), leap + 1).r),
               "1 bounce since last reached on 2000-02-29 12:34:56 UTC");
}
}  // namespace

// ---------------------------------------------------------------- predictions at any horizon

es_stored_summary stored_summary(const es_result &r) {
    return {r.repeat_days,     r.t_x_days,         r.t_c_days,           r.engagement_days, r.conversion_days,
            r.valued_conversion_days, r.mean_conversion_value, r.opted_out, r.undeliverable};
}

TEST(Predictions, AtTheProfilesHorizonTheyAreTheStoredFieldsBitForBit) {
    std::mt19937_64 rng(41);
    int compared = 0;
    for (int contact = 0; contact < 300; ++contact) {
        es_profile p = es_default_profile();
        p.undeliverable_after = 1 + contact % 3;
        p.horizon_days = contact % 2 ? 30 : 7.5;
        const Scored s = score_at(tied_events(rng, 1 + contact % 30), p);
        if (s.status != ES_OK) continue;
        const es_stored_summary summary = stored_summary(s.r);
        es_prediction pr;
        char err[256];
        ASSERT_EQ(es_predict(&summary, &p, p.horizon_days, nullptr, &pr, err, sizeof err), ES_OK) << err;
        EXPECT_EQ(pr.engagement_probability, s.r.engagement_probability);
        EXPECT_EQ(pr.conversion_probability, s.r.conversion_probability);
        EXPECT_EQ(pr.expected_engagements, s.r.expected_engagements_horizon);
        EXPECT_EQ(pr.expected_value, s.r.expected_value_horizon);
        ++compared;
    }
    EXPECT_GT(compared, 250);
}

TEST(Predictions, AnyHorizonIsTheContractsFormulas) {
    // Written out from docs/model.md with lifetimes' closed form for E(h), penalties applied once.
    const es_profile p = es_default_profile();
    const es_stored_summary s = {4, 20, 35, 6, 2, 1, 42.5, 1, 0};
    for (double h : {0.25, 1.0, 7.0, 30.0, 90.0, 365.0}) {
        es_profile ph = p;
        ph.horizon_days = h;
        const double pa = p_alive(4, 20, 35, p);
        const double engage = pa * (1 - std::pow((p.model_alpha + 35) / (p.model_alpha + 35 + h), p.model_r + 4));
        const double q = (2 + p.conv_prior_a) / (6 + p.conv_prior_a + p.conv_prior_b);
        const double ecv = p.gg_p * (p.gg_v + 1 * 42.5) / (p.gg_p * 1 + p.gg_q - 1);
        const double e = lifetimes_expected(4, 20, 35, ph);
        const double keep = 1 - p.opt_out_penalty;
        es_prediction pr;
        char err[256];
        ASSERT_EQ(es_predict(&s, &p, h, nullptr, &pr, err, sizeof err), ES_OK) << err;
        EXPECT_REL(pr.engagement_probability, engage * keep);
        EXPECT_REL(pr.conversion_probability, engage * q * keep);
        EXPECT_REL(pr.expected_engagements, e * keep);
        EXPECT_REL(pr.expected_value, e * q * ecv * keep);
    }
}

TEST(Predictions, LongerHorizonsPredictMore) {
    const es_profile p = es_default_profile();
    const es_stored_summary s = {12, 80, 90, 13, 3, 2, 18.0, 0, 0};
    es_prediction before{}, pr;
    char err[256];
    for (double h = 0.5; h < 5000; h *= 1.7) {
        ASSERT_EQ(es_predict(&s, &p, h, nullptr, &pr, err, sizeof err), ES_OK) << err;
        // (the probability tends to P(alive), which it reaches in doubles at long horizons)
        EXPECT_GE(pr.engagement_probability, before.engagement_probability);
        EXPECT_GT(pr.expected_engagements, before.expected_engagements);
        EXPECT_GT(pr.expected_value, before.expected_value);
        EXPECT_LT(pr.engagement_probability, 1.0);
        before = pr;
    }
}

TEST(Predictions, BadHorizonsAndSummariesAreRefused) {
    const es_profile p = es_default_profile();
    const es_stored_summary s = {1, 3, 10, 2, 0, 0, 0, 0, 0};
    es_prediction pr;
    char err[256];
    for (double h : {0.0, -1.0, double(NAN), double(INFINITY), -double(INFINITY)})
        EXPECT_EQ(es_predict(&s, &p, h, nullptr, &pr, err, sizeof err), ES_INVALID_PARAMETER) << h;
    EXPECT_EQ(es_predict(&s, &p, 2e9, nullptr, &pr, err, sizeof err), ES_OUT_OF_RANGE);
    EXPECT_EQ(es_predict(&s, &p, ES_HORIZON_MAX, nullptr, &pr, err, sizeof err), ES_OK) << err;
    const es_stored_summary bad[] = {{-1, 0, 10, 1, 0, 0, 0, 0, 0}, {1, 11, 10, 2, 0, 0, 0, 0, 0},
                                     {1, 0, 10, 2, 0, 0, 0, 0, 0},  {3, 5, 10, 2, 0, 0, 0, 0, 0},
                                     {1, 3, 10, 2, 3, 0, 0, 0, 0},  {1, 3, 10, 2, 1, 2, 5, 0, 0},
                                     {1, 3, 10, 2, 1, 1, NAN, 0, 0}, {1, 3, 10, 2, 1, 1, -5, 0, 0}};
    for (const es_stored_summary &b : bad) {
        EXPECT_EQ(es_predict(&b, &p, 7, nullptr, &pr, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_NE(std::string(err).find("not a stored summary"), std::string::npos) << err;
    }
}

TEST(Predictions, LifetimeValueIsLifetimesDiscountedMonthlySum) {
    const es_profile p = es_default_profile();
    for (const es_stored_summary &s : {es_stored_summary{7, 50, 60, 8, 3, 3, 25.0, 0, 0},
                                       es_stored_summary{0, 0, 3, 1, 1, 1, 10.0, 0, 1},
                                       es_stored_summary{2, 9, 200, 3, 0, 0, 0.0, 1, 1}}) {
        for (double rate : {0.0, 0.01, 0.1}) {
            const int months = 12;
            // lifetimes: sum over months of (E(30k) - E(30(k-1))) * monetary / (1 + d)^k, monetary
            // here q * ecv, penalties once.
            const double q = (s.conv_days + p.conv_prior_a) / (s.n_days + p.conv_prior_a + p.conv_prior_b);
            const double ecv = s.x_v > 0 ? p.gg_p * (p.gg_v + s.x_v * s.m_v) / (p.gg_p * s.x_v + p.gg_q - 1)
                                         : p.gg_p * p.gg_v / (p.gg_q - 1);
            double keep = 1;
            if (s.opted_out) keep *= 1 - p.opt_out_penalty;
            if (s.undeliverable) keep *= 1 - p.undeliverable_penalty;
            double expected = 0, previous = 0;
            for (int k = 1; k <= months; ++k) {
                es_profile pk = p;
                pk.horizon_days = 30.0 * k;
                const double e = lifetimes_expected(s.x, s.t_x, s.t_c, pk);
                expected += (e - previous) * q * ecv / std::pow(1 + rate, k);
                previous = e;
            }
            double clv;
            char err[256];
            ASSERT_EQ(es_lifetime_value(&s, &p, months, rate, nullptr, &clv, err, sizeof err), ES_OK) << err;
            EXPECT_NEAR(clv, expected * keep, 1e-11 * expected * keep) << s.x << " " << rate;
            // One month undiscounted is the 30-day expected value.
            es_prediction pr;
            ASSERT_EQ(es_predict(&s, &p, 30, nullptr, &pr, err, sizeof err), ES_OK);
            ASSERT_EQ(es_lifetime_value(&s, &p, 1, 0, nullptr, &clv, err, sizeof err), ES_OK);
            EXPECT_REL(clv, pr.expected_value);
        }
    }
}

TEST(Predictions, TheMemoChangesNoResultBitForBit) {
    // Summaries that repeat, collide in the memo's slots, and change profile and horizon between
    // calls: every result with the memo is the one without it.
    std::mt19937_64 rng(7);
    std::vector<es_stored_summary> summaries;
    for (int i = 0; i < 400; ++i) {
        const int64_t x = static_cast<int64_t>(rng() % 6), t_c = 1 + static_cast<int64_t>(rng() % 40);
        const int64_t t_x = x == 0 ? 0 : 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(t_c));
        const int64_t n_days = x + 1 + static_cast<int64_t>(rng() % 3), conv_days = static_cast<int64_t>(rng() % 2);
        summaries.push_back({x, t_x, t_c, n_days, conv_days, conv_days, conv_days ? 5.0 + i : 0.0,
                             static_cast<int>(rng() % 5 == 0), static_cast<int>(rng() % 7 == 0)});
    }
    es_profile other = es_default_profile();
    other.model_r = 0.5;
    other.opt_out_penalty = 0.25;
    static es_forecast_memo memo{}, clv_memo{};  // (256 kB each: not on the stack)
    char err[256];
    uint64_t generations = 0;
    for (int pass = 0; pass < 3; ++pass) {
        for (size_t i = 0; i < summaries.size(); ++i) {
            const es_profile p = (i / 50) % 2 ? other : es_default_profile();
            const double h = pass == 1 ? 7.0 : 30.0;
            es_prediction with, without;
            ASSERT_EQ(es_predict(&summaries[i], &p, h, &memo, &with, err, sizeof err), ES_OK) << err;
            ASSERT_EQ(es_predict(&summaries[i], &p, h, nullptr, &without, err, sizeof err), ES_OK) << err;
            EXPECT_EQ(std::memcmp(&with, &without, sizeof with), 0) << i;
            double clv_with, clv_without;
            ASSERT_EQ(es_lifetime_value(&summaries[i], &p, 3 + pass, 0.01, &clv_memo, &clv_with, err, sizeof err),
                      ES_OK);
            ASSERT_EQ(es_lifetime_value(&summaries[i], &p, 3 + pass, 0.01, nullptr, &clv_without, err, sizeof err),
                      ES_OK);
            EXPECT_EQ(clv_with, clv_without) << i;
            generations += i % 50 == 0;
        }
    }
    // The inputs changed once every 50 summaries (of which 400 with x < 6 and t_c <= 40 repeat):
    // the memo was read, not emptied on every call.
    EXPECT_EQ(memo.generation, generations);
    // The same summary again under the same inputs is answered from its slot: a slot altered on
    // purpose shows in the next result.
    const es_profile p = es_default_profile();
    es_prediction first, second;
    ASSERT_EQ(es_predict(&summaries[0], &p, 11.0, &memo, &first, err, sizeof err), ES_OK);
    const int bits = ES_FORECAST_MEMO_BITS;
    const uint64_t key = memo.generation << (3 * bits) | static_cast<uint64_t>(summaries[0].x) << (2 * bits) |
                         static_cast<uint64_t>(summaries[0].t_x) << bits | static_cast<uint64_t>(summaries[0].t_c);
    int filled = 0;
    for (es_forecast_memo_slot &slot : memo.slots)
        if (slot.key == key) {
            slot.alive[1] *= 2;  // E
            ++filled;
        }
    ASSERT_EQ(filled, 1);
    ASSERT_EQ(es_predict(&summaries[0], &p, 11.0, &memo, &second, err, sizeof err), ES_OK);
    EXPECT_EQ(second.expected_engagements, 2 * first.expected_engagements);
    // A summary too large for a key is computed, not kept.
    const es_stored_summary old_contact = {2, 10, int64_t{1} << 19, 3, 0, 0, 0, 0, 0};
    ASSERT_EQ(es_predict(&old_contact, &p, 11.0, &memo, &first, err, sizeof err), ES_OK) << err;
    ASSERT_EQ(es_predict(&old_contact, &p, 11.0, nullptr, &second, err, sizeof err), ES_OK) << err;
    EXPECT_EQ(std::memcmp(&first, &second, sizeof first), 0);
    // A summary the memo holds is still checked: a bad one is refused, not answered from the slot.
    es_stored_summary bad = summaries[0];
    bad.conv_days = bad.n_days + 1;
    EXPECT_EQ(es_predict(&bad, &p, 11.0, &memo, &second, err, sizeof err), ES_INVALID_PARAMETER);
}

TEST(Predictions, LifetimeValueRefusesBadMonthsAndRates) {
    const es_profile p = es_default_profile();
    const es_stored_summary s = {1, 3, 10, 2, 0, 0, 0, 0, 0};
    double clv;
    char err[256];
    for (int months : {0, -1, ES_LIFETIME_MONTHS_MAX + 1})
        EXPECT_EQ(es_lifetime_value(&s, &p, months, 0.01, nullptr, &clv, err, sizeof err), ES_INVALID_PARAMETER) << months;
    for (double rate : {-0.01, double(NAN), double(INFINITY)})
        EXPECT_EQ(es_lifetime_value(&s, &p, 12, rate, nullptr, &clv, err, sizeof err), ES_INVALID_PARAMETER) << rate;
    EXPECT_EQ(es_lifetime_value(&s, &p, ES_LIFETIME_MONTHS_MAX, 0, nullptr, &clv, err, sizeof err), ES_OK) << err;
}

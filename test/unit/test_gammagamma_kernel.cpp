// Unit tests of the Gamma-Gamma kernel against docs/model.md's formulas
// written out directly, the CDNOW fit, simulated data and an independent
// finite-difference computation of the standard errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gammagamma_kernel.h"
#include "test_support.h"

namespace {

::testing::AssertionResult near_rel(double got, double want, double rel) {
    if (std::isfinite(got) && std::fabs(got - want) <= rel * std::fabs(want)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (relative error "
                                         << std::fabs(got - want) / std::fabs(want) << " > " << rel << ")";
}

bool contains(const char *haystack, const char *needle) { return std::string(haystack).find(needle) != std::string::npos; }

// docs/model.md's log-likelihood, literally, in long double (so that large x, where its
// terms cancel, still gives a reference good to ~1e-14).
double ll_ref(double x, double m, double p, double q, double v) {
    const long double X = x, M = m, P = p, Q = q, V = v;
    return static_cast<double>(std::lgamma(P * X + Q) - std::lgamma(P * X) - std::lgamma(Q) + Q * std::log(V) +
                               (P * X - 1) * std::log(M) + P * X * std::log(X) - (P * X + Q) * std::log(X * M + V));
}

double ll(double x, double m, double p, double q, double v) {
    double out = NAN;
    char err[256] = "";
    EXPECT_EQ(es_gg_log_likelihood(x, m, p, q, v, &out, err, sizeof err), ES_OK) << err;
    return out;
}

double expected(double x, double m, double p, double q, double v) {
    double out = NAN;
    char err[256] = "";
    EXPECT_EQ(es_gg_expected_value(x, m, p, q, v, &out, err, sizeof err), ES_OK) << err;
    return out;
}

// Sum of weight * ll over the rows (long double accumulator), from the per-customer C API.
double ll_sum(const std::vector<es_gg_row> &rows, double p, double q, double v) {
    long double s = 0;
    for (const es_gg_row &r : rows) s += static_cast<long double>(r.weight) * ll(r.x, r.m, p, q, v);
    return static_cast<double>(s);
}

// The 946 customers with x > 0 of cdnow_customers_summary_with_transactions.csv: (x, zbar).
std::vector<es_gg_row> load_cdnow_spend(std::string *where) {
    std::ifstream in;
    if (!testsupport::open_cdnow("cdnow_customers_summary_with_transactions.csv", &in, where)) return {};
    std::string line;
    std::getline(in, line);  // ID,x,t_x,T,zbar
    std::vector<es_gg_row> rows;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        std::stringstream ss(line);
        std::string id, x, tx, T, zbar;
        std::getline(ss, id, ',');
        std::getline(ss, x, ',');
        std::getline(ss, tx, ',');
        std::getline(ss, T, ',');
        std::getline(ss, zbar, ',');
        if (std::stod(x) > 0) rows.push_back({std::stod(x), std::stod(zbar), 1.0});
    }
    return rows;
}

#define REQUIRE_CDNOW_SPEND(rows)                                                                                     \
    std::string cdnow_path;                                                                                           \
    const std::vector<es_gg_row> rows = load_cdnow_spend(&cdnow_path);                                                \
    ASSERT_EQ(rows.size(), 946u) << "CDNOW summary with transactions not found or incomplete: set CDNOW_DIR to the " \
                                    "directory of cdnow_customers_summary_with_transactions.csv (default: "          \
                                    "test/data/cdnow, found from the working directory)"

es_gg_fit fit(const std::vector<es_gg_row> &rows, double penalizer, std::string *message = nullptr) {
    es_gg_fit f{};
    char err[512] = "";
    EXPECT_EQ(es_gg_fit_model(rows.data(), rows.size(), penalizer, &f, err, sizeof err), ES_OK) << err;
    if (message) *message = err;
    return f;
}

es_gg_fit fit_ok(const std::vector<es_gg_row> &rows, double penalizer = 0.0) {
    std::string message;
    const es_gg_fit f = fit(rows, penalizer, &message);
    EXPECT_EQ(f.converged, 1) << message;
    EXPECT_EQ(message, "");
    return f;
}

// Fader, Hardie & Lee's spend process: nu ~ Gamma(shape q, rate v) per customer, each
// conversion day's value z ~ Gamma(shape p, rate nu); x = 1 + Poisson(2) valued days,
// m their mean.  std::gamma_distribution takes (shape, scale = 1 / rate).
std::vector<es_gg_row> simulate(double p, double q, double v, size_t n, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::gamma_distribution<double> nu_d(q, 1.0 / v);
    std::poisson_distribution<int> extra(2.0);
    std::vector<es_gg_row> rows;
    rows.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const double nu = nu_d(g);
        const int x = 1 + extra(g);
        std::gamma_distribution<double> z(p, 1.0 / nu);
        double sum = 0;
        for (int k = 0; k < x; ++k) sum += z(g);
        rows.push_back({static_cast<double>(x), sum / x, 1.0});
    }
    return rows;
}

// ---------------------------------------------------------------- per-customer values

TEST(GammaGammaLogLikelihood, MatchesTheFormula) {
    struct Case {
        double x, m, p, q, v;
    };
    const Case cases[] = {{1, 35.2, 6.25, 3.74, 15.44},  {3, 12.5, 6.25, 3.74, 15.44}, {7, 100, 0.5, 2.2, 3},
                          {2, 0.75, 20, 1.5, 200},       {12, 5, 1.3, 0.6, 0.02},     {1, 1e-3, 0.05, 40, 1e4},
                          {10000, 20, 6.25, 3.74, 15.44}};
    for (const Case &c : cases)
        EXPECT_TRUE(near_rel(ll(c.x, c.m, c.p, c.q, c.v), ll_ref(c.x, c.m, c.p, c.q, c.v), 1e-12))
            << "x=" << c.x << " m=" << c.m << " p=" << c.p << " q=" << c.q << " v=" << c.v;
    // One spend of m with p = q = 1: the density of m is v / (m + v)^2 (a Lomax).
    EXPECT_TRUE(near_rel(ll(1, 3, 1, 1, 2), std::log(2.0 / 25.0), 1e-14));
}

TEST(GammaGammaExpectedValue, Formula) {
    struct Case {
        double x, m, p, q, v;
    };
    const Case cases[] = {{1, 35.2, 6.25, 3.74, 15.44}, {3, 12.5, 6.25, 3.74, 15.44}, {7, 100, 0.5, 2.2, 3},
                          {2, 0.75, 20, 1.5, 200},      {50, 5, 1.3, 1.0001, 0.02}};
    for (const Case &c : cases) {
        const double want = c.p * (c.v + c.x * c.m) / (c.p * c.x + c.q - 1);
        EXPECT_TRUE(near_rel(expected(c.x, c.m, c.p, c.q, c.v), want, 1e-14)) << "x=" << c.x << " m=" << c.m;
        // A credibility-weighted mean: between the customer's own mean and the population mean.
        const double pop = c.p * c.v / (c.q - 1);
        const double e = expected(c.x, c.m, c.p, c.q, c.v);
        EXPECT_GE(e, std::min(c.m, pop) * (1 - 1e-15));
        EXPECT_LE(e, std::max(c.m, pop) * (1 + 1e-15));
    }
    // x = 0: the population mean p v / (q - 1); docs/model.md's defaults give 6.25 * 15.44 / 2.74.
    EXPECT_TRUE(near_rel(expected(0, 0, 6.25, 3.74, 15.44), 6.25 * 15.44 / 2.74, 1e-15));
    EXPECT_TRUE(near_rel(expected(0, 0, 2, 1 + 1e-12, 3), 6 / ((1 + 1e-12) - 1), 1e-15));
    // Many days: the customer's own mean.
    EXPECT_TRUE(near_rel(expected(1e15, 42, 6.25, 3.74, 15.44), 42, 1e-13));
    // Results beyond a double do not come back as inf.
    double out = 0;
    char err[256];
    EXPECT_EQ(es_gg_expected_value(0, 0, 1e300, 1 + 1e-10, 1e300, &out, err, sizeof err), ES_OUT_OF_RANGE);
    // ... but large intermediate values with a finite result do not overflow.
    ASSERT_EQ(es_gg_expected_value(1e15, 1e300, 6.25, 3.74, 15.44, &out, err, sizeof err), ES_OK) << err;
    EXPECT_TRUE(near_rel(out, 1e300, 1e-12));
}

TEST(GammaGammaValidation, CodesAndMessages) {
    double out = 0;
    char err[256];
    // q <= 1: no finite expected value.
    for (double q : {1.0, 0.8}) {
        EXPECT_EQ(es_gg_expected_value(2, 10, 6, q, 15, &out, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_TRUE(contains(err, "q = ")) << err;
        EXPECT_EQ(es_gg_expected_value(0, 0, 6, q, 15, &out, err, sizeof err), ES_INVALID_PARAMETER);
    }
    // ... while the log-likelihood is defined for any q > 0.
    EXPECT_EQ(es_gg_log_likelihood(2, 10, 6, 0.8, 15, &out, err, sizeof err), ES_OK) << err;
    struct Bad {
        double x, m;
        const char *needle;
    };
    const Bad bad_customers[] = {{NAN, 1, "x = nan"},     {1, NAN, "m = nan"},       {-1, 1, "x = -1"},
                                 {1.5, 1, "x = 1.5"},     {2e15, 1, "x = 2e+15"},    {2, 0, "m = 0 must be > 0"},
                                 {2, -3, "m = -3"},       {INFINITY, 1, "x = inf"},  {1, INFINITY, "m = inf"}};
    for (const Bad &b : bad_customers) {
        EXPECT_EQ(es_gg_log_likelihood(b.x, b.m, 6, 4, 15, &out, err, sizeof err), ES_INVALID_PARAMETER) << b.needle;
        EXPECT_TRUE(contains(err, b.needle)) << err;
        EXPECT_EQ(es_gg_expected_value(b.x, b.m, 6, 4, 15, &out, err, sizeof err), ES_INVALID_PARAMETER) << b.needle;
        EXPECT_TRUE(contains(err, b.needle)) << err;
    }
    // x = 0: fine for the expected value (with m = 0), not for the likelihood.
    EXPECT_EQ(es_gg_expected_value(0, 5, 6, 4, 15, &out, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_TRUE(contains(err, "m = 5 must be 0 when x = 0")) << err;
    EXPECT_EQ(es_gg_log_likelihood(0, 0, 6, 4, 15, &out, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_TRUE(contains(err, "x >= 1")) << err;
    for (double bad : {0.0, -1.0, double(NAN), double(INFINITY)}) {
        EXPECT_EQ(es_gg_validate_params(bad, 4, 15, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_TRUE(contains(err, "p = ")) << err;
        EXPECT_EQ(es_gg_validate_params(6, bad, 15, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_TRUE(contains(err, "q = ")) << err;
        EXPECT_EQ(es_gg_validate_params(6, 4, bad, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_TRUE(contains(err, "v = ")) << err;
        EXPECT_EQ(es_gg_log_likelihood(2, 10, 6, bad, 15, &out, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_EQ(es_gg_expected_value(2, 10, 6, 4, bad, &out, err, sizeof err), ES_INVALID_PARAMETER);
    }
    EXPECT_EQ(es_gg_validate_params(6, 4, 15, nullptr, 0), ES_OK);  // err may be NULL
}

// ---------------------------------------------------------------- fitting

TEST(GammaGammaFit, CdnowMatchesPublishedFit) {
    REQUIRE_CDNOW_SPEND(rows);
    const es_gg_fit f = fit_ok(rows);
    // test/data/cdnow/README.md (lifetimes' tests: 6.25, 3.74, 15.44).
    EXPECT_TRUE(near_rel(f.p, 6.2488, 1e-3));
    EXPECT_TRUE(near_rel(f.q, 3.7446, 1e-3));
    EXPECT_TRUE(near_rel(f.v, 15.4478, 1e-3));
    EXPECT_NEAR(f.log_likelihood, -4055.92, 0.01);
    EXPECT_EQ(f.n, 946.0);
    EXPECT_NEAR(f.log_likelihood, ll_sum(rows, f.p, f.q, f.v), 1e-8);
    ASSERT_EQ(f.has_standard_errors, 1);
    EXPECT_GT(f.se_p, 0);
    EXPECT_GT(f.se_q, 0);
    EXPECT_GT(f.se_v, 0);
    // A maximum: each neighbour in each log-parameter is lower.
    const double th[3] = {std::log(f.p), std::log(f.q), std::log(f.v)};
    for (int i = 0; i < 3; ++i)
        for (double h : {-1e-4, 1e-4}) {
            double t[3] = {th[0], th[1], th[2]};
            t[i] += h;
            EXPECT_LT(ll_sum(rows, std::exp(t[0]), std::exp(t[1]), std::exp(t[2])), f.log_likelihood) << i << " " << h;
        }
}

TEST(GammaGammaFit, CurrencyUnitDoesNotMatter) {
    // Dollars -> cents: v scales by 100, p and q stay, and the LL (a density in m) shifts by
    // -N ln 100; the standard errors follow.
    REQUIRE_CDNOW_SPEND(dollars);
    std::vector<es_gg_row> cents = dollars;
    for (es_gg_row &r : cents) r.m *= 100;
    const es_gg_fit d = fit_ok(dollars), c = fit_ok(cents);
    EXPECT_TRUE(near_rel(c.p, d.p, 1e-6));
    EXPECT_TRUE(near_rel(c.q, d.q, 1e-6));
    EXPECT_TRUE(near_rel(c.v, 100 * d.v, 1e-6));
    EXPECT_NEAR(c.log_likelihood, d.log_likelihood - 946 * std::log(100.0), 1e-6);
    EXPECT_TRUE(near_rel(c.se_p, d.se_p, 1e-5));
    EXPECT_TRUE(near_rel(c.se_v, 100 * d.se_v, 1e-5));
}

TEST(GammaGammaFit, StandardErrorsMatchAFiniteDifferenceHessian) {
    // The kernel differentiates its analytic gradient in the log-parameters; here: second differences
    // of the summed per-customer log-likelihood in (p, q, v) themselves.
    REQUIRE_CDNOW_SPEND(rows);
    const es_gg_fit f = fit_ok(rows);
    ASSERT_EQ(f.has_standard_errors, 1);
    const std::vector<double> se = testsupport::fd_standard_errors(
        [&](const std::vector<double> &t) { return ll_sum(rows, t[0], t[1], t[2]); }, {f.p, f.q, f.v}, 5e-3);
    EXPECT_TRUE(near_rel(f.se_p, se[0], 1e-6));
    EXPECT_TRUE(near_rel(f.se_q, se[1], 1e-6));
    EXPECT_TRUE(near_rel(f.se_v, se[2], 1e-6));
}

TEST(GammaGammaFit, RecoversSimulatedParameters) {
    // 20,000 customers from known parameters (near CDNOW's): each estimate within 4 of its
    // standard errors of the truth, the standard errors a few percent, and the fit beats the truth.
    const double p = 6.0, q = 4.0, v = 15.0;
    const std::vector<es_gg_row> rows = simulate(p, q, v, 20000, 2024);
    const es_gg_fit f = fit_ok(rows);
    ASSERT_EQ(f.has_standard_errors, 1);
    EXPECT_LT(std::fabs(f.p - p), 4 * f.se_p) << "p " << f.p << " +- " << f.se_p;
    EXPECT_LT(std::fabs(f.q - q), 4 * f.se_q) << "q " << f.q << " +- " << f.se_q;
    EXPECT_LT(std::fabs(f.v - v), 4 * f.se_v) << "v " << f.v << " +- " << f.se_v;
    EXPECT_TRUE(near_rel(f.p, p, 0.2));
    EXPECT_TRUE(near_rel(f.q, q, 0.06));
    EXPECT_TRUE(near_rel(f.v, v, 0.25));
    EXPECT_LT(f.se_p, 0.1 * p);
    EXPECT_LT(f.se_q, 0.03 * q);
    EXPECT_LT(f.se_v, 0.1 * v);
    // The population mean p v / (q - 1) is what the data pin down best.
    EXPECT_TRUE(near_rel(f.p * f.v / (f.q - 1), p * v / (q - 1), 0.02));
    EXPECT_GE(f.log_likelihood, ll_sum(rows, p, q, v));
    EXPECT_EQ(f.n, 20000.0);
}

TEST(GammaGammaFit, HeavyTailedSpendHasQBelowOne) {
    // nu ~ Gamma(0.8, rate 10): the population mean spend is infinite, and so is the fit's.
    const std::vector<es_gg_row> rows = simulate(3, 0.8, 10, 5000, 1);
    std::string message;
    const es_gg_fit f = fit(rows, 0.0, &message);
    EXPECT_EQ(f.converged, 0);
    EXPECT_LT(f.q, 1);
    EXPECT_TRUE(contains(message.c_str(), "Gamma-Gamma fit did not converge: q = ")) << message;
    EXPECT_TRUE(contains(message.c_str(), "<= 1, so the expected conversion value is infinite")) << message;
    // An interior maximum all the same: standard errors, and q within 4 of them of the truth.
    ASSERT_EQ(f.has_standard_errors, 1);
    EXPECT_LT(std::fabs(f.q - 0.8), 4 * f.se_q) << f.q << " +- " << f.se_q;
}

TEST(GammaGammaFit, OrderAndDuplicationDoNotMatter) {
    // Whole-dollar means so that duplicates exist.
    std::vector<es_gg_row> rows = simulate(6, 4, 15, 3000, 7);
    for (es_gg_row &r : rows) r.m = std::max(1.0, std::round(r.m));
    std::vector<es_gg_row> shuffled = rows;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(99));
    std::vector<es_gg_row> collapsed = rows;
    collapsed.resize(es_gg_collapse(collapsed.data(), collapsed.size()));
    ASSERT_LT(collapsed.size(), rows.size());
    std::vector<es_gg_row> split;  // every weight-w row as w rows of weight 1, in reverse order
    for (const es_gg_row &r : collapsed)
        for (int k = 0; k < static_cast<int>(r.weight); ++k) split.push_back({r.x, r.m, 1.0});
    std::reverse(split.begin(), split.end());
    const es_gg_fit f0 = fit_ok(rows), f1 = fit_ok(shuffled), f2 = fit_ok(collapsed), f3 = fit_ok(split);
    for (const es_gg_fit *f : {&f1, &f2, &f3}) {
        EXPECT_EQ(f->p, f0.p);  // bit-identical
        EXPECT_EQ(f->q, f0.q);
        EXPECT_EQ(f->v, f0.v);
        EXPECT_EQ(f->log_likelihood, f0.log_likelihood);
        EXPECT_EQ(f->n, f0.n);
        EXPECT_EQ(f->iterations, f0.iterations);
        EXPECT_EQ(f->se_p, f0.se_p);
        EXPECT_EQ(f->se_q, f0.se_q);
        EXPECT_EQ(f->se_v, f0.se_v);
    }
    // Only the weights' ratios matter to the estimate (a power of two: exactly).
    std::vector<es_gg_row> scaled = rows;
    for (es_gg_row &r : scaled) r.weight = 0x1p-600;
    const es_gg_fit fs = fit_ok(scaled);
    EXPECT_EQ(fs.p, f0.p);
    EXPECT_EQ(fs.q, f0.q);
    EXPECT_EQ(fs.v, f0.v);
    EXPECT_EQ(fs.n, std::ldexp(f0.n, -600));
    // ... while the standard errors scale with 1 / sqrt(total weight).
    EXPECT_TRUE(near_rel(fs.se_p, f0.se_p * 0x1p300, 1e-12));
}

TEST(GammaGammaFit, CollapseSortsAndMerges) {
    std::vector<es_gg_row> rows = {{2, 3, 1}, {1, 5, 2}, {2, 3, 0.5}, {1, 4, 1}, {1, 5, 1}};
    const size_t n = es_gg_collapse(rows.data(), rows.size());
    ASSERT_EQ(n, 3u);
    EXPECT_EQ(rows[0].x, 1);
    EXPECT_EQ(rows[0].m, 4);
    EXPECT_EQ(rows[1].m, 5);
    EXPECT_EQ(rows[1].weight, 3);
    EXPECT_EQ(rows[2].x, 2);
    EXPECT_EQ(rows[2].weight, 1.5);
    EXPECT_EQ(es_gg_collapse(nullptr, 3), 0u);
    std::vector<es_gg_row> bad = {{NAN, 1, 1}, {1, 1, 1}, {NAN, 1, 1}};  // NaN sorts last, merges
    EXPECT_EQ(es_gg_collapse(bad.data(), bad.size()), 2u);
    EXPECT_EQ(bad[0].x, 1);
}

TEST(GammaGammaFit, PenaltyKeepsAnUnidentifiedModelFinite) {
    // Two plans, 20 and 30 a day, and every customer always pays his plan's price: no spread
    // of spend within a customer, so the likelihood grows without bound as p -> infinity.
    std::vector<es_gg_row> rows;
    for (int x = 1; x <= 5; ++x) {
        rows.push_back({static_cast<double>(x), 20.0, 5.0});
        rows.push_back({static_cast<double>(x), 30.0, 5.0});
    }
    std::string message;
    const es_gg_fit f0 = fit(rows, 0.0, &message);
    EXPECT_EQ(f0.converged, 0);
    EXPECT_EQ(f0.has_standard_errors, 0);
    EXPECT_EQ(f0.se_p, 0.0);
    EXPECT_TRUE(contains(message.c_str(), "Gamma-Gamma fit did not converge: parameter p = ")) << message;
    EXPECT_TRUE(contains(message.c_str(), "ran off towards infinity")) << message;
    EXPECT_EQ(message.find("did not converge", message.find("did not converge") + 1), std::string::npos) << message;
    EXPECT_TRUE(std::isfinite(f0.log_likelihood));

    const double pen = 0.01;
    const es_gg_fit f = fit_ok(rows, pen);
    EXPECT_TRUE(f.p > 1 && f.p < 1e3) << f.p;
    EXPECT_TRUE(f.q > 1 && f.q < 1e3) << f.q;
    EXPECT_TRUE(f.v > 0.1 && f.v < 1e3) << f.v;
    EXPECT_EQ(f.has_standard_errors, 1);
    // The reported log-likelihood has no penalty in it ...
    EXPECT_NEAR(f.log_likelihood, ll_sum(rows, f.p, f.q, f.v), 1e-9 * std::fabs(f.log_likelihood));
    // ... and the estimate maximises (1/N) sum(w ll) - pen sum(ln(theta)^2): its derivative in each
    // log-parameter is ~0 (by central differences of the unpenalised sum).
    const double th[3] = {std::log(f.p), std::log(f.q), std::log(f.v)};
    auto objective = [&](const double *t) {
        return ll_sum(rows, std::exp(t[0]), std::exp(t[1]), std::exp(t[2])) / f.n -
               pen * (t[0] * t[0] + t[1] * t[1] + t[2] * t[2]);
    };
    for (int i = 0; i < 3; ++i) {
        const double h = 1e-5;
        double tp[3] = {th[0], th[1], th[2]}, tm[3] = {th[0], th[1], th[2]};
        tp[i] += h;
        tm[i] -= h;
        EXPECT_NEAR((objective(tp) - objective(tm)) / (2 * h), 0.0, 1e-6) << i;
    }
    // Its standard errors come from the penalised total N (mean ll - penalty).
    const std::vector<double> se = testsupport::fd_standard_errors(
        [&](const std::vector<double> &t) {
            const double l0 = std::log(t[0]), l1 = std::log(t[1]), l2 = std::log(t[2]);
            return ll_sum(rows, t[0], t[1], t[2]) - f.n * pen * (l0 * l0 + l1 * l1 + l2 * l2);
        },
        {f.p, f.q, f.v}, 5e-3);
    EXPECT_TRUE(near_rel(f.se_p, se[0], 1e-6));
    EXPECT_TRUE(near_rel(f.se_q, se[1], 1e-6));
    EXPECT_TRUE(near_rel(f.se_v, se[2], 1e-6));
}

TEST(GammaGammaFit, InvalidInput) {
    es_gg_fit f;
    char err[256];
    const std::vector<es_gg_row> ok = {{1, 20, 1}, {3, 15, 2}};
    EXPECT_EQ(es_gg_fit_model(ok.data(), 0, 0.0, &f, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_TRUE(contains(err, "at least one row")) << err;
    EXPECT_EQ(es_gg_fit_model(nullptr, 2, 0.0, &f, err, sizeof err), ES_INVALID_PARAMETER);
    for (double pen : {-0.01, double(NAN), double(INFINITY)}) {
        EXPECT_EQ(es_gg_fit_model(ok.data(), ok.size(), pen, &f, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_TRUE(contains(err, "penalizer = ")) << err;
    }
    struct Bad {
        es_gg_row row;
        const char *needle;
    };
    const Bad bads[] = {{{0, 0, 1}, "row 1: x = 0"},          {{1.5, 2, 1}, "row 1: x = 1.5"},
                        {{-2, 2, 1}, "row 1: x = -2"},        {{2, 0, 1}, "row 1: m = 0"},
                        {{2, -1, 1}, "row 1: m = -1"},        {{2, NAN, 1}, "row 1: x = 2, m = nan"},
                        {{2, 5, 0}, "row 1: weight = 0"},     {{2, 5, -1}, "row 1: weight = -1"},
                        {{2, 5, INFINITY}, "row 1: weight = inf"}};
    for (const Bad &b : bads) {
        const std::vector<es_gg_row> rows = {{1, 20, 1}, b.row, {3, 15, 2}};
        EXPECT_EQ(es_gg_fit_model(rows.data(), rows.size(), 0.0, &f, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_TRUE(contains(err, b.needle)) << "message: " << err;
        EXPECT_EQ(es_gg_validate_rows(rows.data(), rows.size(), err, sizeof err), ES_INVALID_PARAMETER);
    }
    EXPECT_EQ(es_gg_validate_rows(ok.data(), ok.size(), err, sizeof err), ES_OK);
    // A total weight beyond the double range.
    const std::vector<es_gg_row> huge = {{1, 20, 1e308}, {3, 15, 1e308}};
    EXPECT_EQ(es_gg_fit_model(huge.data(), huge.size(), 0.0, &f, err, sizeof err), ES_OUT_OF_RANGE);
    EXPECT_TRUE(contains(err, "total weight")) << err;
}

}  // namespace

// Unit tests of the BTYD kernel (MBG/NBD, BG/NBD) against closed forms,
// independently written formulas, the published CDNOW fits and simulated data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "btyd_kernel.h"
#include "test_support.h"

namespace {

constexpr int MBG = ES_MODEL_MBGNBD;
constexpr int BG = ES_MODEL_BGNBD;

// ---------------------------------------------------------------- helpers

struct Params {
    double r, alpha, a, b;
};

// Published BG/NBD fit on CDNOW (Fader, Hardie & Lee 2005).
constexpr Params kPaper = {0.243, 4.414, 0.793, 2.426};

double hyp(double a, double b, double c, double z) {
    double v = NAN;
    char err[256] = "";
    const int rc = es_hyp2f1(a, b, c, z, &v, err, sizeof err);
    EXPECT_EQ(rc, ES_OK) << "2F1(" << a << ", " << b << "; " << c << "; " << z << "): " << err;
    return v;
}

double ll(int model, double x, double t_x, double T, const Params &p) {
    double v = NAN;
    char err[256] = "";
    EXPECT_EQ(es_btyd_log_likelihood(model, x, t_x, T, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), ES_OK) << err;
    return v;
}

double p_alive(int model, double x, double t_x, double T, const Params &p) {
    double v = NAN;
    char err[256] = "";
    EXPECT_EQ(es_btyd_p_alive(model, x, t_x, T, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), ES_OK) << err;
    return v;
}

double expected(int model, double t, double x, double t_x, double T, const Params &p) {
    double v = NAN;
    char err[256] = "";
    EXPECT_EQ(es_btyd_expected(model, t, x, t_x, T, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), ES_OK) << err;
    return v;
}

double prob_no_event(int model, double t, double x, double t_x, double T, const Params &p) {
    double v = NAN;
    char err[256] = "";
    EXPECT_EQ(es_btyd_prob_no_event(model, t, x, t_x, T, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), ES_OK) << err;
    return v;
}

::testing::AssertionResult near_rel(double got, double want, double rel) {
    if (std::isfinite(got) && std::fabs(got - want) <= rel * std::fabs(want)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (relative error "
                                         << std::fabs(got - want) / std::fabs(want) << " > " << rel << ")";
}

// docs/model.md's log-likelihoods written out directly with std::lgamma
// (the last term by log-sum-exp so that x in the thousands does not overflow).
double lnB(double p, double q) { return std::lgamma(p) + std::lgamma(q) - std::lgamma(p + q); }
double lse(double p, double q) { return std::max(p, q) + std::log(1 + std::exp(-std::fabs(p - q))); }
double ll_mbg_ref(double x, double tx, double T, const Params &p) {
    const double n = p.r + x;
    return lnB(p.a, p.b + x + 1) - lnB(p.a, p.b) + std::lgamma(n) - std::lgamma(p.r) + p.r * std::log(p.alpha) -
           n * std::log(p.alpha + T) +
           lse(0.0, std::log(p.a / (p.b + x)) + n * std::log((p.alpha + T) / (p.alpha + tx)));
}
double ll_bg_ref(double x, double tx, double T, const Params &p) {
    const double n = p.r + x;
    const double alive = -n * std::log(p.alpha + T);
    return lnB(p.a, p.b + x) - lnB(p.a, p.b) + std::lgamma(n) - std::lgamma(p.r) + p.r * std::log(p.alpha) +
           (x > 0 ? lse(alive, std::log(p.a / (p.b + x - 1)) - n * std::log(p.alpha + tx)) : alive);
}

// lifetimes' conditional_expected_number_of_purchases_up_to_time, literally, with es_hyp2f1.
double expected_lifetimes(int model, double t, double x, double tx, double T, const Params &p) {
    const double r = p.r, al = p.alpha, a = p.a, b = p.b;
    const double z = t / (al + T + t);
    if (model == BG) {
        const double first = (a + b + x - 1) / (a - 1);
        const double second = 1 - hyp(r + x, b + x, a + b + x - 1, z) * std::pow((al + T) / (al + t + T), r + x);
        const double den = 1 + (x > 0 ? (a / (b + x - 1)) * std::pow((al + T) / (al + tx), r + x) : 0.0);
        return first * second / den;
    }
    const double first = (a + b + x) / (a - 1);
    const double second = 1 - hyp(r + x, b + x + 1, a + b + x, z) * std::pow((al + T) / (al + t + T), r + x);
    const double den = 1 + (a / (b + x)) * std::pow((al + T) / (al + tx), r + x);
    return first * second / den;
}

// E[events in t | alive] = E_p[(1 - (1 + p u)^-n) / p], p ~ Beta(a, beta), by brute
// force: composite Simpson in y = -ln p on (0, Y] plus the closed-form tail.
// Independent of the kernel's series and quadrature.  Needs beta >= 2.
double expected_alive_brute(double n, double a, double beta, double u) {
    const double Y = std::log(n * u + 1) + 60.0 / a + 40;
    const int N = 2000000;
    const double h = Y / N;
    const double lbeta = lnB(a, beta);
    auto f = [&](double y) {
        if (y == 0.0) return 0.0;  // (1-p)^(beta-1) -> 0
        const double p = std::exp(-y);
        const double g = -std::expm1(-n * std::log1p(p * u));
        return std::exp((a - 1) * (-y) + (beta - 1) * std::log1p(-p) - lbeta) * g;
    };
    double s = f(0) + f(Y);
    for (int i = 1; i < N; ++i) s += f(i * h) * (i % 2 ? 4 : 2);
    const double tail = n * u * std::exp(-a * Y - lbeta) / a;
    return s * h / 3 + tail;
}

// CDNOW summary (ID,frequency,recency,T in weeks): testsupport::open_cdnow.
std::vector<es_btyd_row> load_cdnow(std::string *where) {
    std::ifstream in;
    if (!testsupport::open_cdnow("cdnow_customers_summary.csv", &in, where)) return {};
    std::string line;
    std::getline(in, line);
    std::vector<es_btyd_row> rows;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        std::stringstream ss(line);
        std::string id, x, tx, T;
        std::getline(ss, id, ',');
        std::getline(ss, x, ',');
        std::getline(ss, tx, ',');
        std::getline(ss, T, ',');
        rows.push_back({std::stod(x), std::stod(tx), std::stod(T), 1.0});
    }
    return rows;
}

#define REQUIRE_CDNOW(rows)                                                                                      \
    std::string cdnow_path;                                                                                      \
    const std::vector<es_btyd_row> rows = load_cdnow(&cdnow_path);                                               \
    ASSERT_EQ(rows.size(), 2357u) << "CDNOW summary not found or incomplete: set CDNOW_DIR to the directory of " \
                                     "cdnow_customers_summary.csv (default: test/data/cdnow, found from the working directory)"

es_btyd_fit fit_ok(int model, const std::vector<es_btyd_row> &rows) {
    es_btyd_fit f{};
    char err[512] = "";
    EXPECT_EQ(es_btyd_fit_model(model, rows.data(), rows.size(), 0.0, &f, err, sizeof err), ES_OK) << err;
    EXPECT_EQ(f.converged, 1) << err;
    return f;
}

double ll_sum(int model, const std::vector<es_btyd_row> &rows, const Params &p) {
    double v = NAN;
    char err[256] = "";
    EXPECT_EQ(es_btyd_log_likelihood_sum(model, rows.data(), rows.size(), p.r, p.alpha, p.a, p.b, &v, err, sizeof err),
              ES_OK)
        << err;
    return v;
}

// The generative process: lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b),
// Poisson events, dropout with probability p after each repeat event (and,
// for MBG/NBD, at birth), observed over (0, T].
std::vector<es_btyd_row> simulate(int model, const Params &p, size_t n, uint64_t seed, double Tmin, double Tmax) {
    std::mt19937_64 g(seed);
    std::gamma_distribution<double> lambda_d(p.r, 1.0 / p.alpha), ga(p.a, 1.0), gb(p.b, 1.0);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    std::vector<es_btyd_row> rows;
    rows.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const double lambda = lambda_d(g);
        const double A = ga(g), B = gb(g);
        const double drop = A / (A + B);
        const double T = Tmin + (Tmax - Tmin) * unif(g);
        std::exponential_distribution<double> gap(lambda);
        double x = 0, tx = 0, t = 0;
        bool dead = model == MBG && unif(g) < drop;
        while (!dead) {
            t += gap(g);
            if (!(t <= T)) break;
            x += 1;
            tx = t;
            dead = unif(g) < drop;
        }
        rows.push_back({x, tx, T, 1.0});
    }
    return rows;
}

// ---------------------------------------------------------------- 2F1 and digamma

TEST(BtydHyp2f1, LogClosedFormEverywhere) {
    // 2F1(1, 1; 2; z) = -ln(1 - z) / z; c - a - b = 0 is the degenerate case of the 1 - z formula.
    for (double z :
         {-1e6, -100.0, -10.0, -0.9, -0.3, -1e-8, 1e-8, 0.1, 0.5, 0.85, 0.9, 0.95, 0.99, 0.999, 1 - 1e-6, 1 - 1e-12})
        EXPECT_TRUE(near_rel(hyp(1, 1, 2, z), -std::log1p(-z) / z, 5e-11)) << "z = " << z;
    EXPECT_EQ(hyp(1, 1, 2, 0), 1.0);
}

TEST(BtydHyp2f1, ElementaryClosedForms) {
    for (double z : {-50.0, -0.5, 0.3, 0.7, 0.95, 0.99, 1 - 1e-9}) {
        // 2F1(1/2, 1/2; 3/2; z) = asin(sqrt z)/sqrt z, asinh(sqrt -z)/sqrt -z for z < 0
        const double want = z > 0 ? std::asin(std::sqrt(z)) / std::sqrt(z) : std::asinh(std::sqrt(-z)) / std::sqrt(-z);
        // (near z = 1 the reference itself is only good to ~1e-12: asin is ill-conditioned there)
        EXPECT_TRUE(near_rel(hyp(0.5, 0.5, 1.5, z), want, 5e-12)) << "z = " << z;
    }
    for (double w : {0.1, 1.0, 3.0, 100.0})  // 2F1(1/2, 1; 3/2; -w^2) = atan(w)/w
        EXPECT_TRUE(near_rel(hyp(0.5, 1, 1.5, -w * w), std::atan(w) / w, 1e-12)) << "w = " << w;
    for (double a : {0.3, 3.3, 50.0})  // 2F1(a, b; b; z) = (1 - z)^-a
        for (double z : {-5.0, 0.3, 0.7, 0.93})
            EXPECT_TRUE(near_rel(hyp(a, 2.7, 2.7, z), std::pow(1 - z, -a), 1e-13)) << "a = " << a << ", z = " << z;
    // 2F1(a, a + 1/2; 1/2; w^2) = ((1 + w)^-2a + (1 - w)^-2a) / 2; c - a - b = -2a, an integer.
    for (double a : {2.0, 7.0, 7.25})
        for (double w : {0.3, 0.9, 0.97, 0.999})
            EXPECT_TRUE(
                near_rel(hyp(a, a + 0.5, 0.5, w * w), (std::pow(1 + w, -2 * a) + std::pow(1 - w, -2 * a)) / 2, 1e-11))
                << "a = " << a << ", w = " << w;
}

TEST(BtydHyp2f1, GaussAndChuVandermondeAtOne) {
    EXPECT_TRUE(near_rel(hyp(0.3, 0.7, 2.5, 1.0),
                         std::tgamma(2.5) * std::tgamma(1.5) / (std::tgamma(2.2) * std::tgamma(1.8)), 1e-14));
    // 2F1(-n, b; c; 1) = (c - b)_n / (c)_n
    const double n = 30, b = 2.5, c = 7.25;
    const double want = std::exp(std::lgamma(c - b + n) - std::lgamma(c - b) - std::lgamma(c + n) + std::lgamma(c));
    EXPECT_TRUE(near_rel(hyp(-n, b, c, 1.0), want, 1e-13));
    // A polynomial: 2F1(-3, 2; 5; z) = 1 - (6/5) z + (36/60) z^2 - (144/1260) z^3
    EXPECT_TRUE(near_rel(hyp(-3, 2, 5, 0.5), 1 - 1.2 * 0.5 + 0.6 * 0.25 - 144.0 / 1260 * 0.125, 1e-15));
}

TEST(BtydHyp2f1, LargeParametersOfTheBtydFormulas) {
    // 2F1(r+x, b+x; a+b+x-1; z) with x in the thousands (lifetimes' BG/NBD term)
    // checked against Euler's transformation (1-z)^(c-a-b) 2F1(c-a, c-b; c; z),
    // whose series is short and whose power carries the size.
    const Params p = kPaper;
    for (double x : {10.0, 1000.0, 3000.0}) {
        for (double z : {0.05, 0.3}) {
            const double A = p.r + x, B = p.b + x, C = p.a + p.b + x - 1;
            const double euler = std::pow(1 - z, C - A - B) * hyp(C - A, C - B, C, z);
            if (!std::isfinite(euler)) continue;
            EXPECT_TRUE(near_rel(hyp(A, B, C, z), euler, 1e-11)) << "x = " << x << ", z = " << z;
        }
    }
    EXPECT_TRUE(near_rel(hyp(500, 2.7, 2.7, 0.7), std::pow(0.3, -500), 1e-12));
    // (1-z)^-a for a = 5000 at z = 0.1 (terms rise over a long hump before converging)
    EXPECT_TRUE(near_rel(hyp(5000, 3, 3, 0.1), std::exp(-5000 * std::log1p(-0.1)), 1e-11));
}

TEST(BtydHyp2f1, Errors) {
    double v = 0;
    char err[256];
    EXPECT_EQ(es_hyp2f1(1, 1, 2, 1.5, &v, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_NE(std::string(err).find("z = 1.5"), std::string::npos) << err;
    EXPECT_EQ(es_hyp2f1(1, 1, -2, 0.5, &v, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_EQ(es_hyp2f1(NAN, 1, 2, 0.5, &v, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_EQ(es_hyp2f1(1, 1, 2, INFINITY, &v, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_EQ(es_hyp2f1(1, 1, 2, 1.0, &v, err, sizeof err), ES_OUT_OF_RANGE);         // diverges: c - a - b = 0
    EXPECT_EQ(es_hyp2f1(500, 2.7, 2.7, 0.93, &v, err, sizeof err), ES_OUT_OF_RANGE);  // 0.07^-500 overflows
    EXPECT_EQ(es_hyp2f1(1, 1, 2, 0.5, &v, nullptr, 0), ES_OK);                        // err may be NULL
}

TEST(BtydDigamma, KnownValues) {
    const double gamma = 0.57721566490153286061;
    auto psi = [](double x) {
        double v = NAN;
        EXPECT_EQ(es_btyd_digamma(x, &v, nullptr, 0), ES_OK);
        return v;
    };
    EXPECT_TRUE(near_rel(psi(1), -gamma, 1e-15));
    EXPECT_TRUE(near_rel(psi(0.5), -gamma - 2 * std::log(2.0), 1e-15));
    for (int n : {2, 10, 100, 1000}) {
        double h = 0;
        for (int k = 1; k < n; ++k) h += 1.0 / k;
        EXPECT_TRUE(near_rel(psi(n), h - gamma, 2e-15)) << n;
    }
    EXPECT_TRUE(near_rel(psi(1e-8), -1e8 - gamma + 1.6449340668482264e-8, 1e-15));
    EXPECT_TRUE(near_rel(psi(1e6), std::log(1e6) - 0.5e-6 - 1.0 / 12e12, 1e-15));
    for (double x : {0.01, 0.37, 1.4616321449683623, 3.7, 25.5}) EXPECT_NEAR(psi(x + 1), psi(x) + 1 / x, 1e-13) << x;
    double v;
    EXPECT_EQ(es_btyd_digamma(0, &v, nullptr, 0), ES_INVALID_PARAMETER);
    EXPECT_EQ(es_btyd_digamma(NAN, &v, nullptr, 0), ES_INVALID_PARAMETER);
}

// ---------------------------------------------------------------- per-customer values

TEST(BtydLogLikelihood, HandComputedRows) {
    const Params ps[] = {kPaper, {0.25, 10, 0.5, 2.5}, {2.0, 0.3, 3.0, 0.7}};
    const double rows[][3] = {{0, 0, 38.86}, {2, 30.43, 38.86}, {1, 1.71, 38.86}, {7, 29.43, 38.86},
                              {1, 0, 0},     {3, 5, 5},         {0, 0, 0},        {12, 100, 365}};
    for (const Params &p : ps) {
        for (const auto &r : rows) {
            EXPECT_NEAR(ll(MBG, r[0], r[1], r[2], p), ll_mbg_ref(r[0], r[1], r[2], p), 1e-12)
                << "MBG x=" << r[0] << " t_x=" << r[1] << " T=" << r[2];
            EXPECT_NEAR(ll(BG, r[0], r[1], r[2], p), ll_bg_ref(r[0], r[1], r[2], p), 1e-12)
                << "BG x=" << r[0] << " t_x=" << r[1] << " T=" << r[2];
        }
    }
    // x = 0 by hand: BG/NBD is then the NBD term alone: r ln(alpha / (alpha + T)).
    const Params p = kPaper;
    EXPECT_NEAR(ll(BG, 0, 0, 38.86, p), p.r * std::log(p.alpha / (p.alpha + 38.86)), 1e-14);
    // MBG/NBD at x = 0: (b/(a+b)) (alpha/(alpha+T))^r + (a/(a+b)) (dropout at birth)
    EXPECT_NEAR(ll(MBG, 0, 0, 38.86, p),
                std::log(p.b / (p.a + p.b) * std::pow(p.alpha / (p.alpha + 38.86), p.r) + p.a / (p.a + p.b)), 1e-14);
}

TEST(BtydLogLikelihood, ThousandsOfEventsAndExtremeScales) {
    const Params p = kPaper;
    for (double x : {1000.0, 5000.0}) {
        // Direct lgamma differences lose ~1e-11 absolute at this size.
        EXPECT_NEAR(ll(MBG, x, 300, 365, p), ll_mbg_ref(x, 300, 365, p), 1e-8) << x;
        EXPECT_NEAR(ll(BG, x, 300, 365, p), ll_bg_ref(x, 300, 365, p), 1e-8) << x;
    }
    const double big[][3] = {{1e6, 5e5, 1e6}, {3, 1e300, 1e300}, {0, 0, 1e300}, {2, 1e-300, 2e-300}, {1e15, 1, 2}};
    for (const auto &r : big)
        for (int m : {MBG, BG}) {
            EXPECT_TRUE(std::isfinite(ll(m, r[0], r[1], r[2], p))) << r[0] << " " << r[1] << " " << r[2];
            EXPECT_TRUE(std::isfinite(ll(m, r[0], r[1], r[2], {1e-300, 1e300, 1e300, 1e-300})));
            EXPECT_TRUE(std::isfinite(ll(m, r[0], r[1], r[2], {1e300, 1e-300, 1e-300, 1e300})));
        }
    // The sum over rows is the weighted sum of the rows.
    const std::vector<es_btyd_row> rows = {{2, 30.43, 38.86, 3}, {0, 0, 20, 1.5}};
    EXPECT_NEAR(ll_sum(BG, rows, p), 3 * ll(BG, 2, 30.43, 38.86, p) + 1.5 * ll(BG, 0, 0, 20, p), 1e-12);
}

TEST(BtydPAlive, CdnowCustomerAndFormula) {
    // FHL (2005) / lifetimes: x = 2, t_x = 30.43, T = 38.86 with the published parameters.
    const double pa = p_alive(BG, 2, 30.43, 38.86, kPaper);
    EXPECT_NEAR(pa, 0.7266, 0.001);
    const Params p = kPaper;
    EXPECT_NEAR(pa, 1 / (1 + p.a / (p.b + 1) * std::pow((p.alpha + 38.86) / (p.alpha + 30.43), p.r + 2)), 1e-15);
    EXPECT_NEAR(p_alive(MBG, 2, 30.43, 38.86, p),
                1 / (1 + p.a / (p.b + 2) * std::pow((p.alpha + 38.86) / (p.alpha + 30.43), p.r + 2)), 1e-15);
    // x = 0: BG/NBD customers cannot have dropped out; MBG/NBD ones can (at birth).
    EXPECT_EQ(p_alive(BG, 0, 0, 38.86, p), 1.0);
    EXPECT_NEAR(p_alive(MBG, 0, 0, 38.86, p), 1 / (1 + p.a / p.b * std::pow((p.alpha + 38.86) / p.alpha, p.r)), 1e-15);
    // t_x = T: only the Beta part remains.
    EXPECT_NEAR(p_alive(MBG, 5, 10, 10, p), (p.b + 5) / (p.a + p.b + 5), 1e-15);
    EXPECT_NEAR(p_alive(BG, 5, 10, 10, p), (p.b + 4) / (p.a + p.b + 4), 1e-15);
    // Thousands of events long ago: surely gone, but no NaN; recent: nearly surely alive.
    EXPECT_EQ(p_alive(MBG, 5000, 10, 365, p), 0.0);
    EXPECT_NEAR(p_alive(BG, 5000, 365, 365, p), (p.b + 4999) / (p.a + p.b + 4999), 1e-15);
    // Monotone in recency.
    double prev = 0;
    for (double tx = 1; tx <= 38; tx += 1) {
        const double v = p_alive(BG, 3, tx, 38.86, p);
        EXPECT_GT(v, prev);
        prev = v;
    }
}

TEST(BtydExpected, CdnowCustomer) {
    // lifetimes tests/test_estimation.py: E[X(39) | x=2, t_x=30.43, T=38.86] = 1.226.
    const double e = expected(BG, 39, 2, 30.43, 38.86, kPaper);
    EXPECT_NEAR(e, 1.226, 0.001);
    EXPECT_TRUE(near_rel(e, expected_lifetimes(BG, 39, 2, 30.43, 38.86, kPaper), 1e-12));
}

TEST(BtydExpected, MatchesLifetimesClosedForm) {
    const Params ps[] = {kPaper, {0.25, 10, 0.5, 2.5}, {1.7, 3.0, 2.5, 0.4}, {0.05, 0.5, 0.2, 8.0}};
    const double cases[][4] = {{0, 0, 38.86, 39},  {2, 30.43, 38.86, 39}, {1, 0, 0, 30},  {7, 29.43, 38.86, 1},
                               {20, 300, 365, 30}, {3, 5, 10, 1e-3},      {0, 0, 5, 150}, {60, 700, 730, 365}};
    // (Much shorter horizons are left to LimitsAndEdges: lifetimes' 1 - 2F1 (...) cancels there.)
    for (const Params &p : ps)
        for (const auto &c : cases)
            for (int m : {MBG, BG}) {
                const double want = expected_lifetimes(m, c[3], c[0], c[1], c[2], p);
                EXPECT_TRUE(near_rel(expected(m, c[3], c[0], c[1], c[2], p), want, 1e-10))
                    << "model " << m << " x=" << c[0] << " t_x=" << c[1] << " T=" << c[2] << " t=" << c[3];
            }
}

TEST(BtydExpected, AEqualsOneIsRemovable) {
    // lifetimes' (a-1) denominator: the kernel removes it analytically, so a = 1
    // sits smoothly between its neighbours.
    for (int m : {MBG, BG})
        for (double x : {0.0, 3.0, 400.0}) {
            const double tx = x > 0 ? 20 : 0;
            auto E = [&](double a) { return expected(m, 39, x, tx, 38.86, {0.243, 4.414, a, 2.426}); };
            const double e1 = E(1.0), lo = E(1 - 1e-5), hi = E(1 + 1e-5);
            EXPECT_TRUE(std::isfinite(e1) && e1 > 0);
            EXPECT_TRUE(near_rel(e1, 0.5 * (lo + hi), 1e-9)) << "model " << m << " x " << x;
            EXPECT_TRUE(near_rel(E(1 + 1e-13), e1, 1e-11));
        }
}

TEST(BtydExpected, LimitsAndEdges) {
    const Params p = kPaper;
    for (int m : {MBG, BG}) {
        EXPECT_EQ(expected(m, 0, 2, 30.43, 38.86, p), 0.0);
        // Short horizon: P_alive (r + x) t / (alpha + T).
        const double t = 1e-7;
        EXPECT_TRUE(near_rel(expected(m, t, 2, 30.43, 38.86, p),
                             p_alive(m, 2, 30.43, 38.86, p) * (p.r + 2) * t / (p.alpha + 38.86), 1e-6));
        // Never more than the rate of an immortal customer, increasing in the horizon.
        double prev = 0;
        for (double h : {0.5, 5.0, 50.0, 500.0, 5e4, 5e8, 1e15}) {
            const double e = expected(m, h, 2, 30.43, 38.86, p);
            EXPECT_GT(e, prev) << h;
            EXPECT_LE(e, (p.r + 2) * h / (p.alpha + 38.86)) << h;
            prev = e;
        }
        // Huge scales and thousands of events: finite, no NaN.
        for (const Params &q : {p, Params{1e-300, 1e300, 1e300, 1e-300}, Params{50, 1e-3, 1e-3, 50}}) {
            double v;
            for (double h : {1e-300, 1.0, 1e300}) {
                const int rc = es_btyd_expected(m, h, 5000, 700, 730, q.r, q.alpha, q.a, q.b, &v, nullptr, 0);
                EXPECT_TRUE(rc == ES_OK || rc == ES_OUT_OF_RANGE);
                if (rc == ES_OK) {
                    EXPECT_TRUE(std::isfinite(v) && v >= 0);
                }
                EXPECT_EQ(es_btyd_expected(m, h, 0, 0, 1e300, q.r, q.alpha, q.a, q.b, &v, nullptr, 0), ES_OK);
                EXPECT_TRUE(std::isfinite(v) && v >= 0);
            }
        }
    }
}

TEST(BtydExpected, LongHorizonsAgainstBruteForceIntegral) {
    // Beyond horizon = 200 (alpha + T) the kernel switches from its series to a
    // quadrature; both must agree with an independent brute-force integral,
    // and with each other across the switch.
    struct Case {
        int model;
        double x, tx, T;
        Params p;
        double h;
    };
    const Case cases[] = {{BG, 2, 30.43, 38.86, kPaper, 199 * (4.414 + 38.86)},
                          {BG, 2, 30.43, 38.86, kPaper, 201 * (4.414 + 38.86)},
                          {MBG, 0, 0, 1, {0.25, 10, 0.5, 2.5}, 1e5},
                          {BG, 40, 20, 30, {1.3, 2.0, 1.0, 3.0}, 1e6},
                          {MBG, 1000, 300, 365, {0.25, 10, 4.0, 2.5}, 1e7}};
    for (const Case &c : cases) {
        const double s = c.model == MBG ? 1 : 0;
        const double want = p_alive(c.model, c.x, c.tx, c.T, c.p) *
                            expected_alive_brute(c.p.r + c.x, c.p.a, c.p.b + c.x + s, c.h / (c.p.alpha + c.T));
        EXPECT_TRUE(near_rel(expected(c.model, c.h, c.x, c.tx, c.T, c.p), want, 1e-8))
            << "model " << c.model << " x=" << c.x << " h=" << c.h;
    }
    const double u = 4.414 + 38.86;
    EXPECT_TRUE(near_rel(expected(BG, 200 * u * (1 - 1e-12), 2, 30.43, 38.86, kPaper),
                         expected(BG, 200 * u * (1 + 1e-12), 2, 30.43, 38.86, kPaper), 1e-11));
}

TEST(BtydProbNoEvent, Formula) {
    const Params p = kPaper;
    for (int m : {MBG, BG})
        for (double h : {0.0, 1.0, 30.0, 1e6}) {
            const double pa = p_alive(m, 2, 30.43, 38.86, p);
            const double want = (1 - pa) + pa * std::pow((p.alpha + 38.86) / (p.alpha + 38.86 + h), p.r + 2);
            const double v = prob_no_event(m, h, 2, 30.43, 38.86, p);
            EXPECT_NEAR(v, want, 1e-15);
            EXPECT_TRUE(v >= 0 && v <= 1);
        }
    EXPECT_EQ(prob_no_event(BG, 0, 3, 1, 2, p), 1.0);
    EXPECT_EQ(prob_no_event(BG, 30, 0, 0, 0, p), std::pow(p.alpha / (p.alpha + 30), p.r));
    // x in the thousands and a long-gone customer: surely no event.
    EXPECT_NEAR(prob_no_event(MBG, 30, 5000, 10, 365, p), 1.0, 1e-15);
    double v;
    EXPECT_EQ(es_btyd_prob_no_event(BG, 1e300, 3, 1, 2, 1e-300, 1e-300, 1, 1, &v, nullptr, 0), ES_OK);
    EXPECT_TRUE(v >= 0 && v <= 1);
}

TEST(BtydValidation, CodesAndMessages) {
    const Params p = kPaper;
    char err[256];
    double v = 42;
    auto check = [&](int rc, const char *needle) {
        EXPECT_EQ(rc, ES_INVALID_PARAMETER) << needle;
        EXPECT_NE(std::string(err).find(needle), std::string::npos) << "message: " << err;
        EXPECT_EQ(v, 42);  // output untouched on error
    };
    check(es_btyd_p_alive(MBG, 2.5, 1, 2, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "x = 2.5");
    check(es_btyd_p_alive(MBG, -1, 0, 2, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "x = -1");
    check(es_btyd_p_alive(MBG, 2, 3, 2, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "t_x = 3");
    check(es_btyd_p_alive(MBG, 2, -1, 2, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "t_x = -1");
    check(es_btyd_p_alive(MBG, 0, 1, 2, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "must be 0 when x = 0");
    check(es_btyd_p_alive(MBG, 1, 0, -1, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "T = -1");
    check(es_btyd_p_alive(MBG, NAN, 0, 1, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "finite");
    check(es_btyd_p_alive(MBG, 1, 0, INFINITY, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "finite");
    check(es_btyd_p_alive(MBG, 2e15, 0, 1, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "x = 2e+15");
    check(es_btyd_p_alive(MBG, 1, 0, 1, 0, p.alpha, p.a, p.b, &v, err, sizeof err), "r = 0");
    check(es_btyd_p_alive(MBG, 1, 0, 1, p.r, -4, p.a, p.b, &v, err, sizeof err), "alpha = -4");
    check(es_btyd_p_alive(MBG, 1, 0, 1, p.r, p.alpha, NAN, p.b, &v, err, sizeof err), "a = nan");
    check(es_btyd_p_alive(MBG, 1, 0, 1, p.r, p.alpha, p.a, INFINITY, &v, err, sizeof err), "b = inf");
    check(es_btyd_p_alive(7, 1, 0, 1, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "unknown BTYD model 7");
    check(es_btyd_expected(BG, -1, 1, 0, 1, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "horizon = -1");
    check(es_btyd_expected(BG, NAN, 1, 0, 1, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "horizon = nan");
    check(es_btyd_prob_no_event(BG, INFINITY, 1, 0, 1, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "horizon");
    check(es_btyd_log_likelihood(BG, 1, 2, 1, p.r, p.alpha, p.a, p.b, &v, err, sizeof err), "t_x = 2");
    EXPECT_EQ(es_btyd_validate_customer(3, 0, 0, err, sizeof err), ES_OK);  // an event on the birth day
    EXPECT_EQ(es_btyd_validate_params(1, 1, 1, 1, err, sizeof err), ES_OK);
    EXPECT_EQ(es_btyd_p_alive(MBG, 1, 0, 1, p.r, p.alpha, p.a, p.b, &v, nullptr, 0), ES_OK);  // err may be NULL
}

TEST(BtydRobustness, NoNanForRandomValidInputs) {
    // Random valid inputs over many orders of magnitude (occasionally the whole
    // double range): every result is ES_OK and finite and in range, or, for
    // expected events only, ES_OUT_OF_RANGE (extreme parameters or overflow).
    std::mt19937_64 g(2024);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    auto logu = [&](double lo, double hi) { return std::exp(std::log(lo) + (std::log(hi) - std::log(lo)) * unif(g)); };
    int out_of_range = 0;
    for (int i = 0; i < 1500; ++i) {
        const bool wild = unif(g) < 0.05;
        const double lo = wild ? 1e-300 : 1e-8, hi = wild ? 1e300 : 1e8;
        const double r = logu(lo, hi), alpha = logu(lo, hi), a = logu(lo, hi), b = logu(lo, hi);
        const double T = unif(g) < 0.1 ? 0 : logu(1e-6, wild ? 1e300 : 1e6);
        const double x = unif(g) < 0.3 ? 0 : std::floor(logu(1, unif(g) < 0.02 ? 1e15 : 1e4));
        const double tx = x > 0 ? (unif(g) < 0.1 ? T : T * unif(g)) : 0;
        const double h = unif(g) < 0.05 ? 0 : logu(1e-6, wild ? 1e300 : 1e6);
        for (int m : {MBG, BG}) {
            double v = NAN;
            char err[256] = "";
            const std::string what =
                "model " + std::to_string(m) + " x=" + std::to_string(x) + " t_x=" + std::to_string(tx) +
                " T=" + std::to_string(T) + " h=" + std::to_string(h) + " r=" + std::to_string(r) +
                " alpha=" + std::to_string(alpha) + " a=" + std::to_string(a) + " b=" + std::to_string(b);
            ASSERT_EQ(es_btyd_log_likelihood(m, x, tx, T, r, alpha, a, b, &v, err, sizeof err), ES_OK) << what << err;
            ASSERT_TRUE(std::isfinite(v)) << what;
            ASSERT_EQ(es_btyd_p_alive(m, x, tx, T, r, alpha, a, b, &v, err, sizeof err), ES_OK) << what << err;
            ASSERT_TRUE(v >= 0 && v <= 1) << what << " p_alive " << v;
            ASSERT_EQ(es_btyd_prob_no_event(m, h, x, tx, T, r, alpha, a, b, &v, err, sizeof err), ES_OK) << what;
            ASSERT_TRUE(v >= 0 && v <= 1) << what << " prob_no_event " << v;
            const int rc = es_btyd_expected(m, h, x, tx, T, r, alpha, a, b, &v, err, sizeof err);
            if (rc == ES_OUT_OF_RANGE) {
                ++out_of_range;
                continue;
            }
            ASSERT_EQ(rc, ES_OK) << what << err;
            ASSERT_TRUE(std::isfinite(v) && v >= 0) << what << " expected " << v;
            const double bound = (r + x) * h / (alpha + T);  // an immortal customer's expectation
            if (std::isfinite(bound)) {
                EXPECT_LE(v, bound * (1 + 1e-8)) << what;
            }
        }
    }
    EXPECT_LT(out_of_range, 60);  // the wild 5% mostly
}

// ---------------------------------------------------------------- fitting

TEST(BtydFit, CdnowBgNbdMatchesPublishedFit) {
    REQUIRE_CDNOW(rows);
    const es_btyd_fit f = fit_ok(BG, rows);
    EXPECT_NEAR(f.r, 0.243, 0.001);
    EXPECT_NEAR(f.alpha, 4.414, 0.001);
    EXPECT_NEAR(f.a, 0.793, 0.001);
    EXPECT_NEAR(f.b, 2.426, 0.001);
    EXPECT_NEAR(f.log_likelihood, -9582.4, 0.1);
    EXPECT_EQ(f.n, 2357.0);
    // The reported LL is the LL at the reported parameters, and the published
    // parameters (rounded) are no better.
    EXPECT_NEAR(f.log_likelihood, ll_sum(BG, rows, {f.r, f.alpha, f.a, f.b}), 1e-8);
    EXPECT_GE(f.log_likelihood, ll_sum(BG, rows, kPaper));
    EXPECT_NEAR(ll_sum(BG, rows, kPaper), -9582.43, 0.01);  // test/data/cdnow/README.md
}

TEST(BtydFit, CdnowMbgNbdMatchesBtydPlus) {
    // lifetimes tests/test_estimation.py (test_params_out_is_close_to_BTYDplus): 0.525, 6.183, 0.891, 1.614.
    REQUIRE_CDNOW(rows);
    const es_btyd_fit f = fit_ok(MBG, rows);
    EXPECT_NEAR(f.r, 0.525, 0.001);
    EXPECT_NEAR(f.alpha, 6.183, 0.001);
    EXPECT_NEAR(f.a, 0.891, 0.001);
    EXPECT_NEAR(f.b, 1.614, 0.001);
    // The MBG/NBD fits CDNOW about as well as the BG/NBD.
    EXPECT_NEAR(f.log_likelihood, -9582.13, 0.01);
}

TEST(BtydFit, IsAMaximum) {
    REQUIRE_CDNOW(rows);
    for (int m : {MBG, BG}) {
        const es_btyd_fit f = fit_ok(m, rows);
        const double th[4] = {std::log(f.r), std::log(f.alpha), std::log(f.a), std::log(f.b)};
        for (int i = 0; i < 4; ++i) {
            // Central difference of the summed LL in each log-parameter is ~0,
            // and both neighbours are lower.
            const double h = 1e-4;
            double tp[4], tm[4];
            std::copy(th, th + 4, tp);
            std::copy(th, th + 4, tm);
            tp[i] += h;
            tm[i] -= h;
            const double fp = ll_sum(m, rows, {std::exp(tp[0]), std::exp(tp[1]), std::exp(tp[2]), std::exp(tp[3])});
            const double fm = ll_sum(m, rows, {std::exp(tm[0]), std::exp(tm[1]), std::exp(tm[2]), std::exp(tm[3])});
            EXPECT_NEAR((fp - fm) / (2 * h), 0.0, 1e-3) << "model " << m << " parameter " << i;
            EXPECT_LT(fp, f.log_likelihood);
            EXPECT_LT(fm, f.log_likelihood);
        }
    }
}

TEST(BtydFit, TimeUnitDoesNotMatter) {
    // Weeks -> days: alpha scales by 7, r, a, b stay, and the LL (a density in
    // time) shifts by -sum(x) ln 7.
    REQUIRE_CDNOW(weeks);
    std::vector<es_btyd_row> days = weeks;
    double sx = 0;
    for (es_btyd_row &r : days) {
        r.t_x *= 7;
        r.T *= 7;
        sx += r.x;
    }
    for (int m : {MBG, BG}) {
        const es_btyd_fit w = fit_ok(m, weeks), d = fit_ok(m, days);
        EXPECT_TRUE(near_rel(d.r, w.r, 1e-6));
        EXPECT_TRUE(near_rel(d.alpha, 7 * w.alpha, 1e-6));
        EXPECT_TRUE(near_rel(d.a, w.a, 1e-6));
        EXPECT_TRUE(near_rel(d.b, w.b, 1e-6));
        EXPECT_NEAR(d.log_likelihood, w.log_likelihood - sx * std::log(7.0), 1e-6);
    }
}

TEST(BtydFit, RecoversSimulatedParameters) {
    // 20,000 customers observed for 30..78 weeks, from known parameters.
    // Tolerances are ~3.3 standard deviations of the estimates over 30 other
    // seeds (largest relative SDs: r 4.4%, alpha 3.5%, a 5.5%, b 9%, r/alpha
    // 2.3%); the fit must also beat the true parameters' likelihood.
    struct Case {
        int model;
        Params truth;
        uint64_t seed;
    };
    const Case cases[] = {
        {MBG, {0.5, 6.0, 0.9, 1.6}, 11}, {BG, {0.25, 4.0, 0.8, 2.5}, 12}, {BG, {1.2, 8.0, 2.0, 5.0}, 13}};
    for (const Case &c : cases) {
        const std::vector<es_btyd_row> rows = simulate(c.model, c.truth, 20000, c.seed, 30, 78);
        const es_btyd_fit f = fit_ok(c.model, rows);
        EXPECT_TRUE(near_rel(f.r, c.truth.r, 0.15)) << "model " << c.model << " r " << f.r;
        EXPECT_TRUE(near_rel(f.alpha, c.truth.alpha, 0.12)) << "model " << c.model << " alpha " << f.alpha;
        EXPECT_TRUE(near_rel(f.a, c.truth.a, 0.18)) << "model " << c.model << " a " << f.a;
        EXPECT_TRUE(near_rel(f.b, c.truth.b, 0.30)) << "model " << c.model << " b " << f.b;
        EXPECT_TRUE(near_rel(f.r / f.alpha, c.truth.r / c.truth.alpha, 0.08)) << "mean rate";
        EXPECT_GE(f.log_likelihood, ll_sum(c.model, rows, c.truth));
        EXPECT_EQ(f.n, 20000.0);
    }
}

TEST(BtydFit, OrderAndDuplicationDoNotMatter) {
    const std::vector<es_btyd_row> base = simulate(BG, {0.25, 4.0, 0.8, 2.5}, 5000, 7, 30, 78);
    // Round times to weeks/10 so that duplicates exist.
    std::vector<es_btyd_row> rows = base;
    for (es_btyd_row &r : rows) {
        r.T = std::round(r.T * 10) / 10;
        r.t_x = r.x > 0 ? std::min(r.T, std::round(r.t_x * 10) / 10) : 0;
    }
    std::vector<es_btyd_row> shuffled = rows;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(99));
    std::vector<es_btyd_row> collapsed = rows;
    collapsed.resize(es_btyd_collapse(collapsed.data(), collapsed.size()));
    ASSERT_LT(collapsed.size(), rows.size());
    // The same multiset split differently: every weight-w row as w rows of weight 1... and back.
    std::vector<es_btyd_row> split;
    for (const es_btyd_row &r : collapsed)
        for (int k = 0; k < static_cast<int>(r.weight); ++k) split.push_back({r.x, r.t_x, r.T, 1.0});
    std::reverse(split.begin(), split.end());
    for (int m : {MBG, BG}) {
        const es_btyd_fit f0 = fit_ok(m, rows), f1 = fit_ok(m, shuffled), f2 = fit_ok(m, collapsed),
                          f3 = fit_ok(m, split);
        for (const es_btyd_fit *f : {&f1, &f2, &f3}) {
            EXPECT_EQ(f->r, f0.r);  // bit-identical
            EXPECT_EQ(f->alpha, f0.alpha);
            EXPECT_EQ(f->a, f0.a);
            EXPECT_EQ(f->b, f0.b);
            EXPECT_EQ(f->log_likelihood, f0.log_likelihood);
            EXPECT_EQ(f->n, f0.n);
            EXPECT_EQ(f->iterations, f0.iterations);
        }
    }
}

TEST(BtydFit, CollapseSortsAndMerges) {
    std::vector<es_btyd_row> rows = {{2, 3, 5, 1}, {0, 0, 5, 2}, {2, 3, 5, 0.5}, {1, 1, 4, 1}, {0, 0, 5, 1}};
    const size_t n = es_btyd_collapse(rows.data(), rows.size());
    ASSERT_EQ(n, 3u);
    EXPECT_EQ(rows[0].x, 0);
    EXPECT_EQ(rows[0].weight, 3);
    EXPECT_EQ(rows[1].x, 1);
    EXPECT_EQ(rows[2].x, 2);
    EXPECT_EQ(rows[2].weight, 1.5);
    EXPECT_EQ(es_btyd_collapse(rows.data(), 0), 0u);
    EXPECT_EQ(es_btyd_collapse(nullptr, 5), 0u);
    // NaN does not break the sort (it sorts last); validation rejects it anyway.
    std::vector<es_btyd_row> bad = {{NAN, 0, 1, 1}, {1, 0, 1, 1}, {NAN, 0, 1, 1}, {0, 0, 1, 1}};
    EXPECT_EQ(es_btyd_collapse(bad.data(), bad.size()), 3u);
    EXPECT_EQ(bad[0].x, 0);
    EXPECT_TRUE(std::isnan(bad[2].x));
}

TEST(BtydFit, ThousandsOfEventsAndDayScaleData) {
    // Heavy users (x in the thousands) among ordinary ones, in days.
    std::vector<es_btyd_row> rows = simulate(MBG, {0.4, 20, 0.6, 3}, 5000, 3, 0, 730);
    rows.push_back({3000, 700, 730, 1});
    rows.push_back({5000, 725, 730, 2});
    for (int m : {MBG, BG}) {
        const es_btyd_fit f = fit_ok(m, rows);
        EXPECT_TRUE(std::isfinite(f.log_likelihood));
        EXPECT_TRUE(f.r > 0 && f.alpha > 0 && f.a > 0 && f.b > 0);
    }
}

TEST(BtydFit, InvalidInput) {
    es_btyd_fit f;
    char err[256];
    const std::vector<es_btyd_row> ok = {{1, 2, 3, 1}, {0, 0, 3, 1}};
    EXPECT_EQ(es_btyd_fit_model(MBG, ok.data(), 0, 0.0, &f, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_NE(std::string(err).find("at least one row"), std::string::npos) << err;
    EXPECT_EQ(es_btyd_fit_model(2, ok.data(), ok.size(), 0.0, &f, err, sizeof err), ES_INVALID_PARAMETER);
    struct Bad {
        es_btyd_row row;
        const char *needle;
    };
    const Bad bads[] = {{{1.5, 1, 2, 1}, "row 1: x = 1.5"},
                        {{1, 3, 2, 1}, "row 1: t_x = 3"},
                        {{0, 1, 2, 1}, "row 1: t_x = 1 must be 0 when x = 0"},
                        {{1, 1, 2, 0}, "row 1: weight = 0"},
                        {{1, 1, 2, -1}, "row 1: weight = -1"},
                        {{1, 1, 2, INFINITY}, "row 1: weight = inf"},
                        {{1, NAN, 2, 1}, "row 1: x = 1, t_x = nan"},
                        {{1, 1, -2, 1}, "row 1: T = -2"}};
    for (const Bad &b : bads) {
        const std::vector<es_btyd_row> rows = {{1, 2, 3, 1}, b.row, {0, 0, 3, 1}};
        EXPECT_EQ(es_btyd_fit_model(BG, rows.data(), rows.size(), 0.0, &f, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_NE(std::string(err).find(b.needle), std::string::npos) << "message: " << err;
    }
}

TEST(BtydFit, OnlyTheWeightsRatiosMatter) {
    // Weights scaled by a power of two fit bit-identically, however close to the ends of the double
    // range: the kernel normalises them before optimising (5e-324 = 2^-1074 made the mean
    // log-likelihood 0 * inf at the starting points).
    const std::vector<es_btyd_row> base = simulate(BG, {0.25, 4.0, 0.8, 2.5}, 500, 5, 30, 78);
    for (int m : {MBG, BG}) {
        const es_btyd_fit f0 = fit_ok(m, base);
        for (int shift : {-1074, -1000, -3, 5, 1000}) {
            std::vector<es_btyd_row> rows = base;
            for (es_btyd_row &r : rows) r.weight = std::ldexp(1.0, shift);
            const es_btyd_fit f = fit_ok(m, rows);
            EXPECT_EQ(f.r, f0.r) << "shift " << shift;
            EXPECT_EQ(f.alpha, f0.alpha) << "shift " << shift;
            EXPECT_EQ(f.a, f0.a) << "shift " << shift;
            EXPECT_EQ(f.b, f0.b) << "shift " << shift;
            EXPECT_EQ(f.iterations, f0.iterations) << "shift " << shift;
            EXPECT_EQ(f.n, std::ldexp(f0.n, shift)) << "shift " << shift;
            if (shift > -1000)
                EXPECT_EQ(f.log_likelihood, std::ldexp(f0.log_likelihood, shift)) << "shift " << shift;
            else  // a subnormal log-likelihood has few significant bits
                EXPECT_TRUE(near_rel(f.log_likelihood, std::ldexp(f0.log_likelihood, shift), 1e-2)) << f.log_likelihood;
        }
        // Weights of any other scale: the same estimate up to rounding.
        std::vector<es_btyd_row> rows = base;
        for (es_btyd_row &r : rows) r.weight = 1e-310 * 3;
        const es_btyd_fit f = fit_ok(m, rows);
        EXPECT_TRUE(near_rel(f.r, f0.r, 1e-6) && near_rel(f.alpha, f0.alpha, 1e-6) && near_rel(f.a, f0.a, 1e-6) &&
                    near_rel(f.b, f0.b, 1e-6));
    }
    // The fit: one customer of weight 5e-324 fits like one of weight 1 (not identified:
    // converged = 0, with a reason).
    es_btyd_fit one, tiny;
    char err[512];
    const es_btyd_row r1 = {1, 1, 2, 1}, rt = {1, 1, 2, 5e-324};
    ASSERT_EQ(es_btyd_fit_model(MBG, &r1, 1, 0.0, &one, err, sizeof err), ES_OK) << err;
    ASSERT_EQ(es_btyd_fit_model(MBG, &rt, 1, 0.0, &tiny, err, sizeof err), ES_OK) << err;
    EXPECT_EQ(tiny.r, one.r);
    EXPECT_EQ(tiny.b, one.b);
    EXPECT_EQ(tiny.converged, one.converged);
    EXPECT_EQ(tiny.n, 5e-324);
    // A total weight beyond the double range: ES_OUT_OF_RANGE (22003), not a fit with n = inf.
    const std::vector<es_btyd_row> huge = {{1, 1, 2, 1e308}, {2, 3, 4, 1e308}, {0, 0, 4, 1e308}};
    EXPECT_EQ(es_btyd_fit_model(MBG, huge.data(), huge.size(), 0.0, &one, err, sizeof err), ES_OUT_OF_RANGE);
    EXPECT_NE(std::string(err).find("total weight"), std::string::npos) << err;
    // ... while the same rows of weight 1e307 sum to 3e307 and fit.
    std::vector<es_btyd_row> big = huge;
    for (es_btyd_row &r : big) r.weight = 1e307;
    ASSERT_EQ(es_btyd_fit_model(MBG, big.data(), big.size(), 0.0, &one, err, sizeof err), ES_OK) << err;
    EXPECT_EQ(one.n, (1e307 + 1e307) + 1e307);
}

TEST(BtydFit, UnidentifiedDataReportNonConvergence) {
    es_btyd_fit f;
    char err[512];
    // No repeat events at all: the likelihood grows as r -> 0.
    const std::vector<es_btyd_row> zeros = {{0, 0, 10, 5}, {0, 0, 20, 3}};
    for (int m : {MBG, BG}) {
        ASSERT_EQ(es_btyd_fit_model(m, zeros.data(), zeros.size(), 0.0, &f, err, sizeof err), ES_OK);
        EXPECT_EQ(f.converged, 0);
        EXPECT_NE(std::string(err).find("all x = 0"), std::string::npos) << err;
        EXPECT_TRUE(std::isfinite(f.r) && std::isfinite(f.alpha) && std::isfinite(f.a) && std::isfinite(f.b));
        EXPECT_TRUE(std::isfinite(f.log_likelihood));
        EXPECT_EQ(f.n, 8.0);
    }
    // One customer: no heterogeneity to estimate, parameters run off.
    const std::vector<es_btyd_row> one = {{3, 5, 10, 1}};
    for (int m : {MBG, BG}) {
        ASSERT_EQ(es_btyd_fit_model(m, one.data(), one.size(), 0.0, &f, err, sizeof err), ES_OK);
        EXPECT_EQ(f.converged, 0);
        EXPECT_NE(std::string(err).find("ran off"), std::string::npos) << err;
        EXPECT_TRUE(std::isfinite(f.log_likelihood));
    }
}

// ---------------------------------------------------------------- standard errors and the penalty

TEST(BtydFit, StandardErrorsMatchAFiniteDifferenceHessian) {
    // The kernel differentiates its analytic gradient in the log-parameters; here: second
    // differences of es_btyd_log_likelihood_sum in (r, alpha, a, b) themselves, at the estimate.
    REQUIRE_CDNOW(rows);
    for (int m : {BG, MBG}) {
        const es_btyd_fit f = fit_ok(m, rows);
        ASSERT_EQ(f.has_standard_errors, 1) << "model " << m;
        const std::vector<double> se = testsupport::fd_standard_errors(
            [&](const std::vector<double> &t) { return ll_sum(m, rows, {t[0], t[1], t[2], t[3]}); },
            {f.r, f.alpha, f.a, f.b}, 5e-3);
        EXPECT_TRUE(near_rel(f.se_r, se[0], 1e-6)) << "model " << m;
        EXPECT_TRUE(near_rel(f.se_alpha, se[1], 1e-6)) << "model " << m;
        EXPECT_TRUE(near_rel(f.se_a, se[2], 1e-6)) << "model " << m;
        EXPECT_TRUE(near_rel(f.se_b, se[3], 1e-6)) << "model " << m;
    }
}

TEST(BtydFit, RecoversSimulatedMbgNbdWithinStandardErrors) {
    // 20,000 customers in days (T from 100 to 300 days), from known MBG/NBD parameters: each
    // estimate within 4 of its standard errors of the truth, and the standard errors a few
    // percent of the values (so that the first check is not vacuous).
    const Params truth = {0.5, 40.0, 0.9, 2.0};
    const std::vector<es_btyd_row> rows = simulate(MBG, truth, 20000, 21, 100, 300);
    const es_btyd_fit f = fit_ok(MBG, rows);
    ASSERT_EQ(f.has_standard_errors, 1);
    EXPECT_LT(std::fabs(f.r - truth.r), 4 * f.se_r) << f.r << " +- " << f.se_r;
    EXPECT_LT(std::fabs(f.alpha - truth.alpha), 4 * f.se_alpha) << f.alpha << " +- " << f.se_alpha;
    EXPECT_LT(std::fabs(f.a - truth.a), 4 * f.se_a) << f.a << " +- " << f.se_a;
    EXPECT_LT(std::fabs(f.b - truth.b), 4 * f.se_b) << f.b << " +- " << f.se_b;
    EXPECT_TRUE(near_rel(f.r, truth.r, 0.2));
    EXPECT_TRUE(near_rel(f.alpha, truth.alpha, 0.15));
    EXPECT_TRUE(near_rel(f.a, truth.a, 0.2));
    EXPECT_TRUE(near_rel(f.b, truth.b, 0.4));
    EXPECT_LT(f.se_r, 0.1 * f.r);
    EXPECT_LT(f.se_alpha, 0.1 * f.alpha);
    EXPECT_LT(f.se_a, 0.1 * f.a);
    EXPECT_LT(f.se_b, 0.2 * f.b);
    EXPECT_GE(f.log_likelihood, ll_sum(MBG, rows, truth));
}

TEST(BtydFit, PenaltyKeepsUnidentifiedParametersFinite) {
    // 500 customers who engage as Poisson processes (lambda ~ Gamma(2, rate 20) per day) over
    // 100 to 300 days and never drop out: the dropout probability p = a / (a + b) has its
    // maximum at 0, so a runs off to 0 (and b grows).  A penalizer of 0.01 holds them.
    std::mt19937_64 g(5);
    std::gamma_distribution<double> lambda_d(2.0, 1.0 / 20.0);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    std::vector<es_btyd_row> rows;
    for (int i = 0; i < 500; ++i) {
        const double lambda = lambda_d(g), T = 100 + 200 * unif(g);
        std::exponential_distribution<double> gap(lambda);
        double t = 0, x = 0, tx = 0;
        for (t += gap(g); t <= T; t += gap(g)) {
            x += 1;
            tx = t;
        }
        rows.push_back({x, tx, T, 1.0});
    }
    const double pen = 0.01;
    for (int m : {MBG, BG}) {
        const std::string mname = m == MBG ? "MBG/NBD" : "BG/NBD";
        es_btyd_fit f0{};
        char err[512] = "";
        ASSERT_EQ(es_btyd_fit_model(m, rows.data(), rows.size(), 0.0, &f0, err, sizeof err), ES_OK) << err;
        const std::string message = err;
        EXPECT_EQ(f0.converged, 0) << mname;
        EXPECT_EQ(message.rfind(mname + " fit did not converge: parameter a = ", 0), 0u) << message;
        EXPECT_NE(message.find("ran off towards 0"), std::string::npos) << message;
        EXPECT_EQ(message.find("did not converge", 20), std::string::npos) << "said twice: " << message;
        EXPECT_EQ(f0.has_standard_errors, 0);
        EXPECT_EQ(f0.se_a, 0.0);

        es_btyd_fit f{};
        ASSERT_EQ(es_btyd_fit_model(m, rows.data(), rows.size(), pen, &f, err, sizeof err), ES_OK) << err;
        EXPECT_EQ(f.converged, 1) << mname << ": " << err;
        EXPECT_STREQ(err, "");
        for (double v : {f.r, f.alpha, f.a, f.b}) EXPECT_TRUE(v > 1e-3 && v < 1e3) << mname << " " << v;
        ASSERT_EQ(f.has_standard_errors, 1) << mname;
        // The reported log-likelihood has no penalty in it, and is below the unpenalised one.
        EXPECT_NEAR(f.log_likelihood, ll_sum(m, rows, {f.r, f.alpha, f.a, f.b}), 1e-9 * std::fabs(f.log_likelihood));
        EXPECT_LT(f.log_likelihood, f0.log_likelihood);
        // The estimate maximises (1/N) sum(ll) - pen sum(ln(theta)^2): a zero derivative in each
        // log-parameter, by central differences of the unpenalised sum.
        const double th[4] = {std::log(f.r), std::log(f.alpha), std::log(f.a), std::log(f.b)};
        auto objective = [&](const double *t) {
            return ll_sum(m, rows, {std::exp(t[0]), std::exp(t[1]), std::exp(t[2]), std::exp(t[3])}) / f.n -
                   pen * (t[0] * t[0] + t[1] * t[1] + t[2] * t[2] + t[3] * t[3]);
        };
        for (int i = 0; i < 4; ++i) {
            const double h = 1e-5;
            double tp[4], tm[4];
            std::copy(th, th + 4, tp);
            std::copy(th, th + 4, tm);
            tp[i] += h;
            tm[i] -= h;
            EXPECT_NEAR((objective(tp) - objective(tm)) / (2 * h), 0.0, 1e-6) << mname << " parameter " << i;
        }
        // Standard errors from the penalised total N (mean ll - penalty), in the parameters.
        const std::vector<double> se = testsupport::fd_standard_errors(
            [&](const std::vector<double> &t) {
                double s = 0;
                for (double v : t) s += std::log(v) * std::log(v);
                return ll_sum(m, rows, {t[0], t[1], t[2], t[3]}) - f.n * pen * s;
            },
            {f.r, f.alpha, f.a, f.b}, 5e-3);
        EXPECT_TRUE(near_rel(f.se_r, se[0], 1e-6)) << mname;
        EXPECT_TRUE(near_rel(f.se_alpha, se[1], 1e-6)) << mname;
        EXPECT_TRUE(near_rel(f.se_a, se[2], 1e-6)) << mname;
        EXPECT_TRUE(near_rel(f.se_b, se[3], 1e-6)) << mname;
    }
}

TEST(BtydFit, PenalizerIsValidated) {
    es_btyd_fit f;
    char err[256];
    const std::vector<es_btyd_row> ok = {{1, 2, 3, 1}, {0, 0, 3, 1}};
    for (double pen : {-1e-9, double(NAN), double(INFINITY), -double(INFINITY)}) {
        EXPECT_EQ(es_btyd_fit_model(MBG, ok.data(), ok.size(), pen, &f, err, sizeof err), ES_INVALID_PARAMETER);
        EXPECT_NE(std::string(err).find("penalizer = "), std::string::npos) << err;
    }
    EXPECT_EQ(es_btyd_fit_model(MBG, ok.data(), ok.size(), 0.5, &f, err, sizeof err), ES_OK) << err;
}

}  // namespace

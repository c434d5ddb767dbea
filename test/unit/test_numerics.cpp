// Unit tests of the BTYD kernel's internal numerics (special_functions.h) and optimiser (bfgs.h),
// on their own; the models built on them are tested through the C API in test_btyd_kernel.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "bfgs.h"
#include "scoring_kernel.h" /* enum es_status */
#include "special_functions.h"

namespace {

#define EXPECT_REL(actual, expected, tol) EXPECT_NEAR((actual), (expected), (tol) * std::fabs(expected))

TEST(SpecialFunctions, Log1pRatio) {
    // ln(3010 / 3009) (50-digit reference): ln(3010) - ln(3009) would lose ~4 digits.
    EXPECT_REL(es::log1p_ratio(1, 3009), 3.32281112876190335356483e-4, 1e-15);
    // h / d overflows: ln(1e300 / 1e-300) = 600 ln 10.
    EXPECT_REL(es::log1p_ratio(1e300, 1e-300), 1381.551055796427410410795, 1e-15);
    EXPECT_EQ(es::log1p_ratio(0, 5), 0.0);
}

TEST(SpecialFunctions, LogAddExp) {
    const double inf = std::numeric_limits<double>::infinity();
    EXPECT_EQ(es::log_add_exp(-inf, -inf), -inf);
    EXPECT_EQ(es::log_add_exp(0, -inf), 0.0);
    EXPECT_EQ(es::log_add_exp(-inf, 3), 3.0);
    EXPECT_REL(es::log_add_exp(1000, 1000), 1000 + std::log(2.0), 1e-15);  // exp(1000) overflows
    EXPECT_REL(es::log_add_exp(1, 2), std::log(std::exp(1.0) + std::exp(2.0)), 1e-15);
}

TEST(SpecialFunctions, LogGammaDifferences) {
    EXPECT_EQ(es::lgamma_ratio(3.5, 2), std::lgamma(3.5) - std::lgamma(5.5));  // small z: the plain difference
    // Large z, where lgamma(z) - lgamma(z + a) cancels (50-digit references).
    EXPECT_REL(es::lgamma_ratio(1e10, 0.5), -11.51292546495772842008996, 1e-14);
    EXPECT_REL(es::lnbeta(0.5, 1e15), -16.69702325453064241806322, 1e-14);
    EXPECT_REL(es::lnbeta(2, 3), std::log(1.0 / 12), 1e-15);  // B(2, 3) = 1/12
    EXPECT_EQ(es::lnbeta(3, 2), es::lnbeta(2, 3));
}

TEST(SpecialFunctions, DigammaAndHyp2f1) {
    EXPECT_REL(es::digamma(1), -0.57721566490153286061, 1e-15);  // -Euler's gamma
    EXPECT_REL(es::digamma(0.5), -0.57721566490153286061 - 2 * std::log(2.0), 1e-15);
    double v = 0;
    char err[256] = "";
    ASSERT_EQ(es::hyp2f1(1, 1, 2, 0.5, &v, err, sizeof err), ES_OK) << err;  // -ln(1 - z) / z
    EXPECT_REL(v, 2 * std::log(2.0), 1e-14);
    EXPECT_EQ(es::hyp2f1(1, 1, 0, 0.5, &v, err, sizeof err), ES_INVALID_PARAMETER);  // c = 0
    EXPECT_NE(std::string(err).find("c = 0"), std::string::npos) << err;
}

// sum_i w_i (th_i - m_i)^2: its minimum is m.
class Quadratic final : public es::Objective {
public:
    double eval(const double th[4], double grad[4]) const override {
        double f = 0;
        for (int i = 0; i < 4; ++i) {
            const double d = th[i] - kMin[i];
            f += kWeight[i] * d * d;
            grad[i] = 2 * kWeight[i] * d;
        }
        return f;
    }
    static constexpr double kMin[4] = {1, -2, 3, 0.5};
    static constexpr double kWeight[4] = {1, 10, 100, 1000};  // badly scaled on purpose
};

// The extended Rosenbrock function of two pairs: a curved valley, minimum 0 at (1, 1, 1, 1).
class Rosenbrock final : public es::Objective {
public:
    double eval(const double th[4], double grad[4]) const override {
        double f = 0;
        for (int i = 0; i < 4; i += 2) {
            const double a = th[i + 1] - th[i] * th[i], b = 1 - th[i];
            f += 100 * a * a + b * b;
            grad[i] = -400 * th[i] * a - 2 * b;
            grad[i + 1] = 200 * a;
        }
        return f;
    }
};

// Decreases without bound, at a constant slope, as th[0] grows (like a likelihood whose maximum
// lies at a parameter's infinity); +inf outside the search box, as objectives must be.
class Unbounded final : public es::Objective {
public:
    double eval(const double th[4], double grad[4]) const override {
        for (int i = 0; i < 4; ++i)
            if (!(std::fabs(th[i]) <= es::kSearchBound)) return std::numeric_limits<double>::infinity();
        double f = -th[0];
        grad[0] = -1;
        for (int i = 1; i < 4; ++i) {
            f += th[i] * th[i];
            grad[i] = 2 * th[i];
        }
        return f;
    }
};

es::Point start(const es::Objective &objective, double a, double b, double c, double d) {
    es::Point x{{a, b, c, d}, 0, {0, 0, 0, 0}};
    x.f = objective.eval(x.th, x.g);
    return x;
}

TEST(Bfgs, FindsTheMinimumOfABadlyScaledQuadratic) {
    const Quadratic q;
    es::Point x = start(q, 0, 0, 0, 0);
    const int iterations = es::bfgs(q, &x, 500);
    EXPECT_LT(iterations, 500);
    EXPECT_LE(es::norm_inf4(x.g), es::kGradTol);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(x.th[i], Quadratic::kMin[i], 1e-9) << i;
}

TEST(Bfgs, FollowsACurvedValley) {
    const Rosenbrock rb;
    es::Point x = start(rb, -1.2, 1, -1.2, 1);
    EXPECT_LT(es::bfgs(rb, &x, 500), 500);
    EXPECT_LE(es::norm_inf4(x.g), es::kGradTol);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(x.th[i], 1.0, 1e-8) << i;
}

TEST(Bfgs, StopsAtTheEdgeOfTheSearchBox) {
    const Unbounded u;
    es::Point x = start(u, 0, 1, 1, 1);
    EXPECT_LT(es::bfgs(u, &x, 500), 500);
    EXPECT_GT(x.th[0], es::kSearchBound - 5);  // ran off towards infinity, and stopped there
    EXPECT_LE(x.th[0], es::kSearchBound);
    EXPECT_TRUE(std::isfinite(x.f));
}

TEST(Bfgs, NelderMeadOnlyImproves) {
    const Rosenbrock rb;
    es::Point x = start(rb, -1.2, 1, -1.2, 1);
    const double f0 = x.f;
    es::nelder_mead(rb, &x, 2000);
    EXPECT_LT(x.f, f0);
    double g[4];
    EXPECT_EQ(x.f, rb.eval(x.th, g));  // value and point agree

    es::Point best = start(rb, 1, 1, 1, 1);  // the minimum: nothing better to find
    es::nelder_mead(rb, &best, 2000);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(best.th[i], 1.0);
    EXPECT_EQ(best.f, 0.0);
}

}  // namespace

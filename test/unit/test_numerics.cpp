// Unit tests of the kernels' internal numerics (special_functions.h), optimiser (bfgs.h) and fit
// support (mle.h), on their own; the models built on them are tested through the C API in
// test_btyd_kernel.cpp and test_gammagamma_kernel.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "bfgs.h"
#include "mle.h"
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

TEST(SpecialFunctions, DigammaDifference) {
    // psi(z + 1) - psi(z) = 1 / z, psi(z + 2) - psi(z) = 1/z + 1/(z + 1): exact references, also where
    // the two digammas agree to 12 digits and their plain difference keeps ~3.
    for (double z : {1e-6, 0.3, 1.0, 9.5, 12.5, 1e3, 1e10, 1e12}) {
        EXPECT_REL(es::digamma_diff(z, 1.0), 1.0 / z, 1e-14) << z;
        EXPECT_REL(es::digamma_diff(z, 2.0), 1.0 / z + 1.0 / (z + 1), 1e-14) << z;
    }
    EXPECT_REL(es::digamma_diff(0.5, 0.5), 2 * std::log(2.0), 1e-14);  // psi(1) - psi(1/2)
    for (double z : {0.2, 3.0, 25.0})
        for (double a : {1e-3, 0.7, 40.0})
            EXPECT_NEAR(es::digamma_diff(z, a), es::digamma(z + a) - es::digamma(z), 1e-13) << z << " " << a;
}

// A quadratic of three coordinates, 1/2 (th - c)' A (th - c); the fourth coordinate of a point must
// reach it unchanged.
class Quadratic3 final : public es::Objective {
public:
    int dim() const override { return 3; }
    double eval(const double th[4], double grad[4]) const override {
        if (th[3] != kFourth) ++foreign;
        double d[3], f = 0;
        for (int i = 0; i < 3; ++i) d[i] = th[i] - kMin[i];
        for (int i = 0; i < 3; ++i) {
            grad[i] = 0;
            for (int j = 0; j < 3; ++j) grad[i] += kA[i][j] * d[j];
            f += 0.5 * d[i] * grad[i];
        }
        return f;
    }
    static constexpr double kMin[3] = {0.5, -1.0, 2.0};
    static constexpr double kA[3][3] = {{4, 1, 0.5}, {1, 3, -1}, {0.5, -1, 2}};
    static constexpr double kFourth = 123.0;
    mutable int foreign = 0;
};

TEST(Bfgs, ThreeCoordinates) {
    const Quadratic3 q;
    es::Point x{{0, 0, 0, Quadratic3::kFourth}, 0, {0, 0, 0, 0}};
    x.f = q.eval(x.th, x.g);
    EXPECT_LT(es::bfgs(q, &x, 500), 500);
    EXPECT_LE(es::norm_inf(x.g, 3), es::kGradTol);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(x.th[i], Quadratic3::kMin[i], 1e-9) << i;
    es::Point y{{3, 3, 3, Quadratic3::kFourth}, 0, {0, 0, 0, 0}};
    y.f = q.eval(y.th, y.g);
    const double f0 = y.f;
    es::nelder_mead(q, &y, 2000);
    EXPECT_LT(y.f, 1e-6 * f0);
    EXPECT_EQ(y.th[3], Quadratic3::kFourth);
    EXPECT_EQ(q.foreign, 0);  // the unused coordinate was never changed
}

// f = e^(th0) th1^2 + sin(th1 th2) + th0 th2^3 (and a constant fourth coordinate): a known Hessian.
class Smooth final : public es::Objective {
public:
    int dim() const override { return 3; }
    double eval(const double t[4], double g[4]) const override {
        g[0] = std::exp(t[0]) * t[1] * t[1] + t[2] * t[2] * t[2];
        g[1] = 2 * std::exp(t[0]) * t[1] + t[2] * std::cos(t[1] * t[2]);
        g[2] = t[1] * std::cos(t[1] * t[2]) + 3 * t[0] * t[2] * t[2];
        return std::exp(t[0]) * t[1] * t[1] + std::sin(t[1] * t[2]) + t[0] * t[2] * t[2] * t[2];
    }
};

TEST(Mle, HessianByExtrapolatedDifferences) {
    const Smooth s;
    const double t[4] = {0.3, -1.2, 0.8, 0};
    double H[4][4];
    ASSERT_TRUE(es::hessian(s, t, H));
    const double e = std::exp(t[0]), c = std::cos(t[1] * t[2]), sn = std::sin(t[1] * t[2]);
    const double want[3][3] = {{e * t[1] * t[1], 2 * e * t[1], 3 * t[2] * t[2]},
                               {2 * e * t[1], 2 * e - t[2] * t[2] * sn, c - t[1] * t[2] * sn},
                               {3 * t[2] * t[2], c - t[1] * t[2] * sn, -t[1] * t[1] * sn + 6 * t[0] * t[2]}};
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) EXPECT_NEAR(H[i][j], want[i][j], 1e-10 * (1 + std::fabs(want[i][j]))) << i << j;
}

TEST(Mle, StandardErrorsOfAQuadratic) {
    // f = 1/2 (th - c)' A (th - c) per unit weight: Cov(th) = A^-1 / N, se(theta_i) = e^(c_i) sd(th_i).
    const Quadratic3 q;
    const double c[4] = {Quadratic3::kMin[0], Quadratic3::kMin[1], Quadratic3::kMin[2], Quadratic3::kFourth};
    // A^-1 diagonal by cofactors.
    const auto &A = Quadratic3::kA;
    const double det = A[0][0] * (A[1][1] * A[2][2] - A[1][2] * A[2][1]) -
                       A[0][1] * (A[1][0] * A[2][2] - A[1][2] * A[2][0]) +
                       A[0][2] * (A[1][0] * A[2][1] - A[1][1] * A[2][0]);
    const double inv_diag[3] = {(A[1][1] * A[2][2] - A[1][2] * A[2][1]) / det,
                                (A[0][0] * A[2][2] - A[0][2] * A[2][0]) / det,
                                (A[0][0] * A[1][1] - A[0][1] * A[1][0]) / det};
    double se[4];
    ASSERT_TRUE(es::standard_errors(q, c, 250.0, se));
    for (int i = 0; i < 3; ++i) EXPECT_REL(se[i], std::exp(c[i]) * std::sqrt(inv_diag[i] / 250.0), 1e-10) << i;
    EXPECT_EQ(se[3], 0.0);
}

// A saddle: th0^2 - th1^2.
class Saddle final : public es::Objective {
public:
    int dim() const override { return 2; }
    double eval(const double t[4], double g[4]) const override {
        g[0] = 2 * t[0];
        g[1] = -2 * t[1];
        return t[0] * t[0] - t[1] * t[1];
    }
};

TEST(Mle, NoStandardErrorsWithoutPositiveDefiniteInformation) {
    const Saddle s;
    const double t[4] = {0, 0, 0, 0};
    double se[4] = {1, 1, 1, 1};
    EXPECT_FALSE(es::standard_errors(s, t, 100.0, se));
    for (double v : se) EXPECT_EQ(v, 0.0);
}

TEST(Mle, PenaltyRanOffAndPenalizer) {
    const double th[3] = {1.0, -2.0, 0.5};
    double g[3] = {0.1, 0.2, 0.3};
    EXPECT_EQ(es::add_penalty(0.0, th, 3, 7.0, g), 7.0);  // no penalty: nothing touched
    EXPECT_EQ(g[0], 0.1);
    EXPECT_DOUBLE_EQ(es::add_penalty(0.5, th, 3, 7.0, g), 7.0 + 0.5 * 5.25);
    EXPECT_DOUBLE_EQ(g[1], 0.2 + 2 * 0.5 * -2.0);
    const double far[3] = {21.0, -25.0, 3.0}, ref[3] = {0.0, 0.0, 3.0};
    EXPECT_EQ(es::ran_off(far, ref, 3), 1);  // the furthest
    EXPECT_EQ(es::ran_off(th, ref, 3), -1);
    EXPECT_EQ(es::validate_penalizer(0.0, nullptr, 0), ES_OK);
    EXPECT_EQ(es::validate_penalizer(-1.0, nullptr, 0), ES_INVALID_PARAMETER);
    EXPECT_EQ(es::validate_penalizer(std::numeric_limits<double>::quiet_NaN(), nullptr, 0), ES_INVALID_PARAMETER);
    EXPECT_EQ(es::weight_shift(1.0), 0);
    EXPECT_EQ(es::weight_shift(3.0), -1);
    EXPECT_EQ(es::weight_shift(0x1p-1074), 1074);
}

}  // namespace

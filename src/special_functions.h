// special_functions.h: the numerics under the BTYD models (log-gamma and
// log-beta differences, digamma, the Gauss hypergeometric function 2F1 and
// log-space helpers), pure C++17.  Internal: C++ only, never included by the
// PostgreSQL glue; the public entry points are es_hyp2f1 and es_btyd_digamma
// of btyd_kernel.h.
#ifndef ENGAGEMENT_SPECIAL_FUNCTIONS_H
#define ENGAGEMENT_SPECIAL_FUNCTIONS_H

#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>

namespace es {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kMaxLog = 709.0;  // exp() of more overflows

// psi(x) = d/dx ln Gamma(x) for x > 0, relative error ~1e-15.
double digamma(double x);

// psi(z + a) - psi(z) for z, a > 0, accurate also when a << z (where the two
// digammas nearly cancel): absolute error ~1e-16 of a / z, not of psi(z).
double digamma_diff(double z, double a);

// ln(Gamma(z) / Gamma(z + a)) for z, a > 0, accurate also when z is large and
// the two lgammas nearly cancel.
double lgamma_ratio(double z, double a);

// ln B(p, q) for p, q > 0, accurate when one argument is huge.
double lnbeta(double p, double q);

// 2F1(a, b; c; z) as documented for es_hyp2f1 (btyd_kernel.h): ES_OK with the
// value in *out, else an es_status with a message in err.
int hyp2f1(double a, double b, double c, double z, double *out, char *err, size_t errlen);

// Inline: both sit in the inner loop of the likelihood.

// log(exp(p) + exp(q)), exact for -inf arguments.
inline double log_add_exp(double p, double q) {
    if (p < q) std::swap(p, q);
    if (q == -kInf) return p;
    return p + std::log1p(std::exp(q - p));
}

// ln(1 + h / d) for h >= 0, d > 0, without overflowing h / d.  As
// ln((d + h) / d) it is accurate when h << d, where ln(d + h) - ln(d) cancels.
inline double log1p_ratio(double h, double d) {
    const double u = h / d;
    if (std::isfinite(u)) return std::log1p(u);
    return std::log(h) - std::log(d) + std::log1p(d / h);
}

}  // namespace es

#endif  // ENGAGEMENT_SPECIAL_FUNCTIONS_H

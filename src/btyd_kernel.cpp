// btyd_kernel.cpp: MBG/NBD and BG/NBD (shared/SCORING_MODEL.md "Predictive
// metrics" and "Fitting"), pure C++17: log-likelihood, P(alive), conditional
// expectations, 2F1, digamma and the maximum-likelihood fit.
#include "btyd_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

namespace es {
namespace btyd {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kMaxLog = 709.0;  // exp() of more overflows

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err != nullptr && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

void clear_error(char *err, size_t errlen) {
    if (err != nullptr && errlen > 0) err[0] = '\0';
}

// ---------------------------------------------------------------- special functions

// psi(x), x > 0: recurrence up to x >= 10, then the asymptotic series (error < 1e-16).
double digamma(double x) {
    double acc = 0.0;
    while (x < 10.0) {
        acc -= 1.0 / x;
        x += 1.0;
    }
    const double f = 1.0 / (x * x);
    const double series =
        f * (-1.0 / 12 +
             f * (1.0 / 120 +
                  f * (-1.0 / 252 + f * (1.0 / 240 + f * (-1.0 / 132 + f * (691.0 / 32760 + f * (-1.0 / 12)))))));
    return acc + std::log(x) - 0.5 / x + series;
}

// ln|Gamma(x)| with the sign of Gamma(x); sign 0 at the poles x = 0, -1, -2, ...
// (std::lgamma's own sign output, signgam, is not portable.)
double lgamma_signed(double x, int *sign) {
    if (x > 0) {
        *sign = 1;
        return std::lgamma(x);
    }
    if (x == std::floor(x)) {
        *sign = 0;
        return kInf;
    }
    // Gamma is negative on (-1, 0), (-3, -2), ...: where floor(x) is odd.
    *sign = std::fmod(std::floor(x), 2.0) != 0.0 ? -1 : 1;
    return std::lgamma(x);
}

// ln(Gamma(z) / Gamma(z + a)) for z, a > 0, accurate also when z is large and
// the two lgammas nearly cancel (Stirling series difference for z >= 30).
double lgamma_ratio(double z, double a) {
    if (z < 30.0) return std::lgamma(z) - std::lgamma(z + a);
    auto tail = [](double v) {  // lnGamma(v) - [(v - 1/2) ln v - v + ln(2 pi)/2]
        const double f = 1.0 / (v * v);
        return (1.0 / 12 + f * (-1.0 / 360 + f * (1.0 / 1260 + f * (-1.0 / 1680)))) / v;
    };
    // (z - 1/2) ln z - (z + a - 1/2) ln(z + a) + a, arranged without cancellation of large terms
    return -(z - 0.5) * std::log1p(a / z) - a * std::log(z + a) + a + (tail(z) - tail(z + a));
}

// ln B(p, q), accurate when one argument is huge: lnGamma(min) + ln(Gamma(max) / Gamma(max + min)).
double lnbeta(double p, double q) {
    const double lo = std::min(p, q), hi = std::max(p, q);
    return std::lgamma(lo) + lgamma_ratio(hi, lo);
}

// log(exp(p) + exp(q)), exact for -inf arguments.
double log_add_exp(double p, double q) {
    if (p < q) std::swap(p, q);
    if (q == -kInf) return p;
    return p + std::log1p(std::exp(q - p));
}

// A number held as mant * exp(lscale), so that series and gamma ratios far
// outside the double range can be combined before the final exp().
struct Scaled {
    double mant = 0.0;
    double lscale = 0.0;
    double relerr = 0.0;  // estimated relative error of the value
};

Scaled scaled_add(const Scaled &p, const Scaled &q) {
    if (p.mant == 0.0) return q;
    if (q.mant == 0.0) return p;
    const double l = std::max(p.lscale, q.lscale);
    Scaled s;
    const double a = p.mant * std::exp(p.lscale - l);
    const double b = q.mant * std::exp(q.lscale - l);
    s.mant = a + b;
    s.lscale = l;
    const double abserr = std::fabs(a) * p.relerr + std::fabs(b) * q.relerr + kEps * (std::fabs(a) + std::fabs(b));
    s.relerr = s.mant == 0.0 ? kInf : abserr / std::fabs(s.mant);
    return s;
}

// Power series sum_k (a)_k (b)_k / ((c)_k k!) z^k, with rescaling so huge
// intermediate terms cannot overflow.  Stops when the remaining tail is
// below 1e-17 of the sum.  relerr reflects cancellation (sum |t| / |sum|).
Scaled hyp_series(double a, double b, double c, double z, long kmax, bool *converged) {
    const double big = 1e250, ibig = 1e-250;
    const double lbig = 250.0 * std::log(10.0);
    double t = 1.0, s = 1.0, sabs = 1.0, ls = 0.0;
    *converged = false;
    long k = 0;
    for (; k < kmax; ++k) {
        const double kk = static_cast<double>(k);
        t *= (a + kk) * (b + kk) / ((c + kk) * (kk + 1.0)) * z;
        if (t == 0.0) {  // terminating (a or b a non-positive integer) or negligible
            *converged = true;
            break;
        }
        s += t;
        sabs += std::fabs(t);
        if (sabs > big) {
            t *= ibig;
            s *= ibig;
            sabs *= ibig;
            ls += lbig;
        }
        if (!std::isfinite(sabs)) break;
        // Past the hump, later ratios are below max(next ratio, |z|) < 1: bound the tail.
        const double k1 = kk + 1.0;
        const double rnext = std::fabs((a + k1) * (b + k1) / ((c + k1) * (k1 + 1.0)) * z);
        const double rho = std::max(rnext, std::fabs(z));
        if (rho < 1.0 && std::fabs(t) * rho / (1.0 - rho) <= 1e-17 * std::fabs(s)) {
            *converged = true;
            break;
        }
    }
    Scaled out;
    out.mant = s;
    out.lscale = ls;
    out.relerr = s == 0.0 ? kInf : 4.0 * kEps * (sabs / std::fabs(s)) * (1.0 + std::sqrt(static_cast<double>(k)));
    return out;
}

// 2F1 near z = 1 by the connection formula (Abramowitz & Stegun 15.3.6),
// valid when d = c - a - b is not an integer:
//   Gamma(c)Gamma(d)/(Gamma(c-a)Gamma(c-b)) 2F1(a, b; 1-d; 1-z)
// + (1-z)^d Gamma(c)Gamma(-d)/(Gamma(a)Gamma(b)) 2F1(c-a, c-b; 1+d; 1-z).
Scaled hyp_connection_regular(double a, double b, double c, double z) {
    const double d = c - a - b;
    const double w = 1.0 - z;  // exact for z in [0.5, 1]
    const long kmax = 2000000;
    Scaled total;
    int sc, s1, s2, s3;
    const double lgc = lgamma_signed(c, &sc);
    {
        const double lgd = lgamma_signed(d, &s1);
        const double lgca = lgamma_signed(c - a, &s2);
        const double lgcb = lgamma_signed(c - b, &s3);
        if (s2 != 0 && s3 != 0) {  // 1/Gamma at a pole is 0
            bool ok;
            Scaled f = hyp_series(a, b, 1.0 - d, w, kmax, &ok);
            if (!ok) f.relerr = kInf;
            f.mant *= sc * s1 * s2 * s3;
            f.lscale += lgc + lgd - lgca - lgcb;
            f.relerr += 8 * kEps * (std::fabs(lgc) + std::fabs(lgd) + std::fabs(lgca) + std::fabs(lgcb));
            total = f;
        }
    }
    {
        const double lgmd = lgamma_signed(-d, &s1);
        const double lga = lgamma_signed(a, &s2);
        const double lgb = lgamma_signed(b, &s3);
        if (s2 != 0 && s3 != 0) {
            bool ok;
            Scaled f = hyp_series(c - a, c - b, 1.0 + d, w, kmax, &ok);
            if (!ok) f.relerr = kInf;
            f.mant *= sc * s1 * s2 * s3;
            const double ld = d * std::log(w);
            f.lscale += lgc + lgmd - lga - lgb + ld;
            f.relerr += 8 * kEps * (std::fabs(lgc) + std::fabs(lgmd) + std::fabs(lga) + std::fabs(lgb) + std::fabs(ld));
            total = scaled_add(total, f);
        }
    }
    return total;
}

// The connection formula, by cubic interpolation in c over four points whose
// d is 1e-4 and 2e-4 away from the nearby integer when d is close to one
// (the two terms are then huge and cancel).
Scaled hyp_connection(double a, double b, double c, double z) {
    const double d = c - a - b;
    const double m = std::round(d);
    const double delta = 1e-4;
    if (std::fabs(d - m) >= delta) return hyp_connection_regular(a, b, c, z);
    const double c0 = c - (d - m);
    const double off[4] = {-2 * delta, -delta, delta, 2 * delta};
    Scaled v[4];
    double lmax = -kInf;
    for (int i = 0; i < 4; ++i) {
        v[i] = hyp_connection_regular(a, b, c0 + off[i], z);
        if (v[i].mant != 0.0) lmax = std::max(lmax, v[i].lscale);
    }
    Scaled out;
    if (lmax == -kInf) return out;
    const double e = c - c0;
    double sum = 0.0, abserr = 0.0;
    for (int i = 0; i < 4; ++i) {
        double li = 1.0;  // Lagrange basis polynomial at e
        for (int j = 0; j < 4; ++j)
            if (j != i) li *= (e - off[j]) / (off[i] - off[j]);
        const double vi = v[i].mant * std::exp(v[i].lscale - lmax);
        sum += li * vi;
        abserr += std::fabs(li * vi) * (v[i].relerr + kEps);
    }
    out.mant = sum;
    out.lscale = lmax;
    // 1e-12: the interpolation error for smooth dependence on c (delta^4 scale).
    out.relerr = sum == 0.0 ? kInf : abserr / std::fabs(sum) + 1e-12;
    return out;
}

bool nonpositive_integer(double v) { return v <= 0.0 && v == std::floor(v); }

// 2F1(a, b; c; z) for 0 <= z < 1: the direct series unless z is close to 1,
// and the other method when the first one's error estimate is poor.
Scaled hyp_unit(double a, double b, double c, double z) {
    bool ok;
    if (nonpositive_integer(a) || nonpositive_integer(b) || z <= 0.9) {
        Scaled s = hyp_series(a, b, c, z, 2000000, &ok);
        if (!ok) s.relerr = kInf;
        if (s.relerr <= 1e-11 || nonpositive_integer(a) || nonpositive_integer(b)) return s;
        Scaled t = hyp_connection(a, b, c, z);
        return t.relerr < s.relerr ? t : s;
    }
    Scaled t = hyp_connection(a, b, c, z);
    if (t.relerr <= 1e-11) return t;
    // A long direct series (slow only very close to 1).
    Scaled s = hyp_series(a, b, c, z, 2000000, &ok);
    if (!ok) s.relerr = kInf;
    return s.relerr < t.relerr ? s : t;
}

// 2F1 for z < 1 (Pfaff transformation for z < 0), scaled.
Scaled hyp_scaled(double a, double b, double c, double z) {
    if (z >= 0.0) return hyp_unit(a, b, c, z);
    // 2F1(a,b;c;z) = (1-z)^-a 2F1(a, c-b; c; w) = (1-z)^-b 2F1(c-a, b; c; w), w = z/(z-1) in (0,1)
    const double w = z / (z - 1.0);
    const double l1z = std::log1p(-z);
    Scaled best;
    best.relerr = kInf;
    for (int form = 0; form < 2; ++form) {
        // Keep a polynomial a polynomial: its non-positive integer parameter must stay.
        if (form == 0 && nonpositive_integer(b) && !nonpositive_integer(a)) continue;
        if (form == 1 && nonpositive_integer(a)) continue;
        Scaled s = form == 0 ? hyp_unit(a, c - b, c, w) : hyp_unit(c - a, b, c, w);
        s.lscale -= (form == 0 ? a : b) * l1z;
        s.relerr += 4 * kEps * std::fabs((form == 0 ? a : b) * l1z);
        if (s.relerr < best.relerr) best = s;
        if (best.relerr <= 1e-11) break;
    }
    return best;
}

int hyp2f1(double a, double b, double c, double z, double *out, char *err, size_t errlen) {
    if (!std::isfinite(a) || !std::isfinite(b) || !std::isfinite(c) || !std::isfinite(z))
        return fail(err, errlen, ES_INVALID_PARAMETER, "hyp2f1: arguments must be finite (a=%g, b=%g, c=%g, z=%g)", a,
                    b, c, z);
    if (nonpositive_integer(c))
        return fail(err, errlen, ES_INVALID_PARAMETER, "hyp2f1: c = %g must not be 0 or a negative integer", c);
    if (z > 1.0)
        return fail(err, errlen, ES_INVALID_PARAMETER, "hyp2f1: z = %g > 1 is outside the real domain (z <= 1)", z);
    if (z == 1.0 && (nonpositive_integer(a) || nonpositive_integer(b))) {
        // Chu-Vandermonde: 2F1(-m, b; c; 1) = (c-b)_m / (c)_m, a finite product
        const double m = nonpositive_integer(a) && (!nonpositive_integer(b) || a > b) ? -a : -b;
        const double other = m == -a ? b : a;
        double v = 1.0;
        for (double k = 0; k < m && v != 0.0; ++k) {
            v *= (c - other + k) / (c + k);
            if (!std::isfinite(v)) return fail(err, errlen, ES_OUT_OF_RANGE, "hyp2f1: result overflows a double");
        }
        *out = v;
        return ES_OK;
    }
    if (z == 1.0) {
        const double d = c - a - b;
        if (!(d > 0.0))
            return fail(err, errlen, ES_OUT_OF_RANGE, "hyp2f1: the series diverges at z = 1 when c - a - b = %g <= 0",
                        d);
        int s0, s1, s2, s3;  // Gauss: Gamma(c)Gamma(c-a-b)/(Gamma(c-a)Gamma(c-b))
        const double l = lgamma_signed(c, &s0) + lgamma_signed(d, &s1);
        const double lca = lgamma_signed(c - a, &s2), lcb = lgamma_signed(c - b, &s3);
        if (s2 == 0 || s3 == 0) {
            *out = 0.0;
            return ES_OK;
        }
        const double lv = l - lca - lcb;
        if (lv > kMaxLog) return fail(err, errlen, ES_OUT_OF_RANGE, "hyp2f1: result overflows a double");
        *out = s0 * s1 * s2 * s3 * std::exp(lv);
        return ES_OK;
    }
    if (z == 0.0) {
        *out = 1.0;
        return ES_OK;
    }
    const Scaled s = hyp_scaled(a, b, c, z);
    if (!(s.relerr <= 1e-10) || !std::isfinite(s.mant))
        return fail(err, errlen, ES_OUT_OF_RANGE,
                    "hyp2f1(%g, %g; %g; %g) cannot be evaluated accurately (estimated relative error %g)", a, b, c, z,
                    s.relerr);
    if (s.mant == 0.0) {
        *out = 0.0;
        return ES_OK;
    }
    const double lv = std::log(std::fabs(s.mant)) + s.lscale;
    if (lv > kMaxLog)
        return fail(err, errlen, ES_OUT_OF_RANGE, "hyp2f1(%g, %g; %g; %g) overflows a double", a, b, c, z);
    *out = (s.mant < 0 ? -1.0 : 1.0) * std::exp(lv);
    return ES_OK;
}

// ---------------------------------------------------------------- validation

bool positive_finite(double v) { return std::isfinite(v) && v > 0.0; }

int validate_model(int model, char *err, size_t errlen) {
    if (model != ES_MODEL_MBGNBD && model != ES_MODEL_BGNBD)
        return fail(err, errlen, ES_INVALID_PARAMETER, "unknown BTYD model %d (0 = MBG/NBD, 1 = BG/NBD)", model);
    return ES_OK;
}

int validate_params(double r, double alpha, double a, double b, char *err, size_t errlen) {
    const struct {
        const char *name;
        double v;
    } ps[] = {{"r", r}, {"alpha", alpha}, {"a", a}, {"b", b}};
    for (const auto &p : ps)
        if (!positive_finite(p.v))
            return fail(err, errlen, ES_INVALID_PARAMETER, "model parameter %s = %g must be finite and > 0", p.name,
                        p.v);
    return ES_OK;
}

// prefix names the row in fit errors ("row 17: "), empty otherwise.
int validate_customer(double x, double t_x, double T, const char *prefix, char *err, size_t errlen) {
    if (!std::isfinite(x) || !std::isfinite(t_x) || !std::isfinite(T))
        return fail(err, errlen, ES_INVALID_PARAMETER, "%sx = %g, t_x = %g, T = %g must be finite", prefix, x, t_x, T);
    if (x < 0.0 || x != std::floor(x) || x > ES_BTYD_MAX_X)
        return fail(err, errlen, ES_INVALID_PARAMETER, "%sx = %g must be an integer in [0, 1e15]", prefix, x);
    if (T < 0.0) return fail(err, errlen, ES_INVALID_PARAMETER, "%sT = %g must be >= 0", prefix, T);
    if (t_x < 0.0 || t_x > T)
        return fail(err, errlen, ES_INVALID_PARAMETER, "%st_x = %g must be in [0, T = %g]", prefix, t_x, T);
    if (x == 0.0 && t_x != 0.0)
        return fail(err, errlen, ES_INVALID_PARAMETER, "%st_x = %g must be 0 when x = 0", prefix, t_x);
    return ES_OK;
}

int validate_all(int model, double x, double t_x, double T, double r, double alpha, double a, double b, char *err,
                 size_t errlen) {
    int rc = validate_model(model, err, errlen);
    if (rc == ES_OK) rc = validate_customer(x, t_x, T, "", err, errlen);
    if (rc == ES_OK) rc = validate_params(r, alpha, a, b, err, errlen);
    return rc;
}

int validate_horizon(double horizon, char *err, size_t errlen) {
    if (!std::isfinite(horizon) || horizon < 0.0)
        return fail(err, errlen, ES_INVALID_PARAMETER, "horizon = %g must be finite and >= 0", horizon);
    return ES_OK;
}

// ---------------------------------------------------------------- per-customer formulas

// s = 1 for MBG/NBD (dropout chance at birth too), 0 for BG/NBD.
int shift_of(int model) { return model == ES_MODEL_MBGNBD ? 1 : 0; }

// Whether the "dropped out after the last event" term exists.
bool has_dropout_term(int s, double x) { return s == 1 || x > 0.0; }

// ln(1 + h / d) for h >= 0, d > 0, without overflowing h / d.
double log1p_ratio(double h, double d) {
    const double u = h / d;
    if (std::isfinite(u)) return std::log1p(u);
    return std::log(h) - std::log(d) + std::log1p(d / h);
}

// The log-likelihood, rearranged so that no large terms cancel (the fit may
// wander to r, alpha, a, b ~ 1e10 when the data carry little heterogeneity):
//   ll = K_x - n l(T) + log(1 + [dropout term] exp(d_x + n (l(T) - l(t_x))))
// with n = r + x, beta = b + x + s, l(t) = ln(1 + t/alpha) and
//   K_x = lnB(a, beta) - lnB(a, b) + lnGamma(r + x) - lnGamma(r) - x ln(alpha),
//   d_x = ln(a / (beta - 1)).
// This is SCORING_MODEL.md's formula: r ln(alpha) - (r+x) ln(alpha+T) = -x ln(alpha) - n l(T).
// Everything that depends on x only, with the derivatives of K_x w.r.t. r, a, b.
struct XTerms {
    double n, beta;
    double bm1;               // beta - 1, exact also when b is tiny (b + (x + s - 1))
    double k;                 // K_x + x ln(alpha) (i.e. without the alpha term)
    double d;                 // d_x
    bool dropout;             // the dropout term exists
    double dk_r, dk_a, dk_b;  // derivatives of k
};

constexpr double kDirectSumMax = 64;  // small counts: exact sums instead of lgamma/digamma differences

XTerms x_terms(int s, double x, double r, double a, double b, bool with_grad) {
    XTerms t;
    t.n = r + x;
    t.beta = b + x + s;
    t.bm1 = b + (x + s - 1.0);
    t.dropout = has_dropout_term(s, x);
    t.d = t.dropout ? std::log(a) - std::log(t.bm1) : 0.0;
    const double m = x + s;  // lnB(a, b + m) - lnB(a, b) = sum_{k<m} ln((b+k) / (a+b+k))
    double lb, lg;
    if (m <= kDirectSumMax) {
        lb = 0.0;
        for (double k = 0; k < m; ++k) lb -= log1p_ratio(a, b + k);
    } else {
        lb = lnbeta(a, t.beta) - lnbeta(a, b);
    }
    if (x <= kDirectSumMax) {  // lnGamma(r + x) - lnGamma(r) = sum_{k<x} ln(r + k)
        lg = 0.0;
        for (double k = 0; k < x; ++k) lg += std::log(r + k);
    } else {
        lg = -lgamma_ratio(r, x);
    }
    t.k = lb + lg;
    t.dk_r = t.dk_a = t.dk_b = 0.0;
    if (with_grad) {
        double ps_n_r = 0.0, ps_ab = 0.0, ps_b = 0.0;  // psi(r+x)-psi(r), psi(a+b)-psi(a+beta), psi(beta)-psi(b)
        if (x <= kDirectSumMax) {
            for (double k = 0; k < x; ++k) ps_n_r += 1.0 / (r + k);
        } else {
            ps_n_r = digamma(t.n) - digamma(r);
        }
        if (m <= kDirectSumMax) {
            for (double k = 0; k < m; ++k) {
                ps_ab -= 1.0 / (a + b + k);
                ps_b += 1.0 / (b + k);
            }
        } else {
            ps_ab = digamma(a + b) - digamma(a + t.beta);
            ps_b = digamma(t.beta) - digamma(b);
        }
        t.dk_r = ps_n_r;
        t.dk_a = ps_ab;
        t.dk_b = ps_ab + ps_b;
    }
    return t;
}

double log_likelihood(int model, double x, double t_x, double T, double r, double alpha, double a, double b) {
    const XTerms t = x_terms(shift_of(model), x, r, a, b, false);
    const double lT = log1p_ratio(T, alpha);
    const double base = t.k - x * std::log(alpha) - t.n * lT;
    if (!t.dropout) return base;
    // d_x + n ln((alpha+T)/(alpha+t_x)), the log-ratio accurate for T close to t_x
    const double dd = t.d + t.n * log1p_ratio(T - t_x, alpha + t_x);
    return base + log_add_exp(0.0, dd);
}

// log of the odds (1 - P_alive) / P_alive; -inf when the customer is surely alive.
double log_death_odds(int model, double x, double t_x, double T, double r, double alpha, double a, double b) {
    const int s = shift_of(model);
    if (!has_dropout_term(s, x)) return -kInf;
    // (r+x) ln((alpha+T)/(alpha+t_x)), accurate when T is close to t_x
    const double lratio = log1p_ratio(T - t_x, alpha + t_x);
    return std::log(a) - std::log(b + (x + s - 1.0)) + (r + x) * lratio;
}

// 1 / (1 + exp(l)) and exp(l) / (1 + exp(l)) without overflow.
double logistic_neg(double l) { return l > 0 ? std::exp(-l) / (1.0 + std::exp(-l)) : 1.0 / (1.0 + std::exp(l)); }
double logistic_pos(double l) { return logistic_neg(-l); }

// ---- E[events in (T, T+t] | alive] = E_p[(1 - (1 + p u)^-n) / p], p ~ Beta(a, beta),
// u = t / (alpha + T), n = r + x, beta = b + x + s, and C = a + beta - 1.
// This equals lifetimes' (C / (a-1)) (1 - (1-z)^n 2F1(n, beta; C; z)), z = u/(1+u),
// since two Pfaff transformations give (1-z)^n 2F1(n, beta; C; z) = 2F1(n, a-1; C; -u)
//   = (1+u)^(1-a) 2F1(C-n, a-1; C; v), v = u/(1+u), and (a-1)_k = (a-1) (a)_(k-1).

// Series method: with H = sum_{k>=1} (C-n)_k (a)_(k-1) / ((C)_k k!) v^k and L = ln(1+u),
//   f = C [ (1 - (1+u)^(1-a)) / (a-1) - H (1+u)^(1-a) ],
// the first term evaluated as L (1 - e^-y)/y, y = (a-1)L: exact at a = 1.
// Returns false when slow (v near 1) or inaccurate (cancellation when C-n << 0).
bool expected_alive_series(double n, double a, double bm1, double u, double *f) {
    const double C = a + bm1;
    const double A = C - n;
    const double L = std::log1p(u);
    const double v = u / (1.0 + u);
    double t = A / C * v, h = t, habs = std::fabs(t);
    const long kmax = 20000;
    long k = 1;
    for (; k < kmax; ++k) {
        const double kk = static_cast<double>(k);
        const double ratio = (A + kk) * (a + kk - 1.0) / ((C + kk) * (kk + 1.0)) * v;
        t *= ratio;
        h += t;
        habs += std::fabs(t);
        if (!(habs < 1e280)) return false;
        const double rnext = std::fabs((A + kk + 1.0) * (a + kk) / ((C + kk + 1.0) * (kk + 2.0)) * v);
        const double rho = std::max(rnext, v);
        if (rho < 1.0 && std::fabs(t) * rho / (1.0 - rho) <= 1e-17 * std::fabs(h)) break;
        if (t == 0.0) break;
    }
    if (k >= kmax) return false;
    const double y = (a - 1.0) * L;
    const double phi = y == 0.0 ? 1.0 : -std::expm1(-y) / y;
    const double e = std::exp(-y);
    const double t1 = L * phi, t2 = h * e;
    const double diff = t1 - t2;
    if (!(diff > 0.0) || !std::isfinite(diff)) return false;
    // Accept a cancellation loss of at most ~3 digits (error < ~1e-12 relative).
    if ((t1 + habs * e) > 1e3 * diff) return false;
    *f = C * diff;
    return std::isfinite(*f);
}

// Gauss-Kronrod 15-point rule on [lo, hi], with the 7-point Gauss error estimate (QUADPACK qk15).
template <class F>
double gk15(const F &fn, double lo, double hi, double *errest) {
    static const double xgk[8] = {0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
                                  0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
                                  0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
                                  0.207784955007898467600689403773245, 0.000000000000000000000000000000000};
    static const double wgk[8] = {0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
                                  0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
                                  0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
                                  0.204432940075298892414161999234649, 0.209482141084727828012999174891714};
    static const double wg[4] = {0.129484966168869693270611432679082, 0.279705391489276667901467771423780,
                                 0.381830050505118944950369775488975, 0.417959183673469387755102040816327};
    const double c = 0.5 * (lo + hi), h = 0.5 * (hi - lo);
    const double fc = fn(c);
    double resk = fc * wgk[7], resg = fc * wg[3];
    for (int j = 0; j < 7; ++j) {
        const double f1 = fn(c - h * xgk[j]), f2 = fn(c + h * xgk[j]);
        resk += wgk[j] * (f1 + f2);
        if (j % 2 == 1) resg += wg[j / 2] * (f1 + f2);
    }
    *errest = std::fabs((resk - resg) * h);
    return resk * h;
}

// Adaptive bisection of one panel until the Kronrod-Gauss difference is below
// tol.  That difference is the error of the 7-point Gauss rule; the 15-point
// Kronrod value used is far more accurate, so tol need not be tiny.  *budget
// counts down the 15-point evaluations left; *err collects the estimates of
// the pieces that were accepted anyway.
template <class F>
double integrate_panel(const F &fn, double lo, double hi, double v, double e, double tol, int depth, long *budget,
                       double *err) {
    if (e <= tol || depth >= 40 || *budget <= 0) {
        if (e > tol) *err += e;
        return v;
    }
    const double mid = 0.5 * (lo + hi);
    double e1, e2;
    const double v1 = gk15(fn, lo, mid, &e1), v2 = gk15(fn, mid, hi, &e2);
    *budget -= 2;
    return integrate_panel(fn, lo, mid, v1, e1, tol, depth + 1, budget, err) +
           integrate_panel(fn, mid, hi, v2, e2, tol, depth + 1, budget, err);
}

// Quadrature method, for any u: the Beta integral
//   f = (1/B(a,beta)) int_0^1 p^(a-2) (1-p)^(beta-1) (1 - (1+pu)^-n) dp
// split at p = 1/2, with p = e^-y on (0, 1/2] and 1-p = e^-z on [1/2, 1).  In y
// and z the integrands are smooth on the scale of the panels chosen below (no
// wider than 1, nor than the local width of the Beta factor), and beyond the
// ends, where they are pure exponentials to 1e-17, the tails are added in
// closed form.  Panels whose integrand is provably below e^-50 of the largest
// value seen are skipped: each factor of the integrand is monotone in y (z), so
// its maximum over a panel is at an end.  Works in logs (lu = ln u) so that
// neither u nor f need be representable on the way.  Returns ln f.
double expected_alive_quadrature_log(double n, double a, double beta, double bm1, double lu) {
    const double ln_n = std::log(n);
    // ln(1 - (1 + p u)^-n) from ln p: increasing in p.
    auto log_g = [&](double lp) {
        const double w = lp + lu;  // ln(p u)
        const double l1pu = w > 35.0 ? w + std::log1p(std::exp(-w)) : std::log1p(std::exp(w));
        const double m = n * l1pu;
        return m > 40.0 ? -std::exp(-m) : std::log(-std::expm1(-m));  // log1p(-e^-m) ~ -e^-m
    };
    // Part A, p = e^-y: p^(a-1) (1-p)^(beta-1) g(p); its three factors, each monotone in y.
    auto a1 = [&](double y) { return (a - 1.0) * -y; };
    auto a2 = [&](double y) { return bm1 * std::log1p(-std::exp(-y)); };
    auto log_a = [&](double y) { return a1(y) + a2(y) + log_g(-y); };
    auto ub_a = [&](double y0, double y1) { return std::max(a1(y0), a1(y1)) + std::max(a2(y0), a2(y1)) + log_g(-y0); };
    // Part B, 1-p = e^-z: p^(a-2) (1-p)^beta g(p).
    auto b1 = [&](double z) { return (a - 2.0) * std::log1p(-std::exp(-z)); };
    auto log_b = [&](double z) { return b1(z) - beta * z + log_g(std::log1p(-std::exp(-z))); };
    auto ub_b = [&](double z0, double z1) {
        return std::max(b1(z0), b1(z1)) - beta * z0 + log_g(std::log1p(-std::exp(-z1)));
    };
    const double ln2 = std::log(2.0);
    // Tails: beyond y_end, n p u < e^-40 and |beta-1| p < e^-40; beyond z_end, |a-2| (1-p) < e^-40.
    const double y_end = std::max({ln2, ln_n + lu, std::log(std::fabs(bm1) + 1.0)}) + 40.0;
    const double z_end = std::max(ln2, std::log(std::fabs(a - 2.0) + 1.0)) + 40.0;
    const double tail_a = ln_n + lu - a * y_end - std::log(a);         // int_{y_end}^inf n u e^(-a y) dy
    const double tail_b = log_g(0.0) - beta * z_end - std::log(beta);  // int_{z_end}^inf g(1) e^(-beta z) dz

    // Reference scale: the largest log-integrand seen on a coarse grid, at the
    // modes of the Beta factors and at the tails; raised below to the largest
    // value on the panel edges (a narrow peak can hide between grid points).
    double ref = std::max(tail_a, tail_b);
    for (double y = ln2; y <= y_end; y += 0.5) ref = std::max(ref, log_a(y));
    for (double z = ln2; z <= z_end; z += 0.5) ref = std::max(ref, log_b(z));
    for (double am : {a - 1.0, a}) {  // modes of p^(am-1) (1-p)^(beta-1): with and without the 1/p
        if (am > 1.0 && bm1 > 0.0) {
            const double pm = (am - 1.0) / (am - 1.0 + bm1);
            if (pm > 0.0 && pm <= 0.5) ref = std::max(ref, log_a(-std::log(pm)));
            if (pm >= 0.5 && pm < 1.0) ref = std::max(ref, log_b(-std::log1p(-pm)));
        }
    }
    if (!std::isfinite(ref)) return ref;

    // Panels: width min(1, 1/sqrt(curvature of the Beta factor)), where that
    // curvature is |coef| e^-y / (1 - e^-y)^2; at most ~20000 per part.
    struct Panel {
        double lo, hi;
    };
    auto make_panels = [&](double lo, double hi, double coef, auto ub, std::vector<Panel> &out) {
        out.clear();
        const double hmin = (hi - lo) / 20000.0;
        double y = lo;
        while (y < hi) {
            const double big = std::min(hi, y + 1.0);
            if (ub(y, big) < ref - 50.0) {  // negligible: skip
                y = big;
                continue;
            }
            const double e = std::exp(-y);
            const double curv = std::fabs(coef) * e / ((1.0 - e) * (1.0 - e));
            const double h = std::max(hmin, std::min(1.0, 1.0 / std::sqrt(1.0 + curv)));
            const double next = std::min(hi, y + h);
            out.push_back({y, next});
            y = next;
        }
    };
    std::vector<Panel> pa, pb;
    for (int pass = 0; pass < 3; ++pass) {
        make_panels(ln2, y_end, bm1, ub_a, pa);
        make_panels(ln2, z_end, a - 2.0, ub_b, pb);
        double top = ref;
        for (const Panel &p : pa) top = std::max({top, log_a(p.lo), log_a(0.5 * (p.lo + p.hi))});
        for (const Panel &p : pb) top = std::max({top, log_b(p.lo), log_b(0.5 * (p.lo + p.hi))});
        if (!(top > ref + 1.0)) break;
        ref = top;  // skip more, and keep exp(log - ref) from overflowing
    }
    auto fa = [&](double y) { return std::exp(log_a(y) - ref); };
    auto fb = [&](double z) { return std::exp(log_b(z) - ref); };
    // First pass gives the scale of the total; then refine the panels whose
    // error estimate exceeds 1e-13 of it.
    std::vector<double> va(pa.size()), ea(pa.size()), vb(pb.size()), eb(pb.size());
    double total = std::exp(tail_a - ref) + std::exp(tail_b - ref);
    for (size_t i = 0; i < pa.size(); ++i) total += va[i] = gk15(fa, pa[i].lo, pa[i].hi, &ea[i]);
    for (size_t i = 0; i < pb.size(); ++i) total += vb[i] = gk15(fb, pb[i].lo, pb[i].hi, &eb[i]);
    const double tol = 1e-13 * total;
    double sum = std::exp(tail_a - ref) + std::exp(tail_b - ref), err = 0.0;
    // At most ~20000 panel refinements (a few ms): only absurd parameters
    // (Beta factors with a, b ~ 1e15 and more) need more; they are reported.
    long budget = 20000;
    for (size_t i = 0; i < pa.size(); ++i)
        sum += integrate_panel(fa, pa[i].lo, pa[i].hi, va[i], ea[i], tol, 0, &budget, &err);
    for (size_t i = 0; i < pb.size(); ++i)
        sum += integrate_panel(fb, pb[i].lo, pb[i].hi, vb[i], eb[i], tol, 0, &budget, &err);
    if (!(err <= 1e-9 * sum)) return std::numeric_limits<double>::quiet_NaN();
    // ln B(a, beta)
    const double lbeta = lnbeta(a, beta);
    return ref + std::log(sum) - lbeta;
}

// ln E[events in the horizon | alive]; -inf for horizon 0.
double log_expected_alive(int model, double horizon, double x, double T, double r, double alpha, double a, double b) {
    if (horizon == 0.0) return -kInf;
    const int s = shift_of(model);
    const double n = r + x, beta = b + x + s, bm1 = b + (x + s - 1.0);
    const double u = horizon / (alpha + T);
    double f;
    if (std::isfinite(u) && u <= 200.0 && expected_alive_series(n, a, bm1, u, &f) && f > 0.0) return std::log(f);
    return expected_alive_quadrature_log(n, a, beta, bm1, std::log(horizon) - std::log(alpha + T));
}

// ---------------------------------------------------------------- fitting

// Total order on doubles for sorting (NaN last), so sorting never hits UB.
int cmp_double(double p, double q) {
    const bool pn = std::isnan(p), qn = std::isnan(q);
    if (pn || qn) return pn == qn ? 0 : (pn ? 1 : -1);
    return p < q ? -1 : (p > q ? 1 : 0);
}

bool row_less(const es_btyd_row &p, const es_btyd_row &q) {
    int c = cmp_double(p.x, q.x);
    if (c == 0) c = cmp_double(p.t_x, q.t_x);
    if (c == 0) c = cmp_double(p.T, q.T);
    if (c == 0) c = cmp_double(p.weight, q.weight);
    return c < 0;
}

bool same_customer(const es_btyd_row &p, const es_btyd_row &q) {
    return cmp_double(p.x, q.x) == 0 && cmp_double(p.t_x, q.t_x) == 0 && cmp_double(p.T, q.T) == 0;
}

size_t collapse(es_btyd_row *rows, size_t n) {
    if (n == 0) return 0;
    std::sort(rows, rows + n, row_less);
    size_t out = 0;
    for (size_t i = 1; i < n; ++i) {
        if (same_customer(rows[out], rows[i]))
            rows[out].weight += rows[i].weight;
        else
            rows[++out] = rows[i];
    }
    return out + 1;
}

constexpr double kBound = 40.0;  // |log-parameter| limit: e^40 ~ 2.4e17

// The collapsed data, indexed so that one evaluation costs one exp and one
// log1p per distinct row: everything depending only on x is computed once
// per distinct x, and ln(alpha + t) once per distinct time value.
struct Problem {
    int s = 0;
    double total_weight = 0.0;
    std::vector<double> times;  // distinct T and t_x values
    struct Group {
        double x, weight;
        size_t begin, end;  // rows of this x
    };
    std::vector<Group> groups;
    struct Row {
        uint32_t iT, itx;
        double w;
    };
    std::vector<Row> rows;
    mutable std::vector<double> lt, it;  // per evaluation: ln(alpha + t), 1 / (alpha + t)
    mutable long evaluations = 0;

    void build(int model, const std::vector<es_btyd_row> &sorted) {
        s = shift_of(model);
        times.clear();
        times.reserve(2 * sorted.size());
        for (const es_btyd_row &r : sorted) {
            times.push_back(r.T);
            times.push_back(r.t_x);
        }
        std::sort(times.begin(), times.end());
        times.erase(std::unique(times.begin(), times.end()), times.end());
        lt.resize(times.size());
        it.resize(times.size());
        auto index = [&](double t) {
            return static_cast<uint32_t>(std::lower_bound(times.begin(), times.end(), t) - times.begin());
        };
        rows.clear();
        rows.reserve(sorted.size());
        groups.clear();
        total_weight = 0.0;
        for (size_t i = 0; i < sorted.size(); ++i) {
            const es_btyd_row &r = sorted[i];
            if (groups.empty() || groups.back().x != r.x) groups.push_back({r.x, 0.0, i, i});
            groups.back().weight += r.weight;
            groups.back().end = i + 1;
            rows.push_back({index(r.T), index(r.t_x), r.weight});
            total_weight += r.weight;
        }
    }

    // Minus the mean log-likelihood and its gradient w.r.t. th = ln(r, alpha, a, b).
    // Per row: ll = K_x - x ln(alpha) - n l(T) + log(e^0 + e^(d_x + n (l(T) - l(t_x))))
    // with l(t) = ln(1 + t/alpha) (see x_terms); w1, w2 are the softmax weights
    // of the two terms (alive at T / dropped out after t_x).
    double eval(const double th[4], double grad[4]) const {
        ++evaluations;
        for (int i = 0; i < 4; ++i)
            if (!(std::fabs(th[i]) <= kBound)) return kInf;
        const double r = std::exp(th[0]), alpha = std::exp(th[1]), a = std::exp(th[2]), b = std::exp(th[3]);
        const double ln_alpha = th[1];
        for (size_t j = 0; j < times.size(); ++j) {
            lt[j] = log1p_ratio(times[j], alpha);
            it[j] = times[j] / (alpha + times[j]);  // -alpha d l(t) / d alpha
        }
        double f = 0.0, gr = 0.0, gal = 0.0, ga = 0.0, gb = 0.0;  // d/dr, alpha d/dalpha, d/da, d/db
        for (const Group &g : groups) {
            const XTerms t = x_terms(s, g.x, r, a, b, true);
            const double n = t.n;
            f += g.weight * (t.k - g.x * ln_alpha);
            gr += g.weight * t.dk_r;
            gal -= g.weight * g.x;
            ga += g.weight * t.dk_a;
            gb += g.weight * t.dk_b;
            // sums over rows of w * (term, l-weighted, q-weighted, w2)
            double sf = 0.0, sl = 0.0, sq = 0.0, sw2 = 0.0;
            if (t.dropout) {
                for (size_t i = g.begin; i < g.end; ++i) {
                    const Row &row = rows[i];
                    const double l1 = -n * lt[row.iT], l2 = t.d - n * lt[row.itx];
                    double lse, w1, w2;
                    if (l1 >= l2) {
                        const double e = std::exp(l2 - l1);
                        lse = l1 + std::log1p(e);
                        w1 = 1.0 / (1.0 + e);
                        w2 = e * w1;
                    } else {
                        const double e = std::exp(l1 - l2);
                        lse = l2 + std::log1p(e);
                        w2 = 1.0 / (1.0 + e);
                        w1 = e * w2;
                    }
                    sf += row.w * lse;
                    sl += row.w * (w1 * lt[row.iT] + w2 * lt[row.itx]);
                    sq += row.w * (w1 * it[row.iT] + w2 * it[row.itx]);
                    sw2 += row.w * w2;
                }
                ga += sw2 / a;
                gb -= sw2 / t.bm1;
            } else {
                for (size_t i = g.begin; i < g.end; ++i) {
                    const Row &row = rows[i];
                    sf -= row.w * n * lt[row.iT];
                    sl += row.w * lt[row.iT];
                    sq += row.w * it[row.iT];
                }
            }
            f += sf;
            gr -= sl;
            gal += n * sq;
        }
        const double inv = 1.0 / total_weight;
        grad[0] = -gr * r * inv;
        grad[1] = -gal * inv;
        grad[2] = -ga * a * inv;
        grad[3] = -gb * b * inv;
        const double v = -f * inv;
        for (int i = 0; i < 4; ++i)
            if (!std::isfinite(grad[i])) return kInf;
        return std::isfinite(v) ? v : kInf;
    }
};

double dot4(const double *p, const double *q) { return p[0] * q[0] + p[1] * q[1] + p[2] * q[2] + p[3] * q[3]; }
double norm_inf4(const double *g) {
    return std::max(std::max(std::fabs(g[0]), std::fabs(g[1])), std::max(std::fabs(g[2]), std::fabs(g[3])));
}

struct Point {
    double th[4];
    double f;
    double g[4];
};

// Strong-Wolfe line search (Nocedal & Wright, algorithms 3.5/3.6, with
// safeguarded quadratic interpolation).  Returns false when no point with
// sufficient decrease was found.
bool line_search(const Problem &pb, const Point &x0, const double p[4], Point *out) {
    const double c1 = 1e-4, c2 = 0.9;
    const double d0 = dot4(x0.g, p);
    if (!(d0 < 0.0)) return false;
    // No step of more than 10 in any log-parameter.
    const double pmax = norm_inf4(p);
    const double amax = pmax > 0 ? std::min(1e10, 10.0 / pmax) : 1.0;
    auto phi = [&](double alpha, Point *pt) {
        for (int i = 0; i < 4; ++i) pt->th[i] = x0.th[i] + alpha * p[i];
        pt->f = pb.eval(pt->th, pt->g);
        return pt->f;
    };
    // Hager & Zhang's approximate Wolfe conditions: near the optimum the decrease
    // of f drowns in rounding, but the directional derivative is still exact.
    const double f_noise = 1e-12 * std::fabs(x0.f);
    auto approx_wolfe = [&](const Point &pt) {
        if (!(pt.f <= x0.f + f_noise)) return false;
        const double da = dot4(pt.g, p);
        return c2 * d0 <= da && da <= (2 * c1 - 1) * d0;
    };
    auto zoom = [&](double lo, Point plo, double hi, Point phi_pt) {
        for (int it = 0; it < 60; ++it) {
            const double dlo = dot4(plo.g, p);
            double a;
            // Quadratic through (lo, f_lo, d_lo) and (hi, f_hi), safeguarded.
            const double span = hi - lo;
            const double denom = 2.0 * (phi_pt.f - plo.f - dlo * span);
            a = (std::isfinite(phi_pt.f) && denom > 0) ? lo - dlo * span * span / denom : lo + 0.5 * span;
            const double lo_s = std::min(lo, hi) + 0.1 * std::fabs(span),
                         hi_s = std::max(lo, hi) - 0.1 * std::fabs(span);
            if (!(a >= lo_s && a <= hi_s)) a = lo + 0.5 * span;
            Point pt;
            const double fa = phi(a, &pt);
            if (approx_wolfe(pt)) {
                *out = pt;
                return true;
            }
            if (!std::isfinite(fa) || fa > x0.f + c1 * a * d0 || fa >= plo.f) {
                hi = a;
                phi_pt = pt;
            } else {
                const double da = dot4(pt.g, p);
                if (std::fabs(da) <= -c2 * d0) {
                    *out = pt;
                    return true;
                }
                if (da * (hi - lo) >= 0) {
                    hi = lo;
                    phi_pt = plo;
                }
                lo = a;
                plo = pt;
            }
            if (std::fabs(hi - lo) <= 1e-16 * std::max(1.0, std::fabs(lo))) break;
        }
        // Fall back to the best sufficient-decrease point seen.
        if (lo > 0 && plo.f < x0.f) {
            *out = plo;
            return true;
        }
        return false;
    };
    double a_prev = 0.0, a = std::min(1.0, amax);
    Point prev = x0;
    for (int it = 0; it < 40; ++it) {
        Point pt;
        const double fa = phi(a, &pt);
        if (approx_wolfe(pt)) {
            *out = pt;
            return true;
        }
        if (!std::isfinite(fa) || fa > x0.f + c1 * a * d0 || (it > 0 && fa >= prev.f)) return zoom(a_prev, prev, a, pt);
        const double da = dot4(pt.g, p);
        if (std::fabs(da) <= -c2 * d0) {
            *out = pt;
            return true;
        }
        if (da >= 0) return zoom(a, pt, a_prev, prev);
        if (a >= amax) {
            *out = pt;
            return true;
        }
        a_prev = a;
        prev = pt;
        a = std::min(2.0 * a, amax);
    }
    *out = prev;
    return prev.f < x0.f;
}

constexpr double kGradTol = 1e-9;  // on the mean log-likelihood w.r.t. log-parameters

// BFGS on the inverse Hessian; restarts from the identity when a step fails.
// Returns the number of iterations.
int bfgs(const Problem &pb, Point *x, int max_iter) {
    double H[4][4];
    auto reset = [&](double scale) {
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) H[i][j] = i == j ? scale : 0.0;
    };
    reset(1.0);
    bool fresh = true;
    int iter = 0;
    int stall = 0;
    for (; iter < max_iter; ++iter) {
        if (norm_inf4(x->g) <= kGradTol) break;
        if (norm_inf4(x->th) > kBound - 5) break;  // running off to the edge: no interior optimum
        double p[4];
        for (int i = 0; i < 4; ++i)
            p[i] = -(H[i][0] * x->g[0] + H[i][1] * x->g[1] + H[i][2] * x->g[2] + H[i][3] * x->g[3]);
        if (!(dot4(p, x->g) < 0)) {
            reset(1.0);
            fresh = true;
            for (int i = 0; i < 4; ++i) p[i] = -x->g[i];
        }
        Point nx;
        if (!line_search(pb, *x, p, &nx)) {
            if (fresh) break;  // even steepest descent failed: at the precision floor
            reset(1.0);
            fresh = true;
            continue;
        }
        double sv[4], yv[4];
        for (int i = 0; i < 4; ++i) {
            sv[i] = nx.th[i] - x->th[i];
            yv[i] = nx.g[i] - x->g[i];
        }
        const double sy = dot4(sv, yv), yy = dot4(yv, yv);
        const double fdrop = x->f - nx.f;
        *x = nx;
        // Several steps with no measurable decrease and a tiny step: numerically done.
        stall = (fdrop <= 4 * kEps * std::fabs(x->f) && norm_inf4(sv) < 1e-12) ? stall + 1 : 0;
        if (stall >= 3) break;
        if (sy > 1e-300 && sy > 1e-12 * std::sqrt(yy * dot4(sv, sv))) {
            if (fresh) reset(sy / yy);  // Nocedal & Wright (6.20) scaling
            fresh = false;
            // H <- (I - rho s y') H (I - rho y s') + rho s s'
            const double rho = 1.0 / sy;
            double Hy[4];
            for (int i = 0; i < 4; ++i) Hy[i] = H[i][0] * yv[0] + H[i][1] * yv[1] + H[i][2] * yv[2] + H[i][3] * yv[3];
            const double yHy = dot4(yv, Hy);
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j)
                    H[i][j] += rho * ((1.0 + rho * yHy) * sv[i] * sv[j] - Hy[i] * sv[j] - sv[i] * Hy[j]);
        }
    }
    return iter;
}

// Nelder-Mead in the log-parameters, to move off a point where BFGS stalled.
void nelder_mead(const Problem &pb, Point *x, int max_eval) {
    double simplex[5][4], fv[5], g[4];
    for (int i = 0; i < 5; ++i) {
        for (int j = 0; j < 4; ++j) simplex[i][j] = x->th[j] + (i == j + 1 ? 0.1 : 0.0);
        fv[i] = i == 0 ? x->f : pb.eval(simplex[i], g);
    }
    for (int ev = 0; ev < max_eval;) {
        int order[5] = {0, 1, 2, 3, 4};
        std::sort(order, order + 5, [&](int p, int q) { return fv[p] < fv[q] || (fv[p] == fv[q] && p < q); });
        const int best = order[0], worst = order[4], second = order[3];
        if (std::fabs(fv[worst] - fv[best]) <= 1e-15 * (1.0 + std::fabs(fv[best]))) break;
        double cen[4] = {0, 0, 0, 0};
        for (int i = 0; i < 5; ++i)
            if (i != worst)
                for (int j = 0; j < 4; ++j) cen[j] += simplex[i][j] / 4.0;
        auto at = [&](double t, double *pt) {
            for (int j = 0; j < 4; ++j) pt[j] = cen[j] + t * (simplex[worst][j] - cen[j]);
            ++ev;
            return pb.eval(pt, g);
        };
        double pr[4], pe[4], pc[4];
        const double fr = at(-1.0, pr);
        if (fr < fv[best]) {
            const double fe = at(-2.0, pe);
            if (fe < fr) {
                std::copy(pe, pe + 4, simplex[worst]);
                fv[worst] = fe;
            } else {
                std::copy(pr, pr + 4, simplex[worst]);
                fv[worst] = fr;
            }
        } else if (fr < fv[second]) {
            std::copy(pr, pr + 4, simplex[worst]);
            fv[worst] = fr;
        } else {
            const double fc = fr < fv[worst] ? at(-0.5, pc) : at(0.5, pc);
            if (fc < std::min(fr, fv[worst])) {
                std::copy(pc, pc + 4, simplex[worst]);
                fv[worst] = fc;
            } else {  // shrink towards the best vertex
                for (int i = 0; i < 5; ++i) {
                    if (i == best) continue;
                    for (int j = 0; j < 4; ++j)
                        simplex[i][j] = simplex[best][j] + 0.5 * (simplex[i][j] - simplex[best][j]);
                    fv[i] = pb.eval(simplex[i], g);
                    ++ev;
                }
            }
        }
    }
    int best = 0;
    for (int i = 1; i < 5; ++i)
        if (fv[i] < fv[best]) best = i;
    if (fv[best] < x->f) {
        std::copy(simplex[best], simplex[best] + 4, x->th);
        x->f = pb.eval(x->th, x->g);
    }
}

int fit_model(int model, const es_btyd_row *rows, size_t n, es_btyd_fit *out, char *err, size_t errlen) {
    *out = es_btyd_fit{};
    int rc = validate_model(model, err, errlen);
    if (rc != ES_OK) return rc;
    if (n == 0 || rows == nullptr) return fail(err, errlen, ES_INVALID_PARAMETER, "a BTYD fit needs at least one row");
    rc = es_btyd_validate_rows(rows, n, err, errlen);
    if (rc != ES_OK) return rc;

    std::vector<es_btyd_row> sorted(rows, rows + n);
    sorted.resize(collapse(sorted.data(), sorted.size()));
    Problem pb;
    pb.build(model, sorted);

    // Starting points scaled to the event rate (so the time unit does not
    // matter): mean rate r/alpha = sum x / sum T.
    double sx = 0.0, sT = 0.0;
    for (const es_btyd_row &r : sorted) {
        sx += r.weight * r.x;
        sT += r.weight * r.T;
    }
    const double rate = (sx > 0 && sT > 0) ? sx / sT : (sT > 0 ? 0.5 / (sT / pb.total_weight + 1.0) : 1.0);
    const double starts[2][4] = {{1.0, 1.0 / rate, 1.0, 1.0}, {0.5, 0.5 / rate, 0.5, 2.5}};
    Point best;
    best.f = kInf;
    int iterations = 0;
    for (const auto &st : starts) {
        Point x;
        for (int i = 0; i < 4; ++i) x.th[i] = std::max(-kBound + 1, std::min(kBound - 1, std::log(st[i])));
        x.f = pb.eval(x.th, x.g);
        if (!std::isfinite(x.f)) continue;
        iterations += bfgs(pb, &x, 500);
        if (x.f < best.f) best = x;
    }
    if (!std::isfinite(best.f))
        return fail(err, errlen, ES_INTERNAL, "BTYD fit: the log-likelihood is not finite at the starting points");
    if (norm_inf4(best.g) > kGradTol && norm_inf4(best.th) <= kBound - 5) {
        // Stalled: polish with Nelder-Mead and restart BFGS from there.
        nelder_mead(pb, &best, 2000);
        iterations += bfgs(pb, &best, 500);
    }
    out->r = std::exp(best.th[0]);
    out->alpha = std::exp(best.th[1]);
    out->a = std::exp(best.th[2]);
    out->b = std::exp(best.th[3]);
    out->log_likelihood = -best.f * pb.total_weight;
    out->n = pb.total_weight;
    out->iterations = iterations;
    const double gn = norm_inf4(best.g);
    const char *mname = model == ES_MODEL_MBGNBD ? "MBG/NBD" : "BG/NBD";
    // A parameter "ran off" when the optimum lies on the edge of the parameter
    // space: r, a, b beyond e^+-20, or alpha beyond e^+-20 of the observation
    // length (alpha carries the time unit).  The gradient there is ~0 too, so
    // this is checked separately.
    double tmax = 0.0;
    for (const es_btyd_row &r : sorted) tmax = std::max(tmax, r.T);
    const double lref[4] = {0.0, tmax > 0 ? std::log(tmax) : best.th[1], 0.0, 0.0};
    int off = -1;
    for (int i = 0; i < 4; ++i)
        if (std::fabs(best.th[i] - lref[i]) > 20.0 &&
            (off < 0 || std::fabs(best.th[i] - lref[i]) > std::fabs(best.th[off] - lref[off])))
            off = i;
    clear_error(err, errlen);
    out->converged = 0;
    if (!(sx > 0.0)) {
        fail(err, errlen, ES_OK,
             "%s fit did not converge: no customer has a repeat event (all x = 0), so the likelihood has no "
             "maximum (it grows as r -> 0)",
             mname);
    } else if (off >= 0) {
        static const char *names[4] = {"r", "alpha", "a", "b"};
        fail(err, errlen, ES_OK,
             "%s fit did not converge: parameter %s = %g ran off towards %s (the likelihood has no maximum inside "
             "the parameter space; the data do not identify the model, e.g. too few customers or repeat events)",
             mname, names[off], std::exp(best.th[off]), best.th[off] > lref[off] ? "infinity" : "0");
    } else if (gn > 1e-7) {
        fail(err, errlen, ES_OK, "%s fit did not converge after %d iterations (gradient norm %g)", mname, iterations,
             gn);
    } else {
        // The gradient of the mean ll is at the floor of what the arithmetic allows.
        out->converged = 1;
    }
    return ES_OK;
}

}  // namespace btyd
}  // namespace es

// ---------------------------------------------------------------- C API

namespace {

// Runs fn, turning any exception into a status (nothing may escape to C).
template <class F>
int guarded(char *err, size_t errlen, const char *what, F &&fn) noexcept {
    try {
        return fn();
    } catch (const std::bad_alloc &) {
        return es::btyd::fail(err, errlen, ES_OUT_OF_MEMORY, "out of memory in %s", what);
    } catch (const std::exception &e) {
        return es::btyd::fail(err, errlen, ES_INTERNAL, "%s: %s", what, e.what());
    } catch (...) {
        return es::btyd::fail(err, errlen, ES_INTERNAL, "unknown error in %s", what);
    }
}

// Stores v if it is finite, else reports that the result does not fit a double.
int finish(double v, double *out, const char *what, char *err, size_t errlen) {
    if (!std::isfinite(v))
        return es::btyd::fail(err, errlen, ES_OUT_OF_RANGE, "%s: result out of range of a double", what);
    *out = v;
    return ES_OK;
}

}  // namespace

extern "C" {

int es_btyd_validate_customer(double x, double t_x, double T, char *err, size_t errlen) noexcept {
    return es::btyd::validate_customer(x, t_x, T, "", err, errlen);
}

int es_btyd_validate_params(double r, double alpha, double a, double b, char *err, size_t errlen) noexcept {
    return es::btyd::validate_params(r, alpha, a, b, err, errlen);
}

int es_btyd_log_likelihood(int model, double x, double t_x, double T, double r, double alpha, double a, double b,
                           double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "btyd log-likelihood", [&]() -> int {
        const int rc = es::btyd::validate_all(model, x, t_x, T, r, alpha, a, b, err, errlen);
        if (rc != ES_OK) return rc;
        return finish(es::btyd::log_likelihood(model, x, t_x, T, r, alpha, a, b), out, "btyd log-likelihood", err,
                      errlen);
    });
}

int es_btyd_p_alive(int model, double x, double t_x, double T, double r, double alpha, double a, double b, double *out,
                    char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "p_alive", [&]() -> int {
        const int rc = es::btyd::validate_all(model, x, t_x, T, r, alpha, a, b, err, errlen);
        if (rc != ES_OK) return rc;
        const double l = es::btyd::log_death_odds(model, x, t_x, T, r, alpha, a, b);
        return finish(es::btyd::logistic_neg(l), out, "p_alive", err, errlen);
    });
}

int es_btyd_expected(int model, double horizon, double x, double t_x, double T, double r, double alpha, double a,
                     double b, double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "expected events", [&]() -> int {
        int rc = es::btyd::validate_all(model, x, t_x, T, r, alpha, a, b, err, errlen);
        if (rc == ES_OK) rc = es::btyd::validate_horizon(horizon, err, errlen);
        if (rc != ES_OK) return rc;
        if (horizon == 0.0) {
            *out = 0.0;
            return ES_OK;
        }
        // ln E = ln P_alive + ln E[events | alive], P_alive = 1 / (1 + e^l)
        const double l = es::btyd::log_death_odds(model, x, t_x, T, r, alpha, a, b);
        const double lp = l == -es::btyd::kInf ? 0.0 : -es::btyd::log_add_exp(0.0, l);
        const double le = es::btyd::log_expected_alive(model, horizon, x, T, r, alpha, a, b);
        if (std::isnan(le))
            return es::btyd::fail(err, errlen, ES_OUT_OF_RANGE,
                                  "expected events cannot be evaluated accurately for r = %g, alpha = %g, a = %g, "
                                  "b = %g (extreme parameters)",
                                  r, alpha, a, b);
        if (!(le < es::btyd::kMaxLog + 20))
            return es::btyd::fail(err, errlen, ES_OUT_OF_RANGE, "expected events: result out of range of a double");
        return finish(std::exp(lp + le), out, "expected events", err, errlen);
    });
}

int es_btyd_prob_no_event(int model, double horizon, double x, double t_x, double T, double r, double alpha, double a,
                          double b, double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "prob_no_event", [&]() -> int {
        int rc = es::btyd::validate_all(model, x, t_x, T, r, alpha, a, b, err, errlen);
        if (rc == ES_OK) rc = es::btyd::validate_horizon(horizon, err, errlen);
        if (rc != ES_OK) return rc;
        const double l = es::btyd::log_death_odds(model, x, t_x, T, r, alpha, a, b);
        const double alive = es::btyd::logistic_neg(l);
        // 1 - P_alive (1 - ((alpha+T)/(alpha+T+horizon))^(r+x)), in logs; never above 1
        const double some = -std::expm1(-(r + x) * es::btyd::log1p_ratio(horizon, alpha + T));
        return finish(1.0 - alive * some, out, "prob_no_event", err, errlen);
    });
}

int es_hyp2f1(double a, double b, double c, double z, double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "hyp2f1", [&]() -> int { return es::btyd::hyp2f1(a, b, c, z, out, err, errlen); });
}

int es_btyd_digamma(double x, double *out, char *err, size_t errlen) noexcept {
    if (!std::isfinite(x) || x <= 0.0)
        return es::btyd::fail(err, errlen, ES_INVALID_PARAMETER, "digamma: x = %g must be finite and > 0", x);
    *out = es::btyd::digamma(x);
    return ES_OK;
}

size_t es_btyd_collapse(es_btyd_row *rows, size_t n) noexcept {
    if (rows == nullptr) return 0;
    return es::btyd::collapse(rows, n);
}

int es_btyd_validate_rows(const es_btyd_row *rows, size_t n, char *err, size_t errlen) noexcept {
    char prefix[64];
    for (size_t i = 0; i < n; ++i) {
        const es_btyd_row &r = rows[i];
        std::snprintf(prefix, sizeof prefix, "row %zu: ", i);
        const int rc = es::btyd::validate_customer(r.x, r.t_x, r.T, prefix, err, errlen);
        if (rc != ES_OK) return rc;
        if (!es::btyd::positive_finite(r.weight))
            return es::btyd::fail(err, errlen, ES_INVALID_PARAMETER,
                                  "row %zu: weight = %g must be finite and > 0 (x = %g, t_x = %g, T = %g)", i, r.weight,
                                  r.x, r.t_x, r.T);
    }
    return ES_OK;
}

int es_btyd_log_likelihood_sum(int model, const es_btyd_row *rows, size_t n, double r, double alpha, double a, double b,
                               double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "btyd log-likelihood sum", [&]() -> int {
        int rc = es::btyd::validate_model(model, err, errlen);
        if (rc == ES_OK) rc = es::btyd::validate_params(r, alpha, a, b, err, errlen);
        if (rc == ES_OK && n > 0 && rows == nullptr) rc = es::btyd::fail(err, errlen, ES_INVALID_PARAMETER, "no rows");
        if (rc == ES_OK) rc = es_btyd_validate_rows(rows, n, err, errlen);
        if (rc != ES_OK) return rc;
        double sum = 0.0, comp = 0.0;  // Neumaier
        for (size_t i = 0; i < n; ++i) {
            const double v =
                rows[i].weight * es::btyd::log_likelihood(model, rows[i].x, rows[i].t_x, rows[i].T, r, alpha, a, b);
            const double t = sum + v;
            comp += std::fabs(sum) >= std::fabs(v) ? (sum - t) + v : (v - t) + sum;
            sum = t;
        }
        return finish(sum + comp, out, "btyd log-likelihood sum", err, errlen);
    });
}

int es_btyd_fit_model(int model, const es_btyd_row *rows, size_t n, es_btyd_fit *out, char *err,
                      size_t errlen) noexcept {
    return guarded(err, errlen, "btyd fit",
                   [&]() -> int { return es::btyd::fit_model(model, rows, n, out, err, errlen); });
}

}  // extern "C"

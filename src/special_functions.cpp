// special_functions.cpp: log-gamma and log-beta differences, digamma and the
// Gauss hypergeometric function 2F1 (see special_functions.h), pure C++17.
#include "special_functions.h"

#include <algorithm>
#include <cmath>

#include "kernel_status.h"
#include "scoring_kernel.h" /* enum es_status */

namespace es {
namespace {

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

}  // namespace

namespace {
// psi(w) - ln(w) + 1/(2w) for w >= 10: the tail of psi's asymptotic series (error < 1e-16).
double digamma_series_tail(double w) {
    const double f = 1.0 / (w * w);
    return f * (-1.0 / 12 +
                f * (1.0 / 120 +
                     f * (-1.0 / 252 + f * (1.0 / 240 + f * (-1.0 / 132 + f * (691.0 / 32760 + f * (-1.0 / 12)))))));
}
}  // namespace

// psi(x), x > 0: recurrence up to x >= 10, then the asymptotic series.
double digamma(double x) {
    double acc = 0.0;
    while (x < 10.0) {
        acc -= 1.0 / x;
        x += 1.0;
    }
    return acc + std::log(x) - 0.5 / x + digamma_series_tail(x);
}

double digamma_diff(double z, double a) {
    // psi(z + a) - psi(z) = [psi(z + 1 + a) - psi(z + 1)] + 1/z - 1/(z + a), the last two as
    // a / (z (z + a)); then, for z >= 10, the asymptotic series of both, whose leading terms
    // ln(w) - 1/(2w) are differenced analytically: log1p(a/z) + a / (2 z (z + a)).
    double acc = 0.0;
    while (z < 10.0) {
        acc += (a / (z + a)) / z;
        z += 1.0;
    }
    const double za = z + a;
    return acc + log1p_ratio(a, z) + 0.5 * (a / za) / z + (digamma_series_tail(za) - digamma_series_tail(z));
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

}  // namespace es

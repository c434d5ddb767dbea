// btyd_kernel.cpp: MBG/NBD and BG/NBD (docs/model.md "Predictions"
// and "Fitting"), pure C++17: validation, log-likelihood, P(alive),
// conditional expectations, the maximum-likelihood fit and the C API of
// btyd_kernel.h.  The numerics live in special_functions.cpp, the optimiser in
// bfgs.cpp, what the fits share (penalty, standard errors) in mle.cpp.
#include "btyd_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <new>
#include <vector>

#include "bfgs.h"
#include "kernel_status.h"
#include "mle.h"
#include "special_functions.h"

namespace es {
namespace btyd {

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

// The model, the customer, the parameters and a forecast's horizon (0, which is valid, for the
// formulas that have none).
int validate_all(int model, double x, double t_x, double T, double r, double alpha, double a, double b, char *err,
                 size_t errlen, double horizon) {
    int rc = validate_model(model, err, errlen);
    if (rc == ES_OK) rc = validate_customer(x, t_x, T, "", err, errlen);
    if (rc == ES_OK) rc = validate_params(r, alpha, a, b, err, errlen);
    if (rc == ES_OK && (!std::isfinite(horizon) || horizon < 0.0))
        rc = fail(err, errlen, ES_INVALID_PARAMETER, "horizon = %g must be finite and >= 0", horizon);
    return rc;
}

// ---------------------------------------------------------------- per-customer formulas

// s = 1 for MBG/NBD (dropout chance at birth too), 0 for BG/NBD.
int shift_of(int model) { return model == ES_MODEL_MBGNBD ? 1 : 0; }

// Whether the "dropped out after the last event" term exists.
bool has_dropout_term(int s, double x) { return s == 1 || x > 0.0; }

// The log-likelihood, rearranged so that no large terms cancel (the fit may
// wander to r, alpha, a, b ~ 1e10 when the data carry little heterogeneity):
//   ll = K_x - n l(T) + log(1 + [dropout term] exp(d_x + n (l(T) - l(t_x))))
// with n = r + x, beta = b + x + s, l(t) = ln(1 + t/alpha) and
//   K_x = lnB(a, beta) - lnB(a, b) + lnGamma(r + x) - lnGamma(r) - x ln(alpha),
//   d_x = ln(a / (beta - 1)).
// This is docs/model.md's formula: r ln(alpha) - (r+x) ln(alpha+T) = -x ln(alpha) - n l(T).
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

// ---- A concentrated dropout distribution (a and beta ~1e7 and more), where the quadrature above
// cannot reach its accuracy: its log-integrand is a sum of terms ~a ln p whose rounding alone
// exceeds it.  For a > 2,
//   f = (C / a') E[phi(q)],  q ~ Beta(a', beta),  a' = a - 1,  phi(q) = 1 - (1 + q u)^-n,
// and the expectation is taken over the logit s of q, where the density is proportional to
// q^a' (1-q)^beta: log-concave, with its mode at s_m = ln(a' / beta).  At s = s_m + d its log
// relative to the mode is -(a' + beta) K, K = ln(1 + c expm1(d)) - c d with c = a' / (a' + beta)
// or, the same by symmetry, K = ln(1 + c expm1(-d)) + c d with c = beta / (a' + beta): taken with
// the smaller c and its second-order part summed exactly, so that it is accurate to its own
// rounding.  E[phi] is the ratio of two integrals of that density, with and without phi, so its
// normalisation cancels.

// log1p(y) - y, accurate also for small |y|.
double log1p_minus(double y) {
    if (std::fabs(y) > 0.5) return std::log1p(y) - y;
    double power = y, sum = 0.0;  // sum_{k>=2} (-1)^(k+1) y^k / k
    for (int k = 2; k < 80; ++k) {
        power *= -y;
        const double term = power / k;
        sum += term;
        if (std::fabs(term) <= 1e-17 * std::fabs(sum)) break;
    }
    return sum;
}

// expm1(t) - t, accurate also for small |t|.
double expm1_minus(double t) {
    if (std::fabs(t) > 0.5) return std::expm1(t) - t;
    double term = t, sum = 0.0;  // sum_{k>=2} t^k / k!
    for (int k = 2; k < 40; ++k) {
        term *= t / k;
        sum += term;
        if (std::fabs(term) <= 1e-17 * std::fabs(sum)) break;
    }
    return sum;
}

// K = ln(1 + c expm1(t)) - c t >= 0, for 0 < c <= 1/2.
double centred_log_beta(double t, double c) {
    if (std::fabs(t) <= 0.5) return log1p_minus(c * std::expm1(t)) + c * expm1_minus(t);
    return std::log1p(c * std::expm1(t)) - c * t;
}

// ln f by the logit quadrature, for a > 2 and beta >= 1; NaN when it cannot reach ~1e-11.
double expected_alive_logit_log(double n, double a, double beta, double bm1, double lu) {
    if (!(a > 2.0 && beta >= 1.0)) return std::numeric_limits<double>::quiet_NaN();
    const double ap = a - 1.0, m = ap + beta;
    const bool low = ap <= beta;  // the mode a' / m is at most 1/2
    const double c = (low ? ap : beta) / m, sign = low ? 1.0 : -1.0;
    const double s_mode = std::log(ap) - std::log(beta);
    auto log_density = [&](double d) { return -m * centred_log_beta(sign * d, c); };
    // ln phi at s = s_mode + d, from ln q = -ln(1 + e^-s) and ln(q u)
    auto log_phi = [&](double d) {
        const double s = s_mode + d;
        const double lq = s >= 0.0 ? -std::log1p(std::exp(-s)) : s - std::log1p(std::exp(s));
        const double w = lq + lu;
        const double l1pqu = w > 35.0 ? w + std::log1p(std::exp(-w)) : std::log1p(std::exp(w));
        const double k = n * l1pqu;
        return k > 40.0 ? -std::exp(-k) : std::log(-std::expm1(-k));
    };
    const double lphi0 = log_phi(0.0);
    if (!std::isfinite(lphi0)) return std::numeric_limits<double>::quiet_NaN();
    // The range: beyond it the density is below e^-50 of its mode, and so is the integrand with
    // phi relative to phi(s_m), ln phi rising by at most d (phi is concave in q, with phi(0) = 0,
    // and q (1 - q) <= q) and at most to 0.  Both logs are concave in d: the first point past
    // -50 of a doubling sequence lies beyond the range.
    const double cut = 50.0;
    const double width = 1.0 / std::sqrt(ap * beta / m);  // of the density's peak
    double lo = -width, hi = width;
    for (int i = 0; i < 64 && log_density(lo) >= -cut; ++i) lo *= 2.0;
    for (int i = 0; i < 64 && log_density(hi) + std::min(hi, -lphi0) >= -cut; ++i) hi *= 2.0;
    if (!(log_density(lo) < -cut && log_density(hi) + std::min(hi, -lphi0) < -cut && hi - lo < 1e12))
        return std::numeric_limits<double>::quiet_NaN();
    auto fd = [&](double d) { return std::exp(log_density(d)); };
    auto fn = [&](double d) { return std::exp(log_density(d) + log_phi(d) - lphi0); };
    // Panels no wider than half the peak's width nor than 1/2 (phi changes on the scale of 1 in
    // s), at most 4000 of them; each refined until its error estimate is below 1e-13 of the total.
    const double step = std::max(std::min(0.5 * width, 0.5), (hi - lo) / 4000.0);
    const int panels = static_cast<int>(std::ceil((hi - lo) / step));
    std::vector<double> vd(panels), ed(panels), vn(panels), en(panels);
    double total_d = 0.0, total_n = 0.0;
    for (int i = 0; i < panels; ++i) {
        const double p0 = lo + i * step, p1 = i + 1 == panels ? hi : lo + (i + 1) * step;
        total_d += vd[i] = gk15(fd, p0, p1, &ed[i]);
        total_n += vn[i] = gk15(fn, p0, p1, &en[i]);
    }
    double sum_d = 0.0, sum_n = 0.0, err_d = 0.0, err_n = 0.0;
    long budget_d = 20000, budget_n = 20000;
    for (int i = 0; i < panels; ++i) {
        const double p0 = lo + i * step, p1 = i + 1 == panels ? hi : lo + (i + 1) * step;
        sum_d += integrate_panel(fd, p0, p1, vd[i], ed[i], 1e-13 * total_d, 0, &budget_d, &err_d);
        sum_n += integrate_panel(fn, p0, p1, vn[i], en[i], 1e-13 * total_n, 0, &budget_n, &err_n);
    }
    if (!(err_d <= 1e-11 * sum_d && err_n <= 1e-11 * sum_n && sum_n > 0.0))
        return std::numeric_limits<double>::quiet_NaN();
    return std::log(a + bm1) - std::log(ap) + std::log(sum_n) + lphi0 - std::log(sum_d);
}

// E[events in the horizon | alive] for horizon > 0: the series' value (*f, returns true), or else
// the log of the quadratures' (*f, returns false; NaN when neither resolves it).
bool expected_alive(int model, double horizon, double x, double T, double r, double alpha, double a, double b,
                    double *f) {
    const int s = shift_of(model);
    const double n = r + x, beta = b + x + s, bm1 = b + (x + s - 1.0);
    const double u = horizon / (alpha + T);
    if (std::isfinite(u) && u <= 200.0 && expected_alive_series(n, a, bm1, u, f) && *f > 0.0) return true;
    const double lu = std::log(horizon) - std::log(alpha + T);
    *f = expected_alive_quadrature_log(n, a, beta, bm1, lu);
    if (std::isnan(*f)) *f = expected_alive_logit_log(n, a, beta, bm1, lu);
    return false;
}

// ln E[events in the horizon | alive]; -inf for horizon 0.
double log_expected_alive(int model, double horizon, double x, double T, double r, double alpha, double a, double b) {
    if (horizon == 0.0) return -kInf;
    double f;
    return expected_alive(model, horizon, x, T, r, alpha, a, b, &f) ? std::log(f) : f;
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

// The collapsed data, indexed so that one evaluation costs one exp and one
// log1p per distinct row: everything depending only on x is computed once
// per distinct x, and ln(alpha + t) once per distinct time value.
struct Problem final : Objective {
    int s = 0;
    double penalizer = 0.0;  // of the L2 penalty on the log-parameters (mle.h)
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

    // Minus the mean log-likelihood, plus the penalty, and its gradient w.r.t. th = ln(r, alpha, a, b).
    // Per row: ll = K_x - x ln(alpha) - n l(T) + log(e^0 + e^(d_x + n (l(T) - l(t_x))))
    // with l(t) = ln(1 + t/alpha) (see x_terms); w1, w2 are the softmax weights
    // of the two terms (alive at T / dropped out after t_x).
    double eval(const double th[4], double grad[4]) const override {
        for (int i = 0; i < 4; ++i)
            if (!(std::fabs(th[i]) <= kSearchBound)) return kInf;
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
        const double v = add_penalty(penalizer, th, 4, -f * inv, grad);
        for (int i = 0; i < 4; ++i)
            if (!std::isfinite(grad[i])) return kInf;
        return std::isfinite(v) ? v : kInf;
    }
};

int fit_model(int model, const es_btyd_row *rows, size_t n, double penalizer, es_btyd_fit *out, char *err,
              size_t errlen) {
    *out = es_btyd_fit{};
    int rc = validate_model(model, err, errlen);
    if (rc != ES_OK) return rc;
    if (n == 0 || rows == nullptr) return fail(err, errlen, ES_INVALID_PARAMETER, "a BTYD fit needs at least one row");
    rc = validate_penalizer(penalizer, err, errlen);
    if (rc != ES_OK) return rc;
    rc = es_btyd_validate_rows(rows, n, err, errlen);
    if (rc != ES_OK) return rc;

    std::vector<es_btyd_row> sorted(rows, rows + n);
    // The fit maximises the weighted mean log-likelihood: only the weights' ratios matter.  Scale
    // them by a power of two that brings the largest into [1, 2): exact, and no scaling at all for
    // weights of 1, so an ordinary fit is bit-identical, while weights near the ends of the double
    // range (5e-324, 1e308) neither vanish into 1 / total weight nor overflow in a sum.
    double max_weight = 0.0;
    for (const es_btyd_row &r : sorted) max_weight = std::max(max_weight, r.weight);
    const int shift = weight_shift(max_weight);
    if (shift != 0)
        for (es_btyd_row &r : sorted) r.weight = std::ldexp(r.weight, shift);
    sorted.resize(collapse(sorted.data(), sorted.size()));
    Problem pb;
    pb.build(model, sorted);
    pb.penalizer = penalizer;

    // Starting points scaled to the event rate (so the time unit does not
    // matter): mean rate r/alpha = sum x / sum T.
    double sx = 0.0, sT = 0.0;
    for (const es_btyd_row &r : sorted) {
        sx += r.weight * r.x;
        sT += r.weight * r.T;
    }
    const double rate = (sx > 0 && sT > 0) ? sx / sT : (sT > 0 ? 0.5 / (sT / pb.total_weight + 1.0) : 1.0);
    const double starts[2][kMaxDim] = {{1.0, 1.0 / rate, 1.0, 1.0}, {0.5, 0.5 / rate, 0.5, 2.5}};
    Point best;
    const int iterations = minimise(pb, starts, 2, &best);
    if (!std::isfinite(best.f))
        return fail(err, errlen, ES_OUT_OF_RANGE,
                    "BTYD fit: the log-likelihood cannot be evaluated at the starting points (customer summaries "
                    "beyond the range of a double)");
    out->r = std::exp(best.th[0]);
    out->alpha = std::exp(best.th[1]);
    out->a = std::exp(best.th[2]);
    out->b = std::exp(best.th[3]);
    out->n = std::ldexp(pb.total_weight, -shift);  // the weights as given, summed
    // the log-likelihood reported is the one without the penalty
    const double mean_ll = penalizer > 0.0 ? unpenalised_mean_log_likelihood(pb, best.th) : -best.f;
    out->log_likelihood = mean_ll * out->n;
    if (!std::isfinite(out->n) || !std::isfinite(out->log_likelihood))
        return fail(err, errlen, ES_OUT_OF_RANGE,
                    "BTYD fit: the total weight (%g) or the log-likelihood (%g) is out of range of a double", out->n,
                    out->log_likelihood);
    out->iterations = iterations;
    const double gn = norm_inf(best.g, 4);
    const char *mname = model == ES_MODEL_MBGNBD ? "MBG/NBD" : "BG/NBD";
    // A parameter "ran off" when the optimum lies on the edge of the parameter
    // space: r, a, b beyond e^+-20, or alpha beyond e^+-20 of the observation
    // length (alpha carries the time unit).  The gradient there is ~0 too, so
    // this is checked separately.
    double tmax = 0.0;
    for (const es_btyd_row &r : sorted) tmax = std::max(tmax, r.T);
    const double lref[4] = {0.0, tmax > 0 ? std::log(tmax) : best.th[1], 0.0, 0.0};
    const int off = ran_off(best.th, lref, 4);
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
             "%s fit did not converge: parameter %s = %g ran off towards %s (no maximum inside the parameter "
             "space: the data do not identify the model, e.g. too few customers or repeat events; %s keeps "
             "parameters finite)",
             mname, names[off], std::exp(best.th[off]), best.th[off] > lref[off] ? "infinity" : "0",
             penalizer > 0.0 ? "a larger penalizer" : "a penalizer > 0");
    } else if (gn > kConvergedGrad) {
        fail(err, errlen, ES_OK, "%s fit did not converge after %d iterations (gradient norm %g)", mname, iterations,
             gn);
    } else {
        // The gradient of the mean ll is at the floor of what the arithmetic allows.
        out->converged = 1;
        double se[kMaxDim];
        out->has_standard_errors = standard_errors(pb, best.th, out->n, se) ? 1 : 0;
        out->se_r = se[0];
        out->se_alpha = se[1];
        out->se_a = se[2];
        out->se_b = se[3];
    }
    return ES_OK;
}

}  // namespace btyd
}  // namespace es

// ---------------------------------------------------------------- C API

using es::finish;
using es::guarded;

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
        const int rc = es::btyd::validate_all(model, x, t_x, T, r, alpha, a, b, err, errlen, 0.0);
        if (rc != ES_OK) return rc;
        return finish(es::btyd::log_likelihood(model, x, t_x, T, r, alpha, a, b), out, "btyd log-likelihood", err,
                      errlen);
    });
}

int es_btyd_p_alive(int model, double x, double t_x, double T, double r, double alpha, double a, double b, double *out,
                    char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "p_alive", [&]() -> int {
        const int rc = es::btyd::validate_all(model, x, t_x, T, r, alpha, a, b, err, errlen, 0.0);
        if (rc != ES_OK) return rc;
        const double l = es::btyd::log_death_odds(model, x, t_x, T, r, alpha, a, b);
        return finish(es::btyd::logistic_neg(l), out, "p_alive", err, errlen);
    });
}

// Why ln E[events | alive] = le is no answer (NaN: neither quadrature resolved it; beyond the
// doubles), or ES_OK.
static int log_expected_failure(double le, double r, double alpha, double a, double b, char *err, size_t errlen) {
    if (std::isnan(le))
        return es::fail(err, errlen, ES_OUT_OF_RANGE,
                        "expected events cannot be evaluated accurately for r = %g, alpha = %g, a = %g, "
                        "b = %g (extreme parameters)",
                        r, alpha, a, b);
    if (!(le < es::kMaxLog + 20))
        return es::fail(err, errlen, ES_OUT_OF_RANGE, "expected events: result out of range of a double");
    return ES_OK;
}

int es_btyd_expected(int model, double horizon, double x, double t_x, double T, double r, double alpha, double a,
                     double b, double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "expected events", [&]() -> int {
        int rc = es::btyd::validate_all(model, x, t_x, T, r, alpha, a, b, err, errlen, horizon);
        if (rc != ES_OK) return rc;
        if (horizon == 0.0) {
            *out = 0.0;
            return ES_OK;
        }
        // ln E = ln P_alive + ln E[events | alive], P_alive = 1 / (1 + e^l)
        const double l = es::btyd::log_death_odds(model, x, t_x, T, r, alpha, a, b);
        const double lp = l == -es::kInf ? 0.0 : -es::log_add_exp(0.0, l);
        const double le = es::btyd::log_expected_alive(model, horizon, x, T, r, alpha, a, b);
        rc = log_expected_failure(le, r, alpha, a, b, err, errlen);
        return rc != ES_OK ? rc : finish(std::exp(lp + le), out, "expected events", err, errlen);
    });
}

int es_btyd_expected_given_p_alive(double p_alive, double horizon, double x, double T, double r, double alpha,
                                   double a, double b, double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "expected events", [&]() -> int {
        if (!(horizon > 0.0 && horizon < es::kInf))
            return es::fail(err, errlen, ES_INVALID_PARAMETER, "horizon = %g must be finite and > 0", horizon);
        double f;
        if (es::btyd::expected_alive(ES_MODEL_MBGNBD, horizon, x, T, r, alpha, a, b, &f))
            return finish(p_alive * f, out, "expected events", err, errlen);
        const int rc = log_expected_failure(f, r, alpha, a, b, err, errlen);
        return rc != ES_OK ? rc : finish(p_alive * std::exp(f), out, "expected events", err, errlen);
    });
}

int es_btyd_prob_no_event(int model, double horizon, double x, double t_x, double T, double r, double alpha, double a,
                          double b, double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "prob_no_event", [&]() -> int {
        int rc = es::btyd::validate_all(model, x, t_x, T, r, alpha, a, b, err, errlen, horizon);
        if (rc != ES_OK) return rc;
        const double l = es::btyd::log_death_odds(model, x, t_x, T, r, alpha, a, b);
        const double alive = es::btyd::logistic_neg(l);
        // 1 - P_alive (1 - ((alpha+T)/(alpha+T+horizon))^(r+x)), in logs; never above 1
        const double some = -std::expm1(-(r + x) * es::log1p_ratio(horizon, alpha + T));
        return finish(1.0 - alive * some, out, "prob_no_event", err, errlen);
    });
}

int es_hyp2f1(double a, double b, double c, double z, double *out, char *err, size_t errlen) noexcept {
    return guarded(err, errlen, "hyp2f1", [&]() -> int { return es::hyp2f1(a, b, c, z, out, err, errlen); });
}

int es_btyd_digamma(double x, double *out, char *err, size_t errlen) noexcept {
    if (!std::isfinite(x) || x <= 0.0)
        return es::fail(err, errlen, ES_INVALID_PARAMETER, "digamma: x = %g must be finite and > 0", x);
    *out = es::digamma(x);
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
            return es::fail(err, errlen, ES_INVALID_PARAMETER,
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
        if (rc == ES_OK && n > 0 && rows == nullptr) rc = es::fail(err, errlen, ES_INVALID_PARAMETER, "no rows");
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

int es_btyd_fit_model(int model, const es_btyd_row *rows, size_t n, double penalizer, es_btyd_fit *out, char *err,
                      size_t errlen) noexcept {
    return guarded(err, errlen, "btyd fit",
                   [&]() -> int { return es::btyd::fit_model(model, rows, n, penalizer, out, err, errlen); });
}

}  // extern "C"

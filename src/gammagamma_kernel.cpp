// gammagamma_kernel.cpp: the Gamma-Gamma spend model (docs/model.md
// "Value (Gamma-Gamma)" and "Fitting"), pure C++17: validation, the
// log-likelihood, the expected value, the (penalised) maximum-likelihood fit
// and the C API of gammagamma_kernel.h.  The numerics live in
// special_functions.cpp, the optimiser in bfgs.cpp, what the fits share
// (penalty, standard errors) in mle.cpp.
#include "gammagamma_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "bfgs.h"
#include "kernel_status.h"
#include "mle.h"
#include "special_functions.h"

namespace es {
namespace gg {

// ---------------------------------------------------------------- validation

bool positive_finite(double v) { return std::isfinite(v) && v > 0.0; }

int validate_params(double p, double q, double v, char *err, size_t errlen) {
    const struct {
        const char *name;
        double v;
    } ps[] = {{"p", p}, {"q", q}, {"v", v}};
    for (const auto &par : ps)
        if (!positive_finite(par.v))
            return fail(err, errlen, ES_INVALID_PARAMETER, "Gamma-Gamma parameter %s = %g must be finite and > 0",
                        par.name, par.v);
    return ES_OK;
}

// (x, m) of one customer.  valued_only: the likelihood and the fit, which need
// x >= 1 (a customer without a valued conversion day carries no spend
// information).  prefix names the row in fit errors ("row 17: "), empty otherwise.
int validate_customer(double x, double m, bool valued_only, const char *prefix, char *err, size_t errlen) {
    if (!std::isfinite(x) || !std::isfinite(m))
        return fail(err, errlen, ES_INVALID_PARAMETER, "%sx = %g, m = %g must be finite", prefix, x, m);
    if (x < 0.0 || x != std::floor(x) || x > ES_BTYD_MAX_X)
        return fail(err, errlen, ES_INVALID_PARAMETER, "%sx = %g must be an integer in [%d, 1e15]", prefix, x,
                    valued_only ? 1 : 0);
    if (valued_only && x == 0.0)
        return fail(err, errlen, ES_INVALID_PARAMETER,
                    "%sx = 0: the Gamma-Gamma likelihood needs x >= 1 (a customer without a valued conversion day "
                    "carries no spend information)",
                    prefix);
    if (x == 0.0 && m != 0.0) return fail(err, errlen, ES_INVALID_PARAMETER, "%sm = %g must be 0 when x = 0", prefix, m);
    if (x > 0.0 && !(m > 0.0))
        return fail(err, errlen, ES_INVALID_PARAMETER, "%sm = %g must be > 0 when x = %g", prefix, m, x);
    return ES_OK;
}

// ---------------------------------------------------------------- per-customer formulas

// The terms of the log-likelihood that involve v, with xm = x m:
//   t1 = ln(1 + xm / v), t2 = ln(1 + v / xm), fx = xm / (xm + v), fv = v / (xm + v),
// so that (docs/model.md's formula rearranged without large cancelling terms)
//   ll = -lnB(p x, q) - q t1 - p x t2 - ln m,   v d ll / d v = q fx - p x fv.
// lxm = ln x + ln m is used only when x m overflows.
struct SpendTerms {
    double t1, t2, fx, fv;
};

SpendTerms spend_terms(double xm, double lxm, double x, double m, double v) {
    SpendTerms s;
    if (std::isfinite(xm)) {
        s.t1 = log1p_ratio(xm, v);
        s.t2 = log1p_ratio(v, xm);
        s.fx = 1.0 / (1.0 + v / xm);
        s.fv = 1.0 / (1.0 + xm / v);
    } else {  // x m beyond the double range: v / (x m) as (v / x) / m, tiny
        const double rr = (v / x) / m;
        s.t2 = std::log1p(rr);
        s.t1 = lxm - std::log(v) + s.t2;
        s.fx = 1.0 / (1.0 + rr);
        s.fv = rr / (1.0 + rr);
    }
    return s;
}

double log_likelihood(double x, double m, double p, double q, double v) {
    const double px = p * x;
    const SpendTerms s = spend_terms(x * m, std::log(x) + std::log(m), x, m, v);
    return -lnbeta(px, q) - q * s.t1 - px * s.t2 - std::log(m);
}

// p (v + x m) / (p x + q - 1) (q > 1), as the credibility-weighted mean
//   A m + B v,  A = p x / (p x + q - 1) = 1 / (1 + c),  B = A / x,  c = ((q - 1) / x) / p,
// which overflows only when the result does; x = 0 gives p v / (q - 1).
double expected_value(double x, double m, double p, double q, double v) {
    const double qm1 = q - 1.0;  // exact near 1 (Sterbenz)
    if (x == 0.0) {
        const double direct = (p / qm1) * v;
        if (std::isfinite(direct) && direct > 0.0) return direct;
        return std::exp(std::log(p) + std::log(v) - std::log(qm1));  // p / (q - 1) overflowed or v underflowed
    }
    const double c = (qm1 / x) / p;
    const double A = 1.0 / (1.0 + c);
    return A * m + (A / x) * v;
}

// ---------------------------------------------------------------- fitting

// Total order on doubles for sorting (NaN last), so sorting never hits UB.
int cmp_double(double a, double b) {
    const bool an = std::isnan(a), bn = std::isnan(b);
    if (an || bn) return an == bn ? 0 : (an ? 1 : -1);
    return a < b ? -1 : (a > b ? 1 : 0);
}

bool row_less(const es_gg_row &a, const es_gg_row &b) {
    int c = cmp_double(a.x, b.x);
    if (c == 0) c = cmp_double(a.m, b.m);
    if (c == 0) c = cmp_double(a.weight, b.weight);
    return c < 0;
}

size_t collapse(es_gg_row *rows, size_t n) {
    if (n == 0) return 0;
    std::sort(rows, rows + n, row_less);
    size_t out = 0;
    for (size_t i = 1; i < n; ++i) {
        if (cmp_double(rows[out].x, rows[i].x) == 0 && cmp_double(rows[out].m, rows[i].m) == 0)
            rows[out].weight += rows[i].weight;
        else
            rows[++out] = rows[i];
    }
    return out + 1;
}

// The collapsed rows, grouped by x so that the gamma-function terms (which
// depend on x only) are evaluated once per distinct x.
struct Problem final : Objective {
    double penalizer = 0.0;  // of the L2 penalty on the log-parameters (mle.h)
    double total_weight = 0.0;
    struct Group {
        double x, weight;
        double wlnm;        // sum of weight * ln m over the group
        size_t begin, end;  // rows of this x
    };
    std::vector<Group> groups;
    struct Row {
        double x, m, xm, lxm, w;
    };
    std::vector<Row> rows;

    int dim() const override { return 3; }

    void build(const std::vector<es_gg_row> &sorted) {
        rows.clear();
        rows.reserve(sorted.size());
        groups.clear();
        total_weight = 0.0;
        for (size_t i = 0; i < sorted.size(); ++i) {
            const es_gg_row &r = sorted[i];
            if (groups.empty() || groups.back().x != r.x) groups.push_back({r.x, 0.0, 0.0, i, i});
            Group &g = groups.back();
            g.weight += r.weight;
            g.wlnm += r.weight * std::log(r.m);
            g.end = i + 1;
            rows.push_back({r.x, r.m, r.x * r.m, std::log(r.x) + std::log(r.m), r.weight});
            total_weight += r.weight;
        }
    }

    // Minus the mean log-likelihood, plus the penalty, and its gradient w.r.t. th = ln(p, q, v):
    //   p d ll / d p = p x (psi(p x + q) - psi(p x) - t2),  q d ll / d q = q (psi(p x + q) - psi(q) - t1),
    //   v d ll / d v = q fx - p x fv  (spend_terms).
    double eval(const double th[kMaxDim], double grad[kMaxDim]) const override {
        for (int i = 0; i < 3; ++i)
            if (!(std::fabs(th[i]) <= kSearchBound)) return kInf;
        const double p = std::exp(th[0]), q = std::exp(th[1]), v = std::exp(th[2]);
        double f = 0.0, gp = 0.0, gq = 0.0, gv = 0.0;
        for (const Group &g : groups) {
            const double px = p * g.x;
            const double lb = lnbeta(px, q);
            const double d1 = digamma_diff(px, q), d2 = digamma_diff(q, px);
            double s1 = 0.0, s2 = 0.0, sfx = 0.0, sfv = 0.0;  // weighted sums of t1, t2, fx, fv
            for (size_t i = g.begin; i < g.end; ++i) {
                const Row &r = rows[i];
                const SpendTerms s = spend_terms(r.xm, r.lxm, r.x, r.m, v);
                s1 += r.w * s.t1;
                s2 += r.w * s.t2;
                sfx += r.w * s.fx;
                sfv += r.w * s.fv;
            }
            f += -g.weight * lb - q * s1 - px * s2 - g.wlnm;
            gp += px * (g.weight * d1 - s2);
            gq += q * (g.weight * d2 - s1);
            gv += q * sfx - px * sfv;
        }
        const double inv = 1.0 / total_weight;
        grad[0] = -gp * inv;
        grad[1] = -gq * inv;
        grad[2] = -gv * inv;
        const double val = add_penalty(penalizer, th, 3, -f * inv, grad);
        for (int i = 0; i < 3; ++i)
            if (!std::isfinite(grad[i])) return kInf;
        return std::isfinite(val) ? val : kInf;
    }
};

// Starting points whose population mean p v / (q - 1) is the mean of m, mu.  The first from
// the moments: with nu ~ Gamma(q, rate v) and m | nu, x ~ Gamma(p x, rate x nu),
//   Var(m | x) = mu^2 / (q - 2) + mu^2 (q - 1) / (p (q - 2)) / x  =  A + B / x,
// so a weighted least-squares fit of (m - mu)^2 on 1/x gives q = 2 + mu^2 / A and
// p = A (q - 1) / B when A, B > 0; else p = 1, q = 3.  The second: p = 1, q = 2.
// m is scaled by its largest value first, so that no sum overflows.
void starting_points(const std::vector<es_gg_row> &rows, double total_weight, double starts[2][kMaxDim],
                     double *mean_m) {
    double mmax = 0.0;
    for (const es_gg_row &r : rows) mmax = std::max(mmax, r.m);
    double mu = 0.0;
    for (const es_gg_row &r : rows) mu += r.weight * (r.m / mmax);
    mu /= total_weight;  // in units of mmax
    double sw = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0;
    for (const es_gg_row &r : rows) {
        const double X = 1.0 / r.x, d = r.m / mmax - mu, y = d * d;
        sw += r.weight;
        sx += r.weight * X;
        sy += r.weight * y;
        sxx += r.weight * X * X;
        sxy += r.weight * X * y;
    }
    const double det = sw * sxx - sx * sx;
    double p0 = 1.0, q0 = 3.0;
    if (det > 1e-12 * sw * sxx) {
        const double B = (sw * sxy - sx * sy) / det, A = (sy - B * sx) / sw;
        if (A > 0.0 && B > 0.0) {
            q0 = std::min(1e3, 2.0 + mu * mu / A);
            p0 = std::max(1e-2, std::min(1e3, A * (q0 - 1.0) / B));
        }
    }
    *mean_m = mu * mmax;
    starts[0][0] = p0;
    starts[0][1] = q0;
    starts[0][2] = *mean_m * (q0 - 1.0) / p0;
    starts[1][0] = 1.0;
    starts[1][1] = 2.0;
    starts[1][2] = *mean_m;
    for (int s = 0; s < 2; ++s) starts[s][3] = 1.0;  // unused
}

int fit_model(const es_gg_row *rows, size_t n, double penalizer, es_gg_fit *out, char *err, size_t errlen) {
    *out = es_gg_fit{};
    if (n == 0 || rows == nullptr)
        return fail(err, errlen, ES_INVALID_PARAMETER,
                    "a Gamma-Gamma fit needs at least one row (a customer with x >= 1)");
    int rc = validate_penalizer(penalizer, err, errlen);
    if (rc != ES_OK) return rc;
    rc = es_gg_validate_rows(rows, n, err, errlen);
    if (rc != ES_OK) return rc;

    std::vector<es_gg_row> sorted(rows, rows + n);
    // Only the weights' ratios matter: scale them exactly by a power of two (as the BTYD fit).
    double max_weight = 0.0;
    for (const es_gg_row &r : sorted) max_weight = std::max(max_weight, r.weight);
    const int shift = weight_shift(max_weight);
    if (shift != 0)
        for (es_gg_row &r : sorted) r.weight = std::ldexp(r.weight, shift);
    sorted.resize(collapse(sorted.data(), sorted.size()));
    Problem pb;
    pb.build(sorted);
    pb.penalizer = penalizer;

    double starts[2][kMaxDim], mean_m = 0.0;
    starting_points(sorted, pb.total_weight, starts, &mean_m);
    Point best;
    const int iterations = minimise(pb, starts, 2, &best);
    if (!std::isfinite(best.f))
        return fail(err, errlen, ES_OUT_OF_RANGE,
                    "Gamma-Gamma fit: the log-likelihood cannot be evaluated at the starting points (customer "
                    "summaries beyond the range of a double)");
    out->p = std::exp(best.th[0]);
    out->q = std::exp(best.th[1]);
    out->v = std::exp(best.th[2]);
    out->n = std::ldexp(pb.total_weight, -shift);  // the weights as given, summed
    // the log-likelihood reported is the one without the penalty
    const double mean_ll = penalizer > 0.0 ? unpenalised_mean_log_likelihood(pb, best.th) : -best.f;
    out->log_likelihood = mean_ll * out->n;
    if (!std::isfinite(out->n) || !std::isfinite(out->log_likelihood))
        return fail(err, errlen, ES_OUT_OF_RANGE,
                    "Gamma-Gamma fit: the total weight (%g) or the log-likelihood (%g) is out of range of a double",
                    out->n, out->log_likelihood);
    out->iterations = iterations;
    const double gn = norm_inf(best.g, 3);
    // A parameter ran off: p, q beyond e^+-20, or v beyond e^+-20 of the mean of m (v carries
    // the currency unit).  E.g. no spread of spend between customers: q, v -> infinity.
    const double lref[3] = {0.0, 0.0, std::log(mean_m)};
    const int off = ran_off(best.th, lref, 3);
    clear_error(err, errlen);
    out->converged = 0;
    bool stationary = false;
    if (off >= 0) {
        static const char *names[3] = {"p", "q", "v"};
        fail(err, errlen, ES_OK,
             "Gamma-Gamma fit did not converge: parameter %s = %g ran off towards %s (no maximum inside the "
             "parameter space: the data do not identify the model, e.g. too few customers or no spread in spend; %s "
             "keeps parameters finite)",
             names[off], std::exp(best.th[off]), best.th[off] > lref[off] ? "infinity" : "0",
             penalizer > 0.0 ? "a larger penalizer" : "a penalizer > 0");
    } else if (gn > kConvergedGrad) {
        fail(err, errlen, ES_OK, "Gamma-Gamma fit did not converge after %d iterations (gradient norm %g)", iterations,
             gn);
    } else {
        stationary = true;
        if (!(out->q > 1.0))
            fail(err, errlen, ES_OK,
                 "Gamma-Gamma fit did not converge: q = %g <= 1, so the expected conversion value is infinite",
                 out->q);
        else
            out->converged = 1;
    }
    if (stationary) {
        double se[kMaxDim];
        out->has_standard_errors = standard_errors(pb, best.th, out->n, se) ? 1 : 0;
        out->se_p = se[0];
        out->se_q = se[1];
        out->se_v = se[2];
    }
    return ES_OK;
}

}  // namespace gg
}  // namespace es

// ---------------------------------------------------------------- C API

using es::finish;
using es::guarded;

extern "C" {

int es_gg_validate_params(double p, double q, double v, char *err, size_t errlen) noexcept {
    return es::gg::validate_params(p, q, v, err, errlen);
}

int es_gg_log_likelihood(double x, double m, double p, double q, double v, double *out, char *err,
                         size_t errlen) noexcept {
    return guarded(err, errlen, "Gamma-Gamma log-likelihood", [&]() -> int {
        int rc = es::gg::validate_customer(x, m, true, "", err, errlen);
        if (rc == ES_OK) rc = es::gg::validate_params(p, q, v, err, errlen);
        if (rc != ES_OK) return rc;
        return finish(es::gg::log_likelihood(x, m, p, q, v), out, "Gamma-Gamma log-likelihood", err, errlen);
    });
}

int es_gg_expected_value(double x, double m, double p, double q, double v, double *out, char *err,
                         size_t errlen) noexcept {
    return guarded(err, errlen, "Gamma-Gamma expected value", [&]() -> int {
        int rc = es::gg::validate_customer(x, m, false, "", err, errlen);
        if (rc == ES_OK) rc = es::gg::validate_params(p, q, v, err, errlen);
        if (rc != ES_OK) return rc;
        if (!(q > 1.0))
            return es::fail(err, errlen, ES_INVALID_PARAMETER,
                            "Gamma-Gamma parameter q = %g must be > 1 for an expected value (the population mean "
                            "p v / (q - 1) is infinite)",
                            q);
        return finish(es::gg::expected_value(x, m, p, q, v), out, "Gamma-Gamma expected value", err, errlen);
    });
}

int es_gg_validate_rows(const es_gg_row *rows, size_t n, char *err, size_t errlen) noexcept {
    if (n > 0 && rows == nullptr) return es::fail(err, errlen, ES_INVALID_PARAMETER, "no rows");
    char prefix[64];
    for (size_t i = 0; i < n; ++i) {
        const es_gg_row &r = rows[i];
        std::snprintf(prefix, sizeof prefix, "row %zu: ", i);
        const int rc = es::gg::validate_customer(r.x, r.m, true, prefix, err, errlen);
        if (rc != ES_OK) return rc;
        if (!es::gg::positive_finite(r.weight))
            return es::fail(err, errlen, ES_INVALID_PARAMETER, "row %zu: weight = %g must be finite and > 0 (x = %g, m = %g)",
                            i, r.weight, r.x, r.m);
    }
    return ES_OK;
}

size_t es_gg_collapse(es_gg_row *rows, size_t n) noexcept {
    if (rows == nullptr) return 0;
    return es::gg::collapse(rows, n);
}

int es_gg_fit_model(const es_gg_row *rows, size_t n, double penalizer, es_gg_fit *out, char *err,
                    size_t errlen) noexcept {
    return guarded(err, errlen, "Gamma-Gamma fit",
                   [&]() -> int { return es::gg::fit_model(rows, n, penalizer, out, err, errlen); });
}

}  // extern "C"

// mle.cpp: what the maximum-likelihood fits share (see mle.h), pure C++17.
#include "mle.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernel_status.h"
#include "scoring_kernel.h" /* enum es_status */

namespace es {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

int dimension(const Objective &objective) { return std::max(1, std::min(kMaxDim, objective.dim())); }

}  // namespace

int validate_penalizer(double penalizer, char *err, size_t errlen) {
    if (!std::isfinite(penalizer) || penalizer < 0.0)
        return fail(err, errlen, ES_INVALID_PARAMETER, "penalizer = %g must be finite and >= 0", penalizer);
    return ES_OK;
}

int weight_shift(double max_weight) {
    int max_exponent = 0;
    std::frexp(max_weight, &max_exponent);  // max_weight = m 2^max_exponent, m in [0.5, 1)
    return 1 - max_exponent;
}

double add_penalty(double penalizer, const double *th, int n, double f, double *grad) {
    if (penalizer == 0.0) return f;
    double s = 0.0;
    for (int k = 0; k < n; ++k) {
        s += th[k] * th[k];
        grad[k] += 2.0 * penalizer * th[k];
    }
    return f + penalizer * s;
}

int minimise(const Objective &objective, const double (*starts)[kMaxDim], int nstarts, Point *best) {
    const int n = dimension(objective);
    best->f = kInfinity;
    int iterations = 0;
    for (int s = 0; s < nstarts; ++s) {
        Point x{};
        for (int i = 0; i < n; ++i)
            x.th[i] = std::max(-kSearchBound + 1, std::min(kSearchBound - 1, std::log(starts[s][i])));
        x.f = objective.eval(x.th, x.g);
        if (!std::isfinite(x.f)) continue;
        iterations += bfgs(objective, &x, 500);
        if (x.f < best->f) *best = x;
    }
    if (std::isfinite(best->f) && norm_inf(best->g, n) > kGradTol && norm_inf(best->th, n) <= kSearchBound - 5) {
        // Stalled: polish with Nelder-Mead and restart BFGS from there.
        nelder_mead(objective, best, 2000);
        iterations += bfgs(objective, best, 500);
    }
    return iterations;
}

int ran_off(const double *th, const double *lref, int n) {
    int off = -1;
    for (int i = 0; i < n; ++i)
        if (std::fabs(th[i] - lref[i]) > kRanOff &&
            (off < 0 || std::fabs(th[i] - lref[i]) > std::fabs(th[off] - lref[off])))
            off = i;
    return off;
}

bool hessian(const Objective &objective, const double th[kMaxDim], double H[kMaxDim][kMaxDim]) {
    const int n = dimension(objective);
    // Ridders' method (Numerical Recipes' dfridr) on each column of the Hessian, the
    // derivative of the gradient along one coordinate: central differences with steps
    // h0, h0 / c, h0 / c^2, ..., extrapolated to h = 0 (their error is a series in h^2),
    // keeping the estimate whose extrapolation error is smallest.  In log-parameters the
    // objective varies on a scale of ~1, so h0 = 0.2 and steps down to ~0.01 keep both
    // the truncation error (after extrapolation) and the rounding error (~1e-16 / h of
    // the gradient's terms) far below 1e-8 of the entries.
    constexpr int kTab = 10;
    constexpr double kCon = 1.4, kCon2 = kCon * kCon, kSafe = 2.0, kStep0 = 0.2;
    double col[kMaxDim][kMaxDim];  // col[j][i] = d grad_i / d th_j
    for (int j = 0; j < n; ++j) {
        double A[kTab][kTab][kMaxDim];
        auto central = [&](double h, double *d) {
            double tp[kMaxDim], tm[kMaxDim], gp[kMaxDim], gm[kMaxDim];
            std::copy(th, th + kMaxDim, tp);
            std::copy(th, th + kMaxDim, tm);
            tp[j] += h;
            tm[j] -= h;
            const double hh = tp[j] - tm[j];  // the step actually taken
            if (!std::isfinite(objective.eval(tp, gp)) || !std::isfinite(objective.eval(tm, gm))) return false;
            for (int i = 0; i < n; ++i) d[i] = (gp[i] - gm[i]) / hh;
            return true;
        };
        double h = kStep0;
        if (!central(h, A[0][0])) return false;
        double err = kInfinity;
        double *best = A[0][0];
        for (int i = 1; i < kTab; ++i) {
            h /= kCon;
            if (!central(h, A[0][i])) return false;
            double fac = kCon2;
            for (int p = 1; p <= i; ++p) {
                double errt = 0.0;
                for (int k = 0; k < n; ++k) {
                    A[p][i][k] = (A[p - 1][i][k] * fac - A[p - 1][i - 1][k]) / (fac - 1.0);
                    errt = std::max(errt, std::max(std::fabs(A[p][i][k] - A[p - 1][i][k]),
                                                   std::fabs(A[p][i][k] - A[p - 1][i - 1][k])));
                }
                fac *= kCon2;
                if (errt <= err) {
                    err = errt;
                    best = A[p][i];
                }
            }
            double drift = 0.0;  // higher orders getting worse: stop
            for (int k = 0; k < n; ++k) drift = std::max(drift, std::fabs(A[i][i][k] - A[i - 1][i - 1][k]));
            if (drift >= kSafe * err) break;
        }
        std::copy(best, best + n, col[j]);
    }
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
            H[i][j] = 0.5 * (col[j][i] + col[i][j]);
            if (!std::isfinite(H[i][j])) return false;
        }
    return true;
}

bool standard_errors(const Objective &objective, const double th[kMaxDim], double total_weight,
                     double se[kMaxDim]) {
    const int n = dimension(objective);
    std::fill(se, se + kMaxDim, 0.0);
    double H[kMaxDim][kMaxDim];
    if (!hessian(objective, th, H)) return false;
    // Cholesky H = L L'.
    double L[kMaxDim][kMaxDim] = {};
    for (int j = 0; j < n; ++j) {
        double d = H[j][j];
        for (int k = 0; k < j; ++k) d -= L[j][k] * L[j][k];
        if (!(H[j][j] > 0.0) || !(d > 1e-9 * H[j][j])) return false;
        L[j][j] = std::sqrt(d);
        for (int i = j + 1; i < n; ++i) {
            double s = H[i][j];
            for (int k = 0; k < j; ++k) s -= L[i][k] * L[j][k];
            L[i][j] = s / L[j][j];
        }
    }
    // M = L^-1 (lower triangular); (H^-1)_ii = (M' M)_ii = sum_k M_ki^2.
    double M[kMaxDim][kMaxDim] = {};
    for (int c = 0; c < n; ++c) {
        M[c][c] = 1.0 / L[c][c];
        for (int i = c + 1; i < n; ++i) {
            double s = 0.0;
            for (int k = c; k < i; ++k) s -= L[i][k] * M[k][c];
            M[i][c] = s / L[i][i];
        }
    }
    const double root_n = std::sqrt(total_weight);
    double out[kMaxDim] = {};
    for (int i = 0; i < n; ++i) {
        double v = 0.0;
        for (int k = i; k < n; ++k) v += M[k][i] * M[k][i];
        // sd(theta_i) = theta_i sd(th_i), sd(th_i) = sqrt(v / N)
        out[i] = std::exp(th[i]) * (std::sqrt(v) / root_n);
        if (!std::isfinite(out[i]) || !(out[i] > 0.0)) return false;
    }
    std::copy(out, out + n, se);
    return true;
}

}  // namespace es

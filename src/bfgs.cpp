// bfgs.cpp: BFGS and Nelder-Mead for the maximum-likelihood fits (see bfgs.h),
// pure C++17.  Sums and products run in the same order whatever the dimension,
// so a fit's arithmetic does not depend on how many coordinates share the code.
#include "bfgs.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace es {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();

// The objective's dimension, 1 .. kMaxDim.
int dimension(const Objective &objective) { return std::max(1, std::min(kMaxDim, objective.dim())); }

// sum_{i < n} p_i q_i, left to right.
double dot(const double *p, const double *q, int n) {
    double s = p[0] * q[0];
    for (int i = 1; i < n; ++i) s += p[i] * q[i];
    return s;
}

// Strong-Wolfe line search (Nocedal & Wright, algorithms 3.5/3.6, with
// safeguarded quadratic interpolation).  Returns false when no point with
// sufficient decrease was found.
bool line_search(const Objective &objective, const Point &x0, const double p[kMaxDim], Point *out) {
    const int n = dimension(objective);
    const double c1 = 1e-4, c2 = 0.9;
    const double d0 = dot(x0.g, p, n);
    if (!(d0 < 0.0)) return false;
    // No step of more than 10 in any log-parameter.
    const double pmax = norm_inf(p, n);
    const double amax = pmax > 0 ? std::min(1e10, 10.0 / pmax) : 1.0;
    auto phi = [&](double alpha, Point *pt) {
        for (int i = 0; i < n; ++i) pt->th[i] = x0.th[i] + alpha * p[i];
        for (int i = n; i < kMaxDim; ++i) pt->th[i] = x0.th[i];
        pt->f = objective.eval(pt->th, pt->g);
        return pt->f;
    };
    // Hager & Zhang's approximate Wolfe conditions: near the optimum the decrease
    // of f drowns in rounding, but the directional derivative is still exact.
    const double f_noise = 1e-12 * std::fabs(x0.f);
    auto approx_wolfe = [&](const Point &pt) {
        if (!(pt.f <= x0.f + f_noise)) return false;
        const double da = dot(pt.g, p, n);
        return c2 * d0 <= da && da <= (2 * c1 - 1) * d0;
    };
    auto zoom = [&](double lo, Point plo, double hi, Point phi_pt) {
        for (int it = 0; it < 60; ++it) {
            const double dlo = dot(plo.g, p, n);
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
                const double da = dot(pt.g, p, n);
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
        const double da = dot(pt.g, p, n);
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

}  // namespace

double norm_inf(const double *v, int n) {
    double m = std::fabs(v[0]);
    for (int i = 1; i < n; ++i) m = std::max(m, std::fabs(v[i]));
    return m;
}

// BFGS on the inverse Hessian; restarts from the identity when a step fails.
// Returns the number of iterations.
int bfgs(const Objective &objective, Point *x, int max_iter) {
    const int n = dimension(objective);
    double H[kMaxDim][kMaxDim];
    auto reset = [&](double scale) {
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j) H[i][j] = i == j ? scale : 0.0;
    };
    reset(1.0);
    bool fresh = true;
    int iter = 0;
    int stall = 0;
    for (; iter < max_iter; ++iter) {
        if (norm_inf(x->g, n) <= kGradTol) break;
        if (norm_inf(x->th, n) > kSearchBound - 5) break;  // running off to the edge: no interior optimum
        double p[kMaxDim] = {};
        for (int i = 0; i < n; ++i) {
            double hg = H[i][0] * x->g[0];
            for (int j = 1; j < n; ++j) hg += H[i][j] * x->g[j];
            p[i] = -hg;
        }
        if (!(dot(p, x->g, n) < 0)) {
            reset(1.0);
            fresh = true;
            for (int i = 0; i < n; ++i) p[i] = -x->g[i];
        }
        Point nx;
        if (!line_search(objective, *x, p, &nx)) {
            if (fresh) break;  // even steepest descent failed: at the precision floor
            reset(1.0);
            fresh = true;
            continue;
        }
        double sv[kMaxDim] = {}, yv[kMaxDim] = {};
        for (int i = 0; i < n; ++i) {
            sv[i] = nx.th[i] - x->th[i];
            yv[i] = nx.g[i] - x->g[i];
        }
        const double sy = dot(sv, yv, n), yy = dot(yv, yv, n);
        const double fdrop = x->f - nx.f;
        *x = nx;
        // Several steps with no measurable decrease and a tiny step: numerically done.
        stall = (fdrop <= 4 * kEps * std::fabs(x->f) && norm_inf(sv, n) < 1e-12) ? stall + 1 : 0;
        if (stall >= 3) break;
        if (sy > 1e-300 && sy > 1e-12 * std::sqrt(yy * dot(sv, sv, n))) {
            if (fresh) reset(sy / yy);  // Nocedal & Wright (6.20) scaling
            fresh = false;
            // H <- (I - rho s y') H (I - rho y s') + rho s s'
            const double rho = 1.0 / sy;
            double Hy[kMaxDim];
            for (int i = 0; i < n; ++i) {
                Hy[i] = H[i][0] * yv[0];
                for (int j = 1; j < n; ++j) Hy[i] += H[i][j] * yv[j];
            }
            const double yHy = dot(yv, Hy, n);
            for (int i = 0; i < n; ++i)
                for (int j = 0; j < n; ++j)
                    H[i][j] += rho * ((1.0 + rho * yHy) * sv[i] * sv[j] - Hy[i] * sv[j] - sv[i] * Hy[j]);
        }
    }
    return iter;
}

// Nelder-Mead in the log-parameters, to move off a point where BFGS stalled:
// a simplex of dim() + 1 vertices, the coordinates beyond dim() those of *x.
void nelder_mead(const Objective &objective, Point *x, int max_eval) {
    const int n = dimension(objective);
    const int nv = n + 1;  // vertices
    double simplex[kMaxDim + 1][kMaxDim], fv[kMaxDim + 1], g[kMaxDim];
    for (int i = 0; i < nv; ++i) {
        for (int j = 0; j < kMaxDim; ++j) simplex[i][j] = x->th[j] + (i == j + 1 ? 0.1 : 0.0);
        fv[i] = i == 0 ? x->f : objective.eval(simplex[i], g);
    }
    for (int ev = 0; ev < max_eval;) {
        // Vertices by value, ties by index (a total order: the result is unique).  Insertion sort of
        // at most five.
        int order[kMaxDim + 1];
        for (int i = 0; i < nv; ++i) {
            int k = i;
            for (; k > 0 && (fv[i] < fv[order[k - 1]] || (fv[i] == fv[order[k - 1]] && i < order[k - 1])); --k)
                order[k] = order[k - 1];
            order[k] = i;
        }
        const int best = order[0], worst = order[n], second = order[n - 1];
        if (std::fabs(fv[worst] - fv[best]) <= 1e-15 * (1.0 + std::fabs(fv[best]))) break;
        double cen[kMaxDim];
        std::copy(x->th, x->th + kMaxDim, cen);
        for (int j = 0; j < n; ++j) cen[j] = 0.0;
        for (int i = 0; i < nv; ++i)
            if (i != worst)
                for (int j = 0; j < n; ++j) cen[j] += simplex[i][j] / static_cast<double>(n);
        auto at = [&](double t, double *pt) {
            std::copy(x->th, x->th + kMaxDim, pt);
            for (int j = 0; j < n; ++j) pt[j] = cen[j] + t * (simplex[worst][j] - cen[j]);
            ++ev;
            return objective.eval(pt, g);
        };
        double pr[kMaxDim], pe[kMaxDim], pc[kMaxDim];
        const double fr = at(-1.0, pr);
        if (fr < fv[best]) {
            const double fe = at(-2.0, pe);
            if (fe < fr) {
                std::copy(pe, pe + kMaxDim, simplex[worst]);
                fv[worst] = fe;
            } else {
                std::copy(pr, pr + kMaxDim, simplex[worst]);
                fv[worst] = fr;
            }
        } else if (fr < fv[second]) {
            std::copy(pr, pr + kMaxDim, simplex[worst]);
            fv[worst] = fr;
        } else {
            const double fc = fr < fv[worst] ? at(-0.5, pc) : at(0.5, pc);
            if (fc < std::min(fr, fv[worst])) {
                std::copy(pc, pc + kMaxDim, simplex[worst]);
                fv[worst] = fc;
            } else {  // shrink towards the best vertex
                for (int i = 0; i < nv; ++i) {
                    if (i == best) continue;
                    for (int j = 0; j < n; ++j)
                        simplex[i][j] = simplex[best][j] + 0.5 * (simplex[i][j] - simplex[best][j]);
                    fv[i] = objective.eval(simplex[i], g);
                    ++ev;
                }
            }
        }
    }
    int best = 0;
    for (int i = 1; i < nv; ++i)
        if (fv[i] < fv[best]) best = i;
    if (fv[best] < x->f) {
        std::copy(simplex[best], simplex[best] + kMaxDim, x->th);
        x->f = objective.eval(x->th, x->g);
    }
}

}  // namespace es

// mle.h: what the maximum-likelihood fits (btyd_kernel.cpp, gammagamma_kernel.cpp)
// share, pure C++17: the penalizer's check and the L2 penalty on the
// log-parameters, the exact power-of-two scaling of the weights, the
// multi-start optimisation, the "ran off" test and the standard errors from
// the observed information.  Internal: C++ only, never included by the
// PostgreSQL glue.
//
// Every fit minimises an Objective (bfgs.h) over th = ln(theta), theta the
// natural parameters:
//   f(th) = -(1/W) sum_i w_i ll_i(theta) + penalizer * sum_k th_k^2,
// W the sum of the (scaled) weights, so that the total penalised
// log-likelihood maximised is N (-f), N the total weight as given.
#ifndef ENGAGEMENT_MLE_H
#define ENGAGEMENT_MLE_H

#include <cstddef>

#include "bfgs.h"

namespace es {

// A parameter "ran off" when its log lies more than this beyond its natural scale.
constexpr double kRanOff = 20.0;

// A fit has converged when no component of the gradient of f exceeds this.
constexpr double kConvergedGrad = 1e-7;

// ES_OK when penalizer is finite and >= 0, else ES_INVALID_PARAMETER with a message.
int validate_penalizer(double penalizer, char *err, size_t errlen);

// The power of two 2^s that brings max_weight (> 0) into [1, 2): scaling every weight
// by it is exact, leaves weights of 1 alone, and keeps sums of weights near either end
// of the double range finite and non-zero.
int weight_shift(double max_weight);

// f + penalizer * sum_{k<n} th_k^2, and adds 2 penalizer th_k to grad[k]; f and grad
// untouched when penalizer is 0 (an unpenalised fit does exactly the arithmetic it
// would without a penalty).
double add_penalty(double penalizer, const double *th, int n, double f, double *grad);

// The mean log-likelihood at th without the penalty: problem (an Objective with a
// `penalizer` member) evaluated with penalizer 0, which is then restored.
template <class Problem>
double unpenalised_mean_log_likelihood(Problem &problem, const double th[kMaxDim]) {
    const double penalizer = problem.penalizer;
    double grad[kMaxDim];
    problem.penalizer = 0.0;
    const double f = problem.eval(th, grad);
    problem.penalizer = penalizer;
    return -f;
}

// Minimises the objective from each start (natural parameters, their logs clamped
// into the search box) by BFGS, at most 500 iterations each, keeps the best (the
// first of equals), and, if that stalled short of the gradient tolerance away from
// the edge of the box, polishes it with Nelder-Mead and restarts BFGS.  *best.f is
// +inf when the objective is not finite at any start.  Returns the number of BFGS
// iterations.
int minimise(const Objective &objective, const double (*starts)[kMaxDim], int nstarts, Point *best);

// The coordinate k < n whose |th_k - lref_k| exceeds kRanOff the most, or -1.
int ran_off(const double *th, const double *lref, int n);

// The Hessian of the objective at th, by central differences of its analytic
// gradient with Ridders' (Richardson) extrapolation, symmetrised; relative
// accuracy ~1e-10 for smooth objectives.  False when the objective is not finite
// at a point the differences need.
bool hessian(const Objective &objective, const double th[kMaxDim], double H[kMaxDim][kMaxDim]);

// Standard errors of the natural parameters theta = exp(th) at the estimate th
// (a stationary point of f): the observed information in th is I = N H, H the
// Hessian of f, so Cov(th) = I^-1 and, by the delta method, Cov(theta) =
// D I^-1 D with D = diag(theta) (at a stationary point this is the inverse of
// minus the Hessian of the total penalised log-likelihood in theta itself).
// Inverts H by Cholesky.  Returns false, with se zeroed, when H is not
// (numerically) positive definite, i.e. a Cholesky pivot is not above 1e-9 of
// its diagonal entry, or a result is not finite and > 0.
bool standard_errors(const Objective &objective, const double th[kMaxDim], double total_weight,
                     double se[kMaxDim]);

}  // namespace es

#endif  // ENGAGEMENT_MLE_H

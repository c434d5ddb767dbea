/*
 * btyd_kernel.h: "buy till you die" models of docs/model.md
 * ("Predictive metrics" and "Fitting"): the modified BG/NBD (MBG/NBD,
 * lifetimes' ModifiedBetaGeoFitter) and the BG/NBD of Fader, Hardie & Lee
 * (2005, lifetimes' BetaGeoFitter).
 *
 * Like scoring_kernel.h this header is valid C and C++; the implementation is
 * C++17 with no PostgreSQL headers, every function is noexcept and reports
 * failures through an enum es_status code and a NUL-terminated message in
 * err (errlen bytes; err may be NULL).  Only es_btyd_fit_model allocates
 * (and reports ES_OUT_OF_MEMORY if it cannot).
 *
 * A customer (contact) is summarised by (x, t_x, T), in any time unit that
 * is also the unit of alpha and of a horizon:
 *   x    number of repeat events: a double holding an integer, 0 <= x <= 1e15;
 *   t_x  time of the last event since birth, 0 <= t_x <= T; t_x must be 0 when
 *        x = 0 (the formulas have no t_x then; a non-zero one is an error, not
 *        silently ignored).  x > 0 with t_x = 0 is accepted (an engagement
 *        day on the birth day);
 *   T    length of observation since birth, T >= 0 (a contact born today has
 *        T = 0).
 * Model parameters r, alpha, a, b must be finite and > 0.
 *
 * Status codes: NaN or infinite inputs, a non-integer or negative x, t_x
 * outside [0, T], a non-positive parameter or horizon < 0 give
 * ES_INVALID_PARAMETER (SQLSTATE 22023); a result that does not fit a double
 * (or, for es_hyp2f1, cannot be evaluated to ~1e-10) gives ES_OUT_OF_RANGE
 * (22003).  No output is ever NaN or infinite when ES_OK is returned.
 */
#ifndef ENGAGEMENT_BTYD_KERNEL_H
#define ENGAGEMENT_BTYD_KERNEL_H

#include <stddef.h>

#include "scoring_kernel.h" /* enum es_status, ES_NOEXCEPT */

#ifdef __cplusplus
extern "C" {
#endif

enum es_btyd_model {
    ES_MODEL_MBGNBD = 0, /* modified BG/NBD: dropout possible at birth too */
    ES_MODEL_BGNBD = 1   /* BG/NBD: dropout only after a repeat event */
};

/* Largest accepted x (doubles hold every integer up to 2^53 exactly). */
#define ES_BTYD_MAX_X 1e15

/* Checks (x, t_x, T) and (r, alpha, a, b) as described above. */
int es_btyd_validate_customer(double x, double t_x, double T, char *err, size_t errlen) ES_NOEXCEPT;
int es_btyd_validate_params(double r, double alpha, double a, double b, char *err, size_t errlen) ES_NOEXCEPT;

/* Log-likelihood of one customer (docs/model.md "Fitting"), in log space. */
int es_btyd_log_likelihood(int model, double x, double t_x, double T, double r, double alpha, double a, double b,
                           double *out, char *err, size_t errlen) ES_NOEXCEPT;

/* P(alive at T | x, t_x, T).
 *   MBG/NBD: 1 / (1 + (a / (b + x)) ((alpha + T) / (alpha + t_x))^(r + x))
 *   BG/NBD:  1 / (1 + [x > 0] (a / (b + x - 1)) ((alpha + T) / (alpha + t_x))^(r + x)) */
int es_btyd_p_alive(int model, double x, double t_x, double T, double r, double alpha, double a, double b, double *out,
                    char *err, size_t errlen) ES_NOEXCEPT;

/* E[number of events in (T, T + horizon] | x, t_x, T]: lifetimes'
 * conditional_expected_number_of_purchases_up_to_time (its closed form with
 * 2F1), evaluated as P_alive * E[events | alive] with the a = 1 singularity
 * removed analytically (no perturbation): a power series after two Pfaff
 * transformations when horizon <= 200 (alpha + T) and it converges without
 * cancellation, else Gauss-Kronrod quadrature of the Beta-mixture integral,
 * and where that falls short of its accuracy (a and b + x both ~1e7 or more:
 * a narrow Beta), for a > 2, quadrature over the logit of the dropout
 * probability centred on its mode (~1e-14).  Relative accuracy ~1e-11 (1e-10
 * when a, b ~ 1e5 or more, down to ~1e-7 when a ~ 1e7 or more and the
 * Beta-mixture quadrature succeeds).  horizon >= 0 (0 gives 0).
 * ES_OUT_OF_RANGE only for parameters beyond every profile's ranges (e.g.
 * a ~ 1e300) that neither quadrature can resolve within its budget, or a
 * result beyond the double range: never for r, a, b in [1e-9, 1e9], alpha in
 * [1e-9, 1e18], horizon in [1e-6, 1e9] and MBG/NBD summaries of days
 * (x, t_x, T up to ~1.1e8). */
int es_btyd_expected(int model, double horizon, double x, double t_x, double T, double r, double alpha, double a,
                     double b, double *out, char *err, size_t errlen) ES_NOEXCEPT;

/* The MBG/NBD es_btyd_expected for a caller that has P_alive (es_btyd_p_alive, which checked the
 * summary and the parameters): P_alive * E[events | alive], without computing P_alive again.
 * horizon > 0.  Equal to es_btyd_expected within its accuracy (not to the bit: no round trip
 * through logs). */
int es_btyd_expected_given_p_alive(double p_alive, double horizon, double x, double T, double r, double alpha,
                                   double a, double b, double *out, char *err, size_t errlen) ES_NOEXCEPT;

/* P(no event in (T, T + horizon] | x, t_x, T)
 *   = (1 - P_alive) + P_alive ((alpha + T) / (alpha + T + horizon))^(r + x). */
int es_btyd_prob_no_event(int model, double horizon, double x, double t_x, double T, double r, double alpha, double a,
                          double b, double *out, char *err, size_t errlen) ES_NOEXCEPT;

/* Gauss hypergeometric function 2F1(a, b; c; z) for real arguments, z <= 1
 * (z = 1 only when c - a - b > 0).  c must not be 0, -1, -2, ... .
 * Power series for |z| small, Pfaff transformation for z < 0, the z -> 1 - z
 * connection formula near 1 (cubic interpolation in c when c - a - b is within
 * 1e-4 of an integer; relative accuracy then ~1e-11), Chu-Vandermonde for a
 * polynomial at z = 1.  ES_OUT_OF_RANGE when the value overflows or the
 * estimated relative error exceeds 1e-10. */
int es_hyp2f1(double a, double b, double c, double z, double *out, char *err, size_t errlen) ES_NOEXCEPT;

/* Digamma psi(x) = d/dx ln Gamma(x) for x > 0 (recurrence + asymptotic series,
 * relative error ~1e-15). */
int es_btyd_digamma(double x, double *out, char *err, size_t errlen) ES_NOEXCEPT;

/* One summarised customer, or weight identical ones. */
typedef struct es_btyd_row {
    double x, t_x, T;
    double weight; /* > 0 and finite: number of identical customers */
} es_btyd_row;

/* Sorts rows in place by (x, t_x, T, weight) and merges rows with equal
 * (x, t_x, T), summing their weights (in sorted order, so the result depends
 * only on the multiset of rows).  Returns the new length.  Never allocates;
 * total order even with NaN (NaN sorts last), so it never misbehaves on bad
 * input, but validate first. */
size_t es_btyd_collapse(es_btyd_row *rows, size_t n) ES_NOEXCEPT;

/* Checks every row (customer values and weight); the message names the first
 * bad row by its index and values. */
int es_btyd_validate_rows(const es_btyd_row *rows, size_t n, char *err, size_t errlen) ES_NOEXCEPT;

/* Sum of weight * log-likelihood over the rows, in the given order
 * (compensated summation); collapse first for an order-independent value. */
int es_btyd_log_likelihood_sum(int model, const es_btyd_row *rows, size_t n, double r, double alpha, double a, double b,
                               double *out, char *err, size_t errlen) ES_NOEXCEPT;

typedef struct es_btyd_fit {
    double r, alpha, a, b;
    double log_likelihood; /* sum of weight * ll at the estimate */
    double n;              /* total weight */
    int iterations;        /* BFGS iterations, all starts and restarts */
    int converged;         /* 1: interior maximum found (see es_btyd_fit_model) */
    int has_standard_errors; /* 1: se_* hold standard errors; 0: se_* are 0 (see es_btyd_fit_model) */
    double se_r, se_alpha, se_a, se_b;
} es_btyd_fit;

/*
 * The maximum-likelihood fit of rows (x, t_x, T, weight), n >= 1, over log(r, alpha, a, b); with
 * penalizer > 0 (finite) the maximum of the penalised mean (1/N) sum(weight ll) - penalizer *
 * sum(ln(parameter)^2) instead (N the total weight), which holds finite the parameters the data do
 * not identify (like lifetimes' penalizer_coef, on the logs).  The result depends only on the
 * multiset of rows: any order, any split into duplicates of the same total weight, any scale of
 * the weights gives the same bits.
 * ES_OK, converged = 1: the gradient in the log-parameters is <= 1e-7, r, a and b lie within e^+-20
 * and alpha within e^+-20 of the longest T; has_standard_errors = 1 when the observed information
 * (weights as counts) is positive definite, with se_* by the delta method.  ES_OK, converged = 0: the
 * best parameters found, and why in err, a sentence that stands alone (all x = 0; a parameter
 * running off to 0 or infinity; no convergence).  log_likelihood is the unpenalised sum either way.
 * ES_INVALID_PARAMETER for a bad model, penalizer or row (named), ES_OUT_OF_RANGE when the weights
 * or the log-likelihood do not fit a double, ES_OUT_OF_MEMORY.
 * (How: BFGS with a strong-Wolfe line search and analytic gradients from two starts scaled to the
 * data's rate, Nelder-Mead polish and a restart where it stalls; the information from
 * Richardson-extrapolated differences of the gradient.)
 */
int es_btyd_fit_model(int model, const es_btyd_row *rows, size_t n, double penalizer, es_btyd_fit *out, char *err,
                      size_t errlen) ES_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* ENGAGEMENT_BTYD_KERNEL_H */

/*
 * gammagamma_kernel.h: the Gamma-Gamma spend model of docs/model.md
 * ("Value (Gamma-Gamma)" and "Fitting"; Fader, Hardie & Lee 2005, lifetimes'
 * GammaGammaFitter): the expected value of a contact's next conversion day and
 * the maximum-likelihood fit of (p, q, v).
 *
 * Like btyd_kernel.h this header is valid C and C++; the implementation is
 * C++17 with no PostgreSQL headers, every function is noexcept and reports
 * failures through an enum es_status code and a NUL-terminated message in
 * err (errlen bytes; err may be NULL).  Only es_gg_fit_model allocates.
 *
 * A customer is summarised by (x, m): x valued conversion days (a double
 * holding an integer, 0 <= x <= ES_BTYD_MAX_X) and m the mean value of those
 * days (finite, >= 0; m = 0 when x = 0, and m > 0 when x > 0).  The fit uses
 * customers with x >= 1 only.  Parameters p, q, v must be finite and > 0.
 *
 * Status codes as btyd_kernel.h: bad inputs ES_INVALID_PARAMETER (22023), a
 * result beyond a double ES_OUT_OF_RANGE (22003).  No output is NaN or
 * infinite when ES_OK is returned.
 */
#ifndef ENGAGEMENT_GAMMAGAMMA_KERNEL_H
#define ENGAGEMENT_GAMMAGAMMA_KERNEL_H

#include <stddef.h>

#include "btyd_kernel.h" /* ES_BTYD_MAX_X, enum es_status, ES_NOEXCEPT */

#ifdef __cplusplus
extern "C" {
#endif

/* Checks p, q, v: finite and > 0. */
int es_gg_validate_params(double p, double q, double v, char *err, size_t errlen) ES_NOEXCEPT;

/* Log-likelihood of one customer with x >= 1, m > 0 (docs/model.md "Fitting"):
 *   lnGamma(p x + q) - lnGamma(p x) - lnGamma(q) + q ln v
 *   + (p x - 1) ln m + p x ln x - (p x + q) ln(x m + v) */
int es_gg_log_likelihood(double x, double m, double p, double q, double v, double *out, char *err,
                         size_t errlen) ES_NOEXCEPT;

/* Expected value of the next conversion day:
 *   p (v + x m) / (p x + q - 1);  x = 0 gives the population mean p v / (q - 1).
 * Needs q > 1 (else ES_INVALID_PARAMETER: the population mean is infinite). */
int es_gg_expected_value(double x, double m, double p, double q, double v, double *out, char *err,
                         size_t errlen) ES_NOEXCEPT;

/* One customer summary, or weight identical ones (weight finite and > 0). */
typedef struct es_gg_row {
    double x, m;
    double weight;
} es_gg_row;

/* Checks every row (x >= 1 integer <= ES_BTYD_MAX_X, m finite > 0, weight
 * finite > 0); the message names the first bad row by its index and values. */
int es_gg_validate_rows(const es_gg_row *rows, size_t n, char *err, size_t errlen) ES_NOEXCEPT;

/* Sorts rows by (x, m, weight) and merges equal (x, m), summing weights.
 * Returns the new length.  Never allocates. */
size_t es_gg_collapse(es_gg_row *rows, size_t n) ES_NOEXCEPT;

typedef struct es_gg_fit {
    double p, q, v;
    double log_likelihood; /* sum of weight * ll at the estimate, without the penalty */
    double n;              /* total weight */
    int iterations;
    int converged;         /* 1: interior maximum found with q > 1 */
    int has_standard_errors; /* 1: se_* hold standard errors; 0: se_* are 0, because no interior
                              * stationary point was found or the information matrix is not
                              * positive definite there (see es_gg_fit_model) */
    double se_p, se_q, se_v;
} es_gg_fit;

/*
 * Maximum-likelihood (or, with penalizer > 0, penalised) fit of (p, q, v), as
 * es_btyd_fit_model: deterministic in the multiset of rows, BFGS over the
 * log-parameters maximising  mean(weight * ll) - penalizer * sum(ln(theta)^2),
 * from two starting points whose population mean p v / (q - 1) is the mean of
 * m; converged = 1 when the gradient (of that mean, w.r.t. the log-parameters)
 * is <= 1e-7, no parameter ran off to 0 or infinity (p, q beyond e^+-20, v
 * beyond e^+-20 of the mean of m), and q > 1 (a fit with q <= 1 has no finite
 * expected value: not converged, and err says so).  Not converged: ES_OK, the
 * best point and the reason in err, a sentence that stands alone ("Gamma-Gamma
 * fit did not converge: ...").  log_likelihood is without the penalty.
 * Standard errors, when the estimate is an interior stationary point (converged,
 * or not converged only because q <= 1): square roots of the diagonal of the
 * inverse of the observed information, minus the Hessian of the total
 * (weighted, weights taken as counts) penalised log-likelihood in the natural
 * parameters at the estimate (computed in the log-parameters and carried over by
 * the delta method, as es_btyd_fit_model).  penalizer must be finite and >= 0.
 * n >= 1 rows.  ES_INVALID_PARAMETER for a bad penalizer or row (the message
 * names the row), ES_OUT_OF_RANGE when the total weight or the log-likelihood
 * does not fit a double, ES_OUT_OF_MEMORY if the copy cannot be allocated.
 */
int es_gg_fit_model(const es_gg_row *rows, size_t n, double penalizer, es_gg_fit *out, char *err,
                    size_t errlen) ES_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* ENGAGEMENT_GAMMAGAMMA_KERNEL_H */

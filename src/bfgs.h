// bfgs.h: the optimiser of the maximum-likelihood fits (BTYD, Gamma-Gamma),
// pure C++17: BFGS with a strong-Wolfe line search, and Nelder-Mead to move off
// a point where BFGS stalls.  It minimises a smooth function of one to four
// unbounded coordinates (the fits use log-parameters).  Internal: C++ only,
// never included by the PostgreSQL glue.
#ifndef ENGAGEMENT_BFGS_H
#define ENGAGEMENT_BFGS_H

namespace es {

// The search box: every coordinate within +-kSearchBound (as a log-parameter,
// e^40 ~ 2.4e17).  Objectives return +inf outside it; bfgs stops near its edge,
// where there is no interior minimum to find.
constexpr double kSearchBound = 40.0;

// bfgs stops when no gradient component exceeds this.
constexpr double kGradTol = 1e-9;

// Most coordinates an objective may have.
constexpr int kMaxDim = 4;

// The function to minimise, of its first dim() coordinates; points carry
// kMaxDim coordinates, and the ones beyond dim() are passed through unchanged
// and must be ignored.
class Objective {
public:
    // f(th), and its gradient in grad (the first dim() components); +inf where
    // f is not finite (grad then unused).
    virtual double eval(const double th[kMaxDim], double grad[kMaxDim]) const = 0;
    // The number of coordinates, 1 .. kMaxDim.
    virtual int dim() const { return kMaxDim; }

protected:
    ~Objective() = default;
};

// A point with its value and gradient (coordinates beyond the objective's dim() unused).
struct Point {
    double th[kMaxDim];
    double f;
    double g[kMaxDim];
};

// max_{i < n} |v_i|.
double norm_inf(const double *v, int n);
// max_i |v_i| of four.
inline double norm_inf4(const double v[4]) { return norm_inf(v, 4); }

// BFGS from *x (f and g filled in), at most max_iter iterations; *x becomes
// the best point reached.  Returns the number of iterations.
int bfgs(const Objective &objective, Point *x, int max_iter);

// Nelder-Mead from *x, at most ~max_eval evaluations; replaces *x only by a
// better point.
void nelder_mead(const Objective &objective, Point *x, int max_eval);

}  // namespace es

#endif  // ENGAGEMENT_BFGS_H

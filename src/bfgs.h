// bfgs.h: the optimiser of the BTYD fits, pure C++17: BFGS with a strong-Wolfe
// line search, and Nelder-Mead to move off a point where BFGS stalls.  It
// minimises a smooth function of four unbounded coordinates (the fits use
// log-parameters).  Internal: C++ only, never included by the PostgreSQL glue.
#ifndef ENGAGEMENT_BFGS_H
#define ENGAGEMENT_BFGS_H

namespace es {

// The search box: every coordinate within +-kSearchBound (as a log-parameter,
// e^40 ~ 2.4e17).  Objectives return +inf outside it; bfgs stops near its edge,
// where there is no interior minimum to find.
constexpr double kSearchBound = 40.0;

// bfgs stops when no gradient component exceeds this.
constexpr double kGradTol = 1e-9;

// The function to minimise.
class Objective {
public:
    // f(th), and its gradient in grad; +inf where f is not finite (grad then unused).
    virtual double eval(const double th[4], double grad[4]) const = 0;

protected:
    ~Objective() = default;
};

// A point with its value and gradient.
struct Point {
    double th[4];
    double f;
    double g[4];
};

// max_i |v_i|.
double norm_inf4(const double v[4]);

// BFGS from *x (f and g filled in), at most max_iter iterations; *x becomes
// the best point reached.  Returns the number of iterations.
int bfgs(const Objective &objective, Point *x, int max_iter);

// Nelder-Mead from *x, at most ~max_eval evaluations; replaces *x only by a
// better point.
void nelder_mead(const Objective &objective, Point *x, int max_eval);

}  // namespace es

#endif  // ENGAGEMENT_BFGS_H

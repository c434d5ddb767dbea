// test_support.h: helpers shared by the fit tests, written independently of the
// kernels' own numerics: the CDNOW files, and a natural-parameter Hessian by
// finite differences of function values with its inverse (to check the kernels'
// standard errors, which come from central differences of analytic gradients in
// the log-parameters).
#ifndef ENGAGEMENT_TEST_SUPPORT_H
#define ENGAGEMENT_TEST_SUPPORT_H

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace testsupport {

// Opens the repository's test/data/cdnow/<file>, from $CDNOW_DIR or found by walking up from the
// working directory; *where is the path opened ("" when none).
inline bool open_cdnow(const std::string &file, std::ifstream *in, std::string *where) {
    std::vector<std::string> candidates;
    if (const char *dir = std::getenv("CDNOW_DIR")) candidates.push_back(std::string(dir) + "/" + file);
    std::string up;
    for (int depth = 0; depth < 6; ++depth, up += "../") candidates.push_back(up + "test/data/cdnow/" + file);
    for (const std::string &path : candidates) {
        in->open(path);
        if (*in) {
            *where = path;
            return true;
        }
        in->clear();
    }
    *where = "";
    return false;
}

using Matrix = std::vector<std::vector<double>>;

// d^2 F / d theta_i d theta_j at theta, by second differences of F with steps
// h_i = rel * theta_i and h_i / 2, Richardson-extrapolated ((4 D(h/2) - D(h)) / 3).
inline Matrix fd_hessian(const std::function<double(const std::vector<double> &)> &F, const std::vector<double> &theta,
                         double rel) {
    const size_t n = theta.size();
    auto second = [&](size_t i, size_t j, double scale) {
        const double hi = rel * scale * theta[i], hj = rel * scale * theta[j];
        auto at = [&](double di, double dj) {
            std::vector<double> t = theta;
            t[i] += di;
            t[j] += dj;
            return F(t);
        };
        if (i == j) return (at(hi, 0) - 2 * F(theta) + at(-hi, 0)) / (hi * hi);
        return (at(hi, hj) - at(hi, -hj) - at(-hi, hj) + at(-hi, -hj)) / (4 * hi * hj);
    };
    Matrix H(n, std::vector<double>(n));
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i; j < n; ++j) H[i][j] = H[j][i] = (4 * second(i, j, 0.5) - second(i, j, 1.0)) / 3;
    return H;
}

// The inverse of a (small, non-singular) matrix by Gauss-Jordan elimination with partial pivoting.
inline Matrix inverse(Matrix A) {
    const size_t n = A.size();
    Matrix I(n, std::vector<double>(n, 0.0));
    for (size_t i = 0; i < n; ++i) I[i][i] = 1.0;
    for (size_t c = 0; c < n; ++c) {
        size_t piv = c;
        for (size_t r = c + 1; r < n; ++r)
            if (std::fabs(A[r][c]) > std::fabs(A[piv][c])) piv = r;
        std::swap(A[c], A[piv]);
        std::swap(I[c], I[piv]);
        const double d = A[c][c];
        for (size_t k = 0; k < n; ++k) {
            A[c][k] /= d;
            I[c][k] /= d;
        }
        for (size_t r = 0; r < n; ++r) {
            if (r == c) continue;
            const double f = A[r][c];
            for (size_t k = 0; k < n; ++k) {
                A[r][k] -= f * A[c][k];
                I[r][k] -= f * I[c][k];
            }
        }
    }
    return I;
}

// Standard errors sqrt(diag((-H)^-1)) of the maximum of F at theta (H its Hessian there).
inline std::vector<double> fd_standard_errors(const std::function<double(const std::vector<double> &)> &F,
                                              const std::vector<double> &theta, double rel) {
    Matrix H = fd_hessian(F, theta, rel);
    for (auto &row : H)
        for (double &h : row) h = -h;
    const Matrix C = inverse(H);
    std::vector<double> se(theta.size());
    for (size_t i = 0; i < se.size(); ++i) se[i] = std::sqrt(C[i][i]);
    return se;
}

}  // namespace testsupport

#endif  // ENGAGEMENT_TEST_SUPPORT_H

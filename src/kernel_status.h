// kernel_status.h: how the C++ kernels report a failure through their C APIs
// (an enum es_status code plus a NUL-terminated message).  Internal: C++ only,
// never included by the PostgreSQL glue.
#ifndef ENGAGEMENT_KERNEL_STATUS_H
#define ENGAGEMENT_KERNEL_STATUS_H

#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <new>

#include "scoring_kernel.h" /* enum es_status */

namespace es {

// Writes the message into err (errlen bytes; err may be NULL) and returns code,
// so that a check reads "return fail(...)".
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
inline int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err != nullptr && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

// Empties err (a function that succeeds leaves no stale message behind).
inline void clear_error(char *err, size_t errlen) {
    if (err != nullptr && errlen > 0) err[0] = '\0';
}

// Runs fn, turning any exception into a status (nothing may escape to C):
// std::bad_alloc is ES_OUT_OF_MEMORY, anything else ES_INTERNAL.
template <class F>
int guarded(char *err, size_t errlen, const char *what, F &&fn) noexcept {
    try {
        return fn();
    } catch (const std::bad_alloc &) {
        return fail(err, errlen, ES_OUT_OF_MEMORY, "out of memory in %s", what);
    } catch (const std::exception &e) {
        return fail(err, errlen, ES_INTERNAL, "%s: %s", what, e.what());
    } catch (...) {
        return fail(err, errlen, ES_INTERNAL, "unknown error in %s", what);
    }
}

// Stores v if it is finite, else reports that the result does not fit a double.
inline int finish(double v, double *out, const char *what, char *err, size_t errlen) {
    if (!std::isfinite(v)) return fail(err, errlen, ES_OUT_OF_RANGE, "%s: result out of range of a double", what);
    *out = v;
    return ES_OK;
}

}  // namespace es

#endif  // ENGAGEMENT_KERNEL_STATUS_H

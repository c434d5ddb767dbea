// kernel_status.h: how the C++ kernels report a failure through their C APIs
// (an enum es_status code plus a NUL-terminated message).  Internal: C++ only,
// never included by the PostgreSQL glue.
#ifndef ENGAGEMENT_KERNEL_STATUS_H
#define ENGAGEMENT_KERNEL_STATUS_H

#include <cstdarg>
#include <cstddef>
#include <cstdio>

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

}  // namespace es

#endif  // ENGAGEMENT_KERNEL_STATUS_H

/*
 * error.c — the one place where ember records a failure.
 *
 * Every recoverable failure in every layer ends in rt_error(), which formats the
 * message into a thread-local buffer; em_last_error() reads it back. Messages name
 * the public op first ("em_add: shapes [2,3] and [4] cannot be broadcast") so a
 * user can find the failing call. The slot is per thread so concurrent callers
 * never see each other's errors. Bugs in ember itself are not errors: they go to
 * EM_ASSERT, which aborts with the file and line.
 *
 * Also rt_mkdirs, the one file-system helper (the IR dumps and the object cache
 * create their folders with it), here because its failures are the errno kind
 * that callers turn into their own messages.
 */
#include <sys/stat.h>
#include <errno.h>
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[512];

int rt_error_v(const char *fmt, va_list ap) {
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    return -1;
}

int rt_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rt_error_v(fmt, ap);
    va_end(ap);
    return -1;
}

const char *em_last_error(void) { return last_error; }

void em_clear_error(void) { last_error[0] = '\0'; }

char *rt_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    if (cap == 0) return buf;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    buf[cap - 1] = '\0';
    return buf;
}

_Noreturn void rt_assert_fail(const char *what, const char *file, int line) {
    fprintf(stderr, "ember: internal error: %s failed at %s:%d\n", what, file, line);
    abort();
}

int rt_mkdirs(const char *dir) {
    char path[1024];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return errno = ENAMETOOLONG, -1;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(path, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

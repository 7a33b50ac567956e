/*
 * cache.c — the persistent object cache: compiled code kept across processes.
 *
 * A unit's object file is stored under EMBER_CACHE_DIR (default
 * ~/.cache/ember; empty or "off" disables the cache), in a file named by a
 * hash of its key. The key names everything the machine code depends on
 * (key.c): ember's version and build, LLVM's version, the host CPU name and
 * features, and a hash of the program (its graph, schedule and memory layout,
 * which hold the shapes, strides and constants' layouts the code was
 * specialised to). A new process that compiles the same program loads the
 * object (LLVMOrcLLJITAddObjectFile) without building a module, running
 * passes or the backend. The entry also records the hash of the module the
 * object was compiled from, which EMBER_CACHE_VERIFY checks the key against.
 *
 * File layout, little-endian:
 *   "EMBEROBJ" | u32 format | u32 key length, key | u64 module hash |
 *   u32 symbols, each u32 length + name |
 *   u64 object length, object | u64 IR length, IR | u64 asm length, asm | u64 checksum
 * The checksum (cg_hash_words over everything before it: 8 bytes a step, where
 * format 1's byte-wise FNV-1a took 0.3 ms of a GPT-2 block's 200 KB on every
 * warm load) and the full key are checked on load: a truncated, corrupt or
 * mismatched file (another version, CPU or key colliding on the name) is
 * ignored and rewritten by the next store.
 * Stores write a temporary file and rename it, so readers never see half a
 * file; after a store the folder is trimmed to EMBER_CACHE_MAX_MB, least
 * recently used first (a hit refreshes an entry's time). A directory that cannot be created or written costs speed only: one
 * message on stderr per process, and compiles go on uncached.
 */
#include "codegen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { CACHE_FORMAT = 3 };
#define CACHE_MAX_BYTES (1L << 30) /* no entry is near this: anything bigger is not ours */
static const char magic[8] = {'E', 'M', 'B', 'E', 'R', 'O', 'B', 'J'};

static struct {
    atomic_long hits, misses, rejected, stores, store_failures, evicted;
    atomic_bool warned;
} stats;

uint64_t cg_hash(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* 8 bytes a step (FNV-1a's byte loop is 8x slower on a module's bitcode),
 * then the tail; a multiply-xorshift mix of each word. */
uint64_t cg_hash_words(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ (w * 0xbf58476d1ce4e5b9ull)) * 0x94d049bb133111ebull;
        h ^= h >> 31;
    }
    return cg_hash(p, n, h);
}

const char *cg_cache_dir(void) {
    static _Thread_local char dir[1024];
    const char *env = getenv("EMBER_CACHE_DIR");
    if (env) {
        if (!*env || !strcmp(env, "off")) return NULL;
        snprintf(dir, sizeof dir, "%s", env);
        return dir;
    }
    const char *home = getenv("HOME");
    if (!home || !*home) return NULL;
    snprintf(dir, sizeof dir, "%s/.cache/ember", home);
    return dir;
}

static void path_of(const char *dir, const char *key, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%016llx.o", dir, (unsigned long long)cg_hash(key, strlen(key), 0xcbf29ce484222325ull));
}

void cg_blob_free(cg_blob *b) {
    for (int i = 0; i < b->nsym; i++) free(b->syms[i]);
    free(b->syms), free(b->obj), free(b->ir), free(b->asm_text);
    memset(b, 0, sizeof *b);
}

/* ---- reading ------------------------------------------------------------------------ */

typedef struct reader {
    const unsigned char *p, *end;
    bool bad;
} reader;

static bool take(reader *r, void *dst, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) return r->bad = true, false;
    memcpy(dst, r->p, n);
    r->p += n;
    return true;
}

/* A length-prefixed byte string (u32 or u64 length), copied and NUL-terminated;
 * NULL (and bad) on a short file. */
static char *take_bytes(reader *r, bool wide, size_t *len) {
    uint64_t n = 0;
    if (wide) take(r, &n, 8);
    else {
        uint32_t n32 = 0;
        take(r, &n32, 4);
        n = n32;
    }
    if (r->bad || (uint64_t)(r->end - r->p) < n) return r->bad = true, NULL;
    char *s = malloc(n + 1);
    if (!s) return r->bad = true, NULL;
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += n;
    if (len) *len = n;
    return s;
}

static bool parse(const unsigned char *data, size_t n, const char *key, cg_blob *b) {
    if (n < sizeof magic + 8) return false;
    uint64_t sum;
    memcpy(&sum, data + n - 8, 8);
    if (cg_hash_words(data, n - 8) != sum) return false;
    reader r = {data, data + n - 8, false};
    char m[8];
    uint32_t format = 0, nsym = 0;
    if (!take(&r, m, 8) || memcmp(m, magic, 8) || !take(&r, &format, 4) || format != CACHE_FORMAT) return false;
    char *k = take_bytes(&r, false, NULL);
    bool same = k && !strcmp(k, key);
    free(k);
    if (!same || !take(&r, &b->ir_hash, 8) || !take(&r, &nsym, 4) || nsym > 100000) return false;
    b->syms = calloc(nsym ? nsym : 1, sizeof *b->syms);
    if (!b->syms) return false;
    for (uint32_t i = 0; i < nsym && !r.bad; i++) b->syms[b->nsym++] = take_bytes(&r, false, NULL);
    b->obj = take_bytes(&r, true, &b->nobj);
    b->ir = take_bytes(&r, true, NULL);
    b->asm_text = take_bytes(&r, true, NULL);
    if (b->ir && !*b->ir) free(b->ir), b->ir = NULL;
    if (b->asm_text && !*b->asm_text) free(b->asm_text), b->asm_text = NULL;
    return !r.bad && r.p == r.end;
}

int cg_cache_load(const char *key, cg_blob *out) {
    memset(out, 0, sizeof *out);
    const char *dir = cg_cache_dir();
    if (!dir) return -1;
    char path[1200];
    path_of(dir, key, path, sizeof path);
    /* Non-blocking, so a FIFO at the name cannot hang us; only a regular file of
     * a sane size is read (a folder at the name reports an absurd size). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return atomic_fetch_add(&stats.misses, 1), -1;
    struct stat st;
    unsigned char *data = NULL;
    long n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size <= CACHE_MAX_BYTES) {
        n = (long)st.st_size;
        data = malloc((size_t)n);
        ssize_t got = 0, r = 0;
        while (data && got < n && (r = read(fd, data + got, (size_t)(n - got))) > 0) got += r;
        if (data && got != n) free(data), data = NULL;
    }
    close(fd);
    bool ok = data && parse(data, (size_t)n, key, out);
    free(data);
    if (!ok) {
        cg_blob_free(out);
        atomic_fetch_add(&stats.rejected, 1);
        return -1;
    }
    atomic_fetch_add(&stats.hits, 1);
    utimensat(AT_FDCWD, path, NULL, 0); /* used now: the trim keeps what is used (a read-only folder: no matter) */
    return 0;
}

/* ---- keeping the folder bounded ------------------------------------------------------ */

/* Every new shape, and every rebuild of ember (its build id is in the keys),
 * makes entries; none is ever rewritten in place. So after each store, when
 * the entries add up to more than EMBER_CACHE_MAX_MB (default 1024; 0 keeps
 * everything), the least recently used go (by modification time, which a hit
 * refreshes) until the rest fit in three quarters of it, never the entry just
 * stored. Temporary files older than an hour (a writer that died) go too. A
 * store is a miss that just compiled (tens to hundreds of ms), so scanning the
 * folder then costs little. */
enum { TRIM_DEFAULT_MB = 1024, STALE_TMP_SECONDS = 3600 };

typedef struct entry_info {
    char name[64];
    off_t size;
    struct timespec mtime;
} entry_info;

static int by_mtime(const void *a, const void *b) {
    const struct timespec *x = &((const entry_info *)a)->mtime, *y = &((const entry_info *)b)->mtime;
    if (x->tv_sec != y->tv_sec) return x->tv_sec < y->tv_sec ? -1 : 1;
    return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

static double trim_limit(void) {
    const char *env = getenv("EMBER_CACHE_MAX_MB");
    char *end = NULL;
    double mb = env && *env ? strtod(env, &end) : TRIM_DEFAULT_MB;
    if (env && *env && (*end || !(mb >= 0))) mb = TRIM_DEFAULT_MB; /* not a number: the default */
    return mb * 1024 * 1024;
}

/* Whether name is one of ours: 16 hex digits and ".o", or a temporary of one. */
static bool ours(const char *name, bool *tmp) {
    size_t n = strlen(name);
    if (n < 18 || strspn(name, "0123456789abcdef") != 16 || strncmp(name + 16, ".o", 2)) return false;
    *tmp = n > 18;
    return n == 18 || (n > 22 && !strcmp(name + n - 4, ".tmp"));
}

static void trim(const char *dir, const char *keep) {
    double limit = trim_limit();
    DIR *d = opendir(dir);
    if (!d) return;
    entry_info *e = NULL;
    size_t n = 0, cap = 0;
    double total = 0;
    time_t now = time(NULL);
    const char *keep_name = strrchr(keep, '/') ? strrchr(keep, '/') + 1 : keep;
    for (struct dirent *de; (de = readdir(d));) {
        bool tmp;
        struct stat st;
        char path[1200];
        if (!ours(de->d_name, &tmp)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (tmp) {
            if (now - st.st_mtime > STALE_TMP_SECONDS) unlink(path);
            continue;
        }
        if (!strcmp(de->d_name, keep_name)) continue;
        total += (double)st.st_size;
        if (n == cap) {
            entry_info *g = realloc(e, (cap = cap ? 2 * cap : 64) * sizeof *e);
            if (!g) break; /* out of memory: trim what was listed */
            e = g;
        }
        snprintf(e[n].name, sizeof e[n].name, "%s", de->d_name);
        e[n].size = st.st_size, e[n].mtime = st.st_mtim;
        n++;
    }
    closedir(d);
    struct stat kst;
    if (stat(keep, &kst) == 0) total += (double)kst.st_size;
    if (limit > 0 && total > limit) {
        qsort(e, n, sizeof *e, by_mtime);
        for (size_t i = 0; i < n && total > 0.75 * limit; i++) {
            char path[1200];
            snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
            if (unlink(path) == 0) total -= (double)e[i].size, atomic_fetch_add(&stats.evicted, 1);
        }
    }
    free(e);
}

/* ---- writing ------------------------------------------------------------------------ */

void cg_buf_put(cg_buf *w, const void *p, size_t n) {
    if (w->bad) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) cap *= 2;
        unsigned char *b = realloc(w->buf, cap);
        if (!b) return (void)(w->bad = true);
        w->buf = b, w->cap = cap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

/* A length-prefixed byte string (u64 or u32 length). */
static void put_bytes(cg_buf *w, const void *p, size_t n, bool wide) {
    if (wide) {
        uint64_t n64 = n;
        cg_buf_put(w, &n64, 8);
    } else {
        uint32_t n32 = (uint32_t)n;
        cg_buf_put(w, &n32, 4);
    }
    cg_buf_put(w, p, n);
}

static void store_failed(const char *dir, const char *what) {
    atomic_fetch_add(&stats.store_failures, 1);
    if (!atomic_exchange(&stats.warned, true))
        fprintf(stderr, "ember: cannot write the object cache in %s (%s: %s); compiled code will not be "
                        "cached (set EMBER_CACHE_DIR to a writable folder, or to off)\n",
                dir, what, strerror(errno));
}

void cg_cache_store(const char *key, const cg_blob *b) {
    const char *dir = cg_cache_dir();
    if (!dir) return;
    char path[1200], tmp[1300];
    if (rt_mkdirs(dir) != 0) return store_failed(dir, "mkdir");
    path_of(dir, key, path, sizeof path);
    static atomic_uint seq;
    snprintf(tmp, sizeof tmp, "%s.%d.%u.tmp", path, (int)getpid(), atomic_fetch_add(&seq, 1));
    cg_buf w = {0}; /* the file, built in memory and checksummed at once */
    uint32_t format = CACHE_FORMAT, nsym = (uint32_t)b->nsym;
    cg_buf_put(&w, magic, sizeof magic);
    cg_buf_put(&w, &format, 4);
    put_bytes(&w, key, strlen(key), false);
    cg_buf_put(&w, &b->ir_hash, 8);
    cg_buf_put(&w, &nsym, 4);
    for (int i = 0; i < b->nsym; i++) put_bytes(&w, b->syms[i], strlen(b->syms[i]), false);
    put_bytes(&w, b->obj, b->nobj, true);
    put_bytes(&w, b->ir ? b->ir : "", b->ir ? strlen(b->ir) : 0, true);
    put_bytes(&w, b->asm_text ? b->asm_text : "", b->asm_text ? strlen(b->asm_text) : 0, true);
    uint64_t sum = w.bad ? 0 : cg_hash_words(w.buf, w.len);
    cg_buf_put(&w, &sum, 8);
    FILE *f = w.bad ? NULL : fopen(tmp, "wb"); /* out of memory: only not cached */
    if (!f) {
        free(w.buf);
        if (!w.bad) store_failed(dir, "open");
        return;
    }
    bool bad = fwrite(w.buf, 1, w.len, f) != w.len;
    free(w.buf);
    bad = fclose(f) != 0 || bad;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return store_failed(dir, bad ? "write" : "rename");
    }
    atomic_fetch_add(&stats.stores, 1);
    trim(dir, path);
}

void cg_cache_stats_get(cg_cache_stats *out) {
    out->hits = atomic_load(&stats.hits), out->misses = atomic_load(&stats.misses);
    out->rejected = atomic_load(&stats.rejected), out->stores = atomic_load(&stats.stores);
    out->store_failures = atomic_load(&stats.store_failures), out->evicted = atomic_load(&stats.evicted);
}

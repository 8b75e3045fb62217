/* The report's small-object workloads as a C program, so that the C front
 * door of each allocator (`malloc`, `free`, `realloc` reached through the
 * PLT, the preloaded library's thread-local access) is measured, not only
 * the Rust one. Ports of benches/workloads/mod.rs with the same sizes,
 * seeds and rules; one operation is one allocation or one free (`pair`:
 * one malloc/free pair; `cache-scratch`: one allocate-write-free).
 *
 *   cc -O2 -pthread -o workloads benches/c/workloads.c
 *   LD_PRELOAD=/path/to/libvvmalloc.so ./workloads WORKLOAD THREADS SECS
 *
 * Prints `r <ops> <secs> <peak rss growth bytes> 0`, the report's child
 * protocol. Workloads: pair churn threadtest sh6bench xmalloc
 * cache-scratch larson realloc.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_int stop_flag;
static atomic_size_t done_ops;

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static uint64_t below(uint64_t *s, uint64_t n) { return next(s) % n; }
static size_t range(uint64_t *s, size_t lo, size_t hi) { return lo + below(s, hi - lo + 1); }
static uint64_t seed_of(int t) { return 0x9e3779b97f4a7c15ULL ^ (((uint64_t)t + 1) * 0x12345678ULL); }

static int more(void) { return !atomic_load_explicit(&stop_flag, memory_order_relaxed); }

/* Allocates and touches one byte per page and the last byte, as the Rust
 * workloads do; exits on failure (every workload fits in memory). */
static void *xalloc(size_t size) {
    unsigned char *p = malloc(size);
    if (!p) {
        fprintf(stderr, "out of memory allocating %zu bytes\n", size);
        exit(1);
    }
    for (size_t i = 0; i < size; i += 4096)
        p[i] = 1;
    p[size - 1] = 1;
    return p;
}

static void count(size_t *ops, size_t n) {
    *ops += n;
    if (*ops >= 1024) {
        atomic_fetch_add_explicit(&done_ops, *ops, memory_order_relaxed);
        *ops = 0;
    }
}

static void flush(size_t ops) { atomic_fetch_add_explicit(&done_ops, ops, memory_order_relaxed); }

static void pair(int t) {
    (void)t;
    size_t ops = 0;
    while (more()) {
        void *p = xalloc(32);
        free(p);
        count(&ops, 1);
    }
    flush(ops);
}

static void churn(int t) {
    uint64_t s = seed_of(t);
    enum { SLOTS = 16384 };
    void **slots = calloc(SLOTS, sizeof *slots);
    size_t ops = 0;
    while (more()) {
        size_t i = below(&s, SLOTS);
        if (slots[i]) {
            free(slots[i]);
            slots[i] = NULL;
        } else {
            slots[i] = xalloc(range(&s, 16, 512));
        }
        count(&ops, 1);
    }
    for (size_t i = 0; i < SLOTS; i++)
        free(slots[i]);
    free(slots);
    flush(ops);
}

static void threadtest(int t) {
    (void)t;
    enum { OBJECTS = 10000 };
    void **held = malloc(OBJECTS * sizeof *held);
    size_t ops = 0;
    while (more()) {
        for (int i = 0; i < OBJECTS; i++) {
            held[i] = xalloc(64);
            count(&ops, 1);
        }
        for (int i = 0; i < OBJECTS; i++) {
            free(held[i]);
            count(&ops, 1);
        }
    }
    free(held);
    flush(ops);
}

static size_t sh6_size(int i, uint64_t *s) {
    return i % 64 == 63 ? range(s, 1024, 16 << 10) : 1 + (size_t)(i * 7 + below(s, 8)) % 1000;
}

static void sh6bench(int t) {
    uint64_t s = seed_of(t);
    void **held = malloc(3000 * sizeof *held);
    size_t ops = 0;
    while (more()) {
        for (int i = 0; i < 2000; i++) {
            held[i] = xalloc(sh6_size(i, &s));
            count(&ops, 1);
        }
        for (int i = 999; i >= 0; i--) {
            free(held[i]);
            count(&ops, 1);
        }
        for (int i = 0; i < 1000; i++) {
            held[2000 + i] = xalloc(sh6_size(i, &s));
            count(&ops, 1);
        }
        for (int i = 1000; i < 3000; i++) {
            free(held[i]);
            count(&ops, 1);
        }
    }
    free(held);
    flush(ops);
}

/* xmalloc: a bounded queue of batches of 64 blocks, a mutex around it (the
 * Rust version uses a lock-free queue; the allocator's work is the same). */
enum { XM_BATCH = 64, XM_QUEUE = 256 };
static void *xm_queue[XM_QUEUE][XM_BATCH];
static int xm_head, xm_len;
static atomic_int xm_producing;
static pthread_mutex_t xm_lock = PTHREAD_MUTEX_INITIALIZER;

static int xm_push(void **batch) {
    int ok = 0;
    pthread_mutex_lock(&xm_lock);
    if (xm_len < XM_QUEUE) {
        memcpy(xm_queue[(xm_head + xm_len) % XM_QUEUE], batch, sizeof xm_queue[0]);
        xm_len++;
        ok = 1;
    }
    pthread_mutex_unlock(&xm_lock);
    return ok;
}

static int xm_pop(void **batch) {
    int ok = 0;
    pthread_mutex_lock(&xm_lock);
    if (xm_len > 0) {
        memcpy(batch, xm_queue[xm_head], sizeof xm_queue[0]);
        xm_head = (xm_head + 1) % XM_QUEUE;
        xm_len--;
        ok = 1;
    }
    pthread_mutex_unlock(&xm_lock);
    return ok;
}

static void xm_make(void **batch, uint64_t *s, size_t *ops) {
    for (int i = 0; i < XM_BATCH; i++) {
        batch[i] = xalloc(range(s, 16, 1024));
        count(ops, 1);
    }
}

static void xm_free(void **batch, size_t *ops) {
    for (int i = 0; i < XM_BATCH; i++) {
        free(batch[i]);
        count(ops, 1);
    }
}

static void xmalloc_producer(int t) {
    uint64_t s = seed_of(t);
    void *batch[XM_BATCH];
    size_t ops = 0;
    while (more()) {
        xm_make(batch, &s, &ops);
        while (!xm_push(batch)) {
            if (!more()) {
                xm_free(batch, &ops);
                goto out;
            }
            sched_yield();
        }
    }
out:
    atomic_fetch_sub(&xm_producing, 1);
    flush(ops);
}

static void xmalloc_consumer(int t) {
    (void)t;
    void *batch[XM_BATCH];
    size_t ops = 0;
    for (;;) {
        /* Read before the pop: a producer that was done then pushed its
         * last batch before, so an empty queue after means nothing more. */
        int producing = atomic_load(&xm_producing);
        if (xm_pop(batch))
            xm_free(batch, &ops);
        else if (producing == 0)
            break;
        else
            sched_yield();
    }
    flush(ops);
}

static void xmalloc_alone(int t) {
    uint64_t s = seed_of(t);
    void *batch[XM_BATCH];
    size_t ops = 0;
    while (more()) {
        xm_make(batch, &s, &ops);
        xm_free(batch, &ops);
    }
    flush(ops);
}

static void hammer(volatile unsigned char *p) {
    for (int i = 0; i < 100; i++)
        p[0] = (unsigned char)i;
}

static void *given[256];

static void cache_scratch(int t) {
    free(given[t]);
    size_t ops = 0;
    while (more()) {
        unsigned char *p = xalloc(8);
        hammer(p);
        free(p);
        count(&ops, 1);
    }
    flush(ops);
}

/* Larson: rounds of fresh threads, each inheriting its predecessor's
 * array of 1000 blocks of 8-1000 bytes and replacing one at random 20 000
 * times. */
enum { LARSON_SLOTS = 1000, LARSON_ROUND = 20000 };
static void **larson_arrays[256];
static uint64_t larson_round_no;

static void larson_thread(int t) {
    uint64_t s = seed_of(t) ^ larson_round_no;
    void **slots = larson_arrays[t];
    size_t ops = 0;
    for (int k = 0; k < LARSON_ROUND && more(); k++) {
        size_t i = below(&s, LARSON_SLOTS);
        free(slots[i]);
        slots[i] = xalloc(range(&s, 8, 1000));
        count(&ops, 1);
    }
    flush(ops);
}

static void realloc_growth(int t) {
    uint64_t s = seed_of(t);
    size_t ops = 0;
    while (more()) {
        size_t size = range(&s, 16, 31);
        unsigned char *p = xalloc(size);
        count(&ops, 1);
        while (size < (1 << 20) && more()) {
            size_t grown = size + size / 2;
            p = realloc(p, grown);
            if (!p) {
                fprintf(stderr, "out of memory in realloc\n");
                exit(1);
            }
            for (size_t i = size; i < grown; i += 4096)
                p[i] = 1;
            p[grown - 1] = 1;
            count(&ops, 1);
            size = grown;
        }
        free(p);
        count(&ops, 1);
    }
    flush(ops);
}

struct arg {
    void (*f)(int);
    int t;
};

static void *trampoline(void *a) {
    struct arg *x = a;
    x->f(x->t);
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t v = 0, n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            v = strtoull(line + n, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* Runs `pick(t)` on `threads` threads until `stop_flag`. */
static void run_threads(int threads, void (*(*pick)(int, int))(int)) {
    pthread_t th[256];
    struct arg args[256];
    for (int t = 0; t < threads; t++) {
        args[t] = (struct arg){pick(t, threads), t};
        pthread_create(&th[t], NULL, trampoline, &args[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
}

static const char *workload;

static void (*pick(int t, int threads))(int) {
    if (!strcmp(workload, "pair"))
        return pair;
    if (!strcmp(workload, "churn"))
        return churn;
    if (!strcmp(workload, "threadtest"))
        return threadtest;
    if (!strcmp(workload, "sh6bench"))
        return sh6bench;
    if (!strcmp(workload, "cache-scratch"))
        return cache_scratch;
    if (!strcmp(workload, "realloc"))
        return realloc_growth;
    if (!strcmp(workload, "xmalloc")) {
        if (threads == 1)
            return xmalloc_alone;
        return t % 2 == 0 ? xmalloc_producer : xmalloc_consumer;
    }
    return NULL;
}

static double secs_limit, t0;

static void *timer(void *a) {
    (void)a;
    struct timespec ts = {0, 5 * 1000 * 1000};
    while (now() - t0 < secs_limit)
        nanosleep(&ts, NULL);
    atomic_store(&stop_flag, 1);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s WORKLOAD THREADS SECS\n", argv[0]);
        return 2;
    }
    workload = argv[1];
    int threads = atoi(argv[2]);
    secs_limit = atof(argv[3]);
    if (threads < 1 || threads > 256 || secs_limit <= 0) {
        fprintf(stderr, "bad thread count or seconds\n");
        return 2;
    }
    int larson = !strcmp(workload, "larson");
    if (!larson && !pick(0, threads)) {
        fprintf(stderr, "unknown workload %s\n", workload);
        return 2;
    }
    size_t base = status_kib("VmRSS:") * 1024;
    if (!strcmp(workload, "cache-scratch"))
        for (int t = 0; t < threads; t++)
            given[t] = xalloc(8);
    atomic_store(&xm_producing, (threads + 1) / 2);
    if (larson)
        for (int t = 0; t < threads; t++)
            larson_arrays[t] = calloc(LARSON_SLOTS, sizeof(void *));
    pthread_t tm;
    t0 = now();
    pthread_create(&tm, NULL, timer, NULL);
    if (larson) {
        while (more()) {
            /* Each array passes to the next thread of the next round. */
            void **first = larson_arrays[0];
            for (int t = 0; t + 1 < threads; t++)
                larson_arrays[t] = larson_arrays[t + 1];
            larson_arrays[threads - 1] = first;
            pthread_t th[256];
            struct arg args[256];
            for (int t = 0; t < threads; t++) {
                args[t] = (struct arg){larson_thread, t};
                pthread_create(&th[t], NULL, trampoline, &args[t]);
            }
            for (int t = 0; t < threads; t++)
                pthread_join(th[t], NULL);
            larson_round_no++;
        }
    } else {
        run_threads(threads, pick);
    }
    double secs = now() - t0;
    pthread_join(tm, NULL);
    if (larson)
        for (int t = 0; t < threads; t++) {
            for (int i = 0; i < LARSON_SLOTS; i++)
                free(larson_arrays[t][i]);
            free(larson_arrays[t]);
        }
    size_t hwm = status_kib("VmHWM:") * 1024;
    printf("r %zu %.6f %zu 0\n", atomic_load(&done_ops), secs, hwm > base ? hwm - base : 0);
    return 0;
}

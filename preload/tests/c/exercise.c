/* Calls every function the preloadable library exports, checks what C and
 * POSIX promise, forks from a threaded process and churns through thousands
 * of threads. Prints "exercise: ok" and exits 0 when every check holds; on
 * the first failure it names the check and exits 1. Run it with and without
 * LD_PRELOAD: the output must be the same. */
#define _GNU_SOURCE
/* The checks ask for impossible sizes on purpose. */
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c)                                                           \
    do {                                                                   \
        if (!(c)) {                                                        \
            fprintf(stderr, "exercise: check failed at line %d: %s\n",     \
                    __LINE__, #c);                                         \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

static int aligned(void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void fill(unsigned char *p, size_t n, unsigned char seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}

static int intact(const unsigned char *p, size_t n, unsigned char seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

static void every_function(void) {
    /* malloc / free, all three size ranges, and malloc(0). */
    size_t sizes[] = {0, 1, 16, 24, 100, 1000, 16384, 16385, 100000, 1 << 20, 20 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = malloc(sizes[i]);
        CHECK(p != NULL && aligned(p, 16));
        CHECK(malloc_usable_size(p) >= sizes[i]);
        fill(p, sizes[i], (unsigned char)i);
        CHECK(intact(p, sizes[i], (unsigned char)i));
        free(p);
    }
    free(NULL);
    CHECK(malloc_usable_size(NULL) == 0);

    /* calloc: zeroed, even for a reused block; overflow is ENOMEM. */
    for (int round = 0; round < 2; round++) {
        size_t n[] = {1, 64, 5000, 70000, 17 << 20};
        for (size_t i = 0; i < sizeof n / sizeof *n; i++) {
            unsigned char *p = calloc(n[i], 3);
            CHECK(p != NULL);
            for (size_t j = 0; j < n[i] * 3; j++) CHECK(p[j] == 0);
            memset(p, 0xab, n[i] * 3);
            free(p);
        }
    }
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);

    /* malloc failure sets ENOMEM. */
    errno = 0;
    CHECK(malloc(SIZE_MAX - 4096) == NULL && errno == ENOMEM);

    /* realloc: NULL, growth across all ranges keeps contents, 0 frees. */
    unsigned char *r = realloc(NULL, 10);
    CHECK(r != NULL);
    fill(r, 10, 3);
    size_t steps[] = {10, 200, 20000, 300000, 30 << 20, 40 << 20, 5000, 8};
    for (size_t i = 1; i < sizeof steps / sizeof *steps; i++) {
        size_t keep = steps[i - 1] < steps[i] ? steps[i - 1] : steps[i];
        r = realloc(r, steps[i]);
        CHECK(r != NULL && aligned(r, 16));
        CHECK(intact(r, keep < 10 ? keep : 10, 3));
        fill(r, steps[i], 3);
    }
    errno = 0;
    CHECK(realloc(r, SIZE_MAX - 4096) == NULL && errno == ENOMEM);
    CHECK(intact(r, 8, 3)); /* a failed realloc leaves the block alone */
    CHECK(realloc(r, 0) == NULL);

    /* reallocarray: overflow is ENOMEM and leaves the block alone. */
    int *a = reallocarray(NULL, 100, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; i < 100; i++) a[i] = i;
    errno = 0;
    CHECK(reallocarray(a, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    a = reallocarray(a, 1000, sizeof(int));
    CHECK(a != NULL && a[99] == 99);
    free(a);

    /* The aligned family, freed with free. */
    size_t aligns[] = {8, 16, 32, 64, 256, 4096, 65536, 1 << 21};
    for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        void *p = NULL;
        CHECK(posix_memalign(&p, aligns[i], 100) == 0 && aligned(p, aligns[i]));
        free(p);
        p = aligned_alloc(aligns[i], 3 * aligns[i]);
        CHECK(p != NULL && aligned(p, aligns[i]));
        memset(p, 1, 3 * aligns[i]);
        free(p);
        p = memalign(aligns[i], 50000);
        CHECK(p != NULL && aligned(p, aligns[i]));
        CHECK(malloc_usable_size(p) >= 50000);
        free(p);
    }
    void *p = (void *)1;
    CHECK(posix_memalign(&p, 24, 100) == EINVAL && p == (void *)1);
    CHECK(posix_memalign(&p, 4, 100) == EINVAL);
    errno = 0;
    CHECK(posix_memalign(&p, 64, SIZE_MAX - 4096) == ENOMEM && errno == 0);
    /* Not a power of two: EINVAL (C17, glibc >= 2.38) or rounded up
     * (glibc < 2.38); either is accepted. */
    errno = 0;
    p = aligned_alloc(24, 100);
    CHECK(p == NULL ? errno == EINVAL : aligned(p, 32));
    free(p);
    p = memalign(24, 100); /* rounded up to 32, as glibc does */
    CHECK(p != NULL && aligned(p, 32));
    free(p);

    long ps = sysconf(_SC_PAGESIZE);
    p = valloc(100);
    CHECK(p != NULL && aligned(p, (size_t)ps));
    free(p);
    p = pvalloc(100);
    CHECK(p != NULL && aligned(p, (size_t)ps) && malloc_usable_size(p) >= (size_t)ps);
    free(p);
    p = pvalloc(0);
    CHECK(p != NULL && aligned(p, (size_t)ps));
    free(p);
}

/* Threads that allocate and free without pause, across a fork. */
static volatile int stop;

static void *churn(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *keep[64] = {0};
    while (!stop) {
        seed = seed * 1103515245 + 12345;
        size_t i = (seed >> 8) % 64;
        size_t n = (seed >> 16) % 7 == 0 ? 20000 + seed % 200000 : 8 + seed % 600;
        free(keep[i]);
        keep[i] = malloc(n);
        if (keep[i]) memset(keep[i], 0x5a, n < 64 ? n : 64);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

static void fork_from_threads(void) {
    pthread_t t[4];
    stop = 0;
    for (uintptr_t i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (int k = 0; k < 20; k++) {
        usleep(2000);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            /* The child: only this thread exists; the heap must work. */
            for (int i = 0; i < 2000; i++) {
                void *q = malloc((size_t)(i % 3 == 0 ? 50000 : 40));
                if (!q) _exit(2);
                memset(q, 1, 40);
                free(q);
            }
            pthread_t c;
            if (pthread_create(&c, NULL, churn, (void *)99) != 0) _exit(3);
            usleep(1000);
            stop = 1;
            pthread_join(c, NULL);
            _exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
}

/* Thousands of short threads, each freeing what another allocated. */
static void *short_lived(void *arg) {
    free(arg);
    char *mine = malloc(200);
    memset(mine, 2, 200);
    return mine;
}

static void many_threads(void) {
    for (int round = 0; round < 100; round++) {
        pthread_t t[30];
        for (int i = 0; i < 30; i++) CHECK(pthread_create(&t[i], NULL, short_lived, malloc(100)) == 0);
        for (int i = 0; i < 30; i++) {
            void *res = NULL;
            CHECK(pthread_join(t[i], &res) == 0 && res != NULL);
            free(res);
        }
    }
}

int main(void) {
    every_function();
    fork_from_threads();
    many_threads();
    printf("exercise: ok\n");
    return 0;
}

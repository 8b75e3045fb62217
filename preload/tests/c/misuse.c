/* Misuse of malloc, one kind per run (argv[1]), for the checked-mode
 * tests: under VVMALLOC_CHECKED=1 the library must report it and abort;
 * without, it must do what docs/reliability.md says the unchecked mode
 * does. Never run under glibc: it would crash or corrupt its heap. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: misuse KIND\n");
        return 2;
    }
    const char *what = argv[1];
    if (!strcmp(what, "double-free")) {
        char *volatile p = malloc(24);
        free(p);
        free(p);
        /* Unchecked, the block is now in the free lists twice. */
        char *a = malloc(24);
        char *b = malloc(24);
        puts(a == b ? "the same block twice" : "distinct blocks");
    } else if (!strcmp(what, "overrun")) {
        char *volatile p = malloc(20);
        p[20] = 'x';
        free(p);
        puts("freed");
    } else if (!strcmp(what, "foreign")) {
        free((void *)(uintptr_t)0x10000);
        puts("freed");
    } else if (!strcmp(what, "usable")) {
        /* Not misuse: every usable byte may be written, in either mode. */
        for (size_t n = 1; n < 70000; n = n * 3 + 1) {
            char *p = malloc(n);
            size_t u = malloc_usable_size(p);
            if (u < n) {
                return 1;
            }
            memset(p, 0x5a, u);
            p = realloc(p, n + 10);
            memset(p, 0x5b, malloc_usable_size(p));
            free(p);
        }
        puts("ok");
    } else {
        fprintf(stderr, "no misuse named %s\n", what);
        return 2;
    }
    return 0;
}

/*
 * scripts/guest/emubench.c — the demo guest's small deterministic CPU benchmark.
 *
 * Usage: emubench [SCALE [PHASES]]
 *   SCALE   work multiplier, 1..1000 (default 1)
 *   PHASES  subset of "hsmfv" (default all):
 *           h  integer hashing (multiply, rotate, xor over a 1 MiB buffer)
 *           s  sorting (quicksort + insertion sort of 2^19 32-bit keys)
 *           m  matrix multiply (64-bit integers, kept scalar)
 *           f  floating point (Mandelbrot iterations, Newton square roots, divisions)
 *           v  a loop gcc -O2 vectorises with SSE2 (int32 and float lanes)
 *
 * Every phase folds its results into a 64-bit checksum that depends only on
 * the arithmetic (IEEE double/float, no libm, no reductions whose order the
 * compiler could change), so the same binary prints the same checksum on the
 * host and in any correct emulator: it doubles as a translator check.
 *
 * Output, one line per phase, then the total:
 *   emubench: phase hash   ms=123.456 sum=0123456789abcdef
 *   EMUBENCH-CHECKSUM 0123456789abcdef total_ms=456.789
 * Exit status 0, or 2 on a bad argument, 3 if a self-check failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t g_rng;

static uint64_t next_random(void)
{
    /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fold(uint64_t sum, uint64_t value)
{
    sum ^= value + 0x9e3779b97f4a7c15ull + (sum << 6) + (sum >> 2);
    return sum * 0x100000001b3ull;
}

static uint64_t rotl(uint64_t v, int n) { return (v << n) | (v >> (64 - n)); }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static int g_failed;

/* ---- h: integer hashing ---------------------------------------------- */
#define HASH_BYTES (1u << 20)

static uint64_t phase_hash(int scale)
{
    static uint8_t buf[HASH_BYTES];
    g_rng = 1;
    for (size_t i = 0; i < HASH_BYTES; i += 8) {
        uint64_t r = next_random();
        memcpy(buf + i, &r, 8);
    }
    uint64_t sum = 0;
    for (int round = 0; round < 600 * scale; ++round) {
        uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)round;
        for (size_t i = 0; i < HASH_BYTES; i += 8) {
            uint64_t w;
            memcpy(&w, buf + i, 8);
            h = rotl(h ^ (w * 0x87c37b91114253d5ull), 31) * 0x4cf5ad432745937full;
        }
        /* perturb one byte per round so no round repeats the last */
        buf[(h >> 7) % HASH_BYTES] ^= (uint8_t)h;
        sum = fold(sum, h);
    }
    return sum;
}

/* ---- s: sorting ------------------------------------------------------- */
#define SORT_KEYS (1u << 19)

static void insertion_sort(uint32_t* a, long lo, long hi)
{
    for (long i = lo + 1; i <= hi; ++i) {
        uint32_t v = a[i];
        long j = i - 1;
        while (j >= lo && a[j] > v) {
            a[j + 1] = a[j];
            --j;
        }
        a[j + 1] = v;
    }
}

static void quick_sort(uint32_t* a, long lo, long hi)
{
    while (hi - lo > 16) {
        long mid = lo + (hi - lo) / 2;
        /* median of three into a[mid] */
        if (a[mid] < a[lo]) { uint32_t t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (a[hi] < a[lo]) { uint32_t t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (a[hi] < a[mid]) { uint32_t t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
        uint32_t pivot = a[mid];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) ++i;
            while (a[j] > pivot) --j;
            if (i <= j) {
                uint32_t t = a[i]; a[i] = a[j]; a[j] = t;
                ++i;
                --j;
            }
        }
        /* recurse into the smaller half, loop on the larger: bounded stack */
        if (j - lo < hi - i) {
            quick_sort(a, lo, j);
            lo = i;
        } else {
            quick_sort(a, i, hi);
            hi = j;
        }
    }
    insertion_sort(a, lo, hi);
}

static uint64_t phase_sort(int scale)
{
    uint32_t* keys = malloc(SORT_KEYS * sizeof *keys);
    if (!keys) {
        fprintf(stderr, "emubench: out of memory\n");
        exit(3);
    }
    uint64_t sum = 0;
    g_rng = 2;
    for (int round = 0; round < 4 * scale; ++round) {
        for (size_t i = 0; i < SORT_KEYS; ++i)
            keys[i] = (uint32_t)(next_random() >> 32);
        quick_sort(keys, 0, SORT_KEYS - 1);
        for (size_t i = 1; i < SORT_KEYS; ++i)
            if (keys[i - 1] > keys[i]) {
                fprintf(stderr, "emubench: sort self-check failed at %zu\n", i);
                g_failed = 1;
                break;
            }
        for (size_t i = 0; i < SORT_KEYS; i += 4099)
            sum = fold(sum, keys[i]);
    }
    free(keys);
    return sum;
}

/* ---- m: matrix multiply ----------------------------------------------- */
#define MAT_N 144

/* Kept scalar on purpose (gcc would use pmuludq pairs): phase v is the vector one. */
__attribute__((optimize("no-tree-vectorize"))) static uint64_t phase_matmul(int scale)
{
    static uint64_t a[MAT_N][MAT_N], b[MAT_N][MAT_N], c[MAT_N][MAT_N];
    g_rng = 3;
    for (int i = 0; i < MAT_N; ++i)
        for (int j = 0; j < MAT_N; ++j) {
            a[i][j] = next_random() & 0xffff;
            b[i][j] = next_random() & 0xffff;
        }
    uint64_t sum = 0;
    for (int round = 0; round < 60 * scale; ++round) {
        for (int i = 0; i < MAT_N; ++i)
            for (int j = 0; j < MAT_N; ++j) {
                uint64_t acc = 0;
                for (int k = 0; k < MAT_N; ++k)
                    acc += a[i][k] * b[k][j];
                c[i][j] = acc;
            }
        for (int i = 0; i < MAT_N; ++i) {
            sum = fold(sum, c[i][(i * 7 + round) % MAT_N]);
            a[i][round % MAT_N] = c[i][i] & 0xffff; /* feed back */
        }
    }
    return sum;
}

/* ---- f: floating point ------------------------------------------------ */
static uint64_t phase_float(int scale)
{
    uint64_t sum = 0;
    for (int round = 0; round < 8 * scale; ++round) {
        /* Mandelbrot over a 192x128 grid, up to 400 iterations per point */
        uint64_t iterations = 0;
        for (int y = 0; y < 128; ++y)
            for (int x = 0; x < 192; ++x) {
                double cr = -2.2 + x * (3.0 / 192) + round * 1e-3;
                double ci = -1.2 + y * (2.4 / 128);
                double zr = 0, zi = 0;
                int n = 0;
                while (n < 400 && zr * zr + zi * zi <= 4.0) {
                    double t = zr * zr - zi * zi + cr;
                    zi = 2.0 * zr * zi + ci;
                    zr = t;
                    ++n;
                }
                iterations += (uint64_t)n;
                sum = fold(sum, double_bits(zr) ^ double_bits(zi));
            }
        sum = fold(sum, iterations);
        /* Newton square roots and a harmonic-like series with divisions */
        double acc = 0;
        for (int i = 1; i <= 60000; ++i) {
            double v = (double)i * 1.000123, r = v;
            for (int k = 0; k < 6; ++k)
                r = 0.5 * (r + v / r);
            acc += r / (double)(i + round) - 1.0 / ((double)i * 3.0 + 0.5);
        }
        sum = fold(sum, double_bits(acc));
    }
    return sum;
}

/* ---- v: SSE2-vectorisable loops --------------------------------------- */
#define VEC_N 4096 /* a multiple of every vector width */

static uint64_t phase_vector(int scale)
{
    static int32_t ia[VEC_N], ib[VEC_N], ic[VEC_N];
    static float fa[VEC_N], fb[VEC_N], fc[VEC_N];
    g_rng = 5;
    for (int i = 0; i < VEC_N; ++i) {
        uint64_t r = next_random();
        ia[i] = (int32_t)r;
        ib[i] = (int32_t)(r >> 32);
        fa[i] = (float)(int32_t)(r & 0xffff) * 0.001f;
        fb[i] = (float)(int32_t)((r >> 16) & 0xffff) * 0.002f;
    }
    uint64_t sum = 0;
    for (int round = 0; round < 8000 * scale; ++round) {
        int32_t k = round | 1;
        for (int i = 0; i < VEC_N; ++i)
            ic[i] = (ia[i] ^ (ib[i] >> 3)) + (ia[i] << 2) - (ib[i] & k);
        for (int i = 0; i < VEC_N; ++i)
            ia[i] = ic[i] + (ib[i] >> 1);
        for (int i = 0; i < VEC_N; ++i)
            fc[i] = fa[i] * 0.75f + fb[i] * 0.25f - fc[i] * 0.5f;
        for (int i = 0; i < VEC_N; ++i)
            fa[i] = fc[i] < fb[i] ? fc[i] : fb[i];
        sum = fold(sum, (uint32_t)ic[round % VEC_N]);
        sum = fold(sum, double_bits((double)fc[(round * 31) % VEC_N]));
    }
    return sum;
}

/* ----------------------------------------------------------------------- */
struct phase {
    char letter;
    const char* name;
    uint64_t (*run)(int scale);
};

static const struct phase k_phases[] = {
    {'h', "hash", phase_hash},     {'s', "sort", phase_sort},     {'m', "matmul", phase_matmul},
    {'f', "float", phase_float},   {'v', "vector", phase_vector},
};

int main(int argc, char** argv)
{
    int scale = 1;
    const char* phases = "hsmfv";
    if (argc > 1) {
        char* end;
        long v = strtol(argv[1], &end, 10);
        if (*end || v < 1 || v > 1000) {
            fprintf(stderr, "emubench: scale '%s' is not a number in 1..1000\n", argv[1]);
            return 2;
        }
        scale = (int)v;
    }
    if (argc > 2) {
        phases = argv[2];
        if (!*phases || strspn(phases, "hsmfv") != strlen(phases)) {
            fprintf(stderr, "emubench: phases '%s' must be letters of \"hsmfv\"\n", phases);
            return 2;
        }
    }
    printf("emubench: scale=%d phases=%s\n", scale, phases);
    fflush(stdout);
    uint64_t total = 0;
    double total_ms = 0;
    for (size_t p = 0; p < sizeof k_phases / sizeof k_phases[0]; ++p) {
        if (!strchr(phases, k_phases[p].letter))
            continue;
        double t0 = now_ms();
        uint64_t sum = k_phases[p].run(scale);
        double ms = now_ms() - t0;
        total_ms += ms;
        total = fold(total, sum);
        printf("emubench: phase %-6s ms=%.3f sum=%016llx\n", k_phases[p].name, ms, (unsigned long long)sum);
        fflush(stdout);
    }
    printf("EMUBENCH-CHECKSUM %016llx total_ms=%.3f%s\n", (unsigned long long)total, total_ms,
           g_failed ? " SELF-CHECK-FAILED" : "");
    return g_failed ? 3 : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by vswap-bench and vswap-demo: clocks, size parsing,
 * medians and percentiles, incompressible fill, file-system names.

 */
#ifndef VSWAP_TOOLS_BENCH_COMMON_H
#define VSWAP_TOOLS_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_KIB (1024ull)
#define BENCH_MIB (1024ull * 1024)
#define BENCH_GIB (1024ull * 1024 * 1024)

/* Monotonic seconds. */
double bench_now(void);

/* Monotonic nanoseconds, for per-fault latencies. */
uint64_t bench_now_ns(void);

/* Bytes over seconds in GB/s (10^9, as disks count). */
double bench_gbps(uint64_t bytes, double secs);

/* The @q quantile (0..1) of @n values, nearest rank; sorts @v in place. */
double bench_quantile(double *v, size_t n, double q);

/* Median of @n values; the middle pair's mean for even n.  Sorts @v. */
double bench_median(double *v, size_t n);

/* splitmix64: a seedable generator with no global state. */
uint64_t bench_rand(uint64_t *state);

/*
 * Fill @len bytes with pseudo-random words.  Incompressible on purpose:
 * zram and any future compression must not get an easier job than a guest's
 * real memory, and no page is all zero (trim would drop it).
 */
void bench_fill_random(void *buf, size_t len, uint64_t seed);

/* A name for the file system holding @dir, for the report. */
const char *bench_fs_name(const char *dir);

/* "Linux 6.18.44, 2 CPUs, 23.4 GiB" for the report header. */
void bench_machine(char *buf, size_t len);

/* The CPU model from /proc/cpuinfo, or "unknown CPU". */
void bench_cpu_model(char *buf, size_t len);

/* XXH3-64 of @len bytes, the hash the store checksums pages with: through
 * xxHash's run-time SIMD dispatch on x86-64, the plain entry elsewhere. */
uint64_t bench_xxh3(const void *data, size_t len);

#endif

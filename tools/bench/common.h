/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by vswap-bench and vswap-demo: clocks, size parsing,
 * medians and percentiles, incompressible fill, file-system names.
 *
 * Header-only (static inline) on purpose: CMake builds every tools/vswap-*.c
 * as its own executable and compiles only the .c files of tools/common/ beside it, which
 * belongs to the recovery tools; a header keeps these out of that list.
 */
#ifndef VSWAP_TOOLS_BENCH_COMMON_H
#define VSWAP_TOOLS_BENCH_COMMON_H

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define BENCH_KIB (1024ull)
#define BENCH_MIB (1024ull * 1024)
#define BENCH_GIB (1024ull * 1024 * 1024)

/* Monotonic seconds. */
static inline double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Monotonic nanoseconds, for per-fault latencies. */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Bytes over seconds in GB/s (10^9, as disks count). */
static inline double bench_gbps(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / secs / 1e9 : 0.0;
}

/*
 * Parse "256M", "1G", "4096", "2MiB", "512k": binary multiples, because
 * guest memory sizes are powers of two.  0 or -EINVAL.
 */
static inline int bench_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		mul = BENCH_KIB;
		break;
	case 'M':
		mul = BENCH_MIB;
		break;
	case 'G':
		mul = BENCH_GIB;
		break;
	case 'T':
		mul = BENCH_GIB * 1024;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		if (!strcasecmp(end, "ib") || !strcasecmp(end, "b"))
			end += strlen(end);
		if (*end)
			return -EINVAL;
	}
	if (v > UINT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The @q quantile (0..1) of @n values, nearest rank; sorts @v in place. */
static inline double bench_quantile(double *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0.0;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* Median of @n values; the middle pair's mean for even n.  Sorts @v. */
static inline double bench_median(double *v, size_t n)
{
	if (n == 0)
		return 0.0;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* splitmix64: a seedable generator with no global state. */
static inline uint64_t bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * Fill @len bytes with pseudo-random words.  Incompressible on purpose:
 * zram and any future compression must not get an easier job than a guest's
 * real memory, and no page is all zero (trim would drop it).
 */
static inline void bench_fill_random(void *buf, size_t len, uint64_t seed)
{
	uint64_t *w = buf;
	size_t i, n = len / sizeof(*w);

	for (i = 0; i < n; i++)
		w[i] = bench_rand(&seed);
}

/* A name for the file system holding @dir, for the report. */
static inline const char *bench_fs_name(const char *dir)
{
	struct statfs st;

	if (statfs(dir, &st))
		return "unknown";
	switch ((unsigned long)st.f_type) {
	case 0xEF53:
		return "ext4";
	case 0x58465342:
		return "xfs";
	case 0x9123683E:
		return "btrfs";
	case 0x01021994:
		return "tmpfs";
	case 0x794c7630:
		return "overlayfs";
	case 0x2fc12fc1:
		return "zfs";
	case 0xF2F52010:
		return "f2fs";
	default:
		return "other";
	}
}

/* "Linux 6.18.44, 2 CPUs, 23.4 GiB" for the report header. */
static inline void bench_machine(char *buf, size_t len)
{
	struct utsname u;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);

	if (uname(&u))
		strcpy(u.release, "?");
	snprintf(buf, len, "Linux %s, %ld CPUs, %.1f GiB RAM", u.release, cpus, mem / BENCH_GIB);
}

/* The CPU model from /proc/cpuinfo, or "unknown CPU". */
static inline void bench_cpu_model(char *buf, size_t len)
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "re");

	snprintf(buf, len, "unknown CPU");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) || !colon)
			continue;
		colon += 2;
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(buf, len, "%s", colon);
		break;
	}
	fclose(f);
}

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Verification throughput: vswap-fsck's io_uring verify pass against the
 * fastest plain reader (pread, buffered and O_DIRECT, 1 MiB reads, XXH3 of
 * every page) over the same swap file in the same run, page cache dropped
 * for the file before each pass.  Goal: fsck takes at most
 * 1/0.8 of the plain reader's time.  Size: VSWAP_VERIFY_BENCH_MB (default
 * 64).  The suite asserts only that the verify pass read and checked every
 * byte; the throughput figures are printed, and the claim itself lives in
 * vswap-bench (fsck_verify_gbps), where it is measured beside its baseline.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <vswap/recovery.h>

#include "store/checksum.h"
#include "tests/helpers/recovery_fixture.h"

#define RUNS 3
#define CHUNK (1u << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/* Read from byte page_size to the end, hash every page; returns ns. */
static uint64_t plain_reader(const char *path, uint32_t ps, bool direct, uint64_t *sink)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
	uint8_t *buf = NULL;
	uint64_t t0, h = 0;
	ssize_t k;

	assert_true(fd >= 0);
	assert_int_equal(posix_memalign((void **)&buf, 4096, CHUNK), 0);
	drop_cache(path);
	t0 = now_ns();
	for (off_t off = ps; (k = pread(fd, buf, CHUNK, off)) > 0; off += k)
		for (ssize_t i = 0; i + (ssize_t)ps <= k; i += ps)
			h ^= VSWAP_XXH3(buf + i, ps);
	t0 = now_ns() - t0;
	*sink ^= h;
	free(buf);
	close(fd);
	return t0;
}

static uint64_t fsck_verify(const struct rfx_store *fx, uint64_t *bytes)
{
	struct vswap_fsck_opts o = {
	    .mode = VSWAP_FSCK_CHECK, .no_orphan_scan = true, .log_level = VSWAP_LOG_ERROR};
	struct vswap_fsck *f;
	struct vswap_fsck_counts k;

	drop_cache(fx->path);
	assert_int_equal(vswap_fsck_new(fx->path, &o, &f), 0);
	assert_int_equal(vswap_fsck_run(f), 0);
	assert_int_equal(vswap_fsck_exit_code(f), 0);
	vswap_fsck_counts(f, &k);
	vswap_fsck_free(f);
	*bytes = k.bytes_verified;
	return k.verify_ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v)
{
	qsort(v, RUNS, sizeof(*v), cmp_u64);
	return v[RUNS / 2];
}

static void test_verify_throughput(void **state)
{
	const char *mb_env = getenv("VSWAP_VERIFY_BENCH_MB");
	uint64_t mb = mb_env ? strtoull(mb_env, NULL, 10) : 64;
	struct rfx_store fx;
	uint64_t buffered[RUNS], direct[RUNS], fsck[RUNS], bytes = 0, sink = 0;
	double gb, best_plain, ratio;

	(void)state;
	assert_int_equal(rfx_init(&fx, "speed"), 0);
	struct rfx_shape sh = {
	    .total_pages = mb * 256, .written = mb * 256, .durability = VSWAP_DURABILITY_NONE};
	sh.total_pages = sh.written = (mb << 20) / fx.page_size;
	assert_int_equal(rfx_build(&fx, &sh), 0);
	for (int r = 0; r < RUNS; r++) {
		buffered[r] = plain_reader(fx.path, fx.page_size, false, &sink);
		direct[r] = plain_reader(fx.path, fx.page_size, true, &sink);
		fsck[r] = fsck_verify(&fx, &bytes);
	}
	gb = (double)bytes / 1e9;
	uint64_t mb_ = median(buffered), md = median(direct), mf = median(fsck);
	best_plain = (double)(mb_ < md ? mb_ : md);
	ratio = best_plain / (double)mf;
	printf("verify %llu MiB: plain buffered %.2f GB/s, plain O_DIRECT %.2f GB/s, "
	       "fsck io_uring %.2f GB/s; fsck/plain-best = %.2f (goal >= 0.80)\n",
	       (unsigned long long)mb, gb / ((double)mb_ / 1e9), gb / ((double)md / 1e9),
	       gb / ((double)mf / 1e9), ratio);
	assert_int_equal(bytes, mb << 20);
	rfx_cleanup(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verify_throughput),
	};

	return cmocka_run_group_tests_name("recovery_speed", tests, NULL, NULL);
}

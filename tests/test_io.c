/* SPDX-License-Identifier: MIT */
/*
 * store/io.c, the library's one I/O engine: a stream of requests made as
 * buffers come free (the fsck verifier's way) delivers every request once,
 * whole, short at end of file or failed, through io_uring and through the
 * pread fallback alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/io.h"

#define RUN 8192u
#define RUNS 37u
#define BUFS 3u

struct reader {
	struct vswap_io_req req[BUFS];
	uint8_t *buf[BUFS];
	bool busy[BUFS];
	unsigned next_run, runs, done_count, max_busy;
	uint64_t file_size;
	unsigned seen[RUNS + 1];
	int32_t res[RUNS + 1];
	bool bytes_ok;
	bool overlap_ran;
};

static uint8_t byte_at(uint64_t off)
{
	return (uint8_t)(off * 131 + (off >> 9));
}

static struct vswap_io_req *next(void *ctx)
{
	struct reader *r = ctx;
	if (r->next_run >= r->runs)
		return NULL;
	unsigned busy = 0;
	for (unsigned i = 0; i < BUFS; i++)
		busy += r->busy[i];
	for (unsigned i = 0; i < BUFS; i++) {
		if (r->busy[i])
			continue;
		r->busy[i] = true;
		if (busy + 1 > r->max_busy)
			r->max_busy = busy + 1;
		r->req[i] = (struct vswap_io_req){
		    .buf = r->buf[i], .off = (uint64_t)r->next_run++ * RUN, .len = RUN};
		return &r->req[i];
	}
	return NULL;
}

static void done(void *ctx, struct vswap_io_req *q)
{
	struct reader *r = ctx;
	unsigned i = (unsigned)(q - r->req), run = (unsigned)(q->off / RUN);
	assert_true(i < BUFS && r->busy[i]);
	r->seen[run]++;
	r->res[run] = q->res;
	if (q->res > 0) {
		assert_int_equal(q->done, (uint32_t)q->res);
		for (uint32_t k = 0; k < q->done; k++)
			if (r->buf[i][k] != byte_at(q->off + k))
				r->bytes_ok = false;
	}
	r->busy[i] = false;
	r->done_count++;
}

static void overlap(void *ctx)
{
	((struct reader *)ctx)->overlap_ran = true;
}

/* A file of RUNS - 1 whole runs and half of one more; the stream asks for
 * one run past the end too. */
static int make_file(uint64_t *size)
{
	char path[] = "/var/tmp/vswap-io-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	*size = (uint64_t)(RUNS - 1) * RUN - RUN / 2;
	uint8_t *b = malloc(*size);
	assert_non_null(b);
	for (uint64_t k = 0; k < *size; k++)
		b[k] = byte_at(k);
	assert_int_equal(pwrite(fd, b, *size, 0), (ssize_t)*size);
	free(b);
	return fd;
}

static void stream_once(bool ring)
{
	struct vswap_io io;
	struct reader r = {.runs = RUNS, .bytes_ok = true};
	int fd = make_file(&r.file_size);
	for (unsigned i = 0; i < BUFS; i++)
		assert_non_null(r.buf[i] = malloc(RUN));
	int rc = vswap_io_init(&io, 2);
	if (!ring)
		vswap_io_fini(&io); /* no ring: the pread fallback */
	else if (rc != 0)
		skip();
	struct vswap_io_stream st = {.next = next, .done = done, .overlap = overlap, .ctx = &r};
	assert_int_equal(vswap_io_stream(&io, fd, false, &st), 0);
	vswap_io_fini(&io);
	assert_true(r.overlap_ran);
	assert_int_equal(r.done_count, RUNS);
	assert_true(r.bytes_ok);
	for (unsigned run = 0; run < RUNS; run++) {
		uint64_t off = (uint64_t)run * RUN;
		int32_t want = off >= r.file_size	 ? 0
			       : r.file_size - off < RUN ? (int32_t)(r.file_size - off)
							 : (int32_t)RUN;
		assert_int_equal(r.seen[run], 1);
		assert_int_equal(r.res[run], want);
	}
	assert_true(r.max_busy <= BUFS);
	for (unsigned i = 0; i < BUFS; i++)
		free(r.buf[i]);
	close(fd);
}

static void test_stream_through_the_ring(void **state)
{
	(void)state;
	stream_once(true);
}

static void test_stream_through_pread(void **state)
{
	(void)state;
	stream_once(false);
}

/* A failed request says why, and nothing arrived. */
static void test_failed_request_reports_errno(void **state)
{
	(void)state;
	struct vswap_io io;
	uint8_t buf[512];
	for (int ring = 0; ring < 2; ring++) {
		int rc = vswap_io_init(&io, 4);
		if (!ring)
			vswap_io_fini(&io);
		else if (rc != 0)
			break;
		struct vswap_io_req q = {.buf = buf, .off = 0, .len = sizeof(buf)};
		/* a directory descriptor cannot be read */
		int dfd = open("/var/tmp", O_RDONLY | O_DIRECTORY);
		assert_true(dfd >= 0);
		assert_int_equal(vswap_io_run(&io, dfd, false, &q, 1), 0);
		assert_int_equal(q.res, -EISDIR);
		assert_int_equal(q.done, 0);
		close(dfd);
		vswap_io_fini(&io);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stream_through_the_ring),
	    cmocka_unit_test(test_stream_through_pread),
	    cmocka_unit_test(test_failed_request_reports_errno),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

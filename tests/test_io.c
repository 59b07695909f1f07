/* SPDX-License-Identifier: MIT */
/*
 * store/io.c, the library's one I/O engine: a stream of requests made as
 * buffers come free (the fsck verifier's way) delivers every request once,
 * whole, short at end of file or failed, through io_uring and through the
 * pread fallback alike; so do requests submitted now and reaped later (the
 * fault path's and the swap-out's way), plain or vectored, each with its
 * caller's tag, never more in flight than the ring's depth.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

/* ---- submit / reap ------------------------------------------------------ */

#define SUBS 7u

/* Six runs (one of them read into three uneven buffers) and one past the
 * end of the file, through a ring of depth 4: the submit takes four, the
 * rest once some are reaped; every tag comes back once, with its bytes. */
static void submit_reap_once(bool ring)
{
	struct vswap_io io;
	uint64_t size;
	int fd = make_file(&size);
	if (ring) {
		if (vswap_io_init(&io, 4) != 0) {
			vswap_io_fini(&io);
			close(fd);
			skip();
		}
	} else {
		vswap_io_init_sync(&io, 4);
	}
	int efd = vswap_io_eventfd(&io);
	assert_true(efd >= 0);
	struct vswap_io_req q[SUBS];
	uint8_t *buf[SUBS], *vb[3];
	struct iovec iov[3];
	size_t vlen[3] = {100, RUN - 100 - 4096, 4096};
	for (unsigned i = 0; i < SUBS; i++) {
		assert_non_null(buf[i] = malloc(RUN));
		/* run i*5 % 36: out of order; the last request is past the end */
		uint64_t run = i == SUBS - 1 ? RUNS + 3 : (uint64_t)i * 5 % (RUNS - 1);
		q[i] = (struct vswap_io_req){
		    .buf = buf[i], .off = run * RUN, .len = RUN, .fd = fd, .tag = 1000 + i};
	}
	for (unsigned k = 0; k < 3; k++) {
		assert_non_null(vb[k] = malloc(vlen[k]));
		iov[k] = (struct iovec){vb[k], vlen[k]};
	}
	q[2].iov = iov;
	q[2].iovcnt = 3;
	q[2].len = 0; /* the engine sums the iovec */

	int took = vswap_io_submit(&io, q, SUBS);
	assert_int_equal(took, ring ? 4 : (int)SUBS);
	struct pollfd p = {.fd = efd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 10000), 1);
	unsigned seen[SUBS] = {0}, got = 0, submitted = (unsigned)took;
	while (got < SUBS) {
		assert_true(vswap_io_pending(&io) <= 4 || !ring);
		struct vswap_io_req *out[2];
		int n = vswap_io_reap(&io, out, 2, true);
		assert_true(n >= 1 && n <= 2);
		for (int j = 0; j < n; j++) {
			unsigned i = (unsigned)(out[j]->tag - 1000);
			assert_true(i < SUBS && out[j] == &q[i]);
			seen[i]++;
			got++;
		}
		if (submitted < SUBS) {
			took = vswap_io_submit(&io, &q[submitted], SUBS - submitted);
			assert_true(took >= 1);
			submitted += (unsigned)took;
		}
	}
	assert_int_equal(vswap_io_pending(&io), 0);
	struct vswap_io_req *none;
	assert_int_equal(vswap_io_reap(&io, &none, 1, true), 0);
	for (unsigned i = 0; i < SUBS; i++) {
		assert_int_equal(seen[i], 1);
		if (i == SUBS - 1) {
			assert_int_equal(q[i].res, 0); /* past the end */
			continue;
		}
		assert_int_equal(q[i].res, (int32_t)RUN);
		assert_int_equal(q[i].done, RUN);
		for (uint32_t k = 0, v = 0; k < RUN; k++) {
			uint8_t b;
			if (i != 2)
				b = buf[i][k];
			else if (k < vlen[0])
				b = vb[0][k];
			else if (k < vlen[0] + vlen[1])
				b = vb[1][k - vlen[0]];
			else
				b = vb[2][k - vlen[0] - vlen[1]];
			v += b != byte_at(q[i].off + k);
			if (k == RUN - 1)
				assert_int_equal(v, 0);
		}
	}
	for (unsigned i = 0; i < SUBS; i++)
		free(buf[i]);
	for (unsigned k = 0; k < 3; k++)
		free(vb[k]);
	vswap_io_fini(&io);
	close(fd);
}

static void test_submit_reap_through_the_ring(void **state)
{
	(void)state;
	submit_reap_once(true);
}

static void test_submit_reap_through_pread(void **state)
{
	(void)state;
	submit_reap_once(false);
}

/* A vectored write gathers its buffers into one contiguous range. */
static void test_writev_gathers(void **state)
{
	(void)state;
	for (int ring = 0; ring < 2; ring++) {
		struct vswap_io io;
		if (ring && vswap_io_init(&io, 2) != 0) {
			vswap_io_fini(&io);
			break;
		}
		if (!ring)
			vswap_io_init_sync(&io, 2);
		char path[] = "/var/tmp/vswap-io-XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		unlink(path);
		char a[3000], b[5000], c[1];
		memset(a, 'a', sizeof(a));
		memset(b, 'b', sizeof(b));
		c[0] = 'c';
		struct iovec iov[3] = {{a, sizeof(a)}, {b, sizeof(b)}, {c, 1}};
		struct vswap_io_req q = {
		    .iov = iov, .iovcnt = 3, .off = 512, .fd = fd, .write = true, .tag = 7};
		assert_int_equal(vswap_io_submit(&io, &q, 1), 1);
		struct vswap_io_req *out;
		assert_int_equal(vswap_io_reap(&io, &out, 1, true), 1);
		assert_ptr_equal(out, &q);
		assert_int_equal(q.tag, 7);
		assert_int_equal(q.res, 8001);
		char back[8001];
		assert_int_equal(pread(fd, back, sizeof(back), 512), 8001);
		assert_memory_equal(back, a, sizeof(a));
		assert_memory_equal(back + 3000, b, sizeof(b));
		assert_int_equal(back[8000], 'c');
		close(fd);
		vswap_io_fini(&io);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stream_through_the_ring),
	    cmocka_unit_test(test_stream_through_pread),
	    cmocka_unit_test(test_failed_request_reports_errno),
	    cmocka_unit_test(test_submit_reap_through_the_ring),
	    cmocka_unit_test(test_submit_reap_through_pread),
	    cmocka_unit_test(test_writev_gathers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

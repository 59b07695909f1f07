/* SPDX-License-Identifier: MIT */
/*
 * Verification: read every slot that a record names and check its XXH3-64.
 * Slots are read in slot order, one read per run of consecutive slots (at
 * most opts.read_bytes), with opts.queue_depth reads in flight through
 * io_uring, so the disk streams while this thread hashes what arrived.
 * Buffered reads: on the machines we measured, page-cache readahead beats
 * O_DIRECT for one sequential pass (vswap-bench's fsck group measures
 * both).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "recovery/internal.h"

#define DEFAULT_QUEUE_DEPTH 16u
#define DEFAULT_READ_BYTES (256u << 10)

/* One read in flight: the records whose slots it covers. */
struct verify_read {
	size_t first_item;
	size_t nitems;
	uint64_t first_slot;
	uint64_t off;  /* the first slot's byte offset; the others follow it */
	uint32_t len;  /* bytes asked for */
	uint32_t done; /* bytes arrived so far (short reads are resumed) */
	uint8_t *buf;
	bool busy;
};

struct verifier {
	struct vswap_fsck *f;
	int fd;
	struct io_uring ring;
	bool have_ring;
	struct fsck_record **items;
	size_t nitems;
	size_t next_item; /* first item not yet in a read */
	struct verify_read *reads;
	unsigned depth;
	unsigned inflight;
	uint32_t ps;
	uint32_t max_pages;
	uint64_t pages_done;
	uint64_t bytes_done;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The records to read: still OK after records.c, with a slot. */
static int collect_items(struct verifier *v)
{
	struct vswap_fsck *f = v->f;

	v->items = malloc((f->nrec ? f->nrec : 1) * sizeof(*v->items));
	if (!v->items)
		return -ENOMEM;
	for (size_t i = 0; i < f->nrec; i++) {
		struct fsck_record *r = f->by_slot[i];

		if (r->verdict == FSCK_OK && r->slot != UINT64_MAX)
			v->items[v->nitems++] = r;
	}
	return 0;
}

/* Plan the next read: a run of consecutive slots starting at next_item. */
static void plan_read(struct verifier *v, struct verify_read *rd)
{
	size_t i = v->next_item;
	uint64_t first = v->items[i]->slot, last = first;

	while (i < v->nitems) {
		uint64_t s = v->items[i]->slot;

		if (s != last && s != last + 1)
			break;
		if (s - first >= v->max_pages)
			break;
		last = s;
		i++;
	}
	rd->first_item = v->next_item;
	rd->nitems = i - v->next_item;
	rd->first_slot = first;
	rd->off = vswap_store_slot_offset(v->f->store, first);
	rd->len = (uint32_t)((last - first + 1) * v->ps);
	rd->done = 0;
	rd->busy = true;
	v->next_item = i;
}

static void queue_read(struct verifier *v, struct verify_read *rd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&v->ring);
	uint64_t off = rd->off + rd->done;

	io_uring_prep_read(sqe, v->fd, rd->buf + rd->done, rd->len - rd->done, off);
	io_uring_sqe_set_data(sqe, rd);
}

/* Hash what arrived; a page past the bytes that arrived is missing.  The
 * checksum is the store's (vswap_store_page_checksum()): it binds the
 * page number, so two records naming one slot are checked each. */
static void check_read(struct verifier *v, struct verify_read *rd, int err)
{
	uint64_t last_slot = UINT64_MAX;

	for (size_t k = 0; k < rd->nitems; k++) {
		struct fsck_record *r = v->items[rd->first_item + k];
		uint64_t off = (r->slot - rd->first_slot) * v->ps;

		if (off + v->ps > rd->done) {
			r->verdict = FSCK_MISSING;
			r->io_error = err;
			continue;
		}
		if (r->slot != last_slot) {
			last_slot = r->slot;
			v->bytes_done += v->ps;
		}
		if (vswap_store_page_checksum(v->f->store, r->page, rd->buf + off) != r->xxh3)
			r->verdict = FSCK_MISMATCH;
		v->pages_done++;
	}
	rd->busy = false;
}

static void report_progress(struct verifier *v)
{
	struct vswap_fsck *f = v->f;

	if (f->opts.progress)
		f->opts.progress(f->opts.progress_ctx, v->pages_done, v->nitems, v->bytes_done);
}

/* A completion: resume a short read, or check the run. */
static void complete_read(struct verifier *v, struct verify_read *rd, int res)
{
	v->inflight--;
	if (res > 0) {
		rd->done += (uint32_t)res;
		if (rd->done < rd->len) {
			queue_read(v, rd);
			v->inflight++;
			return;
		}
	}
	check_read(v, rd, res < 0 ? res : 0);
	report_progress(v);
}

static struct verify_read *idle_read(struct verifier *v)
{
	for (unsigned i = 0; i < v->depth; i++)
		if (!v->reads[i].busy)
			return &v->reads[i];
	return NULL;
}

static int run_ring(struct verifier *v)
{
	struct io_uring_cqe *cqe;
	int ret;

	while (v->next_item < v->nitems || v->inflight) {
		struct verify_read *rd;

		while (v->next_item < v->nitems && !fsck_cancelled(v->f) && (rd = idle_read(v))) {
			plan_read(v, rd);
			queue_read(v, rd);
			v->inflight++;
		}
		if (!v->inflight)
			break;
		ret = io_uring_submit_and_wait(&v->ring, 1);
		if (ret < 0 && ret != -EINTR)
			return ret;
		while (io_uring_peek_cqe(&v->ring, &cqe) == 0) {
			struct verify_read *done = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			io_uring_cqe_seen(&v->ring, cqe);
			complete_read(v, done, res);
		}
	}
	return 0;
}

/* Without io_uring (seccomp, old kernel): the same plan with pread. */
static int run_pread(struct verifier *v)
{
	struct verify_read *rd = &v->reads[0];

	while (v->next_item < v->nitems && !fsck_cancelled(v->f)) {
		plan_read(v, rd);
		while (rd->done < rd->len) {
			ssize_t k = pread(v->fd, rd->buf + rd->done, rd->len - rd->done,
					  (off_t)(rd->off + rd->done));

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				check_read(v, rd, k < 0 ? -errno : 0);
				break;
			}
			rd->done += (uint32_t)k;
		}
		if (rd->busy)
			check_read(v, rd, 0);
		report_progress(v);
	}
	return 0;
}

static int verifier_init(struct verifier *v, struct vswap_fsck *f)
{
	uint32_t rb = f->opts.read_bytes ? f->opts.read_bytes : DEFAULT_READ_BYTES;

	v->f = f;
	v->ps = f->page_size;
	v->max_pages = rb / v->ps ? rb / v->ps : 1;
	v->depth = f->opts.queue_depth ? f->opts.queue_depth : DEFAULT_QUEUE_DEPTH;
	const char *what;

	v->fd = fsck_open_regular(f->path, AT_FDCWD, &what);
	if (v->fd < 0) {
		int ret = v->fd;

		if (what)
			fsck_log(f, VSWAP_LOG_ERROR, "%s: is %s now", f->path, what);
		return ret;
	}
	posix_fadvise(v->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	v->reads = calloc(v->depth, sizeof(*v->reads));
	if (!v->reads)
		return -ENOMEM;
	for (unsigned i = 0; i < v->depth; i++)
		if (posix_memalign((void **)&v->reads[i].buf, 4096, (size_t)v->max_pages * v->ps))
			return -ENOMEM;
	v->have_ring = io_uring_queue_init(v->depth * 2, &v->ring, 0) == 0;
	if (!v->have_ring)
		fsck_log(f, VSWAP_LOG_INFO, "io_uring unavailable; verifying with pread");
	return collect_items(v);
}

static void verifier_fini(struct verifier *v)
{
	if (v->have_ring)
		io_uring_queue_exit(&v->ring);
	for (unsigned i = 0; v->reads && i < v->depth; i++)
		free(v->reads[i].buf);
	free(v->reads);
	free(v->items);
	if (v->fd >= 0)
		close(v->fd);
}

int fsck_verify(struct vswap_fsck *f)
{
	if (f->skip_bytes)
		return 0;
	struct verifier v = {.fd = -1};
	uint64_t t0 = now_ns();
	int ret = verifier_init(&v, f);

	if (!ret)
		ret = v.have_ring ? run_ring(&v) : run_pread(&v);
	f->counts.pages_checked += v.pages_done;
	f->counts.bytes_verified += v.bytes_done;
	f->counts.verify_ns += now_ns() - t0;
	verifier_fini(&v);
	return ret;
}

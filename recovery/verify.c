/* SPDX-License-Identifier: MIT */
/*
 * Verification: read every slot that a record names and check its XXH3-64.
 * Slots are read in slot order, one read per run of consecutive slots (at
 * most opts.read_bytes), with opts.queue_depth reads in flight through the
 * store's I/O engine (store/io.h, io_uring or its pread fallback), so the
 * disk streams while this thread hashes what arrived.
 * Buffered reads: on the machines we measured, page-cache readahead beats
 * O_DIRECT for one sequential pass (vswap-bench's fsck group measures
 * both).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "recovery/internal.h"
#include "store/io.h"

#define DEFAULT_QUEUE_DEPTH 16u
#define DEFAULT_READ_BYTES (256u << 10)

/* One read in flight: the records whose slots it covers.  The request
 * reads the run from the first slot's byte offset on (the others follow
 * it); the engine resumes short reads. */
struct verify_read {
	struct vswap_io_req req; /* first: done() gets it back */
	size_t first_item;
	size_t nitems;
	uint64_t first_slot;
	bool busy;
};

struct verifier {
	struct vswap_fsck *f;
	int fd;
	struct vswap_io io; /* the store's I/O engine (store/io.h) */
	struct fsck_record **items;
	size_t nitems;
	size_t next_item; /* first item not yet in a read */
	struct verify_read *reads;
	unsigned depth;
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
	rd->req.off = vswap_store_slot_offset(v->f->store, first);
	rd->req.len = (uint32_t)((last - first + 1) * v->ps);
	rd->busy = true;
	v->next_item = i;
}

/* Hash what arrived; a page past the bytes that arrived is missing.  The
 * checksum is the store's (vswap_store_page_checksum()): it binds the
 * page number, so two records naming one slot are checked each. */
static void check_read(struct verifier *v, struct verify_read *rd)
{
	uint64_t last_slot = UINT64_MAX;
	const uint8_t *buf = rd->req.buf;
	int err = rd->req.res < 0 ? rd->req.res : 0;

	for (size_t k = 0; k < rd->nitems; k++) {
		struct fsck_record *r = v->items[rd->first_item + k];
		uint64_t off = (r->slot - rd->first_slot) * v->ps;

		if (off + v->ps > rd->req.done) {
			r->verdict = FSCK_MISSING;
			r->io_error = err;
			continue;
		}
		if (r->slot != last_slot) {
			last_slot = r->slot;
			v->bytes_done += v->ps;
		}
		if (vswap_store_page_checksum(v->f->store, r->page, buf + off) != r->xxh3)
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

/* The engine wants a read: the next run into an idle buffer. */
static struct vswap_io_req *next_read(void *ctx)
{
	struct verifier *v = ctx;

	if (v->next_item >= v->nitems || fsck_cancelled(v->f))
		return NULL;
	for (unsigned i = 0; i < v->depth; i++) {
		struct verify_read *rd = &v->reads[i];

		if (!rd->busy) {
			plan_read(v, rd);
			return &rd->req;
		}
	}
	return NULL;
}

/* A run arrived (whole, short, or failed): check it, free its buffer. */
static void read_done(void *ctx, struct vswap_io_req *req)
{
	struct verifier *v = ctx;

	check_read(v, (struct verify_read *)req);
	report_progress(v);
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
		if (posix_memalign(&v->reads[i].req.buf, 4096, (size_t)v->max_pages * v->ps))
			return -ENOMEM;
	if (vswap_io_init(&v->io, v->depth) != 0)
		fsck_log(f, VSWAP_LOG_INFO, "io_uring unavailable; verifying with pread");
	return collect_items(v);
}

static void verifier_fini(struct verifier *v)
{
	vswap_io_fini(&v->io);
	for (unsigned i = 0; v->reads && i < v->depth; i++)
		free(v->reads[i].req.buf);
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

	if (!ret) {
		struct vswap_io_stream st = {.next = next_read, .done = read_done, .ctx = &v};

		ret = vswap_io_stream(&v.io, v.fd, false, &st);
	}
	f->counts.pages_checked += v.pages_done;
	f->counts.bytes_verified += v.bytes_done;
	f->counts.verify_ns += now_ns() - t0;
	verifier_fini(&v);
	return ret;
}

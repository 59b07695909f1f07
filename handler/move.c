/* SPDX-License-Identifier: MIT */
/*
 * Move to staging (enable): every resident guest page goes to the staging
 * file and leaves guest memory, so the next access faults.  The caller
 * guarantees nothing writes guest RAM meanwhile.
 *
 * Pass 1 records every data extent as staged and commits (log ahead,
 * invariant 5).  Pass 2 walks the same extents again, cut into batches of at
 * most a huge page so that a huge page is always removed whole, and the pool
 * copies each batch, hashing every page as it lands (the store's page
 * checksum, while the bytes are in cache).  Batches go in waves of at most
 * MOVE_WAVE_BYTES: when a wave is copied, its checksums are recorded and
 * committed, and only then are its guest ranges punched.  So a guest page
 * leaves guest memory only once what verifies its staged copy is durable;
 * a crash before that commit leaves staged pages without a checksum, which
 * a later open never trusts.  The wave bounds how much guest memory is
 * held twice (guest and staging) and costs one commit per wave.
 *
 * The guest range is punched with fallocate() rather than MADV_REMOVE: the
 * handler runs inside a registered process, and MADV_REMOVE on a registered
 * range queues a REMOVE event on our own uffd and blocks until it is read by
 * the monitor, which is waiting for this very pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handler/internal.h"

#define MAX_OPS 512
#define MOVE_WAVE_BYTES (256ull << 20)

struct copy_op {
	void *dst;
	const void *src;
	size_t len;
};

struct move_task;

struct move_ctx {
	struct vswap_handler *h;
	const struct hregion *r;
	/* the batch being built */
	off_t head; /* punch from here (relative to the region) */
	size_t remaining;
	unsigned nops;
	struct copy_op ops[MAX_OPS];
	/* the wave: batches copied or queued, not yet punched */
	struct move_task *wave;
	uint64_t wave_bytes;
};

struct move_task {
	struct move_task *next;
	struct vswap_handler *h;
	int memfd;		    /* the task's own: the context moves on to the next region */
	off_t punch_off, punch_len; /* memfd offsets */
	uint64_t *sums;		    /* per page of the ops, in order */
	unsigned nops;
	struct copy_op ops[];
};

/* Next data extent of @r at or after relative offset @pos: 1 and
 * [*data, *hole), or 0 at the end. */
int region_next_extent(const struct hregion *r, off_t pos, off_t *data, off_t *hole)
{
	off_t len = (off_t)(r->end - r->start);
	if (pos >= len)
		return 0;
	off_t d = lseek(r->memfd, r->offset + pos, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? 0 : -errno;
	if (d >= r->offset + len)
		return 0;
	off_t e = lseek(r->memfd, d, SEEK_HOLE);
	if (e < 0)
		return -errno;
	*data = d - r->offset;
	*hole = (e > r->offset + len ? r->offset + len : e) - r->offset;
	return 1;
}

static int mark_region(struct vswap_handler *h, const struct hregion *r, uint64_t *pages)
{
	/* Initialised: gcc -O2 cannot see that next_extent() sets both
	 * whenever it returns 1. */
	off_t pos = 0, data = 0, hole = 0;
	int rc;
	while ((rc = region_next_extent(r, pos, &data, &hole)) > 0) {
		uint64_t first = r->first + ((uint64_t)data >> h->page_shift);
		uint64_t count = (uint64_t)(hole - data) >> h->page_shift;
		rc = vswap_store_stage_mark(h->store, first, count);
		if (rc < 0)
			return rc;
		*pages += count;
		pos = hole;
	}
	return rc;
}

static uint64_t op_first_page(const struct vswap_handler *h, const struct copy_op *op)
{
	return (uint64_t)((const uint8_t *)op->dst - (const uint8_t *)h->staging) >> h->page_shift;
}

/* Copy page by page and hash each copy while it is in cache. */
static void move_worker(void *arg)
{
	struct move_task *t = arg;
	const struct vswap_handler *h = t->h;
	size_t k = 0;
	for (unsigned i = 0; i < t->nops; i++) {
		uint64_t page = op_first_page(h, &t->ops[i]);
		for (size_t off = 0; off < t->ops[i].len; off += h->page_size) {
			uint8_t *dst = (uint8_t *)t->ops[i].dst + off;
			memcpy(dst, (const uint8_t *)t->ops[i].src + off, h->page_size);
			t->sums[k++] = vswap_store_page_checksum(h->store, page++, dst);
		}
	}
}

/*
 * The wave is copied: record its checksums, commit them, and only then
 * remove the guest's copies.  If the commit fails nothing is punched: the
 * guest keeps every page (staged and resident: resident wins at the next
 * fault) and the move reports the error.
 */
static int finish_wave(struct move_ctx *c)
{
	struct vswap_handler *h = c->h;
	int rc = 0;
	pool_wait_complete(h->pool);
	pthread_mutex_lock(&h->lock);
	for (struct move_task *t = c->wave; t && !rc; t = t->next) {
		size_t k = 0;
		for (unsigned i = 0; i < t->nops && !rc; i++) {
			uint64_t n = t->ops[i].len >> h->page_shift;
			rc = vswap_store_stage_record_sums(h->store, op_first_page(h, &t->ops[i]),
							   n, t->sums + k);
			k += n;
		}
	}
	if (rc == 0)
		rc = vswap_store_commit(h->store);
	pthread_mutex_unlock(&h->lock);
	while (c->wave) {
		struct move_task *t = c->wave;
		c->wave = t->next;
		if (rc == 0 && t->punch_len > 0 &&
		    fallocate(t->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, t->punch_off,
			      t->punch_len) < 0)
			rc = -errno;
		free(t->sums);
		free(t);
	}
	c->wave_bytes = 0;
	return rc;
}

/* Queue the batch built so far; its punch runs from head to @end. */
static int flush_batch(struct move_ctx *c, off_t end)
{
	struct move_task *t = malloc(sizeof(*t) + c->nops * sizeof(t->ops[0]));
	if (!t)
		return -ENOMEM;
	size_t bytes = 0;
	for (unsigned i = 0; i < c->nops; i++)
		bytes += c->ops[i].len;
	t->sums = malloc((bytes >> c->h->page_shift) * sizeof(uint64_t) + 1);
	if (!t->sums) {
		free(t);
		return -ENOMEM;
	}
	t->h = c->h;
	t->memfd = c->r->memfd;
	t->punch_off = c->r->offset + c->head;
	t->punch_len = end - c->head;
	t->nops = c->nops;
	memcpy(t->ops, c->ops, c->nops * sizeof(t->ops[0]));
	c->nops = 0;
	c->head = end;
	c->remaining = c->h->thp_size;
	int rc = pool_push(c->h->pool, move_worker, t);
	if (rc < 0) {
		free(t->sums);
		free(t);
		return rc;
	}
	t->next = c->wave;
	c->wave = t;
	c->wave_bytes += bytes;
	return c->wave_bytes >= MOVE_WAVE_BYTES ? finish_wave(c) : 0;
}

/* How much of an extent of @len bytes at @data the current batch takes. */
static size_t piece_len(struct move_ctx *c, off_t data, size_t len, int *rc)
{
	size_t thp = c->h->thp_size;
	*rc = 0;
	if (len <= c->remaining)
		return len;
	if (len < thp)
		return c->remaining;
	size_t to_boundary = thp - ((size_t)(c->r->offset + data) & (thp - 1));
	if (to_boundary != thp) /* unaligned: stop at the huge page boundary */
		return to_boundary < c->remaining ? to_boundary : c->remaining;
	/* An aligned huge page gets a batch of its own. */
	if (c->remaining < thp)
		*rc = flush_batch(c, data);
	return thp;
}

static int move_region(struct move_ctx *c)
{
	struct vswap_handler *h = c->h;
	const struct hregion *r = c->r;
	off_t pos = 0, data = 0, hole = 0; /* see mark_region() */
	int rc;
	c->head = 0;
	c->remaining = h->thp_size;
	c->nops = 0;
	while ((rc = region_next_extent(r, pos, &data, &hole)) > 0) {
		while (data < hole) {
			size_t cut = piece_len(c, data, (size_t)(hole - data), &rc);
			if (rc < 0)
				return rc;
			uint64_t page = r->first + ((uint64_t)data >> h->page_shift);
			c->ops[c->nops++] = (struct copy_op){
			    .dst = staging_ptr(h, page),
			    .src = (const void *)(r->start + (uintptr_t)data),
			    .len = cut,
			};
			c->remaining -= cut;
			data += (off_t)cut;
			if (c->remaining == 0 || c->nops == MAX_OPS) {
				rc = flush_batch(c, data);
				if (rc < 0)
					return rc;
			}
		}
		pos = hole;
	}
	if (rc < 0)
		return rc;
	/* The last batch runs to the region end (it may hold only holes). */
	return flush_batch(c, (off_t)(r->end - r->start));
}

int move_to_staging(struct vswap_handler *h, uint64_t *pages)
{
	*pages = 0;
	/* A lazy commit in flight holds staging bytes to punch before any
	 * page is staged again (vswap_store_stage_mark()). */
	committer_wait_idle(h);
	pthread_mutex_lock(&h->lock);
	int rc = 0;
	for (unsigned i = 0; i < h->nregions && rc == 0; i++)
		rc = mark_region(h, &h->regions[i], pages);
	if (rc == 0)
		rc = vswap_store_commit(h->store);
	h->c.from_file = h->c.from_staging = h->c.zeroed = h->c.redundant = 0;
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		return rc;

	struct move_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->h = h;
	for (unsigned i = 0; i < h->nregions && rc == 0; i++) {
		c->r = &h->regions[i];
		rc = move_region(c);
	}
	if (rc == 0) {
		rc = finish_wave(c);
	} else {
		/* Copies queued are waited for and dropped, never punched. */
		pool_wait_complete(h->pool);
		while (c->wave) {
			struct move_task *t = c->wave;
			c->wave = t->next;
			free(t->sums);
			free(t);
		}
	}
	free(c);
	if (rc == 0 && regions_resident_pages(h) > 0)
		hlog(h, VSWAP_LOG_WARN, "guest memory was written during the move to staging");
	return rc;
}

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
 * checksum, while the bytes are in cache: a few per cent of the copy's CPU).
 *
 * A guest page leaves guest memory only once what verifies its staged copy
 * is durable.  Batches go in waves of at most move_wave_bytes(): when a
 * wave is copied its checksums are recorded and the commit thread asked to
 * commit them (committer_ticket()), and the next wave's copies go on
 * meanwhile.  Once that commit has landed the wave's guest ranges are
 * punched, by the pool, one punch queued after each copy of the wave then
 * being copied (punches of one memfd serialise on its inode lock; a copy
 * beside each keeps both CPUs busy).  So the sync of one wave's checksums
 * and the punches of the wave before run beside the copies, as the punches
 * did before the checksums existed.  A crash before a wave's commit leaves
 * staged pages without a checksum, which a later open never trusts (their
 * guest copies are still there).  At most two waves are held twice (guest
 * and staging): the one being copied and the one waiting for its commit.
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
#include <sys/mman.h>
#include <unistd.h>

#include "handler/internal.h"

#define MAX_OPS 512
#define MOVE_WAVE_BYTES (64ull << 20)

struct copy_op {
	void *dst;
	const void *src;
	size_t len;
};

struct move_task {
	struct move_task *next;
	struct vswap_handler *h;
	int memfd;		    /* the task's own: the context moves on to the next region */
	off_t punch_off, punch_len; /* memfd offsets */
	uint64_t *sums;		    /* per page of the ops, in order (in the wave's buffer) */
	atomic_int *punch_error;    /* the move's first punch error */
	unsigned nops;
	struct copy_op ops[];
};

/* A wave's batches, in the order queued. */
struct wave {
	struct move_task *head, **tail;
	uint64_t bytes, pages;
};

struct move_ctx {
	struct vswap_handler *h;
	const struct hregion *r;
	/* the batch being built */
	off_t head; /* punch from here (relative to the region) */
	size_t remaining;
	unsigned nops;
	struct copy_op ops[MAX_OPS];
	/* The wave being copied (its checksums land in @sums), the wave
	 * whose checksums are being committed (@ticket; @to_punch: its
	 * batches not yet queued for their punch), and the batches queued
	 * for a punch (freed once the pool is idle). */
	struct wave cur, prev, punching;
	uint64_t wave_bytes; /* a wave closes at this many bytes */
	uint64_t *sums;	     /* one wave's checksums (mapped: see move_to_staging()) */
	size_t sums_len;
	uint64_t ticket;
	bool committing; /* @prev's commit asked, its punches not all queued */
	struct move_task *to_punch;
	atomic_int punch_error;
};

static void wave_init(struct wave *w)
{
	w->head = NULL;
	w->tail = &w->head;
	w->bytes = w->pages = 0;
}

static void wave_append(struct wave *w, struct move_task *t)
{
	t->next = NULL;
	*w->tail = t;
	w->tail = &t->next;
}

static void wave_free(struct wave *w)
{
	while (w->head) {
		struct move_task *t = w->head;
		w->head = t->next;
		free(t);
	}
	wave_init(w);
}

/* The wave size: the test knob, else MOVE_WAVE_BYTES. */
static uint64_t move_wave_bytes(const struct vswap_handler *h)
{
	return h->move_wave_pages ? h->move_wave_pages << h->page_shift : MOVE_WAVE_BYTES;
}

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

/* Remove a batch's guest range: its checksums' commit has landed. */
static void punch_worker(void *arg)
{
	struct move_task *t = arg;
	int expected = 0;
	if (fallocate(t->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, t->punch_off,
		      t->punch_len) < 0)
		atomic_compare_exchange_strong(t->punch_error, &expected, -errno);
}

/*
 * Queue the punch of the next batch of the committing wave, if its commit
 * has landed: the commit thread's result, waited for when @wait.  0 (with
 * nothing queued while the commit is in flight), or the commit's or the
 * queue's error: then nothing of that wave is ever punched.
 */
static int punch_next(struct move_ctx *c, bool wait)
{
	struct vswap_handler *h = c->h;
	if (!c->committing)
		return 0;
	int rc = committer_result(h, c->ticket, wait);
	if (rc == -EINPROGRESS)
		return 0;
	if (rc < 0)
		return rc;
	struct move_task *t = c->to_punch;
	while (t && t->punch_len == 0) /* a batch of holes only */
		t = t->next;
	if (t) {
		rc = pool_push(h->pool, punch_worker, t);
		if (rc < 0)
			return rc;
		t = t->next;
	}
	c->to_punch = t;
	if (!t) { /* every punch queued: the batches go to the punched list */
		c->committing = false;
		if (c->prev.head) {
			*c->punching.tail = c->prev.head;
			c->punching.tail = c->prev.tail;
		}
		wave_init(&c->prev);
	}
	return 0;
}

/*
 * The current wave is queued whole: wait until it is copied, record its
 * checksums and ask for their commit, without waiting for it.  The wave
 * before must be punched first (waited for here if its commit is still in
 * flight): its batches are the ones that free the guest's memory.  If a
 * commit fails nothing of its wave or any later one is punched: the guest
 * keeps those pages (staged and resident: resident wins at the next fault)
 * and the move reports the error.
 */
static int close_wave(struct move_ctx *c)
{
	struct vswap_handler *h = c->h;
	int rc = 0;
	while (c->committing && rc == 0)
		rc = punch_next(c, true);
	pool_wait_complete(h->pool);
	wave_free(&c->punching);
	if (rc == 0)
		rc = atomic_load(&c->punch_error);
	if (rc < 0 || !c->cur.head)
		return rc;
	pthread_mutex_lock(&h->lock);
	for (struct move_task *t = c->cur.head; t && !rc; t = t->next) {
		size_t k = 0;
		for (unsigned i = 0; i < t->nops && !rc; i++) {
			uint64_t n = t->ops[i].len >> h->page_shift;
			rc = vswap_store_stage_record_sums(h->store, op_first_page(h, &t->ops[i]),
							   n, t->sums + k);
			k += n;
		}
	}
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		return rc;
	c->ticket = committer_ticket(h);
	c->committing = true;
	c->prev = c->cur; /* not empty: its tail is in its last batch */
	c->to_punch = c->prev.head;
	wave_init(&c->cur);
	return 0;
}

/* Queue the batch built so far; its punch runs from head to @end. */
static int flush_batch(struct move_ctx *c, off_t end)
{
	struct vswap_handler *h = c->h;
	size_t bytes = 0;
	for (unsigned i = 0; i < c->nops; i++)
		bytes += c->ops[i].len;
	uint64_t npages = bytes >> h->page_shift;
	/* A batch is at most a huge page, so a wave's checksums fit the
	 * buffer (move_to_staging() sizes it so). */
	if (c->cur.pages + npages > c->sums_len)
		return -EOVERFLOW;
	struct move_task *t = malloc(sizeof(*t) + c->nops * sizeof(t->ops[0]));
	if (!t)
		return -ENOMEM;
	t->h = h;
	t->memfd = c->r->memfd;
	t->punch_off = c->r->offset + c->head;
	t->punch_len = end - c->head;
	t->sums = c->sums + c->cur.pages;
	t->punch_error = &c->punch_error;
	t->nops = c->nops;
	memcpy(t->ops, c->ops, c->nops * sizeof(t->ops[0]));
	c->nops = 0;
	c->head = end;
	c->remaining = h->thp_size;
	int rc = pool_push(h->pool, move_worker, t);
	if (rc < 0) {
		free(t);
		return rc;
	}
	wave_append(&c->cur, t);
	c->cur.bytes += bytes;
	c->cur.pages += npages;
	/* One punch of the wave before beside each copy. */
	rc = punch_next(c, false);
	if (rc == 0 && c->cur.bytes >= c->wave_bytes)
		rc = close_wave(c);
	return rc;
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
	if (rc < 0 || *pages == 0)
		return rc;

	struct move_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->h = h;
	c->wave_bytes = move_wave_bytes(h);
	wave_init(&c->cur);
	wave_init(&c->prev);
	wave_init(&c->punching);
	atomic_init(&c->punch_error, 0);
	/* A wave closes at the batch that reaches its size, and a batch is at
	 * most a huge page.  Mapped rather than allocated: the buffer is
	 * returned whole when the move ends, leaving no heap behind. */
	c->sums_len = ((c->wave_bytes + h->thp_size) >> h->page_shift) + 1;
	size_t map_len = c->sums_len * sizeof(uint64_t);
	c->sums = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->sums == MAP_FAILED) {
		rc = -errno;
		free(c);
		return rc;
	}
	for (unsigned i = 0; i < h->nregions && rc == 0; i++) {
		c->r = &h->regions[i];
		rc = move_region(c);
	}
	if (rc == 0)
		rc = close_wave(c); /* the last wave's checksums: commit asked */
	while (rc == 0 && c->committing)
		rc = punch_next(c, true);
	/* Copies and punches queued are waited for; nothing more is punched
	 * after an error. */
	pool_wait_complete(h->pool);
	if (rc == 0)
		rc = atomic_load(&c->punch_error);
	wave_free(&c->cur);
	wave_free(&c->prev);
	wave_free(&c->punching);
	munmap(c->sums, map_len);
	free(c);
	if (rc == 0 && regions_resident_pages(h) > 0)
		hlog(h, VSWAP_LOG_WARN, "guest memory was written during the move to staging");
	return rc;
}

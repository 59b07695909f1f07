/* SPDX-License-Identifier: MIT */
/*
 * The read path.  Nothing leaves it unverified (invariant 3): every page's
 * bytes are checked against its XXH3 checksum, and a page that fails is
 * recorded lost (present pages) or its copy dropped (stale pages).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"

/* A page whose bytes are bad: never serve it, and remember why.  Only a
 * checksum failure, missing bytes or a device error condemn the page; other
 * errors (no memory, interrupted) say nothing about its bytes. */
static int page_failed(struct vswap_store *s, uint64_t page, int err, const char *why)
{
	uint32_t w = s->pages[page];
	if (err != -EBADMSG && err != -EIO)
		return err;
	s->checksum_failures += err == -EBADMSG;
	store_log(s, VSWAP_LOG_ERROR, "%s: page %llu (slot %llu): %s", s->path,
		  (unsigned long long)page, (unsigned long long)pw_slot(w), why);
	if (pw_state(w) == VSWAP_PAGE_STALE)
		page_release_slot(s, page); /* an older copy: expendable */
	else
		page_set(s, page, pw_make(pw_slot(w), VSWAP_PAGE_LOST), s->sums[page]);
	return err;
}

/* @sum: the checksum of the @got bytes read (only looked at for a whole page). */
static int verify_sum(struct vswap_store *s, uint64_t page, uint64_t sum, int32_t got)
{
	if (got < (int32_t)s->page_size)
		return page_failed(s, page, -EIO, "bytes missing (swap file truncated?)");
	if (sum != s->sums[page])
		return page_failed(s, page, -EBADMSG, "checksum mismatch");
	return 0;
}

static int verify(struct vswap_store *s, uint64_t page, const void *buf, int32_t got)
{
	return verify_sum(s, page, got < (int32_t)s->page_size ? 0 : page_sum(s, page, buf), got);
}

static int readable(const struct vswap_store *s, uint64_t page)
{
	if (page >= s->total_pages)
		return -EINVAL;
	int need = index_need(s, page, 1);
	if (need)
		return need;
	switch (pw_state(s->pages[page])) {
	case VSWAP_PAGE_NONE:
		return -ENODATA;
	case VSWAP_PAGE_LOST:
		return -EBADMSG;
	default:
		return 0;
	}
}

int vswap_store_read_page(struct vswap_store *s, uint64_t page, void *buf)
{
	int ret = readable(s, page);
	if (ret)
		return ret;
	uint64_t off = slot_offset(s, pw_slot(s->pages[page]));
	ssize_t k;
	do
		k = pread(s->fd, buf, s->page_size, (off_t)off);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return page_failed(s, page, -errno, strerror(errno));
	s->bytes_read += (uint64_t)k;
	return verify(s, page, buf, (int32_t)k);
}

uint64_t vswap_store_slot_offset(const struct vswap_store *s, uint64_t slot)
{
	return slot_offset(s, slot);
}

int vswap_store_read_begin(const struct vswap_store *s, uint64_t page, struct vswap_read *r)
{
	int ret = readable(s, page);
	if (ret)
		return ret;
	uint32_t w = s->pages[page];
	*r = (struct vswap_read){
	    .page = page,
	    .slot = pw_slot(w),
	    .xxh3 = s->sums[page],
	    .offset = slot_offset(s, pw_slot(w)),
	    .len = s->page_size,
	    .fd = s->dfd >= 0 ? s->dfd : s->fd,
	};
	return 0;
}

/* 0 if page @r->page still holds the copy its read began with: the same
 * slot and checksum, present or stale.  Otherwise (-ESTALE) the slot may
 * have been freed and written for another page meanwhile, and its bytes
 * say nothing about this page. */
static int read_copy_held(struct vswap_store *s, const struct vswap_read *r)
{
	if (r->page >= s->total_pages)
		return -EINVAL;
	int need = index_need(s, r->page, 1);
	if (need)
		return need;
	uint32_t w = s->pages[r->page];
	enum vswap_page_state st = pw_state(w);
	if ((st != VSWAP_PAGE_PRESENT && st != VSWAP_PAGE_STALE) || pw_slot(w) != r->slot ||
	    s->sums[r->page] != r->xxh3)
		return -ESTALE;
	return 0;
}

/* The read's result, counted, if its copy is still the page's (a copy
 * that is not condemns nothing). */
static int read_ended(struct vswap_store *s, const struct vswap_read *r, int32_t got)
{
	int held = read_copy_held(s, r);
	if (held)
		return held;
	if (got < 0)
		return page_failed(s, r->page, got, strerror(-got));
	s->bytes_read += (uint64_t)got;
	return 0;
}

int vswap_store_read_end(struct vswap_store *s, const struct vswap_read *r, const void *buf,
			 int32_t got)
{
	int ret = read_ended(s, r, got);
	return ret ? ret : verify(s, r->page, buf, got);
}

int vswap_store_read_end_sum(struct vswap_store *s, const struct vswap_read *r, uint64_t sum,
			     int32_t got)
{
	int ret = read_ended(s, r, got);
	return ret ? ret : verify_sum(s, r->page, sum, got);
}

int vswap_store_read_run(struct vswap_store *s, uint64_t first, uint32_t count, void *buf,
			 int *status)
{
	if (count == 0 || first >= s->total_pages || count > s->total_pages - first)
		return -EINVAL;
	int need = index_need(s, first, count);
	if (need)
		return need;
	struct vswap_io_req *reqs = malloc(count * sizeof(*reqs));
	uint32_t *req_first = malloc(count * sizeof(*req_first));
	if (!reqs || !req_first) {
		free(reqs);
		free(req_first);
		return -ENOMEM;
	}
	int failed = 0;
	unsigned n = 0;
	uint8_t *out = buf;
	for (uint32_t i = 0; i < count;) {
		int st = readable(s, first + i);
		if (status)
			status[i] = st;
		if (st) {
			failed++;
			i++;
			continue;
		}
		uint64_t slot = pw_slot(s->pages[first + i]);
		uint32_t j = i + 1;
		while (j < count && j - i < MAX_REQ_PAGES && readable(s, first + j) == 0 &&
		       pw_slot(s->pages[first + j]) == slot + (j - i))
			j++;
		req_first[n] = i;
		reqs[n++] = (struct vswap_io_req){.buf = out + ((size_t)i << s->page_shift),
						  .off = slot_offset(s, slot),
						  .len = (j - i) << s->page_shift};
		i = j;
	}
	int ret = vswap_io_run(&s->io, s->fd, false, reqs, n);
	for (unsigned r = 0; r < n && ret && status; r++)
		for (uint32_t k = 0; k < reqs[r].len >> s->page_shift; k++)
			status[req_first[r] + k] = ret; /* never read: not verified */
	for (unsigned r = 0; r < n && !ret; r++) {
		uint32_t pages = reqs[r].len >> s->page_shift;
		int32_t got = reqs[r].res;
		if (got > 0)
			s->bytes_read += (uint64_t)got;
		for (uint32_t k = 0; k < pages; k++) {
			uint32_t i = req_first[r] + k;
			int32_t have = got < 0 ? got : got - (int32_t)(k << s->page_shift);
			int st = have < 0 && got < 0
				     ? page_failed(s, first + i, got, strerror(-got))
				     : verify(s, first + i, out + ((size_t)i << s->page_shift),
					      have < 0 ? 0 : have);
			if (status)
				status[i] = st;
			failed += st != 0;
		}
	}
	free(reqs);
	free(req_first);
	return ret ? ret : failed;
}

/*
 * "Equal to its stale copy" has one definition, in two steps: the checksum
 * of the bytes the page has now matches its stale slot's (most changed
 * pages differ there: no read), then those bytes equal the slot's, every
 * one (the checksum alone would let a collision make a changed page
 * present).  vswap_store_stale_equals() takes both steps at once; a caller
 * that reads outside its lock takes them apart.
 */
int vswap_store_stale_match(struct vswap_store *s, uint64_t page, uint64_t sum,
			    struct vswap_read *r)
{
	if (page >= s->total_pages)
		return -EINVAL;
	int need = index_need(s, page, 1);
	if (need)
		return need;
	if (pw_state(s->pages[page]) != VSWAP_PAGE_STALE || sum != s->sums[page])
		return 0;
	int ret = vswap_store_read_begin(s, page, r);
	return ret < 0 ? ret : 1;
}

int vswap_store_stale_keep(struct vswap_store *s, const struct vswap_read *r)
{
	int held = read_copy_held(s, r);
	if (held)
		return held;
	if (pw_state(s->pages[r->page]) != VSWAP_PAGE_STALE)
		return -ESTALE;
	return vswap_store_mark_present(s, r->page);
}

int vswap_store_stale_equals(struct vswap_store *s, uint64_t page, const void *buf)
{
	struct vswap_read r;
	int match = vswap_store_stale_match(s, page, page_sum(s, page, buf), &r);
	if (match != 1)
		return match;
	void *copy;
	if (posix_memalign(&copy, s->page_size, s->page_size))
		return -ENOMEM;
	int ret = vswap_store_read_page(s, page, copy);
	int equal = ret == 0 && memcmp(copy, buf, s->page_size) == 0;
	free(copy);
	return ret == -ENOMEM ? ret : equal;
}

uint64_t vswap_store_page_checksum(const struct vswap_store *s, uint64_t page, const void *buf)
{
	return page_sum(s, page, buf);
}

/* SPDX-License-Identifier: MIT */
#include "tests/helpers/kill_check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kc_ctx {
	struct vswap_store *s;
	const struct kw_shared *sh;
	struct kc_result *r;
	uint8_t *buf;
	uint32_t ps;
	int staging_fd;
};

static void kc_wrong(struct kc_ctx *c, const char *fmt, uint64_t page, uint64_t slot, long long v)
{
	if (!c->r->wrong++)
		snprintf(c->r->why, sizeof(c->r->why), fmt, (unsigned long long)page,
			 (unsigned long long)slot, v);
}

/* A present or stale page: its bytes must be a version written for it. */
static int check_record(void *arg, const struct vswap_page_record *rec)
{
	struct kc_ctx *c = arg;
	int64_t v;
	int err;

	if (rec->corrupt)
		return 0; /* rfx_check_after_crash judges records not believed */
	if (rec->state == VSWAP_PAGE_LOST) {
		/* The guest never damages a byte, so a lost page is data the
		 * store held and the kill (or the repair) destroyed. */
		c->r->lost++;
		kc_wrong(c, "page %llu%.0llu is lost after the kill and the repair%.0lld",
			 rec->page, 0ull, 0);
		return 0;
	}
	if (rec->page >= KW_PAGES) {
		kc_wrong(c, "page %llu (slot %llu) outside the guest (%lld)", rec->page, rec->slot,
			 0);
		return 0;
	}
	err = vswap_store_read_page(c->s, rec->page, c->buf);
	if (err) {
		kc_wrong(c, "page %llu slot %llu does not read back: error %lld", rec->page,
			 rec->slot, err);
		return 0;
	}
	v = kw_page_version(c->buf, c->ps, rec->page);
	if (v < 0)
		kc_wrong(c, "page %llu slot %llu holds bytes of no version of the page (%lld)",
			 rec->page, rec->slot, v);
	else if (v > (int64_t)atomic_load(&c->sh->vmax[rec->page]))
		kc_wrong(c, "page %llu slot %llu holds version %lld, never written", rec->page,
			 rec->slot, v);
	else if (rec->state == VSWAP_PAGE_STALE)
		c->r->stale++;
	else
		c->r->present++;
	return 0;
}

/*
 * A staged page.  Its copy is logged ahead (invariant 5): the record is
 * committed before the copy, its checksum after it.  A copy whose checksum
 * is committed must verify against it (the repair left no failing copy:
 * it would have made the page lost or left it for the swap file) and be a
 * version the guest wrote; one without may be cut short by the kill (torn,
 * still zero) and is only classified: no open trusts it unchecked.
 */
static int check_staged(void *arg, const struct vswap_staged_record *rec)
{
	struct kc_ctx *c = arg;
	uint64_t p = rec->page;
	int64_t v;

	if (rec->corrupt)
		return 0; /* rfx_check_after_crash judges records not believed */
	if (p >= KW_PAGES) {
		kc_wrong(c, "staged page %llu%.0llu outside the guest (%lld)", p, 0ull, 0);
		return 0;
	}
	if (pread(c->staging_fd, c->buf, c->ps, (off_t)(p * c->ps)) != (ssize_t)c->ps)
		memset(c->buf, 0, c->ps); /* past the end reads as a hole */
	v = kw_page_version(c->buf, c->ps, p);
	if (rec->summed) {
		if (vswap_store_page_checksum(c->s, p, c->buf) != rec->xxh3)
			kc_wrong(c,
				 "staged page %llu%.0llu fails its committed checksum "
				 "(bytes of version %lld)",
				 p, 0ull, v);
		else if (v < 0)
			kc_wrong(c,
				 "staged page %llu%.0llu verifies but holds no version of "
				 "the page (%lld)",
				 p, 0ull, v);
		else if (v > (int64_t)atomic_load(&c->sh->vmax[p]))
			kc_wrong(c, "staged page %llu%.0llu holds version %lld, never written", p,
				 0ull, v);
		else
			c->r->staged_summed++;
		return 0;
	}
	if (v < 0)
		c->r->staged_torn++;
	else if (v == 0)
		c->r->staged_zero++;
	else if (v > (int64_t)atomic_load(&c->sh->vmax[p]))
		kc_wrong(c, "staged page %llu%.0llu holds version %lld, never written", p, 0ull, v);
	else
		c->r->staged++;
	return 0;
}

int kc_check_store(const char *path, const struct kw_shared *sh, struct kc_result *r)
{
	struct vswap_store_opts o = {.read_only = true, .log_level = VSWAP_LOG_ERROR};
	struct kc_ctx c = {.sh = sh, .r = r, .staging_fd = -1};
	int err;

	memset(r, 0, sizeof(*r));
	err = vswap_store_open(path, &o, &c.s);
	if (err)
		return err;
	c.ps = vswap_store_page_size(c.s);
	c.buf = malloc(c.ps);
	err = c.buf ? vswap_store_foreach_page(c.s, check_record, &c) : -ENOMEM;
	if (!err && vswap_store_staging_path(c.s)) {
		c.staging_fd = open(vswap_store_staging_path(c.s), O_RDONLY | O_CLOEXEC);
		if (c.staging_fd >= 0)
			err = vswap_store_foreach_staged_page(c.s, check_staged, &c);
	}
	if (c.staging_fd >= 0)
		close(c.staging_fd);
	free(c.buf);
	vswap_store_close(c.s);
	if (err)
		return err;
	return r->wrong ? -1 : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * What the power-loss workload and its checker agree on: the bytes of every
 * page version, and the model snapshot the workload logs after each commit.
 *
 * Page bytes are self-describing: words 0..2 are a tag, the page number and
 * a version (unique across the whole run), the rest a stream derived from
 * both.  So any page-sized buffer can be checked for "is it exactly version
 * v of page p" without a table of what was written.
 */
#ifndef VSWAP_TESTS_POWERLOSS_MODEL_H
#define VSWAP_TESTS_POWERLOSS_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define PL_PAGE_TAG 0x50574c5050414745ull /* "EGAPPLWP" */

/* Labels of the workload's marks in the write log. */
#define PL_MARK_CREATED "created"    /* vswap_store_create returned */
#define PL_MARK_BEGIN "commit-begin" /* payload: u32 commit number */
#define PL_MARK_COMMIT "commit"	     /* payload: struct pl_snap + pages */
#define PL_MARK_CLOSED "closed"	     /* vswap_store_close returned */

/* Page states in the model: the values of enum vswap_page_state. */
struct pl_page {
	uint32_t ver;  /* version in the page's slot (0: no slot) */
	uint32_t sver; /* version copied into staging (0: none) */
	uint8_t state; /* VSWAP_PAGE_NONE, _PRESENT or _STALE */
	uint8_t staged;
	uint8_t summed; /* the staged copy's checksum is committed (of sver) */
	uint8_t pad;
};

/* The model after commit number @commit: what the index must say. */
struct pl_snap {
	uint32_t commit;
	uint32_t npages;
	struct pl_page pages[];
};

static inline void pl_fill(void *buf, uint32_t page_size, uint64_t page, uint32_t ver)
{
	uint64_t *w = buf;
	uint64_t x =
	    (page + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)ver << 29) ^ 0x2545F4914F6CDD1Dull;
	w[0] = PL_PAGE_TAG;
	w[1] = page;
	w[2] = ver;
	for (uint32_t i = 3; i < page_size / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

/* True when @buf is exactly version @ver of @page. */
static inline bool pl_is(const void *buf, uint32_t page_size, uint64_t page, uint32_t ver)
{
	const uint64_t *w = buf;
	if (w[0] != PL_PAGE_TAG || w[1] != page || w[2] != ver)
		return false;
	uint64_t x =
	    (page + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)ver << 29) ^ 0x2545F4914F6CDD1Dull;
	for (uint32_t i = 3; i < page_size / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (w[i] != x)
			return false;
	}
	return true;
}

/* The version @buf claims to be of @page (0 when it is no version of it). */
static inline uint32_t pl_version_of(const void *buf, uint32_t page_size, uint64_t page)
{
	const uint64_t *w = buf;
	uint32_t ver = (uint32_t)w[2];
	return ver && pl_is(buf, page_size, page, ver) ? ver : 0;
}

static inline bool pl_all_zero(const void *buf, uint32_t len)
{
	const uint8_t *p = buf;
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

#endif

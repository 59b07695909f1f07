/* SPDX-License-Identifier: MIT */
/*
 * The format-1 fixture generator: a store as vswap 0.1.0 wrote it, built
 * byte by byte from docs/FORMAT.md ("Format 1"), without the old store
 * code: a version-1 superblock, slots holding page bytes, an LMDB index
 * whose values are bare payloads (no record checks) and whose page
 * checksums are XXH3-64 with seed 0 of the bytes alone, a staging file.
 */
#ifndef VSWAP_TESTS_V1_STORE_H
#define VSWAP_TESTS_V1_STORE_H

#include <stdint.h>

struct v1_shape {
	uint64_t total;			   /* pages, one region */
	uint64_t written;		   /* pages [0, written) present, slot = page */
	uint64_t stale_first, stale_count; /* of those, stale */
	uint64_t lost_page; /* one of those recorded lost with no slot, or UINT64_MAX */
	uint64_t bad_page;  /* one whose slot bytes do not match its checksum, or UINT64_MAX */
	uint64_t staged_first, staged_count; /* staged (bytes in the staging file) */
};

/* Fill one page of @page_size bytes with the bytes of @page. */
typedef void (*v1_fill_fn)(void *buf, uint32_t page_size, uint64_t page);

/* Make the store at @path (index @path.idx) with its staging file in
 * @staging_dir (an absolute, canonical directory).  0 or a negative errno. */
int v1_store_make(const char *path, const char *staging_dir, const struct v1_shape *sh,
		  v1_fill_fn fill);

#endif

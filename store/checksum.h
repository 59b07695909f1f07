/* SPDX-License-Identifier: MIT */
/*
 * Checksums: XXH3-64.  On x86-64 through xxHash's runtime-dispatched SIMD
 * entry points: Debian's plain XXH3_64bits export is built for baseline
 * SSE2 and runs about 4.5x slower, the _dispatch variants pick AVX2 or
 * AVX-512 at run time.  Elsewhere the plain entry points (the compiler's
 * baseline is all there is).
 *
 * What each checksum covers (format 2, docs/FORMAT.md):
 *   superblock  its own bytes, seed 0
 *   page        the page's bytes, seed = store seed XOR page number, so
 *               valid bytes of another page, or of another store, fail
 *   record      database id, key and value of an index record, seed =
 *               store seed (records of another store fail)
 * The store seed is the XXH3-64 (seed 0) of the store's 16 UUID bytes.
 */
#ifndef VSWAP_STORE_CHECKSUM_H
#define VSWAP_STORE_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#define VSWAP_XXH3(d, n) XXH3_64bits_dispatch((d), (n))
#define VSWAP_XXH3_SEED(d, n, seed) XXH3_64bits_withSeed_dispatch((d), (n), (seed))
#define VSWAP_XXH3_UPDATE(st, d, n) XXH3_64bits_update_dispatch((st), (d), (n))
#else
#define VSWAP_XXH3(d, n) XXH3_64bits((d), (n))
#define VSWAP_XXH3_SEED(d, n, seed) XXH3_64bits_withSeed((d), (n), (seed))
#define VSWAP_XXH3_UPDATE(st, d, n) XXH3_64bits_update((st), (d), (n))
#endif

/* Unseeded: the superblock, and the store seed from the UUID. */
static inline uint64_t vswap_checksum(const void *data, size_t len)
{
	return VSWAP_XXH3(data, len);
}

static inline uint64_t checksum_store_seed(const uint8_t uuid[16])
{
	return VSWAP_XXH3(uuid, 16);
}

/* A page's checksum: its bytes, bound to the store and the page number. */
static inline uint64_t checksum_page(uint64_t store_seed, uint64_t page, const void *data,
				     size_t len)
{
	return VSWAP_XXH3_SEED(data, len, store_seed ^ page);
}

#endif

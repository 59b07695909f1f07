/* SPDX-License-Identifier: MIT */
/*
 * Index records of format 2: their encodings and their checks.  Every
 * value ends in a u64 check, the XXH3-64 seeded with the store seed of
 *   le32 database id || key || the value's bytes before the check
 * where the key is the meta key's bytes for meta records and, for page
 * groups and staging records, the group number as the big-endian u64 that
 * LMDB keys it by (the value also begins with that number, little-endian:
 * a record found under another key is recognised as misplaced rather than
 * believed).  Layouts in docs/FORMAT.md.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

uint64_t index_record_check(const struct vswap_store *s, uint32_t db, const void *key, size_t klen,
			    const void *val, size_t vlen)
{
	/* Streamed: the same XXH3-64 as over the concatenation, no copy. */
	XXH3_state_t st;
	uint32_t le = htole32(db);
	/* A stack state must start zeroed: a reset with a seed skips
	 * deriving its secret when the state's old seed matches. */
	memset(&st, 0, sizeof(st));
	XXH3_64bits_reset_withSeed(&st, s->seed);
	VSWAP_XXH3_UPDATE(&st, &le, 4);
	if (klen)
		VSWAP_XXH3_UPDATE(&st, key, klen);
	if (vlen)
		VSWAP_XXH3_UPDATE(&st, val, vlen);
	return XXH3_64bits_digest(&st);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static uint64_t group_check(const struct vswap_store *s, uint32_t db, uint64_t group,
			    const uint8_t *val, size_t len)
{
	uint64_t be = htobe64(group);
	return index_record_check(s, db, &be, 8, val, len);
}

void record_seal(const struct vswap_store *s, uint32_t db, uint64_t group, uint8_t *val, size_t len)
{
	put64(val + len, group_check(s, db, group, val, len));
}

/* The check and the key; on success *group is the record's own group. */
static enum vswap_record_fault verify_group_record(const struct vswap_store *s, uint32_t db,
						   uint64_t key_group, const uint8_t *val,
						   size_t len, size_t min)
{
	if (len < min)
		return VSWAP_RECORD_UNDECODABLE;
	uint64_t own = get64(val);
	if (get64(val + len - 8) != group_check(s, db, own, val, len - 8))
		return VSWAP_RECORD_CHECKSUM;
	if (own != key_group)
		return VSWAP_RECORD_MISPLACED;
	return VSWAP_RECORD_OK;
}

size_t group_encode_begin(uint8_t *buf, uint64_t group)
{
	put64(buf, group);
	return PG_HEAD;
}

enum vswap_record_fault group_decode(const struct vswap_store *s, uint64_t key_group,
				     const uint8_t *val, size_t len, struct group_view *out)
{
	memset(out, 0, sizeof(*out));
	out->group = key_group;
	enum vswap_record_fault f =
	    verify_group_record(s, DB_PAGES, key_group, val, len, PG_HEAD + 8);
	if (f == VSWAP_RECORD_MISPLACED)
		out->group = get64(val);
	if (f == VSWAP_RECORD_CHECKSUM || f == VSWAP_RECORD_UNDECODABLE)
		return f;
	uint64_t mask = get64(val + 8);
	if (mask == 0 || len != PG_HEAD + PG_ENTRY * (size_t)__builtin_popcountll(mask) + 8)
		return VSWAP_RECORD_UNDECODABLE;
	const uint8_t *p = val + PG_HEAD;
	for (unsigned i = 0; i < GROUP_PAGES; i++) {
		if (!(mask >> i & 1))
			continue;
		uint32_t slot1, state;
		memcpy(&slot1, p, 4);
		memcpy(&state, p + 4, 4);
		slot1 = le32toh(slot1);
		state = le32toh(state);
		if (state < VSWAP_PAGE_PRESENT || state > VSWAP_PAGE_LOST ||
		    (slot1 == 0 && state != VSWAP_PAGE_LOST))
			return VSWAP_RECORD_UNDECODABLE;
		p += PG_ENTRY;
	}
	out->mask = mask;
	out->entries = val + PG_HEAD;
	return f;
}

void group_entry(const struct group_view *g, unsigned n, uint64_t *slot, uint32_t *state,
		 uint64_t *sum)
{
	const uint8_t *p = g->entries + (size_t)n * PG_ENTRY;
	uint32_t slot1, st;
	memcpy(&slot1, p, 4);
	memcpy(&st, p + 4, 4);
	slot1 = le32toh(slot1);
	*slot = slot1 ? (uint64_t)slot1 - 1 : UINT64_MAX;
	*state = le32toh(st);
	*sum = get64(p + 8);
}

enum vswap_record_fault staging_decode(const struct vswap_store *s, uint64_t key_group,
				       const uint8_t *val, size_t len, struct staging_view *out)
{
	memset(out, 0, sizeof(*out));
	out->group = key_group;
	enum vswap_record_fault f =
	    verify_group_record(s, DB_STAGING, key_group, val, len, SG_HEAD + 8);
	if (f == VSWAP_RECORD_MISPLACED)
		out->group = get64(val);
	if (f == VSWAP_RECORD_CHECKSUM || f == VSWAP_RECORD_UNDECODABLE)
		return f;
	uint64_t staged = get64(val + 8), summed = get64(val + 16);
	if (staged == 0 || (summed & ~staged) ||
	    len != SG_HEAD + 8 * (size_t)__builtin_popcountll(summed) + 8)
		return VSWAP_RECORD_UNDECODABLE;
	out->staged = staged;
	out->summed = summed;
	out->sums = val + SG_HEAD;
	return f;
}

uint64_t staging_view_sum(const struct staging_view *v, unsigned bit)
{
	/* Sums are stored for the summed bits, in bit order. */
	uint64_t below = bit ? v->summed & ((1ull << bit) - 1) : 0;
	return get64(v->sums + 8 * (size_t)__builtin_popcountll(below));
}

size_t staging_encode(const struct vswap_store *s, uint64_t g, uint8_t *buf)
{
	size_t len = staging_encode_body(s, g, buf);
	record_seal(s, DB_STAGING, g, buf, len);
	return len + 8;
}

size_t staging_encode_body(const struct vswap_store *s, uint64_t g, uint8_t *buf)
{
	uint64_t staged = s->staged[g], summed = s->summed[g] & staged;
	put64(buf, g);
	put64(buf + 8, staged);
	put64(buf + 16, summed);
	size_t len = SG_HEAD;
	for (uint64_t w = summed; w; w &= w - 1) {
		uint64_t p = g * GROUP_PAGES + (uint64_t)__builtin_ctzll(w);
		put64(buf + len, s->ssums[p]);
		len += 8;
	}
	return len;
}

const char *record_fault_name(enum vswap_record_fault f)
{
	switch (f) {
	case VSWAP_RECORD_OK:
		return "ok";
	case VSWAP_RECORD_UNDECODABLE:
		return "undecodable";
	case VSWAP_RECORD_CHECKSUM:
		return "fails its checksum";
	case VSWAP_RECORD_MISPLACED:
		return "stored under another group's key";
	}
	return "unknown";
}

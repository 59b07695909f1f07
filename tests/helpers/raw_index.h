/* SPDX-License-Identifier: MIT */
/*
 * Tests that damage or hand-craft index records: a format-2 index opened
 * with liblmdb directly, with the record framing of docs/FORMAT.md written
 * out here from the document (not from store/), so that a test edits a
 * record's body and gets a record whose check is valid again, or leaves
 * the check as it was to damage it.
 *
 * Bodies are what the record says without its framing:
 *   pages    u64 mask, then 16-byte entries (u32 slot + 1, u32 state, u64 sum)
 *   staging  u64 staged bits [, u64 summed bits, u64 sums...]
 *   meta     the payload
 */
#ifndef VSWAP_TESTS_RAW_INDEX_H
#define VSWAP_TESTS_RAW_INDEX_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

struct raw_index {
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, pages, staging;
	uint8_t uuid[16];
	uint64_t seed;
};

/* Database ids of the record check. */
#define RAW_DB_META 1u
#define RAW_DB_PAGES 2u
#define RAW_DB_STAGING 3u

/* Open @index_path for writing (one transaction until raw_index_close). */
int raw_index_open(struct raw_index *ri, const char *index_path);
/* Commit (@commit) or abort, and close. */
int raw_index_close(struct raw_index *ri, int commit);

/* The check of a record (docs/FORMAT.md, "Record checks"). */
uint64_t raw_record_check(uint64_t seed, uint32_t db, const void *key, size_t klen, const void *val,
			  size_t vlen);

/* A group record's body; 0, or MDB_NOTFOUND. @len: in capacity, out length. */
int raw_group_get(struct raw_index *ri, MDB_dbi dbi, uint64_t group, uint8_t *body, size_t *len);
/* Store @body as the record of @group (framed and sealed for @group) under
 * the key of @key_group (normally the same group). */
int raw_group_put(struct raw_index *ri, MDB_dbi dbi, uint64_t key_group, uint64_t group,
		  const void *body, size_t len);
/* The raw value bytes, unframed (to damage them). */
int raw_value_get(struct raw_index *ri, MDB_dbi dbi, const void *key, size_t klen, uint8_t *val,
		  size_t *len);
int raw_value_put(struct raw_index *ri, MDB_dbi dbi, const void *key, size_t klen, const void *val,
		  size_t len);
/* A meta record with a valid check. */
int raw_meta_put(struct raw_index *ri, const char *key, const void *payload, size_t len);

/* The id of the last transaction committed to @index_path (the larger of
 * its two LMDB meta pages'), read from the file without LMDB: what tells a
 * test whether a call wrote a transaction.  0 if the file cannot be read. */
uint64_t raw_index_txnid(const char *index_path);

#endif

/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tests/helpers/raw_index.h"

uint64_t raw_record_check(uint64_t seed, uint32_t db, const void *key, size_t klen, const void *val,
			  size_t vlen)
{
	uint8_t buf[4 + 64 + 4096];
	uint32_t le = htole32(db);
	if (4 + klen + vlen > sizeof(buf))
		return 0;
	memcpy(buf, &le, 4);
	memcpy(buf + 4, key, klen);
	memcpy(buf + 4 + klen, val, vlen);
	return XXH3_64bits_withSeed(buf, 4 + klen + vlen, seed);
}

int raw_index_open(struct raw_index *ri, const char *index_path)
{
	memset(ri, 0, sizeof(*ri));
	int rc = mdb_env_create(&ri->env);
	if (rc)
		return rc;
	mdb_env_set_maxdbs(ri->env, 4);
	if ((rc = mdb_env_open(ri->env, index_path, MDB_NOSUBDIR, 0600)) ||
	    (rc = mdb_txn_begin(ri->env, NULL, 0, &ri->txn)) ||
	    (rc = mdb_dbi_open(ri->txn, "meta", 0, &ri->meta)) ||
	    (rc = mdb_dbi_open(ri->txn, "pages", 0, &ri->pages)) ||
	    (rc = mdb_dbi_open(ri->txn, "staging", 0, &ri->staging)))
		return rc;
	MDB_val k = {.mv_size = 4, .mv_data = "uuid"}, v;
	if ((rc = mdb_get(ri->txn, ri->meta, &k, &v)))
		return rc;
	if (v.mv_size != 24)
		return EINVAL;
	memcpy(ri->uuid, v.mv_data, 16);
	ri->seed = XXH3_64bits(ri->uuid, 16);
	return 0;
}

int raw_index_close(struct raw_index *ri, int commit)
{
	int rc = 0;
	if (ri->txn) {
		if (commit)
			rc = mdb_txn_commit(ri->txn);
		else
			mdb_txn_abort(ri->txn);
	}
	if (ri->env)
		mdb_env_close(ri->env);
	memset(ri, 0, sizeof(*ri));
	return rc;
}

static uint32_t db_id(const struct raw_index *ri, MDB_dbi dbi)
{
	return dbi == ri->pages ? RAW_DB_PAGES : dbi == ri->staging ? RAW_DB_STAGING : RAW_DB_META;
}

int raw_group_get(struct raw_index *ri, MDB_dbi dbi, uint64_t group, uint8_t *body, size_t *len)
{
	uint64_t key = htobe64(group);
	MDB_val k = {.mv_size = 8, .mv_data = &key}, v;
	int rc = mdb_get(ri->txn, dbi, &k, &v);
	if (rc)
		return rc;
	if (v.mv_size < 16 || v.mv_size - 16 > *len)
		return EINVAL;
	*len = v.mv_size - 16; /* less the group in front and the check behind */
	memcpy(body, (uint8_t *)v.mv_data + 8, *len);
	if (dbi == ri->staging && *len >= 16) {
		/* Only the staged bits: a put of them says "no checksums". */
		uint64_t summed;
		memcpy(&summed, body + 8, 8);
		if (!summed)
			*len = 8;
	}
	return 0;
}

int raw_group_put(struct raw_index *ri, MDB_dbi dbi, uint64_t key_group, uint64_t group,
		  const void *body, size_t len)
{
	uint8_t val[8 + 8 + 16 * 64 + 16 + 8];
	size_t n = 8;
	uint64_t g = htole64(group), be = htobe64(group), kb = htobe64(key_group);
	memcpy(val, &g, 8);
	if (len + 24 > sizeof(val))
		return EINVAL;
	memcpy(val + 8, body, len);
	n += len;
	if (dbi == ri->staging && len == 8) {
		memset(val + n, 0, 8); /* summed: none */
		n += 8;
	}
	uint64_t sum = htole64(raw_record_check(ri->seed, db_id(ri, dbi), &be, 8, val, n));
	memcpy(val + n, &sum, 8);
	n += 8;
	MDB_val k = {.mv_size = 8, .mv_data = &kb}, v = {.mv_size = n, .mv_data = val};
	return mdb_put(ri->txn, dbi, &k, &v, 0);
}

int raw_value_get(struct raw_index *ri, MDB_dbi dbi, const void *key, size_t klen, uint8_t *val,
		  size_t *len)
{
	MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, v;
	int rc = mdb_get(ri->txn, dbi, &k, &v);
	if (rc)
		return rc;
	if (v.mv_size > *len)
		return EINVAL;
	memcpy(val, v.mv_data, v.mv_size);
	*len = v.mv_size;
	return 0;
}

int raw_value_put(struct raw_index *ri, MDB_dbi dbi, const void *key, size_t klen, const void *val,
		  size_t len)
{
	MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
	MDB_val v = {.mv_size = len, .mv_data = (void *)val};
	return mdb_put(ri->txn, dbi, &k, &v, 0);
}

int raw_meta_put(struct raw_index *ri, const char *key, const void *payload, size_t len)
{
	uint8_t val[4096 + 8];
	if (len > 4096)
		return EINVAL;
	memcpy(val, payload, len);
	uint64_t sum =
	    htole64(raw_record_check(ri->seed, RAW_DB_META, key, strlen(key), payload, len));
	memcpy(val + len, &sum, 8);
	return raw_value_put(ri, ri->meta, key, strlen(key), val, len + 8);
}

uint64_t raw_index_txnid(const char *index_path)
{
	/* Each meta page: a 16-byte page header, then MDB_meta, whose
	 * mm_dbs[0].md_pad holds the page size and mm_txnid sits at 128. */
	uint8_t m[2][16 + 136];
	uint32_t psize;
	uint64_t t[2];
	int fd = open(index_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	bool ok = pread(fd, m[0], sizeof(m[0]), 0) == (ssize_t)sizeof(m[0]);
	memcpy(&psize, m[0] + 16 + 24, 4);
	ok = ok && pread(fd, m[1], sizeof(m[1]), psize) == (ssize_t)sizeof(m[1]);
	close(fd);
	if (!ok)
		return 0;
	memcpy(&t[0], m[0] + 16 + 128, 8);
	memcpy(&t[1], m[1] + 16 + 128, 8);
	return t[0] > t[1] ? t[0] : t[1];
}

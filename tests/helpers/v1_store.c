/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tests/helpers/v1_store.h"

static void le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static int put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *val,
	       size_t vlen)
{
	MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
	MDB_val v = {.mv_size = vlen, .mv_data = (void *)val};
	return mdb_put(txn, dbi, &k, &v, 0) ? -EIO : 0;
}

static int put_meta(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *val, size_t len)
{
	return put(txn, dbi, key, strlen(key), val, len);
}

/* Superblock (56 bytes, checksum of bytes 0..47 with seed 0) and slots. */
static int write_swap(const char *path, uint32_t ps, const uint8_t uuid[16], uint64_t created,
		      const struct v1_shape *sh, v1_fill_fn fill, uint64_t *sums)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	uint8_t *page = calloc(1, ps);
	int ret = page ? 0 : -ENOMEM;
	if (!ret) {
		memcpy(page, "VSWAPSB\0", 8);
		le32(page + 8, 1);
		le32(page + 12, ps);
		memcpy(page + 16, uuid, 16);
		le64(page + 32, created);
		le64(page + 40, 0);
		le64(page + 48, XXH3_64bits(page, 48));
		if (pwrite(fd, page, ps, 0) != (ssize_t)ps)
			ret = -EIO;
	}
	for (uint64_t p = 0; !ret && p < sh->written; p++) {
		fill(page, ps, p);
		sums[p] = XXH3_64bits(page, ps);
		if (p == sh->bad_page)
			page[100] ^= 0x10; /* the slot's bytes no longer match */
		if (pwrite(fd, page, ps, (off_t)((p + 1) * ps)) != (ssize_t)ps)
			ret = -EIO;
	}
	free(page);
	if (!ret && fsync(fd) != 0)
		ret = -errno;
	close(fd);
	return ret;
}

static int write_staging(const char *path, uint32_t ps, const struct v1_shape *sh, v1_fill_fn fill)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	uint8_t *page = malloc(ps);
	int ret = page && ftruncate(fd, (off_t)(sh->total * ps)) == 0 ? 0 : -EIO;
	for (uint64_t p = sh->staged_first; !ret && p < sh->staged_first + sh->staged_count; p++) {
		fill(page, ps, p ^ 0x777);
		if (pwrite(fd, page, ps, (off_t)(p * ps)) != (ssize_t)ps)
			ret = -EIO;
	}
	free(page);
	close(fd);
	return ret;
}

static int write_index(const char *idx, uint32_t ps, const uint8_t uuid[16], uint64_t created,
		       const char *staging, const struct v1_shape *sh, const uint64_t *sums)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, pages, stg;
	if (mdb_env_create(&env))
		return -ENOMEM;
	mdb_env_set_maxdbs(env, 4);
	int ret = -EIO;
	if (mdb_env_open(env, idx, MDB_NOSUBDIR, 0600) || mdb_txn_begin(env, NULL, 0, &txn))
		goto out;
	if (mdb_dbi_open(txn, "meta", MDB_CREATE, &meta) ||
	    mdb_dbi_open(txn, "pages", MDB_CREATE, &pages) ||
	    mdb_dbi_open(txn, "staging", MDB_CREATE, &stg)) {
		mdb_txn_abort(txn);
		goto out;
	}
	uint8_t b[16];
	le32(b, 1);
	ret = put_meta(txn, meta, "format", b, 4);
	ret = ret ? ret : put_meta(txn, meta, "uuid", uuid, 16);
	le32(b, ps);
	ret = ret ? ret : put_meta(txn, meta, "page_size", b, 4);
	le64(b, created);
	ret = ret ? ret : put_meta(txn, meta, "created_ns", b, 8);
	le32(b, 1);
	le64(b + 4, sh->total);
	ret = ret ? ret : put_meta(txn, meta, "regions", b, 12);
	le32(b, 5); /* Active */
	ret = ret ? ret : put_meta(txn, meta, "state", b, 4);
	le32(b, 1);
	ret = ret ? ret : put_meta(txn, meta, "clean", b, 4);
	ret = ret ? ret : put_meta(txn, meta, "staging_path", staging, strlen(staging));
	/* pages: u64 mask, then u32 slot + 1, u32 state, u64 XXH3 per set bit */
	uint8_t val[8 + 16 * 64];
	for (uint64_t g = 0; !ret && g * 64 < sh->written; g++) {
		uint64_t mask = 0;
		size_t len = 8;
		for (unsigned i = 0; i < 64 && g * 64 + i < sh->written; i++) {
			uint64_t p = g * 64 + i;
			bool stale = p >= sh->stale_first && p < sh->stale_first + sh->stale_count;
			mask |= 1ull << i;
			le32(val + len, p == sh->lost_page ? 0 : (uint32_t)p + 1);
			le32(val + len + 4, p == sh->lost_page ? 3 : stale ? 2 : 1);
			le64(val + len + 8, sums[p]);
			len += 16;
		}
		le64(val, mask);
		uint64_t key = htobe64(g);
		ret = put(txn, pages, &key, 8, val, len);
	}
	/* staging: u64 bitmap */
	for (uint64_t g = 0; !ret && g * 64 < sh->total; g++) {
		uint64_t bits = 0;
		for (unsigned i = 0; i < 64; i++) {
			uint64_t p = g * 64 + i;
			if (p >= sh->staged_first && p < sh->staged_first + sh->staged_count)
				bits |= 1ull << i;
		}
		if (!bits)
			continue;
		le64(val, bits);
		uint64_t key = htobe64(g);
		ret = put(txn, stg, &key, 8, val, 8);
	}
	if (ret)
		mdb_txn_abort(txn);
	else if (mdb_txn_commit(txn))
		ret = -EIO;
out:
	mdb_env_close(env);
	return ret;
}

int v1_store_make(const char *path, const char *staging_dir, const struct v1_shape *sh,
		  v1_fill_fn fill)
{
	uint32_t ps = (uint32_t)sysconf(_SC_PAGESIZE);
	uint8_t uuid[16];
	char uu[37], staging[512], idx[512];
	if (getrandom(uuid, 16, 0) != 16)
		return -EIO;
	uuid[6] = (uuid[6] & 0x0f) | 0x40;
	uuid[8] = (uuid[8] & 0x3f) | 0x80;
	snprintf(uu, sizeof(uu),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", uuid[0],
		 uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6], uuid[7], uuid[8], uuid[9],
		 uuid[10], uuid[11], uuid[12], uuid[13], uuid[14], uuid[15]);
	snprintf(staging, sizeof(staging), "%s/vswap-%s.staging", staging_dir, uu);
	snprintf(idx, sizeof(idx), "%s.idx", path);
	uint64_t *sums = calloc(sh->written + 1, sizeof(*sums));
	if (!sums)
		return -ENOMEM;
	uint64_t created = 1700000000ull * 1000000000ull;
	int ret = write_swap(path, ps, uuid, created, sh, fill, sums);
	if (!ret)
		ret = write_staging(staging, ps, sh, fill);
	if (!ret)
		ret = write_index(idx, ps, uuid, created, staging, sh, sums);
	free(sums);
	return ret;
}

/* SPDX-License-Identifier: MIT */
/*
 * Conversion of a format-1 store (vswap 0.1.0) to format 2, in place and
 * record by record (docs/FORMAT.md, "Format 1"):
 *   - meta values get their record check, format becomes 2;
 *   - each page-group record gets its group number and check, and each
 *     entry's checksum is recomputed bound to its page, once the slot's
 *     bytes are verified against the format-1 checksum; an entry whose
 *     bytes fail or are missing becomes lost (what a format-1 read would
 *     have concluded), never present with a new checksum;
 *   - each staging record gets the checksums of the staged copies as the
 *     staging file holds them (format 1 kept none and trusted the file);
 *     a copy that cannot be read stays without one (lost at the next open
 *     unless the swap file holds the page).
 * The index is converted in one LMDB transaction; the superblock is
 * rewritten last.  A crash in between leaves a format-1 superblock over a
 * format-2 index, which a second run recognises and finishes.  Records
 * that do not decode as format 1 are left as they are, for vswap-fsck.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"
#include "util/array.h"

struct raw_rec {
	uint64_t group;
	uint8_t *val;
	size_t len;
};

struct upgrade {
	struct vswap_store *s;
	MDB_txn *txn;
	int staging_fd;
	uint8_t *page;
	uint64_t records, entries, lost, staged, summed, left;
};

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

/* Copy every record of @dbi (the conversion rewrites them). */
static int collect(struct upgrade *u, MDB_dbi dbi, struct raw_rec **out, size_t *n)
{
	MDB_cursor *cur;
	MDB_val k, v;
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	int rc = mdb_cursor_open(u->txn, dbi, &cur);
	if (rc)
		return -EIO;
	int ret = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !ret;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 8) {
			u->left++;
			continue;
		}
		if (ARRAY_RESERVE(*out, cap, *n + 1, 64)) {
			ret = -ENOMEM;
			break;
		}
		uint64_t g;
		memcpy(&g, k.mv_data, 8);
		struct raw_rec *r = &(*out)[(*n)++];
		r->group = be64toh(g);
		r->len = v.mv_size;
		r->val = malloc(v.mv_size ? v.mv_size : 1);
		if (!r->val) {
			(*n)--;
			ret = -ENOMEM;
			break;
		}
		memcpy(r->val, v.mv_data, v.mv_size);
	}
	mdb_cursor_close(cur);
	if (!ret && rc != MDB_NOTFOUND)
		ret = -EIO;
	return ret;
}

static void free_recs(struct raw_rec *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(r[i].val);
	free(r);
}

static int put_group_value(struct upgrade *u, MDB_dbi dbi, uint32_t db, uint64_t g, uint8_t *val,
			   size_t len)
{
	record_seal(u->s, db, g, val, len);
	uint64_t key = htobe64(g);
	MDB_val k = {.mv_size = 8, .mv_data = &key}, v = {.mv_size = len + 8, .mv_data = val};
	return mdb_put(u->txn, dbi, &k, &v, 0) ? -EIO : 0;
}

/* Is @slot's content the format-1 checksum @sum?  Then its format-2 one. */
static bool slot_verifies(struct upgrade *u, uint64_t page, uint64_t slot, uint64_t sum,
			  uint64_t *sum2)
{
	struct vswap_store *s = u->s;
	ssize_t k = pread(s->fd, u->page, s->page_size, (off_t)slot_offset(s, slot));
	if (k != (ssize_t)s->page_size || vswap_checksum(u->page, s->page_size) != sum)
		return false;
	*sum2 = page_sum(s, page, u->page);
	return true;
}

static int convert_pages(struct upgrade *u)
{
	struct vswap_store *s = u->s;
	struct raw_rec *recs;
	size_t n;
	int ret = collect(u, s->dbi_pages, &recs, &n);
	uint8_t val[PG_VALUE_MAX];
	for (size_t i = 0; i < n && !ret; i++) {
		struct raw_rec *r = &recs[i];
		uint64_t mask = r->len >= 8 ? get64(r->val) : 0;
		if (!mask || r->len != 8 + PG_ENTRY * (size_t)__builtin_popcountll(mask)) {
			u->left++;
			store_log(s, VSWAP_LOG_WARN,
				  "%s: page-group record %llu is not format 1: left for vswap-fsck",
				  s->index_path, (unsigned long long)r->group);
			continue;
		}
		/* v1: mask, entries; v2: group, mask, entries, check */
		put64(val, r->group);
		memcpy(val + 8, r->val, r->len);
		size_t e = 0;
		for (uint64_t m = mask; m; m &= m - 1, e++) {
			uint8_t *ent = val + PG_HEAD + e * PG_ENTRY;
			unsigned bit = (unsigned)__builtin_ctzll(m);
			uint32_t slot1, state;
			memcpy(&slot1, ent, 4);
			memcpy(&state, ent + 4, 4);
			slot1 = le32toh(slot1);
			state = le32toh(state);
			uint64_t page = r->group * GROUP_PAGES + bit, sum = get64(ent + 8), sum2;
			u->entries++;
			if (!slot1 || state == VSWAP_PAGE_LOST)
				continue;
			if (slot_verifies(u, page, (uint64_t)slot1 - 1, sum, &sum2)) {
				put64(ent + 8, sum2);
				continue;
			}
			uint32_t lost = htole32(VSWAP_PAGE_LOST);
			memcpy(ent + 4, &lost, 4);
			u->lost++;
			store_log(
			    s, VSWAP_LOG_WARN,
			    "%s: page %llu (slot %u) fails its format-1 checksum: recorded lost",
			    s->path, (unsigned long long)page, slot1 - 1);
		}
		ret = put_group_value(u, s->dbi_pages, DB_PAGES, r->group, val, 8 + r->len);
		u->records++;
	}
	free_recs(recs, n);
	return ret;
}

static int convert_staging(struct upgrade *u)
{
	struct vswap_store *s = u->s;
	struct raw_rec *recs;
	size_t n;
	int ret = collect(u, s->dbi_staging, &recs, &n);
	uint8_t val[SG_VALUE_MAX];
	for (size_t i = 0; i < n && !ret; i++) {
		struct raw_rec *r = &recs[i];
		uint64_t staged = r->len == 8 ? get64(r->val) : 0, summed = 0;
		if (!staged) {
			u->left++;
			continue;
		}
		size_t len = SG_HEAD;
		for (uint64_t w = staged; w; w &= w - 1) {
			unsigned bit = (unsigned)__builtin_ctzll(w);
			uint64_t page = r->group * GROUP_PAGES + bit;
			ssize_t k = u->staging_fd < 0 ? -1
						      : pread(u->staging_fd, u->page, s->page_size,
							      (off_t)(page << s->page_shift));
			u->staged++;
			if (k != (ssize_t)s->page_size)
				continue;
			summed |= 1ull << bit;
			put64(val + len, page_sum(s, page, u->page));
			len += 8;
			u->summed++;
		}
		put64(val, r->group);
		put64(val + 8, staged);
		put64(val + 16, summed);
		ret = put_group_value(u, s->dbi_staging, DB_STAGING, r->group, val, len);
	}
	free_recs(recs, n);
	return ret;
}

static const char *const meta_keys[] = {"format",  "uuid",  "page_size", "created_ns",
					"regions", "state", "clean",	 "staging_path"};

/* Meta values as format 1 wrote them: bare payloads.  Returns 1 if the
 * index is format 2 already (an interrupted conversion). */
static int convert_meta(struct upgrade *u)
{
	struct vswap_store *s = u->s;
	MDB_val k = {.mv_size = 6, .mv_data = "format"}, v;
	if (mdb_get(u->txn, s->dbi_meta, &k, &v) != 0) {
		store_log(s, VSWAP_LOG_ERROR, "%s: bad index: no format record", s->index_path);
		return -EUCLEAN;
	}
	uint32_t format;
	if (v.mv_size == 12) {
		uint64_t sum = get64((uint8_t *)v.mv_data + 4);
		memcpy(&format, v.mv_data, 4);
		if (le32toh(format) == VSWAP_FORMAT_VERSION &&
		    sum == index_record_check(s, DB_META, "format", 6, v.mv_data, 4))
			return 1;
	}
	if (v.mv_size != 4 || (memcpy(&format, v.mv_data, 4), le32toh(format)) != VSWAP_FORMAT_V1) {
		store_log(s, VSWAP_LOG_ERROR, "%s: the index is not format 1", s->index_path);
		return -EUCLEAN;
	}
	k = (MDB_val){.mv_size = 4, .mv_data = "uuid"};
	if (mdb_get(u->txn, s->dbi_meta, &k, &v) != 0 || v.mv_size != 16 ||
	    memcmp(v.mv_data, s->sb.uuid, 16) != 0) {
		store_log(s, VSWAP_LOG_ERROR, "%s: index belongs to another store", s->index_path);
		return -EMEDIUMTYPE;
	}
	for (size_t i = 0; i < sizeof(meta_keys) / sizeof(meta_keys[0]); i++) {
		k = (MDB_val){.mv_size = strlen(meta_keys[i]), .mv_data = (void *)meta_keys[i]};
		int rc = mdb_get(u->txn, s->dbi_meta, &k, &v);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc)
			return -EIO;
		uint8_t *copy = malloc(v.mv_size ? v.mv_size : 1);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, v.mv_data, v.mv_size);
		size_t len = v.mv_size;
		if (i == 0) {
			uint32_t two = htole32(VSWAP_FORMAT_VERSION);
			memcpy(copy, &two, 4);
		}
		if (i == 7) { /* the staging file, to sum what it holds */
			s->staging_path = strndup((char *)copy, len);
			if (!s->staging_path) {
				free(copy);
				return -ENOMEM;
			}
		}
		rc = index_put_meta(s, u->txn, meta_keys[i], copy, len);
		free(copy);
		if (rc)
			return -EIO;
	}
	return 0;
}

/* The staging file the index names, if it is this store's by its name. */
static int open_staging(struct upgrade *u)
{
	struct vswap_store *s = u->s;
	size_t dirlen;
	if (!store_staging_path_split(s->staging_path, s->sb.uuid, &dirlen)) {
		store_log(s, VSWAP_LOG_WARN,
			  "%s: no staging file of this store named: staged pages get no checksum",
			  s->index_path);
		return -1;
	}
	int fd = open_regular(s, s->staging_path, O_RDONLY | O_NOFOLLOW, "the staging file");
	return fd < 0 ? -1 : fd;
}

static int write_superblock_v2(struct vswap_store *s)
{
	uint8_t *page = calloc(1, s->page_size);
	if (!page)
		return -ENOMEM;
	s->sb.format_version = VSWAP_FORMAT_VERSION;
	superblock_encode(&s->sb, page);
	ssize_t k = pwrite(s->fd, page, s->page_size, 0);
	int ret = k == (ssize_t)s->page_size ? 0 : k < 0 ? -errno : -EIO;
	free(page);
	if (!ret && fsync(s->fd) != 0)
		ret = -errno;
	return ret;
}

static int convert(struct upgrade *u)
{
	struct vswap_store *s = u->s;
	int ret = convert_meta(u);
	if (ret == 1)
		return 0; /* the index was converted: only the superblock is left */
	if (ret)
		return ret;
	u->staging_fd = open_staging(u);
	if (!(ret = convert_pages(u)))
		ret = convert_staging(u);
	if (u->staging_fd >= 0)
		close(u->staging_fd);
	if (ret)
		return ret;
	store_log(s, VSWAP_LOG_INFO,
		  "%s: converted %llu page-group records (%llu entries, %llu recorded lost), %llu "
		  "staged pages (%llu summed), %llu records left for vswap-fsck",
		  s->path, (unsigned long long)u->records, (unsigned long long)u->entries,
		  (unsigned long long)u->lost, (unsigned long long)u->staged,
		  (unsigned long long)u->summed, (unsigned long long)u->left);
	return 0;
}

int vswap_store_upgrade(const char *path, const struct vswap_store_opts *opts)
{
	static const uint64_t zero[sizeof(((struct vswap_store_opts *)0)->reserved) /
				   8]; /* the options' reserved space */
	if (!path || (opts && (opts->read_only || memcmp(opts->reserved, zero, sizeof(zero)))))
		return -EINVAL;
	struct vswap_store *s = handle_new(path, opts);
	if (!s)
		return -ENOMEM;
	struct upgrade u = {.s = s, .staging_fd = -1};
	int ret;
	s->fd = open_regular(s, path, O_RDWR, "the swap file");
	if (s->fd < 0) {
		ret = s->fd;
		s->fd = -1;
		goto out;
	}
	if ((ret = lock_store(s)))
		goto out;
	uint8_t buf[VSWAP_SB_BYTES];
	ssize_t k = pread(s->fd, buf, sizeof(buf), 0);
	const char *why = "cannot read the superblock";
	ret = k < 0 ? -errno : superblock_decode(buf, (size_t)k, &s->sb, &why);
	if (ret == 0) {
		store_log(s, VSWAP_LOG_INFO, "%s: format %u already", path, VSWAP_FORMAT_VERSION);
		ret = 1;
		goto out;
	}
	if (ret != -EPROTONOSUPPORT || s->sb.format_version != VSWAP_FORMAT_V1) {
		store_log(s, VSWAP_LOG_ERROR, "%s: bad superblock: %s", path, why);
		goto out;
	}
	if (s->sb.page_size != s->page_size) {
		store_log(s, VSWAP_LOG_ERROR, "%s: store page size %u, system page size %u", path,
			  s->sb.page_size, s->page_size);
		ret = -EXDEV;
		goto out;
	}
	s->seed = checksum_store_seed(s->sb.uuid);
	u.page = malloc(s->page_size);
	if (!u.page) {
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = index_open(s, false)))
		goto out;
	if (mdb_txn_begin(s->env, NULL, 0, &u.txn) != 0) {
		ret = -EIO;
		goto out;
	}
	ret = convert(&u);
	if (ret) {
		mdb_txn_abort(u.txn);
		goto out;
	}
	if (mdb_txn_commit(u.txn) != 0 || mdb_env_sync(s->env, 1) != 0) {
		ret = -EIO;
		goto out;
	}
	ret = write_superblock_v2(s);
out:
	free(u.page);
	handle_free(s);
	return ret;
}

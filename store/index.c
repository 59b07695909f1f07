/* SPDX-License-Identifier: MIT */
/*
 * The LMDB index: metadata, page-group records and staging records.  The
 * in-memory tables are the working copy; a commit writes the groups that
 * changed since the last one, in one transaction.  Record layouts are in
 * docs/FORMAT.md.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

#define DEFAULT_MAP_SIZE (64ull << 20)
#define ENTRY_BYTES 16u /* u32 slot + 1, u32 state, u64 xxh3 */

/* Meta keys. */
static const char K_FORMAT[] = "format";
static const char K_UUID[] = "uuid";
static const char K_PAGE_SIZE[] = "page_size";
static const char K_CREATED[] = "created_ns";
static const char K_REGIONS[] = "regions";
static const char K_STATE[] = "state";
static const char K_CLEAN[] = "clean";
static const char K_STAGING[] = "staging_path";

static int mdb_to_errno(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_BAD_VALSIZE:
		return -EUCLEAN;
	case MDB_VERSION_MISMATCH:
		return -EPROTONOSUPPORT;
	case MDB_READERS_FULL:
		return -EAGAIN;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

static MDB_val str_key(const char *k)
{
	return (MDB_val){.mv_size = strlen(k), .mv_data = (void *)k};
}

static void group_key(uint64_t group, uint64_t *buf, MDB_val *key)
{
	/* Big-endian, so LMDB's byte order is page order. */
	*buf = htobe64(group);
	key->mv_size = sizeof(*buf);
	key->mv_data = buf;
}

/* ---- environment ------------------------------------------------------- */

static int begin(struct vswap_store *s, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(s->env, NULL, flags, txn);
	if (rc == MDB_MAP_RESIZED) {
		/* Another process grew the map: adopt its size (LMDB returns
		 * MDB_MAP_RESIZED until the environment does). */
		mdb_env_set_mapsize(s->env, 0);
		rc = mdb_txn_begin(s->env, NULL, flags, txn);
	}
	return mdb_to_errno(rc);
}

int index_open(struct vswap_store *s, bool create)
{
	struct stat st;
	if (!create && stat(s->index_path, &st) != 0) {
		store_log(s, VSWAP_LOG_ERROR, "%s: index missing: %s", s->index_path,
			  strerror(errno));
		return -ENOENT;
	}
	if (create && stat(s->index_path, &st) == 0) {
		store_log(s, VSWAP_LOG_ERROR, "%s: an index already exists", s->index_path);
		return -EEXIST;
	}
	int rc = mdb_env_create(&s->env);
	if (rc)
		return mdb_to_errno(rc);
	mdb_env_set_maxdbs(s->env, 4);
	mdb_env_set_mapsize(s->env, s->map_size ? s->map_size : DEFAULT_MAP_SIZE);
	unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
	if (s->read_only)
		flags |= MDB_RDONLY;
	if (s->durability == VSWAP_DURABILITY_NONE)
		flags |= MDB_NOSYNC;
	rc = mdb_env_open(s->env, s->index_path, flags, 0600);
	if (rc) {
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot open index: %s", s->index_path,
			  mdb_strerror(rc));
		return rc == MDB_INVALID ? -EUCLEAN : mdb_to_errno(rc);
	}
	if (!s->read_only) {
		int dead = 0;
		mdb_reader_check(s->env, &dead); /* abandoned readers grow the file */
		if (dead)
			store_log(s, VSWAP_LOG_INFO, "cleared %d stale index readers", dead);
	}

	MDB_txn *txn;
	int ret = begin(s, s->read_only ? MDB_RDONLY : 0, &txn);
	if (ret)
		return ret;
	unsigned dflags = create ? MDB_CREATE : 0;
	if ((rc = mdb_dbi_open(txn, "meta", dflags, &s->dbi_meta)) ||
	    (rc = mdb_dbi_open(txn, "pages", dflags, &s->dbi_pages)) ||
	    (rc = mdb_dbi_open(txn, "staging", dflags, &s->dbi_staging)) ||
	    (rc = blob_db_open(s, txn))) {
		mdb_txn_abort(txn);
		store_log(s, VSWAP_LOG_ERROR, "%s: not a vswap index (%s)", s->index_path,
			  mdb_strerror(rc));
		return rc == MDB_NOTFOUND ? -EPROTONOSUPPORT : mdb_to_errno(rc);
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		return mdb_to_errno(rc);
	MDB_envinfo info;
	mdb_env_info(s->env, &info);
	s->map_size = info.me_mapsize;
	return 0;
}

void index_close(struct vswap_store *s)
{
	if (s->env)
		mdb_env_close(s->env);
	s->env = NULL;
}

/* ---- metadata ------------------------------------------------------------- */

static int put_meta(struct vswap_store *s, MDB_txn *txn, const char *key, const void *v,
		    size_t len)
{
	MDB_val k = str_key(key), d = {.mv_size = len, .mv_data = (void *)v};
	return mdb_put(txn, s->dbi_meta, &k, &d, 0);
}

static int put_meta_u32(struct vswap_store *s, MDB_txn *txn, const char *key, uint32_t v)
{
	uint32_t le = htole32(v);
	return put_meta(s, txn, key, &le, sizeof(le));
}

static int put_meta_u64(struct vswap_store *s, MDB_txn *txn, const char *key, uint64_t v)
{
	uint64_t le = htole64(v);
	return put_meta(s, txn, key, &le, sizeof(le));
}

static int put_regions(struct vswap_store *s, MDB_txn *txn)
{
	size_t len = 4 + 8 * (size_t)s->nregions;
	uint8_t *buf = malloc(len);
	if (!buf)
		return ENOMEM;
	uint32_t n = htole32(s->nregions);
	memcpy(buf, &n, 4);
	for (unsigned i = 0; i < s->nregions; i++) {
		uint64_t p = htole64(s->region_pages[i]);
		memcpy(buf + 4 + 8 * i, &p, 8);
	}
	int rc = put_meta(s, txn, K_REGIONS, buf, len);
	free(buf);
	return rc;
}

/* Everything in the meta table but the clean flag. */
static int put_all_meta(struct vswap_store *s, MDB_txn *txn)
{
	int rc;
	if ((rc = put_meta_u32(s, txn, K_FORMAT, VSWAP_FORMAT_VERSION)) ||
	    (rc = put_meta(s, txn, K_UUID, s->sb.uuid, 16)) ||
	    (rc = put_meta_u32(s, txn, K_PAGE_SIZE, s->page_size)) ||
	    (rc = put_meta_u64(s, txn, K_CREATED, s->sb.created_ns)) ||
	    (rc = put_regions(s, txn)) || (rc = put_meta_u32(s, txn, K_STATE, s->state)) ||
	    (rc = put_meta(s, txn, K_STAGING, s->staging_path, strlen(s->staging_path))))
		return rc;
	return 0;
}

int index_write_meta_initial(struct vswap_store *s)
{
	MDB_txn *txn;
	int ret = begin(s, 0, &txn);
	if (ret)
		return ret;
	int rc = put_all_meta(s, txn);
	if (!rc)
		rc = put_meta_u32(s, txn, K_CLEAN, 0);
	if (rc) {
		mdb_txn_abort(txn);
		return mdb_to_errno(rc);
	}
	return mdb_to_errno(mdb_txn_commit(txn));
}

int index_set_clean(struct vswap_store *s, bool clean)
{
	MDB_txn *txn;
	int ret = begin(s, 0, &txn);
	if (ret)
		return ret;
	int rc = put_meta_u32(s, txn, K_CLEAN, clean);
	if (rc) {
		mdb_txn_abort(txn);
		return mdb_to_errno(rc);
	}
	return mdb_to_errno(mdb_txn_commit(txn));
}

static int get_meta(struct vswap_store *s, MDB_txn *txn, const char *key, MDB_val *out)
{
	MDB_val k = str_key(key);
	return mdb_get(txn, s->dbi_meta, &k, out);
}

static int get_meta_u32(struct vswap_store *s, MDB_txn *txn, const char *key, uint32_t *v)
{
	MDB_val d;
	int rc = get_meta(s, txn, key, &d);
	if (rc)
		return rc;
	if (d.mv_size != 4)
		return MDB_CORRUPTED;
	memcpy(v, d.mv_data, 4);
	*v = le32toh(*v);
	return 0;
}

static int load_regions(struct vswap_store *s, MDB_txn *txn)
{
	MDB_val d;
	int rc = get_meta(s, txn, K_REGIONS, &d);
	if (rc)
		return rc == MDB_NOTFOUND ? 0 : rc;
	uint32_t n;
	if (d.mv_size < 4)
		return MDB_CORRUPTED;
	memcpy(&n, d.mv_data, 4);
	n = le32toh(n);
	if (d.mv_size != 4 + 8 * (size_t)n)
		return MDB_CORRUPTED;
	if (n == 0)
		return 0;
	s->region_pages = calloc(n, sizeof(uint64_t));
	if (!s->region_pages)
		return ENOMEM;
	s->nregions = n;
	uint64_t total = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t p;
		memcpy(&p, (uint8_t *)d.mv_data + 4 + 8 * i, 8);
		s->region_pages[i] = le64toh(p);
		if (s->region_pages[i] == 0 || s->region_pages[i] > vswap_store_max_pages())
			return MDB_CORRUPTED;
		total += s->region_pages[i];
	}
	if (total == 0 || total > vswap_store_max_pages())
		return MDB_CORRUPTED;
	s->total_pages = total;
	return 0;
}

/* A damaged index must not steer the store into truncating some other file:
 * the staging path must be absolute and named after this store's UUID. */
static bool staging_path_plausible(const struct vswap_store *s)
{
	char want[64], uuid[37];
	vswap_uuid_format(s->sb.uuid, uuid);
	snprintf(want, sizeof(want), "/vswap-%s.staging", uuid);
	size_t n = strlen(s->staging_path), w = strlen(want);
	return s->staging_path[0] == '/' && n > w && strcmp(s->staging_path + n - w, want) == 0;
}

/* Check the meta table against the superblock; fill the handle. */
static int load_meta(struct vswap_store *s, MDB_txn *txn)
{
	uint32_t format = 0, psz = 0, clean = 0;
	MDB_val d = {0, NULL};
	int rc = get_meta_u32(s, txn, K_FORMAT, &format);
	if (rc) {
		store_log(s, VSWAP_LOG_ERROR, "%s: not a vswap index (no format record)",
			  s->index_path);
		return rc == MDB_NOTFOUND ? -EPROTONOSUPPORT : mdb_to_errno(rc);
	}
	if (format != VSWAP_FORMAT_VERSION) {
		store_log(s, VSWAP_LOG_ERROR, "%s: unknown index format version %u (this build knows %u)",
			  s->index_path, format, VSWAP_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (get_meta(s, txn, K_UUID, &d) || d.mv_size != 16 ||
	    memcmp(d.mv_data, s->sb.uuid, 16) != 0) {
		char a[37], b[37] = "(none)";
		vswap_uuid_format(s->sb.uuid, a);
		if (d.mv_size == 16)
			vswap_uuid_format(d.mv_data, b);
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: index belongs to another store: its UUID is %s, the swap file's is %s",
			  s->index_path, b, a);
		return -EMEDIUMTYPE;
	}
	if (get_meta_u32(s, txn, K_PAGE_SIZE, &psz) || psz != s->page_size) {
		store_log(s, VSWAP_LOG_ERROR, "%s: index page size %u differs from the swap file's %u",
			  s->index_path, psz, s->page_size);
		return -EMEDIUMTYPE;
	}
	if ((rc = load_regions(s, txn))) {
		store_log(s, VSWAP_LOG_ERROR, "%s: bad regions record", s->index_path);
		return mdb_to_errno(rc);
	}
	get_meta_u32(s, txn, K_STATE, &s->state);
	get_meta_u32(s, txn, K_CLEAN, &clean);
	s->was_clean = clean != 0;
	if (get_meta(s, txn, K_STAGING, &d) == 0 && d.mv_size > 0 && d.mv_size < 4096) {
		s->staging_path = strndup(d.mv_data, d.mv_size);
		if (!s->staging_path)
			return -ENOMEM;
		if (!staging_path_plausible(s)) {
			store_log(s, VSWAP_LOG_ERROR,
				  "%s: staging path \"%s\" is not vswap-<uuid>.staging of this store",
				  s->index_path, s->staging_path);
			return -EUCLEAN;
		}
	}
	return 0;
}

/* ---- page groups ----------------------------------------------------------- */

/* Decode one group record, calling @fn for every entry (or once, corrupt). */
static int decode_group(uint64_t group, const MDB_val *val, vswap_page_record_fn fn, void *ctx)
{
	const uint8_t *p = val->mv_data;
	uint64_t mask;
	struct vswap_page_record r = {.page = group * GROUP_PAGES, .group_pages = GROUP_PAGES};
	if (val->mv_size < 8)
		goto corrupt;
	memcpy(&mask, p, 8);
	mask = le64toh(mask);
	if (val->mv_size != 8 + ENTRY_BYTES * (size_t)__builtin_popcountll(mask) || mask == 0)
		goto corrupt;
	p += 8;
	for (unsigned i = 0; i < GROUP_PAGES; i++) {
		if (!(mask >> i & 1))
			continue;
		uint32_t slot1, state;
		uint64_t sum;
		memcpy(&slot1, p, 4);
		memcpy(&state, p + 4, 4);
		memcpy(&sum, p + 8, 8);
		p += ENTRY_BYTES;
		slot1 = le32toh(slot1);
		state = le32toh(state);
		if (state < VSWAP_PAGE_PRESENT || state > VSWAP_PAGE_LOST ||
		    (slot1 == 0 && state != VSWAP_PAGE_LOST))
			goto corrupt;
		struct vswap_page_record e = {
			.page = group * GROUP_PAGES + i,
			.slot = slot1 ? (uint64_t)slot1 - 1 : UINT64_MAX,
			.state = (enum vswap_page_state)state,
			.xxh3 = le64toh(sum),
			.group_pages = 1,
		};
		int ret = fn(ctx, &e);
		if (ret)
			return ret;
	}
	return 0;
corrupt:
	r.corrupt = true;
	r.slot = UINT64_MAX;
	return fn(ctx, &r);
}

/* Encode group @g from the tables into @buf; returns bytes (8 = empty). */
static size_t encode_group(const struct vswap_store *s, uint64_t g, uint8_t *buf)
{
	uint64_t mask = 0;
	uint8_t *p = buf + 8;
	uint64_t first = g * GROUP_PAGES;
	for (unsigned i = 0; i < GROUP_PAGES && first + i < s->total_pages; i++) {
		uint32_t w = s->pages[first + i];
		uint32_t slot1 = w & PW_SLOT_MASK, state = pw_state(w);
		uint64_t sum = s->sums[first + i];
		if (state == VSWAP_PAGE_NONE) {
			/* A record a tolerant open left out stays until recovery
			 * decides about it: a rewrite of its group must not drop
			 * it silently. */
			const struct vswap_page_record *lo =
				s->nleftout ? leftout_find(s, first + i) : NULL;
			if (!lo)
				continue;
			slot1 = lo->slot == UINT64_MAX ? 0 : (uint32_t)(lo->slot + 1);
			state = lo->state;
			sum = lo->xxh3;
		}
		mask |= 1ull << i;
		slot1 = htole32(slot1);
		state = htole32(state);
		sum = htole64(sum);
		memcpy(p, &slot1, 4);
		memcpy(p + 4, &state, 4);
		memcpy(p + 8, &sum, 8);
		p += ENTRY_BYTES;
	}
	mask = htole64(mask);
	memcpy(buf, &mask, 8);
	return (size_t)(p - buf);
}

static uint64_t group_staged_bits(const struct vswap_store *s, uint64_t g)
{
	return s->staged[g]; /* GROUP_PAGES == 64: one bitmap word per group */
}

struct load_ctx {
	struct vswap_store *s;
	uint64_t conflicts;
};

static int load_record(void *arg, const struct vswap_page_record *r)
{
	struct load_ctx *lc = arg;
	struct vswap_store *s = lc->s;
	const char *why = NULL;
	if (r->corrupt)
		why = "undecodable group record";
	else if (r->page >= s->total_pages)
		why = "page beyond the regions";
	else if (r->slot != UINT64_MAX && r->slot >= STORE_MAX_SLOTS)
		why = "slot out of range";
	else if (r->slot != UINT64_MAX && slot_reserve_and_test(s, r->slot))
		why = "slot owned twice";
	if (why) {
		lc->conflicts++;
		/* Keep what fits the 30-bit slot field; kept records are written
		 * back with their group (see encode_group()). */
		if (s->tolerant && !r->corrupt && r->page < s->total_pages)
			leftout_add(s, r);
		store_log(s, s->tolerant ? VSWAP_LOG_WARN : VSWAP_LOG_ERROR,
			  "%s: index record of page %llu: %s%s", s->index_path,
			  (unsigned long long)r->page, why,
			  s->tolerant ? " (left out)" : "; run vswap-fsck");
		return s->tolerant ? 0 : -EUCLEAN;
	}
	if (r->slot != UINT64_MAX)
		slot_set_used(s, r->slot);
	/* Loading is not a change: set without marking the group dirty. */
	uint32_t w = pw_make(r->slot, r->state);
	page_set(s, r->page, w, r->xxh3);
	return 0;
}

static int load_groups(struct vswap_store *s, MDB_txn *txn)
{
	struct load_ctx lc = {.s = s};
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, s->dbi_pages, &cur);
	if (rc)
		return mdb_to_errno(rc);
	MDB_val k, v;
	int ret = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t g;
		if (k.mv_size != 8) {
			ret = -EUCLEAN;
			store_log(s, VSWAP_LOG_ERROR, "%s: bad page-group key", s->index_path);
			if (s->tolerant) {
				ret = 0;
				continue;
			}
			break;
		}
		memcpy(&g, k.mv_data, 8);
		g = be64toh(g);
		ret = decode_group(g, &v, load_record, &lc);
		if (ret)
			break;
	}
	mdb_cursor_close(cur);
	if (!ret && rc != MDB_NOTFOUND)
		ret = mdb_to_errno(rc);
	memset(s->dirty, 0, (s->ngroups + 63) / 64 * sizeof(uint64_t));
	return ret;
}

static int load_staging(struct vswap_store *s, MDB_txn *txn)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, s->dbi_staging, &cur);
	if (rc)
		return mdb_to_errno(rc);
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t g, bits;
		if (k.mv_size != 8 || v.mv_size != 8) {
			store_log(s, VSWAP_LOG_WARN, "%s: bad staging record (ignored)", s->index_path);
			continue;
		}
		memcpy(&g, k.mv_data, 8);
		memcpy(&bits, v.mv_data, 8);
		g = be64toh(g);
		bits = le64toh(bits);
		if (g >= s->ngroups) {
			store_log(s, VSWAP_LOG_WARN, "%s: staging record beyond the regions (ignored)",
				  s->index_path);
			continue;
		}
		uint64_t last = s->total_pages - g * GROUP_PAGES;
		if (last < 64)
			bits &= (1ull << last) - 1;
		s->staged[g] = bits;
		s->n_staged += (uint64_t)__builtin_popcountll(bits);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

int index_load(struct vswap_store *s)
{
	MDB_txn *txn;
	int ret = begin(s, MDB_RDONLY, &txn);
	if (ret)
		return ret;
	ret = load_meta(s, txn);
	if (!ret && s->total_pages) {
		ret = tables_alloc(s);
		if (!ret)
			ret = load_groups(s, txn);
		if (!ret)
			ret = load_staging(s, txn);
	}
	mdb_txn_abort(txn);
	return ret;
}

/* ---- commit ----------------------------------------------------------------- */

static int put_group(struct vswap_store *s, MDB_txn *txn, uint64_t g, uint8_t *buf)
{
	uint64_t kb, sb;
	MDB_val k, v;
	group_key(g, &kb, &k);
	size_t len = encode_group(s, g, buf);
	int rc;
	if (len > 8) {
		v = (MDB_val){.mv_size = len, .mv_data = buf};
		rc = mdb_put(txn, s->dbi_pages, &k, &v, 0);
	} else {
		rc = mdb_del(txn, s->dbi_pages, &k, NULL);
	}
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	uint64_t bits = group_staged_bits(s, g);
	if (bits) {
		sb = htole64(bits);
		v = (MDB_val){.mv_size = 8, .mv_data = &sb};
		rc = mdb_put(txn, s->dbi_staging, &k, &v, 0);
	} else {
		rc = mdb_del(txn, s->dbi_staging, &k, NULL);
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* One transaction with every dirty group and the metadata. */
static int commit_once(struct vswap_store *s)
{
	MDB_txn *txn;
	int ret = begin(s, 0, &txn);
	if (ret)
		return ret;
	uint8_t buf[8 + ENTRY_BYTES * GROUP_PAGES];
	int rc = 0;
	uint64_t words = (s->ngroups + 63) / 64;
	for (uint64_t wi = 0; wi < words && !rc; wi++) {
		uint64_t w = s->dirty[wi];
		while (w && !rc) {
			uint64_t g = wi * 64 + (uint64_t)__builtin_ctzll(w);
			w &= w - 1;
			rc = put_group(s, txn, g, buf);
		}
	}
	if (!rc && s->meta_dirty)
		rc = put_all_meta(s, txn);
	if (!rc)
		rc = blob_commit_txn(s, txn);
	if (rc) {
		mdb_txn_abort(txn);
		return rc;
	}
	return mdb_txn_commit(txn);
}

/* Double the map until the commit fits (MDB_MAP_FULL is not an error). */
int index_commit(struct vswap_store *s)
{
	for (;;) {
		int rc = commit_once(s);
		if (rc != MDB_MAP_FULL)
			return mdb_to_errno(rc);
		uint64_t grown = s->map_size * 2;
		rc = mdb_env_set_mapsize(s->env, grown);
		if (rc) {
			store_log(s, VSWAP_LOG_ERROR, "index map full and cannot grow to %llu bytes: %s",
				  (unsigned long long)grown, mdb_strerror(rc));
			return -ENOSPC;
		}
		store_log(s, VSWAP_LOG_INFO, "index map grown to %llu bytes",
			  (unsigned long long)grown);
		s->map_size = grown;
	}
}

/* ---- iteration for recovery and dump ---------------------------------------- */

int vswap_store_foreach_page(struct vswap_store *s, vswap_page_record_fn fn, void *ctx)
{
	MDB_txn *txn;
	int ret = begin(s, MDB_RDONLY, &txn);
	if (ret)
		return ret;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, s->dbi_pages, &cur);
	if (rc) {
		mdb_txn_abort(txn);
		return mdb_to_errno(rc);
	}
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !ret;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t g = 0;
		if (k.mv_size == 8) {
			memcpy(&g, k.mv_data, 8);
			g = be64toh(g);
			ret = decode_group(g, &v, fn, ctx);
		} else {
			struct vswap_page_record r = {.corrupt = true, .slot = UINT64_MAX};
			ret = fn(ctx, &r);
		}
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (!ret && rc != MDB_NOTFOUND)
		ret = mdb_to_errno(rc);
	return ret;
}

int vswap_store_foreach_staged(struct vswap_store *s, vswap_staged_range_fn fn, void *ctx)
{
	MDB_txn *txn;
	int ret = begin(s, MDB_RDONLY, &txn);
	if (ret)
		return ret;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, s->dbi_staging, &cur);
	if (rc) {
		mdb_txn_abort(txn);
		return mdb_to_errno(rc);
	}
	uint64_t run_first = 0, run_len = 0;
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !ret;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t g, bits;
		if (k.mv_size != 8 || v.mv_size != 8)
			continue;
		memcpy(&g, k.mv_data, 8);
		memcpy(&bits, v.mv_data, 8);
		g = be64toh(g);
		bits = le64toh(bits);
		for (unsigned i = 0; i < 64 && !ret; i++) {
			if (!(bits >> i & 1))
				continue;
			uint64_t p = g * 64 + i;
			if (run_len && run_first + run_len == p) {
				run_len++;
				continue;
			}
			if (run_len)
				ret = fn(ctx, run_first, run_len);
			run_first = p;
			run_len = 1;
		}
	}
	if (!ret && run_len)
		ret = fn(ctx, run_first, run_len);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (!ret && rc != MDB_NOTFOUND)
		ret = mdb_to_errno(rc);
	return ret;
}

uint64_t index_bytes_used(struct vswap_store *s)
{
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st))
		return 0;
	return (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
}

int vswap_store_drop_group(struct vswap_store *s, uint64_t group)
{
	if (s->read_only)
		return -EROFS;
	/* Pages of the group inside the regions: forget them in memory too. */
	for (uint64_t p = group * GROUP_PAGES; p < (group + 1) * GROUP_PAGES && p < s->total_pages;
	     p++) {
		if (pw_has_slot(s->pages[p]))
			slot_vec_push(&s->freed, pw_slot(s->pages[p]));
		page_set(s, p, 0, 0);
		if (bit_test(s->staged, p)) {
			bit_clear(s->staged, p);
			s->n_staged--;
		}
	}
	MDB_txn *txn;
	int ret = begin(s, 0, &txn);
	if (ret)
		return ret;
	uint64_t kb;
	MDB_val k;
	group_key(group, &kb, &k);
	int rc = mdb_del(txn, s->dbi_pages, &k, NULL);
	if (rc == 0 || rc == MDB_NOTFOUND)
		rc = mdb_del(txn, s->dbi_staging, &k, NULL);
	if (rc && rc != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return mdb_to_errno(rc);
	}
	return mdb_to_errno(mdb_txn_commit(txn));
}

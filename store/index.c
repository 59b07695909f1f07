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
#include "util/array.h"

#define DEFAULT_MAP_SIZE (64ull << 20)

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

static int put_meta_u32(struct vswap_store *s, MDB_txn *txn, const char *key, uint32_t v);

static int begin(struct vswap_store *s, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(s->env, NULL, flags, txn);
	if (rc == MDB_MAP_RESIZED) {
		/* Another process grew the map: adopt its size (LMDB returns
		 * MDB_MAP_RESIZED until the environment does). */
		mdb_env_set_mapsize(s->env, 0);
		rc = mdb_txn_begin(s->env, NULL, flags, txn);
	}
	/* The unclean record a lazy open left to the first change goes with
	 * every write until one lands (txn_commit()): whatever a transaction
	 * changes, the store is then known unclean with it, atomically. */
	if (rc == 0 && !(flags & MDB_RDONLY) && atomic_load(&s->unclean_due) &&
	    (rc = put_meta_u32(s, *txn, K_CLEAN, 0)) != 0)
		mdb_txn_abort(*txn);
	return mdb_to_errno(rc);
}

/* mdb_txn_commit() of a write transaction begun by begin(): once one
 * lands, the unclean record it carried is in the index (durable: in NONE,
 * where commits are not synced, it is synced once here, as the open of an
 * eager handle does). */
static int txn_commit(struct vswap_store *s, MDB_txn *txn)
{
	bool due = atomic_load(&s->unclean_due);
	int rc = mdb_txn_commit(txn);
	if (rc == 0 && due) {
		if (s->durability == VSWAP_DURABILITY_NONE)
			rc = mdb_env_sync(s->env, 1);
		if (rc == 0)
			atomic_store(&s->unclean_due, false);
	}
	return rc;
}

/* The three above, for the other files of the index (store/misplaced.c). */
int index_mdb_errno(int rc)
{
	return mdb_to_errno(rc);
}

int index_begin(struct vswap_store *s, unsigned flags, MDB_txn **txn)
{
	return begin(s, flags, txn);
}

int index_txn_commit(struct vswap_store *s, MDB_txn *txn)
{
	return txn_commit(s, txn);
}

/*
 * Open the LMDB environment.  @create: the caller made the index file
 * (empty, exclusively: LMDB initialises an empty file).  Otherwise the
 * file is checked before LMDB maps it (store/index_file.c).  A read-only
 * handle opens with MDB_RDONLY | MDB_NOLOCK: no lock file is created or
 * written, and read access to the index is enough.
 */
int index_open(struct vswap_store *s, bool create)
{
	int ret;
	if (!create && (ret = index_file_check(s)))
		return ret;
	if (!s->read_only && (ret = index_lock_file_prepare(s)))
		return ret;
	int rc = mdb_env_create(&s->env);
	if (rc)
		return mdb_to_errno(rc);
	mdb_env_set_maxdbs(s->env, 4);
	mdb_env_set_mapsize(s->env, s->map_size ? s->map_size : DEFAULT_MAP_SIZE);
	unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
	if (s->read_only)
		flags |= MDB_RDONLY | MDB_NOLOCK;
	if (s->durability == VSWAP_DURABILITY_NONE)
		flags |= MDB_NOSYNC;
	rc = mdb_env_open(s->env, s->index_path, flags, 0600);
	if (rc) {
		store_log(s, VSWAP_LOG_ERROR, "%s: %scannot open the index: %s", s->index_path,
			  rc == MDB_INVALID || rc == MDB_CORRUPTED ? "bad index: " : "",
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
	ret = begin(s, s->read_only ? MDB_RDONLY : 0, &txn);
	if (ret)
		return ret;
	unsigned dflags = create ? MDB_CREATE : 0;
	if ((rc = mdb_dbi_open(txn, "meta", dflags, &s->dbi_meta)) ||
	    (rc = mdb_dbi_open(txn, "pages", dflags, &s->dbi_pages)) ||
	    (rc = mdb_dbi_open(txn, "staging", dflags, &s->dbi_staging)) ||
	    (rc = blob_db_open(s, txn))) {
		mdb_txn_abort(txn);
		store_log(s, VSWAP_LOG_ERROR, "%s: bad index: not a vswap index (%s)",
			  s->index_path, mdb_strerror(rc));
		return rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE ? -EUCLEAN : mdb_to_errno(rc);
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		return mdb_to_errno(rc);
	MDB_envinfo info;
	mdb_env_info(s->env, &info);
	s->map_size = info.me_mapsize;
	return 0;
}

/*
 * Whether the file at the index path is a vswap index, and whose: its UUID
 * record must be intact (its check is seeded by the UUID it holds, so a
 * file that merely looks like one fails).  Read-only, no lock file.
 */
int index_identify(const struct vswap_store *s, uint8_t uuid[16])
{
	struct vswap_store probe = *s;
	probe.env = NULL;
	probe.read_only = true;
	probe.lazy_open = false;
	probe.deferred = NULL;
	probe.log.level = VSWAP_LOG_ERROR; /* a probe: its doubts are not news */
	int ret = index_file_check(&probe);
	if (ret)
		return ret;
	MDB_env *env;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k = str_key(K_UUID), d;
	if (mdb_env_create(&env))
		return -ENOMEM;
	mdb_env_set_maxdbs(env, 4);
	ret = -EUCLEAN;
	if (mdb_env_open(env, s->index_path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0600) == 0 &&
	    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0 &&
	    mdb_dbi_open(txn, "meta", 0, &dbi) == 0 && mdb_get(txn, dbi, &k, &d) == 0 &&
	    d.mv_size == 24) {
		uint64_t sum;
		memcpy(&sum, (uint8_t *)d.mv_data + 16, 8);
		probe.seed = checksum_store_seed(d.mv_data);
		if (le64toh(sum) ==
		    index_record_check(&probe, DB_META, K_UUID, k.mv_size, d.mv_data, 16)) {
			memcpy(uuid, d.mv_data, 16);
			ret = 0;
		}
	}
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	return ret;
}

void index_close(struct vswap_store *s)
{
	if (s->env)
		mdb_env_close(s->env);
	s->env = NULL;
}

/* ---- metadata ------------------------------------------------------------- */

/* A meta value is its payload followed by the record check. */
static int put_meta(struct vswap_store *s, MDB_txn *txn, const char *key, const void *v, size_t len)
{
	MDB_val k = str_key(key), d = {.mv_size = len + 8, .mv_data = NULL};
	int rc = mdb_put(txn, s->dbi_meta, &k, &d, MDB_RESERVE);
	if (rc)
		return rc;
	uint64_t sum = htole64(index_record_check(s, DB_META, key, k.mv_size, v, len));
	memcpy(d.mv_data, v, len);
	memcpy((uint8_t *)d.mv_data + len, &sum, 8);
	return 0;
}

int index_put_meta(struct vswap_store *s, MDB_txn *txn, const char *key, const void *v, size_t len)
{
	return put_meta(s, txn, key, v, len);
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
	return mdb_to_errno(txn_commit(s, txn));
}

int index_record_unclean(struct vswap_store *s)
{
	if (!atomic_load(&s->unclean_due))
		return 0;
	MDB_txn *txn;
	int ret = begin(s, 0, &txn); /* carries the record */
	if (ret)
		return ret;
	return mdb_to_errno(txn_commit(s, txn));
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
	return mdb_to_errno(txn_commit(s, txn));
}

/* get_meta()'s answer for a value whose check fails. */
#define META_BAD (-30000)

/* The payload of meta record @key: 0, MDB_NOTFOUND, or META_BAD (the value
 * is too short for its check or fails it; @out then holds what is there). */
static int get_meta(struct vswap_store *s, MDB_txn *txn, const char *key, MDB_val *out)
{
	MDB_val k = str_key(key);
	int rc = mdb_get(txn, s->dbi_meta, &k, out);
	if (rc)
		return rc;
	if (out->mv_size < 8)
		return META_BAD;
	out->mv_size -= 8;
	uint64_t sum;
	memcpy(&sum, (uint8_t *)out->mv_data + out->mv_size, 8);
	if (le64toh(sum) !=
	    index_record_check(s, DB_META, key, k.mv_size, out->mv_data, out->mv_size))
		return META_BAD;
	return 0;
}

static int get_meta_u32(struct vswap_store *s, MDB_txn *txn, const char *key, uint32_t *v)
{
	MDB_val d;
	int rc = get_meta(s, txn, key, &d);
	if (rc)
		return rc;
	if (d.mv_size != 4)
		return META_BAD;
	memcpy(v, d.mv_data, 4);
	*v = le32toh(*v);
	return 0;
}

static int get_meta_u64(struct vswap_store *s, MDB_txn *txn, const char *key, uint64_t *v)
{
	MDB_val d;
	int rc = get_meta(s, txn, key, &d);
	if (rc)
		return rc;
	if (d.mv_size != 8)
		return META_BAD;
	memcpy(v, d.mv_data, 8);
	*v = le64toh(*v);
	return 0;
}

/* Decode the regions payload @d (its check already judged). */
static int decode_regions(struct vswap_store *s, const MDB_val *d)
{
	uint32_t n;
	if (d->mv_size < 4)
		return MDB_CORRUPTED;
	memcpy(&n, d->mv_data, 4);
	n = le32toh(n);
	if (d->mv_size != 4 + 8 * (size_t)n)
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
		memcpy(&p, (uint8_t *)d->mv_data + 4 + 8 * i, 8);
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

/*
 * A damaged or hostile index must not steer the store to some other file:
 * the staging path must be "<dir>/vswap-<uuid>.staging" of this store's
 * UUID, in the configured staging directory when one is given, else in a
 * canonical absolute directory (no symbolic link, no "." or "..": a store
 * may have been created with another directory than the default).
 */
static bool staging_path_allowed(const struct vswap_store *s, const char *configured)
{
	size_t dirlen;
	if (!store_staging_path_split(s->staging_path, s->sb.uuid, &dirlen))
		return false;
	char *dir = strndup(s->staging_path, dirlen);
	if (!dir)
		return false;
	char *real = realpath(configured ? configured : dir, NULL);
	bool ok = real && strcmp(real, dir) == 0;
	free(real);
	free(dir);
	return ok;
}

/* No regions record: a new store, unless records exist (then it is damage:
 * pages would be read against no page space). */
static int regions_missing(struct vswap_store *s, MDB_txn *txn)
{
	MDB_stat a, b;
	if (mdb_stat(txn, s->dbi_pages, &a) || mdb_stat(txn, s->dbi_staging, &b))
		return -EIO;
	if (a.ms_entries == 0 && b.ms_entries == 0)
		return 0;
	store_log(
	    s, s->tolerant ? VSWAP_LOG_WARN : VSWAP_LOG_ERROR,
	    "%s: bad index: regions record missing, but %zu page-group and %zu staging records "
	    "exist",
	    s->index_path, a.ms_entries, b.ms_entries);
	if (!s->tolerant)
		return -EUCLEAN;
	s->damaged |= VSWAP_DAMAGED_REGIONS;
	return 0;
}

/* A meta record that is missing or fails its check, by name. */
static int bad_meta(struct vswap_store *s, const char *key, int rc)
{
	store_log(s, VSWAP_LOG_ERROR, "%s: bad index: the %s record %s", s->index_path, key,
		  rc == MDB_NOTFOUND ? "is missing" : "fails its checksum");
	return -EUCLEAN;
}

/* Check the meta table against the superblock; fill the handle. */
static int load_meta(struct vswap_store *s, MDB_txn *txn, const char *staging_dir)
{
	uint32_t format = 0, psz = 0, clean = 0;
	uint64_t created = 0;
	MDB_val d = {0, NULL};
	/* The UUID first: an index of another store fails every check, and
	 * that is what to say about it. */
	int rc = get_meta(s, txn, K_UUID, &d);
	if (rc == MDB_NOTFOUND) {
		store_log(s, VSWAP_LOG_ERROR, "%s: bad index: not a vswap index (no uuid record)",
			  s->index_path);
		return -EUCLEAN;
	}
	if (rc && rc != META_BAD)
		return mdb_to_errno(rc);
	if (d.mv_size < 16 || memcmp(d.mv_data, s->sb.uuid, 16) != 0) {
		char a[37], b[37] = "(unreadable)";
		vswap_uuid_format(s->sb.uuid, a);
		if (d.mv_size >= 16)
			vswap_uuid_format(d.mv_data, b);
		store_log(
		    s, VSWAP_LOG_ERROR,
		    "%s: index belongs to another store: its UUID is %s, the swap file's is %s",
		    s->index_path, b, a);
		return -EMEDIUMTYPE;
	}
	if (rc == META_BAD || d.mv_size != 16)
		return bad_meta(s, K_UUID, META_BAD);
	rc = get_meta_u32(s, txn, K_FORMAT, &format);
	if (rc)
		return bad_meta(s, K_FORMAT, rc);
	if (format != VSWAP_FORMAT_VERSION) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: unknown index format version %u (this build knows %u)",
			  s->index_path, format, VSWAP_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if ((rc = get_meta_u32(s, txn, K_PAGE_SIZE, &psz)))
		return bad_meta(s, K_PAGE_SIZE, rc);
	if (psz != s->page_size) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: index page size %u differs from the swap file's %u", s->index_path,
			  psz, s->page_size);
		return -EMEDIUMTYPE;
	}
	rc = get_meta_u64(s, txn, K_CREATED, &created);
	if (rc || created != s->sb.created_ns) {
		if (!s->tolerant && rc)
			return bad_meta(s, K_CREATED, rc);
		if (!s->tolerant) {
			store_log(s, VSWAP_LOG_ERROR,
				  "%s: bad index: its creation time differs from the swap file's",
				  s->index_path);
			return -EUCLEAN;
		}
		s->damaged |= VSWAP_DAMAGED_CREATED;
	}
	/* regions: a damaged one must never silently change what the page
	 * numbers mean.  A tolerant (repair) open takes it as decoded and
	 * says so; recovery weighs it against the records' keys. */
	rc = get_meta(s, txn, K_REGIONS, &d);
	if (rc == META_BAD && s->tolerant) {
		s->damaged |= VSWAP_DAMAGED_REGIONS;
		store_log(s, VSWAP_LOG_WARN, "%s: the regions record fails its checksum",
			  s->index_path);
		rc = 0;
	}
	if (rc == META_BAD)
		return bad_meta(s, K_REGIONS, rc);
	if (rc == 0 && (rc = decode_regions(s, &d)) != 0) {
		store_log(s, VSWAP_LOG_ERROR, "%s: bad index: bad regions record", s->index_path);
		return rc == ENOMEM ? -ENOMEM : -EUCLEAN;
	} else if (rc == MDB_NOTFOUND && (rc = regions_missing(s, txn)) != 0) {
		return rc;
	} else if (rc && rc != MDB_NOTFOUND) {
		return mdb_to_errno(rc);
	}
	/* state and clean are advice: a damaged one reads as Failed and
	 * unclean, which only makes the next steps more careful. */
	rc = get_meta_u32(s, txn, K_STATE, &s->state);
	if (rc == META_BAD || (rc == 0 && s->state > 6)) {
		store_log(s, VSWAP_LOG_WARN, "%s: the state record is damaged; taken as Failed",
			  s->index_path);
		s->state = 1; /* Failed */
		s->damaged |= VSWAP_DAMAGED_STATE;
	}
	rc = get_meta_u32(s, txn, K_CLEAN, &clean);
	if (rc == META_BAD) {
		store_log(s, VSWAP_LOG_WARN, "%s: the clean record is damaged; taken as unclean",
			  s->index_path);
		clean = 0;
		s->damaged |= VSWAP_DAMAGED_CLEAN;
	}
	s->was_clean = rc == 0 && clean == 1;
	s->recorded_unclean = rc == 0 && clean == 0;
	rc = get_meta(s, txn, K_STAGING, &d);
	if (rc == MDB_NOTFOUND)
		return 0; /* staging_open() says so */
	if (rc == META_BAD && !s->tolerant)
		return bad_meta(s, K_STAGING, rc);
	if (rc == META_BAD)
		s->damaged |= VSWAP_DAMAGED_STAGING_PATH;
	if (rc && rc != META_BAD)
		return mdb_to_errno(rc);
	if (d.mv_size == 0 || d.mv_size >= 4096 || memchr(d.mv_data, 0, d.mv_size)) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: bad index: the staging path record is not a path", s->index_path);
		return -EUCLEAN;
	}
	s->staging_path = strndup(d.mv_data, d.mv_size);
	if (!s->staging_path)
		return -ENOMEM;
	if (!staging_path_allowed(s, staging_dir)) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: the index's staging path \"%s\" is not vswap-<uuid>.staging of this "
			  "store in %s%s; refusing it",
			  s->index_path, s->staging_path,
			  staging_dir ? "the staging directory " : "",
			  staging_dir ? staging_dir : "a canonical absolute directory");
		return -EUCLEAN;
	}
	return 0;
}

/* ---- page groups ----------------------------------------------------------- */

/* Call @fn for every entry of a believed record, or once for one that is
 * not (fault set, the group its key names). */
int index_walk_group(struct vswap_store *s, const MDB_val *key, const MDB_val *val,
		     vswap_page_record_fn fn, void *ctx)
{
	uint64_t kg = 0;
	struct group_view g;
	enum vswap_record_fault f = VSWAP_RECORD_UNDECODABLE;
	if (key->mv_size == 8) {
		memcpy(&kg, key->mv_data, 8);
		kg = be64toh(kg);
		f = group_decode(s, kg, val->mv_data, val->mv_size, &g);
	}
	if (f != VSWAP_RECORD_OK) {
		struct vswap_page_record r = {
		    .page = kg * GROUP_PAGES,
		    .slot = UINT64_MAX,
		    .corrupt = true,
		    .group_pages = GROUP_PAGES,
		    .fault = f,
		    .key_group = kg,
		    .claimed_group = f == VSWAP_RECORD_MISPLACED ? g.group : kg,
		};
		return fn(ctx, &r);
	}
	unsigned n = 0;
	for (unsigned i = 0; i < GROUP_PAGES; i++) {
		if (!(g.mask >> i & 1))
			continue;
		uint32_t state;
		struct vswap_page_record e = {
		    .page = kg * GROUP_PAGES + i,
		    .group_pages = 1,
		    .key_group = kg,
		    .claimed_group = kg,
		};
		group_entry(&g, n++, &e.slot, &state, &e.xxh3);
		e.state = (enum vswap_page_state)state;
		int ret = fn(ctx, &e);
		if (ret)
			return ret;
	}
	return 0;
}

/* Encode the group @g of @n pages, whose page words and checksums are
 * @words and @sums, into @buf; returns the value's length, 0 if the group
 * has no record.  With @leftout, the records a tolerant open left out are
 * kept (they are looked up in the store's tables). */
static size_t encode_group_from(const struct vswap_store *s, uint64_t g, unsigned n,
				const uint32_t *words, const uint64_t *sums, bool leftout,
				uint8_t *buf)
{
	uint64_t mask = 0;
	uint8_t *p = buf + group_encode_begin(buf, g);
	uint64_t first = g * GROUP_PAGES;
	for (unsigned i = 0; i < n; i++) {
		uint32_t w = words[i];
		uint32_t slot1 = w & PW_SLOT_MASK, state = pw_state(w);
		uint64_t sum = sums[i];
		if (state == VSWAP_PAGE_NONE) {
			/* A record a tolerant open left out stays until recovery
			 * decides about it: a rewrite of its group must not drop
			 * it silently. */
			const struct vswap_page_record *lo =
			    leftout ? leftout_find(s, first + i) : NULL;
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
		p += PG_ENTRY;
	}
	if (!mask)
		return 0;
	uint64_t le = htole64(mask);
	memcpy(buf + 8, &le, 8);
	size_t len = (size_t)(p - buf);
	record_seal(s, DB_PAGES, g, buf, len);
	return len + 8;
}

/* The pages of group @g the tables hold (the last group may be short). */
static unsigned group_pages(const struct vswap_store *s, uint64_t g)
{
	uint64_t first = g * GROUP_PAGES;
	uint64_t left = s->total_pages > first ? s->total_pages - first : 0;
	return left < GROUP_PAGES ? (unsigned)left : GROUP_PAGES;
}

/* Encode group @g from the tables into @buf; returns the value's length,
 * 0 if the group has no record. */
static size_t encode_group(const struct vswap_store *s, uint64_t g, uint8_t *buf)
{
	/* A changed group was loaded before it changed (index_need()). */
	uint64_t first = g * GROUP_PAGES;
	return encode_group_from(s, g, group_pages(s, g), s->pages + first, s->sums + first,
				 s->nleftout != 0, buf);
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
		why = record_fault_name(r->fault);
	else if (r->page >= s->total_pages)
		why = "page beyond the regions";
	else if (r->slot != UINT64_MAX && r->slot >= STORE_MAX_SLOTS)
		why = "slot out of range";
	else if (r->slot != UINT64_MAX && slot_reserve_and_test(s, r->slot))
		why = "slot owned twice";
	if (why) {
		lc->conflicts++;
		/* Keep what fits the 30-bit slot field; kept records are written
		 * back with their group (see encode_group()).  Records that
		 * are not believed stay in the index as they are, for
		 * recovery, until their group is rewritten. */
		if (s->tolerant && !r->corrupt && r->page < s->total_pages)
			leftout_add(s, r);
		if (r->corrupt)
			store_log(
			    s, s->tolerant ? VSWAP_LOG_WARN : VSWAP_LOG_ERROR,
			    "%s: bad index: the page-group record of key %llu (pages %llu-%llu) "
			    "%s%s",
			    s->index_path, (unsigned long long)r->key_group,
			    (unsigned long long)r->page,
			    (unsigned long long)(r->page + r->group_pages - 1), why,
			    s->tolerant ? "" : "; its pages are lost: run vswap-fsck");
		else
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
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !ret;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		ret = index_walk_group(s, &k, &v, load_record, &lc);
	mdb_cursor_close(cur);
	if (!ret && rc != MDB_NOTFOUND)
		ret = mdb_to_errno(rc);
	memset(s->dirty, 0, (s->ngroups + 63) / 64 * sizeof(uint64_t));
	memset(s->sg_only, 0, (s->ngroups + 63) / 64 * sizeof(uint64_t));
	return ret;
}

static int load_staging(struct vswap_store *s, MDB_txn *txn)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, s->dbi_staging, &cur);
	if (rc)
		return mdb_to_errno(rc);
	MDB_val k, v;
	int ret = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t g = 0;
		struct staging_view sv;
		enum vswap_record_fault f = VSWAP_RECORD_UNDECODABLE;
		if (k.mv_size == 8) {
			memcpy(&g, k.mv_data, 8);
			g = be64toh(g);
			f = staging_decode(s, g, v.mv_data, v.mv_size, &sv);
		}
		if (f == VSWAP_RECORD_OK && g >= s->ngroups) {
			store_log(s, s->tolerant ? VSWAP_LOG_WARN : VSWAP_LOG_ERROR,
				  "%s: bad index: staging record of group %llu beyond the regions",
				  s->index_path, (unsigned long long)g);
			if (!s->tolerant) {
				ret = -EUCLEAN;
				break;
			}
			continue;
		}
		if (f != VSWAP_RECORD_OK) {
			/* Which pages are staged is unknown: nothing is believed,
			 * so a non-tolerant open refuses, and recovery sees it
			 * through vswap_store_foreach_staged_page(). */
			store_log(s, s->tolerant ? VSWAP_LOG_WARN : VSWAP_LOG_ERROR,
				  "%s: bad index: the staging record of key %llu %s%s",
				  s->index_path, (unsigned long long)g, record_fault_name(f),
				  s->tolerant ? "" : "; run vswap-fsck");
			if (!s->tolerant) {
				ret = -EUCLEAN;
				break;
			}
			continue;
		}
		uint64_t last = s->total_pages - g * GROUP_PAGES, keep = ~0ull;
		if (last < 64)
			keep = (1ull << last) - 1;
		s->staged[g] = sv.staged & keep;
		s->summed[g] = sv.summed & keep;
		for (uint64_t w = s->summed[g]; w; w &= w - 1) {
			unsigned bit = (unsigned)__builtin_ctzll(w);
			ssum_set(s, g * GROUP_PAGES + bit, staging_view_sum(&sv, bit));
		}
		s->n_staged += (uint64_t)__builtin_popcountll(s->staged[g]);
	}
	mdb_cursor_close(cur);
	if (ret)
		return ret;
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

/*
 * The meta records, then the staging records and (unless @lazy) the page
 * groups.  @lazy: the groups load behind the open (lazy.c) once this read
 * transaction has ended; an index without page-group records needs none.
 */
int index_load(struct vswap_store *s, const char *staging_dir, bool lazy)
{
	MDB_txn *txn;
	int ret = begin(s, MDB_RDONLY, &txn);
	if (ret)
		return ret;
	ret = load_meta(s, txn, staging_dir);
	MDB_stat st = {0};
	if (!ret && s->total_pages) {
		ret = tables_alloc(s);
		if (!ret && lazy)
			ret = mdb_to_errno(mdb_stat(txn, s->dbi_pages, &st));
		if (!ret && !lazy)
			ret = load_groups(s, txn);
		if (!ret)
			ret = load_staging(s, txn);
	}
	mdb_txn_abort(txn);
	if (!ret && lazy && st.ms_entries)
		ret = loader_start(s);
	/* No loader to check the leaves of `pages` as it reads them: they are
	 * checked now (an index whose record counts no entries has none,
	 * unless it is damaged), before a commit may change them. */
	if (!ret && s->deferred)
		ret = index_lmdb_check_rest(s->deferred);
	index_lmdb_deferred_free(s->deferred);
	s->deferred = NULL;
	return ret;
}

/* ---- commit ----------------------------------------------------------------- */

static int put_group(struct vswap_store *s, MDB_txn *txn, uint64_t g, uint8_t *buf)
{
	uint64_t kb;
	MDB_val k, v;
	group_key(g, &kb, &k);
	size_t len;
	int rc = 0;
	if (!bit_test(s->sg_only, g)) { /* else as the index has it */
		len = encode_group(s, g, buf);
		if (len) {
			v = (MDB_val){.mv_size = len, .mv_data = buf};
			rc = mdb_put(txn, s->dbi_pages, &k, &v, 0);
		} else {
			rc = mdb_del(txn, s->dbi_pages, &k, NULL);
		}
	}
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	if (s->staged[g]) {
		len = staging_encode(s, g, buf);
		v = (MDB_val){.mv_size = len, .mv_data = buf};
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
	uint8_t buf[PG_VALUE_MAX > SG_VALUE_MAX ? PG_VALUE_MAX : SG_VALUE_MAX];
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
	return txn_commit(s, txn);
}

/*
 * The split commit (write.c).  Its begin, under the caller's lock, copies
 * each dirty group's page words and checksums out of the tables as they are
 * (two memcpy per group, the checksums first so that both are read in
 * place aligned), with the group's staging record, unsealed; the
 * records are encoded and sealed in the write, without the lock, from those
 * copies.  Encoding in the begin cost about 9 ns a page, under the lock every
 * fault waits for: 150 us for a swap-out's 64 MiB group of pages.  A group
 * with records a tolerant open left out is encoded in the begin (they are
 * looked up in the tables).  The transaction was begun under the lock too
 * (write.c), which keeps commits in the order of their begins (LMDB has one
 * writer at a time).
 */
struct snap_head {
	uint64_t group;
	uint32_t npages; /* raw: the page words and checksums that follow */
	uint32_t raw;	 /* SNAP_*: how the page record follows */
	uint64_t pg_len; /* bytes after the head before the staging record */
	uint64_t sg_len; /* the staging record, unsealed; 0: none (deleted) */
};
/* snap_head.raw: the sealed record (pg_len bytes); raw copies; no page
 * record at all, the group's change being to staging alone (its record is
 * left as the index has it: group_mark_staging_dirty()). */
enum { SNAP_SEALED = 0, SNAP_RAW = 1, SNAP_STAGING_ONLY = 2 };

int index_snap_encode(struct vswap_store *s)
{
	struct commit_snap *c = &s->snap;
	uint64_t words = (s->ngroups + 63) / 64;
	bool raw = s->nleftout == 0;
	size_t cap0 = c->cap;
	c->len = 0;
	for (uint64_t wi = 0; wi < words; wi++) {
		uint64_t w = s->dirty[wi];
		c->committing[wi] = w;
		while (w) {
			uint64_t g = wi * 64 + (uint64_t)__builtin_ctzll(w);
			w &= w - 1;
			/* The head, the record, the staging record and its
			 * seal, rounded up to 8 bytes. */
			size_t need = sizeof(struct snap_head) + PG_VALUE_MAX + SG_VALUE_MAX + 8;
			if (ARRAY_RESERVE(c->recs, c->cap, c->len + need, 64 * need))
				return -ENOMEM;
			struct snap_head hd = {.group = g, .npages = group_pages(s, g), .raw = raw};
			uint8_t *p = c->recs + c->len + sizeof(hd);
			if (bit_test(s->sg_only, g)) {
				hd.raw = SNAP_STAGING_ONLY;
				hd.pg_len = 0;
			} else if (raw) { /* the checksums first: 8-byte aligned */
				uint64_t first = g * GROUP_PAGES;
				size_t sb = hd.npages * sizeof(*s->sums);
				memcpy(p, s->sums + first, sb);
				memcpy(p + sb, s->pages + first, hd.npages * sizeof(*s->pages));
				hd.pg_len = sb + hd.npages * sizeof(*s->pages);
			} else {
				hd.pg_len = encode_group(s, g, p);
			}
			hd.sg_len = s->staged[g] ? staging_encode_body(s, g, p + hd.pg_len) : 0;
			memcpy(c->recs + c->len, &hd, sizeof(hd));
			/* Records start 8-byte aligned (the raw copies are read
			 * in place). */
			c->len += (sizeof(hd) + hd.pg_len + hd.sg_len + 8 + 7) & ~(size_t)7;
		}
	}
	if (c->cap != cap0) /* grown here: what lies past the copies is new */
		c->touched = c->len;
	return 0;
}

/* The smallest room index_snap_prepare() keeps: a snapshot of about 650
 * groups, 160 MiB of pages (a swap-out commits every 64 MiB). */
#define SNAP_ROOM_MIN (1u << 20)

/*
 * Room for the next snapshot, twice the last one's, its memory touched now,
 * without the caller's lock.  The begin copies into it under that lock, and
 * there every first touch of a page of a fresh buffer is a page fault: 75
 * of them for a 64 MiB swap-out commit took 175 us, 230 took 1.1 ms, longer
 * than the copies themselves, and every fault waited.  Only a snapshot
 * larger than twice the last grows the buffer under the lock again; room
 * over four times what is wanted is given back.
 */
void index_snap_prepare(struct vswap_store *s)
{
	struct commit_snap *c = &s->snap;
	size_t want = 2 * c->len > SNAP_ROOM_MIN ? 2 * c->len : SNAP_ROOM_MIN;
	if (c->cap > 4 * want) {
		/* One large snapshot (a disable's cleanup dirties every group)
		 * does not keep its room for the handle's life. */
		uint8_t *p = realloc(c->recs, want);
		if (p) {
			c->recs = p;
			c->cap = want;
			c->touched = c->touched < want ? c->touched : want;
		}
	}
	if (c->cap < want) {
		uint8_t *p = realloc(c->recs, want);
		if (!p)
			return; /* grown under the lock when needed */
		c->recs = p;
		c->cap = want;
	}
	if (c->touched < c->cap) {
		memset(c->recs + c->touched, 0, c->cap - c->touched);
		c->touched = c->cap;
	}
}

static int snap_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, uint8_t *val, size_t len)
{
	MDB_val v = {.mv_size = len, .mv_data = val};
	int rc = len ? mdb_put(txn, dbi, k, &v, 0) : mdb_del(txn, dbi, k, NULL);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc == MDB_MAP_FULL ? -EAGAIN : mdb_to_errno(rc);
}

/* The snapshot's records into its transaction: encoded and sealed here,
 * lock not held (the snapshot is this commit's own). */
int index_snap_put(struct vswap_store *s)
{
	struct commit_snap *c = &s->snap;
	uint8_t buf[PG_VALUE_MAX];
	for (size_t off = 0; off < c->len;) {
		struct snap_head hd;
		memcpy(&hd, c->recs + off, sizeof(hd));
		uint8_t *pg = c->recs + off + sizeof(hd);
		uint8_t *sg = pg + hd.pg_len;
		off += (sizeof(hd) + hd.pg_len + hd.sg_len + 8 + 7) & ~(size_t)7;
		uint8_t *val = pg;
		size_t len = hd.pg_len;
		if (hd.raw == SNAP_RAW) {
			const uint64_t *sums = (const uint64_t *)(const void *)pg;
			const uint32_t *words =
			    (const uint32_t *)(const void *)(pg + hd.npages * sizeof(uint64_t));
			len = encode_group_from(s, hd.group, hd.npages, words, sums, false, buf);
			val = buf;
		}
		if (hd.sg_len) {
			record_seal(s, DB_STAGING, hd.group, sg, hd.sg_len);
			hd.sg_len += 8;
		}
		uint64_t kb;
		MDB_val k;
		group_key(hd.group, &kb, &k);
		int rc =
		    hd.raw == SNAP_STAGING_ONLY ? 0 : snap_put(c->txn, s->dbi_pages, &k, val, len);
		if (!rc)
			rc = snap_put(c->txn, s->dbi_staging, &k, sg, hd.sg_len);
		if (rc)
			return rc;
	}
	return 0;
}

/* The metadata into the split commit's transaction (lock held). */
int index_snap_meta(struct vswap_store *s)
{
	int rc = put_all_meta(s, s->snap.txn);
	return rc == MDB_MAP_FULL ? -EAGAIN : mdb_to_errno(rc);
}

/* Begin the split commit's write transaction (lock held). */
int index_snap_txn(struct vswap_store *s)
{
	return begin(s, 0, &s->snap.txn);
}

/* Commit it (no lock); -EAGAIN: the map is full (nothing committed). */
int index_snap_commit(struct vswap_store *s)
{
	int rc = txn_commit(s, s->snap.txn);
	s->snap.txn = NULL;
	return rc == MDB_MAP_FULL ? -EAGAIN : mdb_to_errno(rc);
}

/* Wait until the split commit's write is over: its transaction holds
 * LMDB's writer lock until committed or aborted. */
int index_snap_wait(struct vswap_store *s)
{
	MDB_txn *txn;
	int ret = begin(s, 0, &txn);
	if (ret)
		return ret;
	mdb_txn_abort(txn);
	return 0;
}

void index_snap_abort(struct vswap_store *s)
{
	if (s->snap.txn)
		mdb_txn_abort(s->snap.txn);
	s->snap.txn = NULL;
}

/* Double the map until the commit fits (MDB_MAP_FULL is not an error). */
int index_commit(struct vswap_store *s)
{
	for (;;) {
		int rc = commit_once(s);
		if (rc != MDB_MAP_FULL)
			return mdb_to_errno(rc);
		uint64_t grown = s->map_size * 2;
		/* LMDB resizes only with no transaction open in the process:
		 * the lazy load's ends first. */
		if ((rc = index_need_all(s)))
			return rc;
		rc = mdb_env_set_mapsize(s->env, grown);
		if (rc) {
			store_log(s, VSWAP_LOG_ERROR,
				  "index map full and cannot grow to %llu bytes: %s",
				  (unsigned long long)grown, mdb_strerror(rc));
			return -ENOSPC;
		}
		store_log(s, VSWAP_LOG_INFO, "index map grown to %llu bytes",
			  (unsigned long long)grown);
		s->map_size = grown;
	}
}

/* ---- iteration for recovery and dump ---------------------------------------- */

int index_pages_writable(struct vswap_store *s)
{
	if (!s->loader || !loader_pages_damaged(s))
		return 0;
	if (!s->pages_refusal_told)
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: bad index: a damaged LMDB page of the page-group records: "
			  "no page group is recorded until vswap-fsck repairs the store",
			  s->index_path);
	s->pages_refusal_told = true;
	return -EUCLEAN;
}

int vswap_store_foreach_page(struct vswap_store *s, vswap_page_record_fn fn, void *ctx)
{
	/* A lazy open: the cursor below reads every leaf, each checked by
	 * the load first. */
	int ret = index_need_all(s);
	if (!ret && s->loader && loader_pages_damaged(s))
		ret = index_pages_writable(s);
	if (ret)
		return ret;
	MDB_txn *txn;
	ret = begin(s, MDB_RDONLY, &txn);
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
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		ret = index_walk_group(s, &k, &v, fn, ctx);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (!ret && rc != MDB_NOTFOUND)
		ret = mdb_to_errno(rc);
	return ret;
}

/* Every staging record, per page, or once for a record not believed. */
int vswap_store_foreach_staged_page(struct vswap_store *s, vswap_staged_record_fn fn, void *ctx)
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
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !ret;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t g = 0;
		struct staging_view sv;
		enum vswap_record_fault f = VSWAP_RECORD_UNDECODABLE;
		if (k.mv_size == 8) {
			memcpy(&g, k.mv_data, 8);
			g = be64toh(g);
			f = staging_decode(s, g, v.mv_data, v.mv_size, &sv);
		}
		if (f != VSWAP_RECORD_OK) {
			struct vswap_staged_record r = {
			    .page = g * GROUP_PAGES,
			    .corrupt = true,
			    .group_pages = GROUP_PAGES,
			    .fault = f,
			    .key_group = g,
			    .claimed_group = f == VSWAP_RECORD_MISPLACED ? sv.group : g,
			};
			ret = fn(ctx, &r);
			continue;
		}
		for (uint64_t w = sv.staged; w && !ret; w &= w - 1) {
			unsigned bit = (unsigned)__builtin_ctzll(w);
			struct vswap_staged_record r = {
			    .page = g * GROUP_PAGES + bit,
			    .summed = sv.summed >> bit & 1,
			    .group_pages = 1,
			    .key_group = g,
			    .claimed_group = g,
			};
			if (r.summed)
				r.xxh3 = staging_view_sum(&sv, bit);
			ret = fn(ctx, &r);
		}
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (!ret && rc != MDB_NOTFOUND)
		ret = mdb_to_errno(rc);
	return ret;
}

struct range_walk {
	vswap_staged_range_fn fn;
	void *ctx;
	uint64_t first, len;
};

static int range_step(void *arg, const struct vswap_staged_record *r)
{
	struct range_walk *w = arg;
	if (r->corrupt)
		return 0;
	if (w->len && w->first + w->len == r->page) {
		w->len++;
		return 0;
	}
	int ret = w->len ? w->fn(w->ctx, w->first, w->len) : 0;
	w->first = r->page;
	w->len = 1;
	return ret;
}

int vswap_store_foreach_staged(struct vswap_store *s, vswap_staged_range_fn fn, void *ctx)
{
	struct range_walk w = {.fn = fn, .ctx = ctx};
	int ret = vswap_store_foreach_staged_page(s, range_step, &w);
	if (!ret && w.len)
		ret = fn(ctx, w.first, w.len);
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
	int need = index_need_all(s);
	if (!need)
		need = index_pages_writable(s);
	if (need)
		return need;
	/* Pages of the group inside the regions: forget them in memory too. */
	for (uint64_t p = group * GROUP_PAGES; p < (group + 1) * GROUP_PAGES && p < s->total_pages;
	     p++) {
		if (pw_has_slot(s->pages[p]))
			slot_vec_push(&s->freed, pw_slot(s->pages[p]));
		page_set(s, p, 0, 0);
		if (bit_test(s->staged, p)) {
			bit_clear(s->staged, p);
			bit_clear(s->summed, p);
			s->n_staged--;
		}
	}
	tables_ssums_release(s);
	MDB_txn *txn;
	int ret = begin(s, 0, &txn);
	if (ret)
		return ret;
	uint64_t kb;
	MDB_val k;
	group_key(group, &kb, &k);
	int rc = mdb_del(txn, s->dbi_pages, &k, NULL), rc2 = 0;
	bool deleted = rc == 0;
	if (rc == 0 || rc == MDB_NOTFOUND) {
		rc2 = mdb_del(txn, s->dbi_staging, &k, NULL);
		deleted |= rc2 == 0;
		rc = rc2 == MDB_NOTFOUND ? 0 : rc2;
	}
	if (rc) {
		mdb_txn_abort(txn);
		return mdb_to_errno(rc);
	}
	if (!deleted) {
		mdb_txn_abort(txn);
		return -ENOENT; /* nothing under that key: the caller's fix did not take */
	}
	return mdb_to_errno(txn_commit(s, txn));
}

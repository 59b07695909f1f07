/* SPDX-License-Identifier: MIT */
/*
 * A misplaced record put back under its own key.  A page-group or staging
 * value begins with its own group number, sealed by its check, so a valid
 * value found under another key is that group's record under a damaged key
 * (docs/FORMAT.md, "Record checks").  Recovery may move it back when the
 * evidence says it is that group's and nothing else's:
 *   - a page-group record: the slots it names hold bytes that verify, by
 *     their page-seeded checksums, as its pages;
 *   - a staging record: the staging file's copies of the pages it says are
 *     staged verify, by the checksums it carries, as those pages.
 * Both walk the records in cursor order, never by key: a damaged key may
 * lie out of LMDB's order, where a keyed look-up or delete misses it.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"

_Static_assert(SG_VALUE_MAX <= PG_VALUE_MAX, "a staging value fits the page-group buffer");

/*
 * What the index holds about a misplaced record: the record of table @db
 * under the key of @key_group that passes its check as another group's, and
 * how many other records of that table name that group (under the group's
 * own key, or misplaced too).
 */
struct misplaced {
	uint32_t db; /* DB_PAGES or DB_STAGING */
	MDB_dbi dbi;
	uint64_t key_group;
	uint64_t group; /* the group the record says it is */
	uint8_t val[PG_VALUE_MAX];
	size_t len;
	size_t at;	 /* its position in cursor order */
	unsigned found;	 /* misplaced records under that key */
	unsigned others; /* other records naming its group */
};

static const char *table_name(const struct misplaced *m)
{
	return m->db == DB_PAGES ? "record" : "staging record";
}

/* The record @k, @v of @m's table: its fault, the group its key names and
 * the group it says it is. */
static enum vswap_record_fault decode_at(const struct vswap_store *s, const struct misplaced *m,
					 const MDB_val *k, const MDB_val *v, uint64_t *kg,
					 uint64_t *own)
{
	enum vswap_record_fault f;
	if (k->mv_size != 8)
		return VSWAP_RECORD_UNDECODABLE;
	memcpy(kg, k->mv_data, 8);
	*kg = be64toh(*kg);
	if (m->db == DB_PAGES) {
		struct group_view g;
		f = group_decode(s, *kg, v->mv_data, v->mv_size, &g);
		*own = g.group;
	} else {
		struct staging_view sv;
		f = staging_decode(s, *kg, v->mv_data, v->mv_size, &sv);
		*own = sv.group;
	}
	return f;
}

typedef void (*misplaced_step_fn)(const struct vswap_store *, struct misplaced *, size_t at,
				  const MDB_val *k, const MDB_val *v);

/* Call @fn on every record of @m's table in cursor order. */
static int walk_records(struct vswap_store *s, MDB_txn *txn, misplaced_step_fn fn,
			struct misplaced *m)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, m->dbi, &cur);
	if (rc)
		return index_mdb_errno(rc);
	MDB_val k, v;
	size_t at = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		fn(s, m, at++, &k, &v);
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : index_mdb_errno(rc);
}

static void note_misplaced(const struct vswap_store *s, struct misplaced *m, size_t at,
			   const MDB_val *k, const MDB_val *v)
{
	uint64_t kg = 0, own = 0;
	if (decode_at(s, m, k, v, &kg, &own) != VSWAP_RECORD_MISPLACED || kg != m->key_group ||
	    m->found++)
		return;
	m->group = own;
	m->len = v->mv_size; /* a decoded value: at most its table's maximum */
	m->at = at;
	memcpy(m->val, v->mv_data, v->mv_size);
}

static void note_rival(const struct vswap_store *s, struct misplaced *m, size_t at,
		       const MDB_val *k, const MDB_val *v)
{
	uint64_t kg = 0, own = 0;
	enum vswap_record_fault f = decode_at(s, m, k, v, &kg, &own);
	if (at != m->at && k->mv_size == 8 &&
	    (kg == m->group || (f == VSWAP_RECORD_MISPLACED && own == m->group)))
		m->others++;
}

/* Read @len bytes at @off of @fd into @buf; -ENODATA past the end. */
static int read_at(int fd, uint64_t off, uint8_t *buf, uint32_t len)
{
	for (uint32_t done = 0; done < len;) {
		ssize_t k = pread(fd, buf + done, len - done, (off_t)(off + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -ENODATA;
		done += (uint32_t)k;
	}
	return 0;
}

/* The slots' evidence for the page-group record @m (see
 * vswap_store_check_misplaced()).  Logs why not. */
static int weigh_group(struct vswap_store *s, const struct misplaced *m, uint8_t *buf)
{
	unsigned long long key = m->key_group, g = m->group;
	struct group_view gv;
	int ret = 0;
	unsigned verified = 0, n = 0;
	group_decode(s, m->key_group, m->val, m->len, &gv);
	for (unsigned i = 0; i < GROUP_PAGES && !ret; i++) {
		if (!(gv.mask >> i & 1))
			continue;
		uint64_t slot, sum, page = m->group * GROUP_PAGES + i;
		uint32_t state;
		group_entry(&gv, n++, &slot, &state, &sum);
		if (page >= s->total_pages) {
			store_log(s, VSWAP_LOG_WARN,
				  "%s: the record of group %llu under the key of group %llu names "
				  "page %llu, beyond the regions; kept",
				  s->index_path, g, key, (unsigned long long)page);
			ret = -ERANGE;
		} else if (pw_state(s->pages[page]) != VSWAP_PAGE_NONE) {
			store_log(s, VSWAP_LOG_WARN,
				  "%s: the record of group %llu under the key of group %llu names "
				  "page %llu, which has a record; kept",
				  s->index_path, g, key, (unsigned long long)page);
			ret = -EEXIST;
		} else if (slot != UINT64_MAX && slot < STORE_MAX_SLOTS &&
			   slots_reserve(s, slot + 1)) {
			ret = -ENOMEM;
		} else if (slot != UINT64_MAX &&
			   (slot >= STORE_MAX_SLOTS || slot_is_used(s, slot))) {
			store_log(s, VSWAP_LOG_WARN,
				  "%s: the record of group %llu under the key of group %llu names "
				  "slot %llu, which %s; kept",
				  s->index_path, g, key, (unsigned long long)slot,
				  slot >= STORE_MAX_SLOTS ? "is out of range"
							  : "another record owns");
			ret = -EBUSY;
		} else if (slot != UINT64_MAX && state != VSWAP_PAGE_LOST) {
			/* Its bytes must verify as this page, and not as the
			 * page of the same place under the damaged key. */
			ret = read_at(s->fd, slot_offset(s, slot), buf, s->page_size);
			if (!ret && (page_sum(s, page, buf) != sum ||
				     page_sum(s, m->key_group * GROUP_PAGES + i, buf) == sum))
				ret = -EBADMSG;
			if (ret)
				store_log(
				    s, VSWAP_LOG_WARN,
				    "%s: the record of group %llu under the key of group %llu: "
				    "the bytes of slot %llu do not verify as page %llu; kept",
				    s->index_path, g, key, (unsigned long long)slot,
				    (unsigned long long)page);
			verified += !ret;
		}
	}
	if (!ret && !verified) {
		store_log(s, VSWAP_LOG_WARN,
			  "%s: the record of group %llu under the key of group %llu names no "
			  "slot whose bytes could confirm it; kept",
			  s->index_path, g, key);
		ret = -ENODATA;
	}
	return ret;
}

/*
 * The staging file's evidence for the staging record @m (see
 * vswap_store_check_misplaced_staging()).  Logs why not.  Every page it says
 * is staged must be confirmed: a staged page without a committed checksum
 * may be an incomplete copy (invariant 5), so it confirms nothing.  The
 * copies read lie at the record's own pages' offsets and their checksums
 * are seeded with those pages' numbers, so no copy can verify both as its
 * page and as the page under the damaged key (the page-group check above
 * reads one slot for both).
 */
static int weigh_staging(struct vswap_store *s, const struct misplaced *m, uint8_t *buf)
{
	unsigned long long key = m->key_group, g = m->group;
	struct staging_view sv;
	int ret = 0;
	staging_decode(s, m->key_group, m->val, m->len, &sv);
	if (s->staged[m->group]) {
		store_log(s, VSWAP_LOG_WARN,
			  "%s: the staging record of group %llu under the key of group %llu: "
			  "pages of that group are staged already; kept",
			  s->index_path, g, key);
		return -EEXIST;
	}
	if (s->staging_fd < 0) {
		store_log(s, VSWAP_LOG_WARN,
			  "%s: the staging record of group %llu under the key of group %llu: "
			  "no staging file holds its pages; kept",
			  s->index_path, g, key);
		return -ENODATA;
	}
	for (uint64_t w = sv.staged; w && !ret; w &= w - 1) {
		unsigned bit = (unsigned)__builtin_ctzll(w);
		unsigned long long page = m->group * GROUP_PAGES + bit;
		const char *why = NULL;
		if (page >= s->total_pages) {
			why = "is beyond the regions";
			ret = -ERANGE;
		} else if (!(sv.summed >> bit & 1)) {
			why = "has no committed checksum to confirm it";
			ret = -ENODATA;
		} else {
			ret = read_at(s->staging_fd, page << s->page_shift, buf, s->page_size);
			if (!ret && page_sum(s, page, buf) != staging_view_sum(&sv, bit))
				ret = -EBADMSG;
			if (ret)
				why = ret == -EBADMSG ? "has a staged copy that fails its checksum"
						      : "has no staged copy";
		}
		if (ret)
			store_log(s, VSWAP_LOG_WARN,
				  "%s: the staging record of group %llu under the key of group "
				  "%llu: staged page %llu %s; kept",
				  s->index_path, g, key, page, why);
	}
	return ret;
}

/* Find the misplaced record of @m's table under @m->key_group and weigh
 * its evidence. */
static int misplaced_look(struct vswap_store *s, MDB_txn *txn, struct misplaced *m)
{
	unsigned long long key = m->key_group, g;
	int ret = walk_records(s, txn, note_misplaced, m);
	if (!ret && !m->found)
		ret = -ENOENT;
	if (!ret)
		ret = walk_records(s, txn, note_rival, m);
	if (ret)
		return ret;
	g = m->group;
	if (m->group >= s->ngroups) {
		store_log(s, VSWAP_LOG_WARN,
			  "%s: the %s under the key of group %llu says it is group %llu, "
			  "beyond the regions; kept",
			  s->index_path, table_name(m), key, g);
		return -ERANGE;
	}
	if (m->found > 1 || m->others) {
		store_log(s, VSWAP_LOG_WARN,
			  "%s: the %s of group %llu under the key of group %llu: %s; kept",
			  s->index_path, table_name(m), g, key,
			  m->found > 1 ? "another misplaced record lies under that key"
				       : "another record names that group");
		return -EEXIST;
	}
	uint8_t *buf = NULL;
	if (posix_memalign((void **)&buf, 4096, s->page_size))
		return -ENOMEM;
	ret = m->db == DB_PAGES ? weigh_group(s, m, buf) : weigh_staging(s, m, buf);
	free(buf);
	return ret;
}

/* Delete the record at position @m->at in cursor order, where the walk
 * found it (a keyed delete would miss a key out of order), checking it is
 * still the one found, and put it under its own key. */
static int put_back(MDB_txn *txn, const struct misplaced *m)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, m->dbi, &cur);
	if (rc)
		return index_mdb_errno(rc);
	MDB_val k, v;
	size_t at = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && at < m->at;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		at++;
	int ret = rc ? index_mdb_errno(rc) : 0;
	if (!ret && (v.mv_size != m->len || memcmp(v.mv_data, m->val, m->len)))
		ret = -ESTALE;
	if (!ret)
		ret = index_mdb_errno(mdb_cursor_del(cur, 0));
	mdb_cursor_close(cur);
	if (ret)
		return ret;
	uint64_t kb = htobe64(m->group);
	k = (MDB_val){.mv_size = 8, .mv_data = &kb};
	v = (MDB_val){.mv_size = m->len, .mv_data = (void *)m->val};
	return index_mdb_errno(mdb_put(txn, m->dbi, &k, &v, MDB_NOOVERWRITE));
}

/* Committed: the tables take the record's entries as a load would (not a
 * change: nothing is marked dirty). */
static void take_record(struct vswap_store *s, const struct misplaced *m)
{
	uint64_t first = m->group * GROUP_PAGES;
	if (m->db == DB_STAGING) {
		struct staging_view sv;
		staging_decode(s, m->key_group, m->val, m->len, &sv);
		/* weigh_staging() refused a page beyond the regions. */
		s->staged[m->group] = sv.staged;
		s->summed[m->group] = sv.summed;
		for (uint64_t w = sv.summed; w; w &= w - 1) {
			unsigned bit = (unsigned)__builtin_ctzll(w);
			ssum_set(s, first + bit, staging_view_sum(&sv, bit));
		}
		s->n_staged += (uint64_t)__builtin_popcountll(sv.staged);
		return;
	}
	struct group_view gv;
	unsigned n = 0;
	group_decode(s, m->key_group, m->val, m->len, &gv);
	for (unsigned i = 0; i < GROUP_PAGES; i++) {
		if (!(gv.mask >> i & 1))
			continue;
		uint64_t slot, sum;
		uint32_t state;
		group_entry(&gv, n++, &slot, &state, &sum);
		if (slot != UINT64_MAX)
			slot_set_used(s, slot); /* reserved by weigh_group() */
		page_set(s, first + i, pw_make(slot, state), sum);
	}
	bit_clear(s->dirty, m->group);
}

/* Weigh the evidence for the misplaced record of table @db under the key of
 * @key_group and, if @move, put it back under its own key. */
static int misplaced_run(struct vswap_store *s, uint32_t db, uint64_t key_group, bool move,
			 uint64_t *group)
{
	if (move && s->read_only)
		return -EROFS;
	int ret = index_need_all(s);
	if (ret)
		return ret;
	struct misplaced *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->db = db;
	m->dbi = db == DB_PAGES ? s->dbi_pages : s->dbi_staging;
	m->key_group = key_group;
	MDB_txn *txn;
	ret = index_begin(s, move ? 0 : MDB_RDONLY, &txn);
	if (!ret) {
		ret = misplaced_look(s, txn, m);
		if (!ret && move)
			ret = put_back(txn, m);
		if (!ret && move)
			ret = index_mdb_errno(index_txn_commit(s, txn));
		else
			mdb_txn_abort(txn);
	}
	if (!ret && move)
		take_record(s, m);
	if (!ret && group)
		*group = m->group;
	free(m);
	return ret;
}

int vswap_store_check_misplaced(struct vswap_store *s, uint64_t key_group, uint64_t *group)
{
	return misplaced_run(s, DB_PAGES, key_group, false, group);
}

int vswap_store_move_misplaced(struct vswap_store *s, uint64_t key_group, uint64_t *group)
{
	return misplaced_run(s, DB_PAGES, key_group, true, group);
}

int vswap_store_check_misplaced_staging(struct vswap_store *s, uint64_t key_group, uint64_t *group)
{
	return misplaced_run(s, DB_STAGING, key_group, false, group);
}

int vswap_store_move_misplaced_staging(struct vswap_store *s, uint64_t key_group, uint64_t *group)
{
	return misplaced_run(s, DB_STAGING, key_group, true, group);
}

/* SPDX-License-Identifier: MIT */
/*
 * Blobs: small named values an embedder keeps in the store beside the
 * guest's pages (a VMM's saved vCPU state, a working-set record), in an
 * LMDB database of their own ("blobs").  A put or delete is held in memory
 * and written by the next commit, in the same transaction as the page
 * records and the state, so a blob and the pages it describes become
 * durable together.  Each record ends in the index's record check (over the
 * database id, its name and its bytes, seeded with the store seed; see
 * store/record.c and docs/FORMAT.md): a record copied from another store,
 * moved under another name, or damaged fails and is never returned.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "store/internal.h"
#include "util/array.h"

#define BLOB_MAGIC 0x4c425356u /* "VSBL" */
#define BLOB_VERSION 1u
#define BLOB_HDR 16u   /* u32 magic, u32 version, u64 length */
#define BLOB_FRAME 24u /* the header and the u64 check at the end */

struct blob_op {
	char name[VSWAP_BLOB_NAME_MAX + 1];
	uint8_t *rec; /* the record to write; NULL: delete */
	size_t rec_len;
};

struct blob_pending {
	struct blob_op *v;
	size_t n, cap;
};

static int name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > VSWAP_BLOB_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

/* The check of record @rec (@len bytes, the check excluded) named @name. */
static uint64_t record_sum(const struct vswap_store *s, const char *name, const uint8_t *rec,
			   size_t len)
{
	return index_record_check(s, DB_BLOBS, name, strlen(name), rec, len);
}

int blob_db_open(struct vswap_store *s, MDB_txn *txn)
{
	int rc = mdb_dbi_open(txn, "blobs", s->read_only ? 0 : MDB_CREATE, &s->dbi_blobs);

	/* A store made before blobs existed: none to read. */
	s->have_blobs = rc == 0;
	return rc == MDB_NOTFOUND && s->read_only ? 0 : rc;
}

bool blob_pending(const struct vswap_store *s)
{
	return s->blobs && s->blobs->n;
}

int blob_commit_txn(struct vswap_store *s, MDB_txn *txn)
{
	if (!blob_pending(s))
		return 0;
	for (size_t i = 0; i < s->blobs->n; i++) {
		struct blob_op *op = &s->blobs->v[i];
		MDB_val k = {.mv_size = strlen(op->name), .mv_data = op->name};
		int rc;

		if (op->rec) {
			MDB_val d = {.mv_size = op->rec_len, .mv_data = op->rec};

			rc = mdb_put(txn, s->dbi_blobs, &k, &d, 0);
		} else {
			rc = mdb_del(txn, s->dbi_blobs, &k, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
		if (rc)
			return rc;
	}
	return 0;
}

static void ops_free(struct blob_pending *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].rec);
	p->n = 0;
}

void blob_committed(struct vswap_store *s)
{
	ops_free(s->blobs);
}

void blob_free(struct vswap_store *s)
{
	ops_free(s->blobs);
	ops_free(s->blobs_taken);
	if (s->blobs)
		free(s->blobs->v);
	if (s->blobs_taken)
		free(s->blobs_taken->v);
	free(s->blobs);
	free(s->blobs_taken);
	s->blobs = s->blobs_taken = NULL;
}

static struct blob_op *ops_find(const struct blob_pending *p, const char *name)
{
	for (size_t i = 0; p && i < p->n; i++)
		if (!strcmp(p->v[i].name, name))
			return &p->v[i];
	return NULL;
}

/* The latest operation on @name not landed yet (pending, or taken by a
 * split commit in flight), or NULL. */
static struct blob_op *pending_find(const struct vswap_store *s, const char *name)
{
	struct blob_op *op = ops_find(s->blobs, name);
	return op ? op : ops_find(s->blobs_taken, name);
}

int blob_take(struct vswap_store *s, MDB_txn *txn)
{
	int rc = blob_commit_txn(s, txn);
	if (rc || !blob_pending(s))
		return rc;
	/* The lists trade places: what is pending now is the taken one's
	 * (empty) list, its storage kept. */
	struct blob_pending *t = s->blobs_taken;
	s->blobs_taken = s->blobs;
	s->blobs = t;
	return 0;
}

void blob_taken_end(struct vswap_store *s, bool landed)
{
	struct blob_pending *t = s->blobs_taken;
	if (!t || !t->n)
		return;
	if (!landed && !blob_pending(s)) { /* nothing newer: trade back */
		s->blobs_taken = s->blobs;
		s->blobs = t;
		return;
	}
	for (size_t i = 0; i < t->n && !landed; i++) {
		struct blob_op *op = &t->v[i];
		struct blob_pending *p = s->blobs;
		/* A newer operation on the name replaces this one. */
		if (ops_find(p, op->name))
			continue;
		if (ARRAY_RESERVE(p->v, p->cap, p->n + 1, 8)) {
			store_log(s, VSWAP_LOG_ERROR,
				  "%s: blob \"%s\": its commit failed and no memory is left to "
				  "keep it pending: not stored",
				  s->index_path, op->name);
			continue;
		}
		p->v[p->n++] = *op;
		op->rec = NULL;
	}
	ops_free(t);
}

/* Replace @name's pending operation (or add one) by @rec (NULL: delete). */
static int pending_set(struct vswap_store *s, const char *name, uint8_t *rec, size_t len)
{
	struct blob_op *op = ops_find(s->blobs, name);

	if (!op) {
		struct blob_pending *p = s->blobs;

		if (!p && !(p = s->blobs = calloc(1, sizeof(*p))))
			return -ENOMEM;
		if (ARRAY_RESERVE(p->v, p->cap, p->n + 1, 8))
			return -ENOMEM;
		op = &p->v[p->n++];
		snprintf(op->name, sizeof(op->name), "%s", name);
		op->rec = NULL;
	}
	free(op->rec);
	op->rec = rec;
	op->rec_len = len;
	return 0;
}

int vswap_store_blob_put(struct vswap_store *s, const char *name, const void *data, size_t len)
{
	if (!s || name_ok(name) || (len && !data))
		return -EINVAL;
	if (s->read_only)
		return -EROFS;
	if (len > VSWAP_BLOB_MAX)
		return -EFBIG;
	uint8_t *rec = malloc(BLOB_FRAME + len);

	if (!rec)
		return -ENOMEM;
	uint32_t magic = htole32(BLOB_MAGIC), ver = htole32(BLOB_VERSION);
	uint64_t l = htole64(len);

	memcpy(rec, &magic, 4);
	memcpy(rec + 4, &ver, 4);
	memcpy(rec + 8, &l, 8);
	if (len)
		memcpy(rec + BLOB_HDR, data, len);
	uint64_t sum = htole64(record_sum(s, name, rec, BLOB_HDR + len));

	memcpy(rec + BLOB_HDR + len, &sum, 8);
	int rc = pending_set(s, name, rec, BLOB_FRAME + len);

	if (rc)
		free(rec);
	return rc;
}

/* Check record @d of @name: 0 and its value, or -EBADMSG (logged). */
static int record_check(const struct vswap_store *s, const char *name, const MDB_val *d,
			const uint8_t **val, size_t *len)
{
	const uint8_t *rec = d->mv_data;
	uint32_t magic, ver;
	uint64_t sum, l;

	if (d->mv_size < BLOB_FRAME)
		goto bad;
	memcpy(&magic, rec, 4);
	memcpy(&ver, rec + 4, 4);
	memcpy(&l, rec + 8, 8);
	memcpy(&sum, rec + d->mv_size - 8, 8);
	if (le32toh(magic) != BLOB_MAGIC || le32toh(ver) != BLOB_VERSION ||
	    le64toh(l) != d->mv_size - BLOB_FRAME ||
	    le64toh(sum) != record_sum(s, name, rec, d->mv_size - 8))
		goto bad;
	*val = rec + BLOB_HDR;
	*len = d->mv_size - BLOB_FRAME;
	return 0;
bad:
	store_log(s, VSWAP_LOG_ERROR, "%s: blob \"%s\" fails its checksum: not used", s->index_path,
		  name);
	return -EBADMSG;
}

/* Look @name up in the index (not the pending puts): 0 with *d, or -ENOENT
 * or another error.  The value lives until @txn ends. */
static int stored_get(struct vswap_store *s, MDB_txn *txn, const char *name, MDB_val *d)
{
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};

	if (!s->have_blobs)
		return -ENOENT;
	int rc = mdb_get(txn, s->dbi_blobs, &k, d);

	return rc == MDB_NOTFOUND ? -ENOENT : rc ? -EIO : 0;
}

int vswap_store_blob_get(struct vswap_store *s, const char *name, void **data, size_t *len)
{
	if (!s || name_ok(name) || !data || !len)
		return -EINVAL;
	const struct blob_op *op = pending_find(s, name);
	const uint8_t *val;
	size_t vlen;
	MDB_txn *txn = NULL;
	MDB_val d;
	int rc;

	if (op) {
		if (!op->rec)
			return -ENOENT;
		val = op->rec + BLOB_HDR;
		vlen = op->rec_len - BLOB_FRAME;
	} else {
		if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
			return -EIO;
		rc = stored_get(s, txn, name, &d);
		if (!rc)
			rc = record_check(s, name, &d, &val, &vlen);
		if (rc) {
			mdb_txn_abort(txn);
			return rc;
		}
	}
	*data = malloc(vlen ? vlen : 1);
	if (*data) {
		memcpy(*data, val, vlen);
		*len = vlen;
	}
	if (txn)
		mdb_txn_abort(txn);
	return *data ? 0 : -ENOMEM;
}

int vswap_store_blob_delete(struct vswap_store *s, const char *name)
{
	if (!s || name_ok(name))
		return -EINVAL;
	if (s->read_only)
		return -EROFS;
	const struct blob_op *op = pending_find(s, name);
	bool exists = op && op->rec;

	if (!op) {
		MDB_txn *txn;
		MDB_val d;

		if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
			return -EIO;
		int rc = stored_get(s, txn, name, &d);

		mdb_txn_abort(txn);
		if (rc && rc != -ENOENT)
			return rc;
		exists = rc == 0;
	}
	if (!exists)
		return -ENOENT;
	return pending_set(s, name, NULL, 0);
}

int vswap_store_foreach_blob(struct vswap_store *s, vswap_blob_fn fn, void *ctx)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, d;
	int rc, ret = 0;

	if (!s || !fn)
		return -EINVAL;
	if (!s->have_blobs)
		return 0;
	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
		return -EIO;
	if (mdb_cursor_open(txn, s->dbi_blobs, &cur)) {
		mdb_txn_abort(txn);
		return -EIO;
	}
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0 && !ret;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		char name[VSWAP_BLOB_NAME_MAX + 1];
		const uint8_t *val;
		size_t vlen = 0;
		int st;

		if (k.mv_size == 0 || k.mv_size > VSWAP_BLOB_NAME_MAX) {
			ret = fn(ctx, "", d.mv_size, -EBADMSG);
			continue;
		}
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = 0;
		st = name_ok(name) ? -EBADMSG : record_check(s, name, &d, &val, &vlen);
		ret = fn(ctx, name, st ? d.mv_size : vlen, st);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return ret;
}

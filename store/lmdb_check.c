/* SPDX-License-Identifier: MIT */
/*
 * The index's LMDB pages bounded before LMDB uses them.
 *
 * LMDB trusts its data file.  It reads a node's key and data sizes, a
 * branch node's child page number, an overflow run's page count and the
 * free list's page numbers as they are, so one damaged byte inside a page
 * makes a reader touch memory past the file (SIGBUS, SIGSEGV), makes it
 * skip records without a word (a page's key count is computed from its
 * `lower` offset), or makes the first write transaction overwrite a live
 * page (a data size that node deletion trusts; a free page that is also
 * reachable).  vswap_store_open() runs inside embedding VMMs and the tools
 * must never die on a damaged file, so the store walks the whole B-tree
 * forest of the meta page LMDB will use, through a read-only mapping of
 * its own, before LMDB maps the file, and refuses (-EUCLEAN, "bad index")
 * a file that breaks any rule below.  The walk is linear in the pages of
 * the file and reads each page once.  A lazily loaded index may leave the
 * leaves of `pages` (almost all of a large index) for later: see
 * index_lmdb_check_deferred() in store/internal.h for when they must be
 * checked.
 *
 * LMDB 0.9's data file (host byte order; every page @psize bytes; page N
 * at offset N * psize; pages 0 and 1 are the meta pages):
 *
 *   page header   u64 pgno, u16 pad, u16 flags, u16 lower, u16 upper
 *                 (an overflow page's u32 page count overlays lower and
 *                 upper); 16 bytes, then u16 node offsets (from the page's
 *                 start), (lower - 16) / 2 of them
 *   flags         P_BRANCH 0x01, P_LEAF 0x02, P_OVERFLOW 0x04, P_META 0x08;
 *                 P_DIRTY 0x10, P_LEAF2 0x20, P_SUBP 0x40, P_LOOSE 0x4000
 *                 and P_KEEP 0x8000 exist only in memory or in DUPSORT
 *                 databases, which vswap does not use
 *   node          u16 lo, u16 hi, u16 flags, u16 key size, key, data; on
 *                 a leaf the data size is lo | hi << 16; on a branch the
 *                 child page is lo | hi << 16 | flags << 32; node flags
 *                 F_BIGDATA 0x01 (the data is the u64 first page of an
 *                 overflow run), F_SUBDATA 0x02 (a named database: the data
 *                 is its 48-byte db record), F_DUPDATA 0x04 (DUPSORT only)
 *   db record     u32 pad, u16 flags, u16 depth, u64 branch pages, u64
 *                 leaf pages, u64 overflow pages, u64 entries, u64 root
 *                 (UINT64_MAX: empty)
 *   meta          at offset 16 of pages 0 and 1: u32 magic, u32 version,
 *                 u64 address, u64 map size, db record of the free DB (its
 *                 pad holds the page size), of the main DB, u64 last page,
 *                 u64 txnid.  LMDB uses the meta of the larger txnid (meta
 *                 0 on a tie).
 *   free DB       key: the u64 txnid that freed the pages (integer order);
 *                 data: u64 count n, then n page numbers in descending
 *                 order (a record reserved but not filled has n = 0 and
 *                 room to spare)
 *   keys          1 to 511 bytes, in memcmp order, shorter first on a tie
 *                 (the main DB and vswap's named DBs); a branch page's
 *                 first key is unused, and every key under its child i lies
 *                 in [key i, key i+1).
 *
 * What is checked, for the main DB, every named DB found in it and the
 * free DB: each page number within [2, last page], met once, with its own
 * number in its header and the flags of its role; lower and upper inside
 * the page and ordered; at least one node; every node offset even, inside
 * the node area, its key and inline data inside the page, and the nodes
 * (each rounded up to an even size) filling the node area exactly, as
 * LMDB keeps it; overflow runs inside [2, last page], headed by an
 * overflow page of their own number, long enough for their data; keys of
 * 1-511 bytes; every leaf at the same depth, no deeper than LMDB's cursor
 * stack, equal to the db record's depth; the number of leaf nodes equal
 * to the record's entry count (the count is what catches records a
 * damaged page hides); db records of vswap's databases without ordering
 * flags; free-list records well formed, their pages in range, descending,
 * and neither reachable nor listed twice.  Keys strictly increasing within
 * a page and inside the bounds of the branch key that leads to it: a
 * strict open refuses disorder, a tolerant one reads on (below).  The page
 * counts of a db record are not checked: LMDB keeps them for statistics
 * only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store/internal.h"
#include "util/array.h"

#define PAGE_HDR 16u
#define NODE_HDR 8u
#define DB_RECORD 48u
#define META_OFF PAGE_HDR
#define NUM_METAS 2u
#define MAX_KEY 511u
#define CURSOR_STACK 32u
#define P_INVALID UINT64_MAX

#define P_BRANCH 0x01u
#define P_LEAF 0x02u
#define P_OVERFLOW 0x04u
#define F_BIGDATA 0x01u
#define F_SUBDATA 0x02u
/* Flags of a db record that change its key order or make it DUPSORT
 * (MDB_REVERSEKEY, MDB_DUPSORT, MDB_INTEGERKEY, MDB_DUPFIXED, ...). */
#define DB_ORDER_FLAGS 0x7eu

struct db_record {
	uint16_t flags, depth;
	uint64_t entries, root;
};

/* One database being walked. */
struct tree {
	const char *name; /* for messages */
	bool integer_keys;
	bool main;	  /* leaves may hold named databases */
	bool free_db;	  /* leaves hold free-page lists */
	unsigned depth;	  /* of the leaves, once one is met */
	uint64_t entries; /* leaf nodes met */
	/* Deferred (the `pages` database of index_lmdb_check_deferred()):
	 * the leaves, at the record's depth, are claimed but read later. */
	bool defer;
	unsigned record_depth;
};

/* A key bound: @len bytes at @p, or none when @p is NULL. */
struct key {
	const uint8_t *p;
	size_t len;
};

/* A free-list value to check once every reachable page is known. */
struct free_list {
	const uint8_t *p;
	size_t len;
	uint64_t txnid, pgno;
};

/* A leaf left for later: its page and the bounds of its keys. */
struct leaf {
	uint64_t pgno;
	struct key lo, hi;
	bool checked, bad;
	unsigned nodes; /* once checked */
};

struct walk {
	const struct vswap_store *s;
	const uint8_t *map;
	size_t map_len;
	uint64_t psize, npages, txnid;
	uint64_t meta_pgno; /* the meta page in use: where the roots are named */
	uint64_t *seen;	    /* bitmap: page reachable (or, later, free) */
	struct free_list *fl;
	size_t nfl, flcap;
	char disorder[200]; /* the first key out of order, if any */
	bool disorder_told;
	bool disorder_here; /* met by the page being checked */
	/* Deferred: the `pages` tree, its record and its leaves in key order. */
	bool defer;
	struct tree pages;
	struct db_record pages_rec;
	struct leaf *leaves;
	size_t nleaves, leafcap, unchecked;
};

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}
static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}
static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static void db_record_read(const uint8_t *p, struct db_record *d)
{
	d->flags = rd16(p + 4);
	d->depth = rd16(p + 6);
	d->entries = rd64(p + 32);
	d->root = rd64(p + 40);
}

__attribute__((format(printf, 4, 5))) static int bad(const struct walk *w, const struct tree *t,
						     uint64_t pgno, const char *fmt, ...)
{
	char why[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	store_log(w->s, VSWAP_LOG_ERROR, "%s: bad index: LMDB page %llu (%s database): %s",
		  w->s->index_path, (unsigned long long)pgno, t ? t->name : "meta", why);
	return -EUCLEAN;
}

static int key_cmp(const struct tree *t, const uint8_t *a, size_t alen, const uint8_t *b,
		   size_t blen)
{
	if (t->integer_keys) { /* both 8 bytes: checked where they are read */
		uint64_t x = rd64(a), y = rd64(b);
		return x < y ? -1 : x > y;
	}
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c ? c : alen < blen ? -1 : alen > blen;
}

/* Mark @n pages from @pgno reachable; false if one is out of range or was
 * met before. */
static int claim(struct walk *w, const struct tree *t, uint64_t from, uint64_t pgno, uint64_t n)
{
	if (pgno < NUM_METAS || pgno >= w->npages || n > w->npages - pgno)
		return bad(w, t, from,
			   "names page %llu (%llu pages), outside the file's pages 2-%llu",
			   (unsigned long long)pgno, (unsigned long long)n,
			   (unsigned long long)(w->npages - 1));
	for (uint64_t i = pgno; i < pgno + n; i++) {
		if (bit_test(w->seen, i))
			return bad(w, t, from, "page %llu is reached twice", (unsigned long long)i);
		bit_set(w->seen, i);
	}
	return 0;
}

/* The overflow run at @pgno holding @dsize bytes; its data in *@data. */
static int overflow_run(struct walk *w, const struct tree *t, uint64_t from, uint64_t pgno,
			uint64_t dsize, const uint8_t **data)
{
	if (pgno < NUM_METAS || pgno >= w->npages)
		return bad(w, t, from, "overflow page %llu is outside the file's pages 2-%llu",
			   (unsigned long long)pgno, (unsigned long long)(w->npages - 1));
	const uint8_t *p = w->map + pgno * w->psize;
	uint64_t n = rd32(p + 12);
	uint64_t need = (PAGE_HDR - 1 + dsize) / w->psize + 1;
	if (rd64(p) != pgno || rd16(p + 10) != P_OVERFLOW)
		return bad(w, t, from, "overflow page %llu has the header of page %llu, flags %#x",
			   (unsigned long long)pgno, (unsigned long long)rd64(p), rd16(p + 10));
	if (n < need)
		return bad(w, t, from, "overflow run %llu has %llu pages for %llu bytes",
			   (unsigned long long)pgno, (unsigned long long)n,
			   (unsigned long long)dsize);
	*data = p + PAGE_HDR;
	return claim(w, t, from, pgno, n);
}

static int walk_tree(struct walk *w, struct tree *t, const struct db_record *d);
static int disorder_verdict(struct walk *w);

/* A named database's record in a leaf of the main DB. */
static int named_db(struct walk *w, uint64_t pgno, const uint8_t *key, size_t klen,
		    const uint8_t *data)
{
	char name[64];
	size_t n = klen < sizeof(name) - 1 ? klen : sizeof(name) - 1;
	for (size_t i = 0; i < n; i++)
		name[i] = key[i] >= 0x20 && key[i] < 0x7f ? (char)key[i] : '?';
	name[n] = 0;
	struct db_record d;
	db_record_read(data, &d);
	struct tree sub = {.name = name};
	if (d.flags & DB_ORDER_FLAGS)
		return bad(w, &sub, pgno, "database flags %#x (vswap uses none)", d.flags);
	if (w->defer && klen == 5 && !memcmp(key, "pages", 5) && !w->pages.name) {
		w->pages = (struct tree){.name = "pages", .defer = true, .record_depth = d.depth};
		w->pages_rec = d;
		return walk_tree(w, &w->pages, &d);
	}
	return walk_tree(w, &sub, &d);
}

/* The nodes of one leaf page. */
static int leaf_nodes(struct walk *w, struct tree *t, uint64_t pgno, const uint8_t *p, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *nd = p + rd16(p + PAGE_HDR + 2 * i);
		uint32_t dsize = rd16(nd) | (uint32_t)rd16(nd + 2) << 16;
		uint16_t nflags = rd16(nd + 4), klen = rd16(nd + 6);
		const uint8_t *key = nd + NODE_HDR, *data = key + klen;
		uint16_t allowed = t->main ? F_BIGDATA | F_SUBDATA : F_BIGDATA;
		if (nflags & ~allowed || nflags == (F_BIGDATA | F_SUBDATA))
			return bad(w, t, pgno, "node %u has flags %#x", i, nflags);
		uint64_t inline_len = nflags & F_BIGDATA ? 8 : dsize;
		if ((uint64_t)(data - p) + inline_len > w->psize)
			return bad(w, t, pgno,
				   "node %u (key %u bytes, data %llu bytes) runs past the page", i,
				   klen, (unsigned long long)inline_len);
		if (nflags & F_BIGDATA) {
			int ret = overflow_run(w, t, pgno, rd64(data), dsize, &data);
			if (ret)
				return ret;
		}
		if ((nflags & F_SUBDATA) && dsize != DB_RECORD)
			return bad(w, t, pgno, "named database node %u holds %u bytes", i, dsize);
		if (t->free_db) {
			if (ARRAY_RESERVE(w->fl, w->flcap, w->nfl + 1, 16))
				return -ENOMEM;
			w->fl[w->nfl++] = (struct free_list){data, dsize, rd64(key), pgno};
		}
		if (nflags & F_SUBDATA) {
			int ret = named_db(w, pgno, key, klen, data);
			if (ret)
				return ret;
		}
		t->entries++;
	}
	return 0;
}

/*
 * The page @pgno at @level of @t, every key of it in [@lo, @hi): its
 * header, its nodes' bounds and order, then (a branch) its children.
 */
static int check_page(struct walk *w, struct tree *t, uint64_t pgno, unsigned level, struct key lo,
		      struct key hi);

static int walk_page(struct walk *w, struct tree *t, uint64_t from, uint64_t pgno, unsigned level,
		     struct key lo, struct key hi)
{
	int ret = claim(w, t, from, pgno, 1);
	if (ret)
		return ret;
	if (t->defer && level + 1 == t->record_depth) {
		if (ARRAY_RESERVE(w->leaves, w->leafcap, w->nleaves + 1, 64))
			return -ENOMEM;
		w->leaves[w->nleaves++] = (struct leaf){.pgno = pgno, .lo = lo, .hi = hi};
		w->unchecked++;
		return 0;
	}
	return check_page(w, t, pgno, level, lo, hi);
}

/* The page @pgno (claimed) at @level of @t, every key in [@lo, @hi). */
static int check_page(struct walk *w, struct tree *t, uint64_t pgno, unsigned level, struct key lo,
		      struct key hi)
{
	int ret;
	const uint8_t *p = w->map + pgno * w->psize;
	uint16_t flags = rd16(p + 10), lower = rd16(p + 12), upper = rd16(p + 14);
	if (rd64(p) != pgno)
		return bad(w, t, pgno, "holds the header of page %llu",
			   (unsigned long long)rd64(p));
	if (flags != P_BRANCH && flags != P_LEAF)
		return bad(w, t, pgno, "flags %#x: neither a branch nor a leaf page", flags);
	if (level >= CURSOR_STACK)
		return bad(w, t, pgno, "deeper than %u levels", CURSOR_STACK);
	if (lower < PAGE_HDR + 2 || (lower & 1) || lower > upper || upper > w->psize)
		return bad(w, t, pgno, "lower %u, upper %u: not a page's layout", lower, upper);
	unsigned n = (lower - PAGE_HDR) / 2;
	bool branch = flags == P_BRANCH;
	if (!branch) {
		if (!t->depth)
			t->depth = level + 1;
		if (t->depth != level + 1)
			return bad(w, t, pgno, "a leaf at depth %u, others at %u", level + 1,
				   t->depth);
	}
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	uint64_t used = 0; /* bytes of the nodes, each rounded up to even */
	for (unsigned i = 0; i < n; i++) {
		uint16_t off = rd16(p + PAGE_HDR + 2 * i);
		if ((off & 1) || off < upper || off > w->psize - NODE_HDR)
			return bad(w, t, pgno, "node %u at offset %u, outside %u-%llu", i, off,
				   upper, (unsigned long long)w->psize);
		const uint8_t *nd = p + off;
		uint16_t klen = rd16(nd + 6);
		if (off + NODE_HDR + klen > w->psize)
			return bad(w, t, pgno, "node %u's key (%u bytes) runs past the page", i,
				   klen);
		uint64_t size = NODE_HDR + klen;
		if (!branch)
			size += rd16(nd + 4) & F_BIGDATA
				    ? 8
				    : (rd16(nd) | (uint64_t)rd16(nd + 2) << 16);
		used += (size + 1) & ~(uint64_t)1;
		if (branch && i == 0)
			continue; /* its key is unused */
		if (!klen || klen > MAX_KEY || (t->integer_keys && klen != 8))
			return bad(w, t, pgno, "node %u has a key of %u bytes", i, klen);
		const uint8_t *key = nd + NODE_HDR;
		if ((prev && key_cmp(t, key, klen, prev, prev_len) <= 0) ||
		    (lo.p && key_cmp(t, key, klen, lo.p, lo.len) < 0) ||
		    (hi.p && key_cmp(t, key, klen, hi.p, hi.len) >= 0)) {
			/* The free DB's order decides which pages a writer
			 * reuses: no disorder there. */
			if (t->free_db)
				return bad(w, t, pgno, "node %u's key is out of order", i);
			w->disorder_here = true;
			if (!w->disorder[0])
				snprintf(w->disorder, sizeof(w->disorder),
					 "LMDB page %llu (%s database): node %u's key is out of "
					 "order",
					 (unsigned long long)pgno, t->name, i);
		}
		prev = key;
		prev_len = klen;
	}
	/* LMDB keeps the node area packed (a node added or removed moves the
	 * others): a size that disagrees is damage, and node deletion, which
	 * moves bytes by the size it reads, would overwrite the neighbours. */
	if (used != w->psize - upper)
		return bad(w, t, pgno, "its %u nodes take %llu bytes, its node area %u", n,
			   (unsigned long long)used, (unsigned)(w->psize - upper));
	if (!branch)
		return leaf_nodes(w, t, pgno, p, n);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *nd = p + rd16(p + PAGE_HDR + 2 * i);
		uint64_t child =
		    rd16(nd) | (uint64_t)rd16(nd + 2) << 16 | (uint64_t)rd16(nd + 4) << 32;
		struct key clo = lo, chi = hi;
		if (i > 0)
			clo = (struct key){nd + NODE_HDR, rd16(nd + 6)};
		if (i + 1 < n) {
			const uint8_t *next = p + rd16(p + PAGE_HDR + 2 * (i + 1));
			chi = (struct key){next + NODE_HDR, rd16(next + 6)};
		}
		if ((ret = walk_page(w, t, pgno, child, level + 1, clo, chi)))
			return ret;
	}
	return 0;
}

static int walk_tree(struct walk *w, struct tree *t, const struct db_record *d)
{
	if (d->root == P_INVALID) {
		if (d->entries || d->depth)
			return bad(w, t, w->meta_pgno, "empty, with %llu entries and depth %u",
				   (unsigned long long)d->entries, d->depth);
		return 0;
	}
	struct key none = {NULL, 0};
	int ret = walk_page(w, t, w->meta_pgno, d->root, 0, none, none);
	if (ret || t->defer) /* a deferred tree is counted when its leaves are */
		return ret;
	if (t->entries != d->entries || t->depth != d->depth)
		return bad(w, t, d->root,
			   "its root's tree holds %llu entries in %u levels, its record says "
			   "%llu in %u",
			   (unsigned long long)t->entries, t->depth, (unsigned long long)d->entries,
			   d->depth);
	return 0;
}

/* The free-list records, once every reachable page is marked. */
static int free_lists(struct walk *w)
{
	struct tree t = {.name = "free"};
	for (size_t i = 0; i < w->nfl; i++) {
		const struct free_list *f = &w->fl[i];
		if (f->txnid > w->txnid)
			return bad(w, &t, f->pgno, "a free list of transaction %llu, after %llu",
				   (unsigned long long)f->txnid, (unsigned long long)w->txnid);
		uint64_t n = f->len >= 8 ? rd64(f->p) : 0;
		if (f->len < 8 || n > f->len / 8 - 1)
			return bad(
			    w, &t, f->pgno,
			    "the free list of transaction %llu counts %llu pages in %zu bytes",
			    (unsigned long long)f->txnid, (unsigned long long)n, f->len);
		uint64_t last = UINT64_MAX;
		for (uint64_t k = 1; k <= n; k++) {
			uint64_t pg = rd64(f->p + 8 * k);
			if (pg >= last || pg < NUM_METAS || pg >= w->npages)
				return bad(w, &t, f->pgno,
					   "the free list of transaction %llu lists page %llu "
					   "(after %llu; pages 2-%llu, descending)",
					   (unsigned long long)f->txnid, (unsigned long long)pg,
					   (unsigned long long)last,
					   (unsigned long long)(w->npages - 1));
			if (bit_test(w->seen, pg))
				return bad(w, &t, f->pgno,
					   "the free list of transaction %llu lists page %llu, "
					   "which is in use",
					   (unsigned long long)f->txnid, (unsigned long long)pg);
			bit_set(w->seen, pg);
			last = pg;
		}
	}
	return 0;
}

static int walk_file(struct walk *wp, int fd, uint64_t file_size)
{
	struct walk w = *wp;
	uint8_t head[2][META_OFF + 136];
	uint64_t psize = 0;
	for (unsigned i = 0; i < NUM_METAS; i++) {
		/* index_file_check() has checked the two meta pages' magic,
		 * version, page size and last page against the file's size. */
		if (pread(fd, head[i], sizeof(head[i]), (off_t)psize) != (ssize_t)sizeof(head[i]))
			return -EIO;
		if (!i)
			psize = rd32(head[0] + META_OFF + 24);
	}
	const uint8_t *m0 = head[0] + META_OFF, *m1 = head[1] + META_OFF;
	const uint8_t *m = rd64(m0 + 128) < rd64(m1 + 128) ? m1 : m0;
	w.meta_pgno = m == m0 ? 0 : 1;
	w.psize = psize;
	w.txnid = rd64(m + 128);
	w.npages = rd64(m + 120) + 1;
	if (w.npages < NUM_METAS || w.npages > file_size / psize)
		return bad(&w, NULL, w.meta_pgno, "last page %llu in a file of %llu pages",
			   (unsigned long long)(w.npages - 1),
			   (unsigned long long)(file_size / psize));
	struct db_record fdb, mdb;
	db_record_read(m + 24, &fdb);
	db_record_read(m + 24 + DB_RECORD, &mdb);
	struct tree free_t = {.name = "free", .integer_keys = true, .free_db = true};
	struct tree main_t = {.name = "main", .main = true};
	if ((fdb.flags & DB_ORDER_FLAGS) != MDB_INTEGERKEY || (mdb.flags & DB_ORDER_FLAGS))
		return bad(&w, NULL, w.meta_pgno, "database flags %#x (free), %#x (main)",
			   fdb.flags, mdb.flags);

	w.map_len = (size_t)(w.npages * psize);
	void *map = mmap(NULL, w.map_len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	w.map = map;
	w.seen = calloc((w.npages + 63) / 64, sizeof(uint64_t));
	int ret = w.seen ? 0 : -ENOMEM;
	if (!ret)
		ret = walk_tree(&w, &main_t, &mdb);
	if (!ret)
		ret = walk_tree(&w, &free_t, &fdb);
	if (!ret)
		ret = free_lists(&w);
	free(w.fl);
	w.fl = NULL;
	*wp = w;
	return ret ? ret : disorder_verdict(wp);
}

static void walk_free(struct walk *w)
{
	free(w->fl);
	free(w->seen);
	free(w->leaves);
	if (w->map)
		munmap((void *)w->map, w->map_len);
}

int index_lmdb_check(const struct vswap_store *s, int fd, uint64_t file_size)
{
	struct walk w = {.s = s};
	int ret = walk_file(&w, fd, file_size);
	walk_free(&w);
	return ret;
}

int index_lmdb_check_deferred(const struct vswap_store *s, int fd, uint64_t file_size,
			      struct lmdb_deferred **out)
{
	struct walk *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->s = s;
	w->defer = true;
	int ret = walk_file(w, fd, file_size);
	if (ret) {
		walk_free(w);
		free(w);
		return ret;
	}
	*out = (struct lmdb_deferred *)w;
	return 0;
}

/*
 * One deferred leaf.  A leaf that fails stays failed (its overflow pages
 * may be claimed already: a second look would only find them twice).  In
 * a strict walk, keys out of order fail the leaf they are in, not the
 * leaves checked after it.
 */
static int check_leaf(struct walk *w, struct leaf *l)
{
	if (l->bad)
		return -EUCLEAN;
	if (l->checked)
		return 0;
	w->disorder_here = false;
	int ret = check_page(w, &w->pages, l->pgno, w->pages.record_depth - 1, l->lo, l->hi);
	if (!ret && w->disorder_here)
		ret = disorder_verdict(w);
	if (ret) {
		l->bad = true;
		return ret;
	}
	l->checked = true;
	l->nodes = (rd16(w->map + l->pgno * w->psize + 12) - PAGE_HDR) / 2;
	w->unchecked--;
	return 0;
}

int index_lmdb_check_rest(struct lmdb_deferred *d)
{
	struct walk *w = (struct walk *)d;
	bool failed = false;
	for (size_t i = 0; i < w->nleaves; i++) {
		int ret = check_leaf(w, &w->leaves[i]);
		if (ret && ret != -EUCLEAN)
			return ret;
		failed |= ret != 0;
	}
	if (failed)
		return -EUCLEAN;
	const struct db_record *r = &w->pages_rec;
	if (w->pages.name && r->root != P_INVALID &&
	    (w->pages.entries != r->entries || w->pages.depth != r->depth))
		return bad(w, &w->pages, r->root,
			   "its root's tree holds %llu entries in %u levels, its record says "
			   "%llu in %u",
			   (unsigned long long)w->pages.entries, w->pages.depth,
			   (unsigned long long)r->entries, r->depth);
	return 0;
}

size_t index_lmdb_key_leaf(const struct lmdb_deferred *d, const void *key, size_t klen)
{
	const struct walk *w = (const struct walk *)d;
	size_t lo = 0, hi = w->nleaves; /* the last leaf whose lower bound <= key */
	if (!hi)
		return 0;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		const struct key *b = &w->leaves[mid].lo;
		if (key_cmp(&w->pages, key, klen, b->p, b->len) >= 0)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int index_lmdb_check_key(struct lmdb_deferred *d, const void *key, size_t klen)
{
	struct walk *w = (struct walk *)d;
	/* With keys out of order (a tolerant open) LMDB's descent need not
	 * follow the bounds: check every leaf. */
	if ((w->s->tolerant && w->disorder[0]) || !w->nleaves)
		return index_lmdb_check_rest(d);
	return check_leaf(w, &w->leaves[index_lmdb_key_leaf(d, key, klen)]);
}

size_t index_lmdb_leaves(const struct lmdb_deferred *d)
{
	return ((const struct walk *)d)->nleaves;
}

int index_lmdb_check_leaf(struct lmdb_deferred *d, size_t i, unsigned *nodes, const void **lo,
			  size_t *lo_len)
{
	struct walk *w = (struct walk *)d;
	struct leaf *l = &w->leaves[i];
	int ret = check_leaf(w, l);
	*nodes = ret ? 0 : l->nodes;
	*lo = l->lo.p;
	*lo_len = l->lo.len;
	return ret;
}

void index_lmdb_deferred_free(struct lmdb_deferred *d)
{
	if (d) {
		walk_free((struct walk *)d);
		free(d);
	}
}

/*
 * A walk that met keys out of order.  They break keyed look-ups (a put may
 * add a second record of a key), not reads in page order, and every key of
 * vswap's databases is covered by its record's check: a tolerant open
 * (vswap-fsck) reads on to report the records by what they hold; any other
 * open refuses.  Logged once.
 */
static int disorder_verdict(struct walk *w)
{
	const struct vswap_store *s = w->s;
	if (!w->disorder[0])
		return 0;
	if (!w->disorder_told)
		store_log(s, s->tolerant ? VSWAP_LOG_WARN : VSWAP_LOG_ERROR, "%s: bad index: %s",
			  s->index_path, w->disorder);
	w->disorder_told = true;
	return s->tolerant ? 0 : -EUCLEAN;
}

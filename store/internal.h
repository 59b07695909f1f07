/* SPDX-License-Identifier: MIT */
/* Internals of store/: the handle and the helpers its files share. */
#ifndef VSWAP_STORE_INTERNAL_H
#define VSWAP_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <vswap/store.h>

#include "store/checksum.h"
#include "store/io.h"
#include "store/layout.h"
#include "store/superblock.h"
#include "util/log.h"

/* Pages an index record covers (store/layout.h). */
#define GROUP_SHIFT STORE_GROUP_SHIFT
#define GROUP_PAGES STORE_GROUP_PAGES

/*
 * The in-memory page word: slot + 1 in the low 30 bits (0 = no slot) and the
 * page state in the top two.  4 bytes a page; with the 8-byte checksum that
 * is 12 bytes a page, plus a bit for staging and a bit per slot.
 */
#define PW_SLOT_BITS 30
#define PW_SLOT_MASK ((1u << PW_SLOT_BITS) - 1)
#define PW_NO_SLOT UINT64_MAX
/* The largest slot number + 2 must fit the 30-bit field. */
#define STORE_MAX_SLOTS ((uint64_t)PW_SLOT_MASK - 1)

static inline uint32_t pw_make(uint64_t slot, enum vswap_page_state st)
{
	uint32_t s1 = slot == PW_NO_SLOT ? 0 : (uint32_t)(slot + 1);
	return s1 | ((uint32_t)st << PW_SLOT_BITS);
}
static inline enum vswap_page_state pw_state(uint32_t w)
{
	return (enum vswap_page_state)(w >> PW_SLOT_BITS);
}
static inline bool pw_has_slot(uint32_t w)
{
	return (w & PW_SLOT_MASK) != 0;
}
static inline uint64_t pw_slot(uint32_t w)
{
	return (w & PW_SLOT_MASK) ? (uint64_t)(w & PW_SLOT_MASK) - 1 : PW_NO_SLOT;
}

/* Database ids bound into record checks (store/record.c). */
#define DB_META 1u
#define DB_PAGES 2u
#define DB_STAGING 3u
#define DB_BLOBS 4u
/* Page-group value: u64 group, u64 mask, 16-byte entries, u64 check. */
#define PG_HEAD 16u
#define PG_ENTRY 16u
/* Staging value: u64 group, u64 staged, u64 summed, u64 sums, u64 check. */
#define SG_HEAD 24u
#define PG_VALUE_MAX (PG_HEAD + PG_ENTRY * GROUP_PAGES + 8)
#define SG_VALUE_MAX (SG_HEAD + 8 * GROUP_PAGES + 8)

/* A decoded page-group value (points into the LMDB value). */
struct group_view {
	uint64_t group; /* the record's own group (the key's unless misplaced) */
	uint64_t mask;
	const uint8_t *entries;
};

/* A decoded staging value. */
struct staging_view {
	uint64_t group;
	uint64_t staged, summed;
	const uint8_t *sums;
};

/* Growable array of slot numbers (slots freed since the last commit). */
struct slot_vec {
	uint64_t *v;
	size_t n, cap;
};

/* Page ranges whose staging bytes are punched at the next commit. */
struct range_vec {
	struct {
		uint64_t first, count;
	} * v;
	size_t n, cap;
};

/*
 * A commit split in halves (vswap_store_commit_begin/_write/_end, write.c):
 * what the begin took from the tables, for the write to make durable
 * without the caller's lock.  Between begin and end the groups it took
 * count as uncommitted for the slot allocator (@committing), and the slots
 * and staging bytes it set aside are released only by the end of a commit
 * that landed.
 */
struct commit_snap {
	bool active;   /* between begin and end */
	MDB_txn *txn;  /* begun by begin, committed (or aborted) by write */
	uint8_t *recs; /* per group: a head, its pages (raw or a record), its staging record */
	size_t len, cap;
	size_t touched; /* bytes of @recs known to be backed by memory (index_snap_prepare()) */
	uint64_t *committing;  /* bitmap: groups in the snapshot */
	struct slot_vec freed; /* freed before the begin: reusable after the commit */
	struct range_vec unpunched;
	bool sync; /* the swap file has bytes to sync first */
	bool cached, meta;
	uint64_t pending;
	int sync_failed; /* the write's data sync failed: sticky at the end */
	/* Staging bytes the landed commit lets go, punched by
	 * vswap_store_commit_punch() without the caller's lock: runs of pages
	 * unstaged at the end; none may be staged again until the punch is
	 * over (@punch_due: vswap_store_stage_mark() says -EBUSY). */
	struct range_vec punch;
	atomic_bool punch_due;
};

struct vswap_store {
	char *path;
	char *index_path;
	char *staging_path;
	int fd;		/* swap file */
	int dfd;	/* the same file opened O_DIRECT (writes, fault reads), or -1 */
	int lock_fd;	/* holds the flock; never used for I/O (see lock_store) */
	int staging_fd; /* -1 when a read-only open found none */
	bool read_only;
	bool tolerant;
	bool unlinked; /* creating: the swap file has no name yet */
	/* creating: what this creation made (removed if it fails) and the
	 * index's descriptor holding the creation's flock */
	bool made_swap, made_index, made_lock, made_staging;
	int index_fd;
	bool was_clean;
	/* the clean record read intact, saying unclean (store.c skips
	 * writing it again at open) */
	bool recorded_unclean;
	/* A lazy open left the unclean record to the store's first change
	 * (store.c: open_store): every write transaction carries it until one
	 * of them lands, and bytes go to the swap file only after that
	 * (index_record_unclean()).  Read by the thread that commits a split
	 * commit without the caller's lock, hence atomic. */
	atomic_bool unclean_due;
	enum vswap_durability durability;
	struct logger log;

	struct vswap_superblock sb;
	uint64_t seed;	  /* store seed: XXH3-64 of the UUID (store/checksum.h) */
	uint32_t damaged; /* VSWAP_DAMAGED_* of a tolerant open */
	uint32_t page_size;
	unsigned page_shift;
	uint32_t state;

	unsigned nregions;
	uint64_t *region_pages;
	uint64_t total_pages;

	/* Hot state: the index's content, in memory. */
	uint32_t *pages;  /* page word per page */
	uint64_t *sums;	  /* XXH3-64 per page (of its slot's bytes) */
	uint64_t *staged; /* bitmap: page is staged */
	uint64_t *summed; /* bitmap: the staged copy's checksum is known */
	uint64_t *ssums;  /* checksum per page of its staged copy (mapped: tables.c) */
	size_t ssums_bytes;
	bool ssums_held; /* written since last given back (tables_ssums_release()) */
	/* Staged copies a previous handle left that no check has read yet
	 * (a writable open leaves that to their first use: staging_check());
	 * a subset of `staged`, NULL once empty. */
	uint64_t *unverified;
	uint64_t n_unverified;
	uint8_t *check_buf; /* the check's reads (STAGING_CHECK_RUN pages), with the bitmap */
	uint64_t unverified_failed; /* failures found, for the log's first few */
	uint64_t *slot_used;	    /* bitmap: slot allocated or freed-uncommitted */
	/* Bitmap: a free slot that may still hold bytes (freed by a commit
	 * that landed, or left by an abandoned write).  The allocator reuses
	 * it as it is (the new bytes overwrite the old); slots_punch_free()
	 * punches those left, at a clean close.  Free slots of a previous
	 * handle that hold bytes are not known here: after a crash a writable
	 * open takes every free slot as unpunched (inherit_unpunched). */
	uint64_t *slot_unpunched;
	uint64_t n_unpunched;
	/* Opened unclean: the free slots below the file's end are not yet in
	 * slot_unpunched (slots_inherit_unpunched()). */
	bool inherit_unpunched;
	/* A write failed with ENOSPC: no fresh runs for split writes any
	 * more (fresh_run_better(), write.c). */
	bool fresh_runs_off;
	uint64_t slot_cap;  /* bits in slot_used */
	uint64_t slots_end; /* one past the highest slot in use */
	uint64_t free_hint; /* no free slot below this */
	uint64_t slots_used;
	uint64_t *dirty; /* bitmap: group changed since the last commit */
	/* Bitmap: of the dirty groups, those whose change is to staging only
	 * (group_mark_staging_dirty()): their page record is as the index
	 * has it and the commit leaves it alone.  Meaningful where dirty is
	 * set; wherever dirty is set otherwise, these bits are cleared. */
	uint64_t *sg_only;
	uint64_t ngroups;
	bool meta_dirty;
	bool data_unsynced; /* bytes written since the last sync */
	bool cached_writes; /* buffered writes since the last commit */
	uint64_t pending_pages;
	struct slot_vec freed;	    /* reusable after the next commit */
	struct range_vec unpunched; /* staging bytes to punch at the commit */
	int sync_error;		    /* a failed data sync: no commit may follow */
	pid_t pid;		    /* the process that opened the handle */

	/* Tolerant opens: records left out of the tables (a slot owned twice,
	 * out of range).  They are written back when their group is rewritten,
	 * until a state change of their page replaces them. */
	struct vswap_page_record *leftout;
	size_t nleftout, leftout_cap;

	/* Counts kept up to date as pages change state. */
	uint64_t n_present, n_stale, n_lost, n_staged;
	uint64_t bytes_written, bytes_read, checksum_failures, commits;

	/* Scratch for the write and read paths, grown on demand. */
	uint64_t *scratch_slots;
	uint64_t *scratch_sums;
	struct vswap_io_req *scratch_reqs;
	size_t scratch_cap;

	MDB_env *env;
	MDB_dbi dbi_meta, dbi_pages, dbi_staging;
	MDB_dbi dbi_blobs;
	bool have_blobs;	    /* the blobs database exists (blob.c) */
	struct blob_pending *blobs; /* puts and deletes for the next commit */
	/* Those a split commit in flight took (in its transaction, not landed
	 * yet): still what a get sees, pending again if it fails (blob.c). */
	struct blob_pending *blobs_taken;
	uint64_t map_size;

	struct vswap_io io;
	struct commit_snap snap;

	/* Opened with lazy_index: the page groups load behind the open
	 * (lazy.c); NULL once closing, or for an eager open. */
	struct index_loader *loader;
	bool load_held; /* tests: the walk starts held (loader_release()) */
	/* Tests (store_fail_group()): a group that cannot be loaded. */
	_Atomic int need_fail;
	_Atomic uint64_t need_fail_group;
	/* A lazy open: index_file_check() leaves the leaves of `pages` to
	 * @deferred, which the loader takes over (lazy.c). */
	bool lazy_open;
	struct lmdb_deferred *deferred;
	bool pages_refusal_told; /* index_pages_writable() logged */

	/* Split writes (vswap_store_write_begin/_end): a bit per page in
	 * flight, cleared by any state call on the page (wflight_cancel()). */
	uint64_t *wflight;
	uint64_t wflight_pages; /* pages @wflight covers */
	unsigned writes_inflight;
	/* Stale slots rewritten in place by split writes in flight: a commit
	 * that frees one meanwhile leaves it used (@due) until the write's end
	 * releases it, so it is never reused under a write. */
	struct wpin {
		uint64_t slot;
		bool due, gone;
	} * wpins;
	size_t nwpins, cap_wpins;
};

/* store.c: handles and the store's files */
#define STORE_OPEN_LOCK 1u	/* take the store's flock (every open but destroy's) */
#define STORE_OPEN_LOAD_HELD 2u /* tests: a lazy load's walk waits for loader_release() */
int store_open_flags(const char *path, const struct vswap_store_opts *opts, unsigned flags,
		     struct vswap_store **out);
struct vswap_store *handle_new(const char *path, const struct vswap_store_opts *opts);
void handle_free(struct vswap_store *s);
int lock_store(struct vswap_store *s);
int open_regular(const struct vswap_store *s, const char *path, int flags, const char *what);

/* log.c */
void store_log(const struct vswap_store *s, enum vswap_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tables.c: the in-memory tables */
int tables_alloc(struct vswap_store *s);
void tables_free(struct vswap_store *s);
void tables_free_pages(struct vswap_store *s);
/* Once nothing is staged, give the staged checksums' memory back. */
void tables_ssums_release(struct vswap_store *s);
/* Record @sum as the checksum of page @p's staged copy. */
static inline void ssum_set(struct vswap_store *s, uint64_t p, uint64_t sum)
{
	s->ssums[p] = sum;
	s->ssums_held = true;
}
int slots_reserve(struct vswap_store *s, uint64_t nslots);
bool slot_is_used(const struct vswap_store *s, uint64_t slot);
bool slot_reserve_and_test(struct vswap_store *s, uint64_t slot);
void slot_set_used(struct vswap_store *s, uint64_t slot);
void slot_clear_used(struct vswap_store *s, uint64_t slot);
void slot_mark_unpunched(struct vswap_store *s, uint64_t slot);
void slots_mark_punched(struct vswap_store *s, uint64_t first, uint64_t count);
uint64_t slot_next_unpunched(const struct vswap_store *s, uint64_t from);
int64_t slot_alloc(struct vswap_store *s);
int64_t slot_alloc_run(struct vswap_store *s, uint64_t n);
void page_set(struct vswap_store *s, uint64_t page, uint32_t word, uint64_t sum);
void page_release_slot(struct vswap_store *s, uint64_t page);
void group_mark_dirty(struct vswap_store *s, uint64_t page);
/* The same for a change to @page's staging record alone. */
void group_mark_staging_dirty(struct vswap_store *s, uint64_t page);
/* Groups of @restored dirty again after a commit that did not land: whole
 * (their page records are rewritten too). */
void groups_redirty(struct vswap_store *s, const uint64_t *restored);
bool bit_test(const uint64_t *bm, uint64_t i);
void bit_set(uint64_t *bm, uint64_t i);
void bit_clear(uint64_t *bm, uint64_t i);
int slot_vec_push(struct slot_vec *v, uint64_t slot);
int range_vec_push(struct range_vec *v, uint64_t first, uint64_t count);
int leftout_add(struct vswap_store *s, const struct vswap_page_record *r);
const struct vswap_page_record *leftout_find(const struct vswap_store *s, uint64_t page);

/* write.c: punch every free slot that may hold bytes, in runs of free
 * slots (one fallocate per run; the free slots past the last used one are
 * cut off by one ftruncate).  Under the caller's lock, with no split write
 * in flight taking slots meanwhile (a clean close). */
void slots_punch_free(struct vswap_store *s);
void slots_inherit_unpunched(struct vswap_store *s);

/* index_file.c: the index's files checked before LMDB maps them */
int index_file_check(struct vswap_store *s);
int index_lock_file_prepare(struct vswap_store *s);

/* lazy.c: the page groups loaded behind the open (lazy_index) */
int loader_start(struct vswap_store *s);
void loader_stop(struct vswap_store *s);
int loader_need(const struct vswap_store *s, uint64_t first, uint64_t count);
int loader_need_all(const struct vswap_store *s);
bool loader_done(const struct vswap_store *s);
int loader_absorb(struct vswap_store *s);
void loader_counts(const struct vswap_store *s, uint64_t *present, uint64_t *stale, uint64_t *lost);
bool loader_found_damage(const struct vswap_store *s);
/* A leaf of `pages` failed its check: LMDB must never write there. */
bool loader_pages_damaged(const struct vswap_store *s);
/* 0, or -EUCLEAN (logged once) when `pages` may not be written (a write
 * transaction that changes it waits for the lazy load first). */
int index_pages_writable(struct vswap_store *s);
/* Tests: let a walk opened held (STORE_OPEN_LOAD_HELD) go. */
void loader_release(struct vswap_store *s);

/*
 * Before a call reads or changes the tables of pages [first, first+count):
 * their groups are loaded (at once when the store loads eagerly or the
 * groups are in memory already).  -ECHILD in a forked child.
 */
/* Tests (store_fail_group()): does a call needing [first, first + count)
 * fail? */
bool need_fails(const struct vswap_store *s, uint64_t first, uint64_t count);
/* Tests: page group @g cannot be loaded, as if its record could not be
 * read: every call that needs it by range (index_need()) fails with @err
 * from now on (0: it loads again). */
void store_fail_group(struct vswap_store *s, uint64_t g, int err);

static inline int index_need(const struct vswap_store *s, uint64_t first, uint64_t count)
{
	int fail = atomic_load_explicit(&s->need_fail, memory_order_acquire);
	if (fail && need_fails(s, first, count))
		return fail;
	return s->loader ? loader_need(s, first, count) : 0;
}
/* Before a call that needs every group (the slot allocator, the counts). */
static inline int index_need_all(const struct vswap_store *s)
{
	return s->loader ? loader_need_all(s) : 0;
}

/* lmdb_check.c: LMDB's pages bounded before LMDB maps the file (on @fd, of
 * @file_size bytes, its meta pages already checked): 0, or -EUCLEAN with a
 * message naming the page and what is wrong with it. */
int index_lmdb_check(const struct vswap_store *s, int fd, uint64_t file_size);
/*
 * The same walk with the leaves of the `pages` database left for later (a
 * lazily loaded index): everything else is checked now, the leaves' page
 * numbers are claimed from the branch pages (so the free list is checked
 * against every live page) and their key bounds kept.  Then
 * index_lmdb_check_key() checks the one leaf a key lands on (before LMDB
 * looks the key up), index_lmdb_check_rest() every leaf not yet checked and
 * the entry count.  Both return 0 or -EUCLEAN (logged), as the full walk.
 * The handle describes the file as it is now.  A leaf must be checked
 * before LMDB reads it (a look-up of a key in it, a cursor stepping onto
 * it), and every leaf (index_lmdb_check_rest() returned 0) before a write
 * transaction changes `pages` (a put or delete there may split or merge a
 * leaf with its neighbour); after one, the handle is stale and may only be
 * freed.  A write transaction that changes only other databases leaves it
 * valid: it copies and frees pages of those databases and of the main one
 * (where the `pages` record is copied unchanged), and the pages it reuses
 * come from the free list, checked against every live page at once.  The
 * handle keeps the file mapped until it is freed.
 */
struct lmdb_deferred;
int index_lmdb_check_deferred(const struct vswap_store *s, int fd, uint64_t file_size,
			      struct lmdb_deferred **out);
int index_lmdb_check_key(struct lmdb_deferred *d, const void *key, size_t klen);
int index_lmdb_check_rest(struct lmdb_deferred *d);
void index_lmdb_deferred_free(struct lmdb_deferred *d);
/*
 * For a reader of the leaves in key order (the lazy load, store/lazy.c):
 * the number of leaves; leaf @i checked (0, or -EUCLEAN once and for all)
 * with its key count in *@nodes and its lower key bound in *@lo (NULL for
 * the first leaf), so that the reader can position a cursor on its first
 * key and read exactly its keys (a cursor stepping past a leaf's last key
 * reads the next leaf); the leaf LMDB's descent takes for @key.
 */
size_t index_lmdb_leaves(const struct lmdb_deferred *d);
int index_lmdb_check_leaf(struct lmdb_deferred *d, size_t i, unsigned *nodes, const void **lo,
			  size_t *lo_len);
size_t index_lmdb_key_leaf(const struct lmdb_deferred *d, const void *key, size_t klen);

/* index.c: the LMDB environment */
int index_open(struct vswap_store *s, bool create);
int index_identify(const struct vswap_store *s, uint8_t uuid[16]);
int index_put_meta(struct vswap_store *s, MDB_txn *txn, const char *key, const void *v, size_t len);
void index_close(struct vswap_store *s);
/* A transaction (@flags as mdb_txn_begin's, a grown map adopted), and an
 * LMDB return code as a negative errno. */
int index_begin(struct vswap_store *s, unsigned flags, MDB_txn **txn);
int index_mdb_errno(int rc);
/* mdb_txn_commit() of a write transaction from index_begin(). */
int index_txn_commit(struct vswap_store *s, MDB_txn *txn);
int index_write_meta_initial(struct vswap_store *s);
int index_load(struct vswap_store *s, const char *staging_dir, bool lazy);
int index_walk_group(struct vswap_store *s, const MDB_val *key, const MDB_val *val,
		     vswap_page_record_fn fn, void *ctx);
int index_commit(struct vswap_store *s);
/* The split commit's halves: encode the dirty groups into s->snap (lock
 * held), put them into s->snap.txn (no lock: touches only the snapshot and
 * the environment). */
int index_snap_txn(struct vswap_store *s);
int index_snap_encode(struct vswap_store *s);
int index_snap_meta(struct vswap_store *s);
int index_snap_put(struct vswap_store *s);
void index_snap_prepare(struct vswap_store *s);
int index_snap_commit(struct vswap_store *s);
void index_snap_abort(struct vswap_store *s);
int index_snap_wait(struct vswap_store *s);
int index_set_clean(struct vswap_store *s, bool clean);
/* The unclean record a lazy open left to the first change, committed now
 * if it is still due (before bytes go to the swap file); 0 if not due. */
int index_record_unclean(struct vswap_store *s);
uint64_t index_bytes_used(struct vswap_store *s);

/* record.c: record encodings and checks */
uint64_t index_record_check(const struct vswap_store *s, uint32_t db, const void *key, size_t klen,
			    const void *val, size_t vlen);
void record_seal(const struct vswap_store *s, uint32_t db, uint64_t group, uint8_t *val,
		 size_t len);
size_t group_encode_begin(uint8_t *buf, uint64_t group);
enum vswap_record_fault group_decode(const struct vswap_store *s, uint64_t key_group,
				     const uint8_t *val, size_t len, struct group_view *out);
void group_entry(const struct group_view *g, unsigned n, uint64_t *slot, uint32_t *state,
		 uint64_t *sum);
enum vswap_record_fault staging_decode(const struct vswap_store *s, uint64_t key_group,
				       const uint8_t *val, size_t len, struct staging_view *out);
uint64_t staging_view_sum(const struct staging_view *v, unsigned bit);
size_t staging_encode(const struct vswap_store *s, uint64_t g, uint8_t *buf);
/* The same without its seal (record_seal() adds it, 8 bytes more). */
size_t staging_encode_body(const struct vswap_store *s, uint64_t g, uint8_t *buf);
const char *record_fault_name(enum vswap_record_fault f);

/* blob.c: named values committed with the pages (hooks for index.c) */
int blob_db_open(struct vswap_store *s, MDB_txn *txn);
bool blob_pending(const struct vswap_store *s);
int blob_commit_txn(struct vswap_store *s, MDB_txn *txn);
void blob_committed(struct vswap_store *s);
/* The split commit's part (write.c): the pending operations put into the
 * commit's transaction @txn and taken (an LMDB error code); given back
 * when it ends, @landed or not (failed: pending again unless a newer
 * operation on the same name is). */
int blob_take(struct vswap_store *s, MDB_txn *txn);
void blob_taken_end(struct vswap_store *s, bool landed);
void blob_free(struct vswap_store *s);

/* staging.c: the staging file */
int staging_create(struct vswap_store *s, const char *dir);
int staging_open(struct vswap_store *s, const char *dir);
int staging_resize(struct vswap_store *s, bool shrink);
void staging_close(struct vswap_store *s);
int staging_punch(struct vswap_store *s, uint64_t first, uint64_t count);
int staging_punch_unstaged(struct vswap_store *s);
int staging_punch_ranges(struct vswap_store *s, struct range_vec *v);
/* The runs of @v's pages not staged now, into @out (emptied first). */
int staging_unstaged_runs(struct vswap_store *s, const struct range_vec *v, struct range_vec *out);
/* The staged copies a previous handle left: those without a committed
 * checksum are judged at once, the others marked unverified, to be checked
 * at their first use.  The number of pages changed (to commit), or -errno. */
int64_t staging_verify_loaded(struct vswap_store *s);
#define STAGING_CHECK_RUN 256
/* Check the unverified staged copies among [first, first + count) against
 * their checksums: each that fails, is missing or cannot be read leaves
 * staging and is lost (or, present in the swap file, served from there).
 * Never fails: what cannot be checked is not served. */
/* 0, or the first error loading a group: those copies stay unverified. */
int staging_check(struct vswap_store *s, uint64_t first, uint64_t count);
/* Forget the unverified marks of [first, first + count) (a new copy, or
 * the copy gone). */
void staging_unverified_clear(struct vswap_store *s, uint64_t first, uint64_t count);

/* The largest request the I/O paths issue: keeps lengths far from the
 * kernel's per-call limit and from 32-bit overflow. */
#define MAX_REQ_PAGES 16384u

static inline uint64_t page_sum(const struct vswap_store *s, uint64_t page, const void *buf)
{
	return checksum_page(s->seed, page, buf, s->page_size);
}

/* A state call on [first, first+count): a split write of those pages in
 * flight must not make them present (vswap_store_write_end()). */
static inline void wflight_cancel(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (!s->writes_inflight)
		return;
	for (uint64_t p = first; p < first + count && p < s->wflight_pages; p++)
		s->wflight[p / 64] &= ~(1ull << (p % 64));
}

/* Byte offset of slot @slot in the swap file. */
static inline uint64_t slot_offset(const struct vswap_store *s, uint64_t slot)
{
	return (slot + 1) << s->page_shift;
}

#endif

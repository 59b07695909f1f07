/* SPDX-License-Identifier: MIT */
/*
 * vswap store: the persistent swap file, its LMDB index, the slot allocator,
 * page checksums and the staging file.  Knows nothing of userfaultfd.
 *
 * Vocabulary
 *   page    a position in the store's page-index space: the concatenation of
 *           all regions (crosvm's vmm-swap calls it the "file page index").
 *   slot    a page-sized unit of the swap file, at the byte offset
 *           vswap_store_slot_offset() says (page 0 of the file is the
 *           superblock).
 *   present the slot holds the page's current copy (the guest page is not
 *           resident).
 *   stale   the slot holds an older copy, kept so that trim can tell a clean
 *           page without writing it again.
 *   lost    the slot's bytes failed their checksum (or are missing): the page
 *           must never be served; a handler poisons it.
 *   staged  the page's current copy is in the staging file.
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure.  Errors specific to vswap (see vswap_strerror()):
 *   -EUCLEAN          a damaged or foreign store file: the log names the
 *                     file and what is wrong (bad superblock, bad index:
 *                     truncated, not LMDB, a record failing its checksum,
 *                     a staging path outside the staging directory ...)
 *   -EPROTONOSUPPORT  another on-disk format version (superblock or index);
 *                     a format 1 store (vswap 0.1.0) is converted by
 *                     vswap_store_upgrade() (the vswap-upgrade tool)
 *   -EEXIST           create: a file of the store's exists already
 *   -EINVAL           (open, create) a file of the store is not a regular
 *                     file (FIFO, device, directory): refused without
 *                     blocking, the log names it
 *   -EMEDIUMTYPE      the index belongs to another swap file (UUID mismatch)
 *   -EXDEV            the store's page size differs from the system's
 *   -EBUSY            another handle holds the store's lock (a handler
 *                     also answers it to a command while another job
 *                     runs; vswap_strerror() says "busy" for both)
 *   -EBADMSG          a page failed its checksum (it is now recorded lost)
 *   -EIO              a page's bytes are missing (file truncated) or the
 *                     device failed (the page is recorded lost)
 *   -ENODATA          the page has no copy in the store
 *   -E2BIG            more pages than the store can address
 *
 * Threads: a store handle is not internally locked.  Calls on one handle
 * must be serialised by the caller (the handler holds its own mutex); reads
 * update counters and may record a page lost, so they count as mutating.
 */
#ifndef VSWAP_STORE_H
#define VSWAP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vswap_store;

/*
 * Log levels and the per-handle log callback (no global state).  Every
 * handle (store, handler, fsck, client) takes vswap_log_fn log, void
 * *log_ctx and enum vswap_log_level log_level in its options and logs by
 * one rule:
 *   - a message of level L is emitted when L <= log_level, the most verbose
 *     level wanted (its zero value, VSWAP_LOG_ERROR, means errors only);
 *   - with a callback, the message goes to log(log_ctx, L, msg), called on
 *     the thread that logs (the handler's monitor and workers among them);
 *   - without one, it goes to stderr as one line "vswap PART: LEVEL: MSG"
 *     (PART is store, handler, fsck or client), and warnings are always
 *     included: a log_level below VSWAP_LOG_WARN counts as VSWAP_LOG_WARN.
 */
enum vswap_log_level {
	VSWAP_LOG_ERROR = 0,
	VSWAP_LOG_WARN = 1,
	VSWAP_LOG_INFO = 2,
	VSWAP_LOG_DEBUG = 3,
};
typedef void (*vswap_log_fn)(void *ctx, enum vswap_log_level level, const char *msg);
/* "error", "warning", "info" or "debug" (the word of the stderr lines);
 * "unknown" for another value. */
const char *vswap_log_level_name(enum vswap_log_level level);

/*
 * Durability modes (crash invariant 1 of docs/DESIGN.md).  In every mode a
 * page's index record is committed only after its bytes were written; FULL
 * and BATCH also make the bytes durable (fdatasync) before the index commit
 * that references them.
 *   FULL   each vswap_store_write() syncs the data and commits the index.
 *   BATCH  writes accumulate; vswap_store_commit() syncs once and commits.
 *   NONE   like BATCH without any sync; checksums are still checked.
 */
enum vswap_durability {
	VSWAP_DURABILITY_BATCH = 0,
	VSWAP_DURABILITY_FULL = 1,
	VSWAP_DURABILITY_NONE = 2,
};

/* Returns "full", "batch" or "none"; parses the same names (-EINVAL). */
const char *vswap_durability_name(enum vswap_durability d);
int vswap_durability_parse(const char *name, enum vswap_durability *out);

/* Options for create and open.  Zero-initialise; every field is optional. */
struct vswap_store_opts {
	enum vswap_durability durability;
	/*
	 * Open without writing a byte to any file (not even LMDB's lock file,
	 * which is neither created nor used) and with read access only: dump,
	 * audit.  It takes a shared flock on the swap file when it can, so no
	 * writable handle opens meanwhile; a store already open for writing
	 * is read anyway (the log warns): without LMDB's reader table such a
	 * read may see records the writer is replacing, and those fail their
	 * checks rather than being believed.
	 */
	bool read_only;
	/*
	 * Repair mode (recovery/ only): load an index with conflicting records
	 * (a slot owned twice, a slot out of range) instead of refusing it;
	 * the conflicting records are left out of the in-memory tables and
	 * shown by vswap_store_foreach_page().
	 */
	bool tolerant;
	/* LMDB environment path; default "<swap file>.idx". */
	const char *index_path;
	/*
	 * Directory of the staging file; default "/dev/shm".  An open refuses
	 * a store whose index records a staging path that is not
	 * "<dir>/vswap-<uuid>.staging" of this store's UUID in this directory
	 * (given), or not such a name in a canonical absolute directory (not
	 * given: the store may have been created with another directory).  A
	 * writable open creates a missing staging file only in the given or
	 * default directory.
	 */
	const char *staging_dir;
	/* Initial LMDB map size in bytes; default 64 MiB.  It grows when full. */
	uint64_t map_size;
	/* Logging: the rule is next to enum vswap_log_level. */
	vswap_log_fn log;
	void *log_ctx;
	enum vswap_log_level log_level;
	/*
	 * Writable opens (not tolerant): load the page-group records behind
	 * the open instead of before it returns, so that a large store opens
	 * in constant time (a resume's first guest instruction does not wait
	 * for the whole index).  The open still checks everything else (the
	 * superblock, the index file, the meta, regions and staging records,
	 * LMDB's pages but the leaves of the page-group records, each checked
	 * before it is read).
	 * A call that needs a group not loaded yet loads it first, through a
	 * read transaction; calls that need every record (stats, writes, a
	 * commit that frees slots) wait for the load to end.  A page-group
	 * record that fails its check is found only when loaded: its pages are
	 * then recorded lost (a handler poisons them, never serves them) and
	 * the log names it, where an eager open refuses the store; the store
	 * is then left unclean at close, for vswap-fsck.  A damaged LMDB leaf
	 * of those records loses the groups it holds, and commits that would
	 * change a page-group record fail with -EUCLEAN from then on.
	 * vswap_store_load_status() says how far the load is.  Such an open
	 * also writes nothing itself: the store is recorded unclean with its
	 * first change (the first commit, or before the first byte written
	 * to the swap file), so a process killed before any change leaves it
	 * as clean as it found it.
	 */
	bool lazy_index;
	/* Room for options added later without an ABI break (docs/ABI.md):
	 * must be zero (zero-initialise the struct); -EINVAL otherwise. */
	uint64_t reserved[7];
};

/*
 * Create a new store at @path (swap file, PATH.idx, staging file).  Fails
 * with -EEXIST, touching nothing, if the swap file exists (whatever it is),
 * if the index exists and is not a vswap index whose swap file is missing
 * (what a crash during a creation leaves: that one is replaced), if the
 * index's lock file exists without such an index, or if another create of
 * the same path is under way: of concurrent creates exactly one succeeds.
 * On failure only files this call created are removed.  The store starts
 * with no regions.
 */
int vswap_store_create(const char *path, const struct vswap_store_opts *opts,
		       struct vswap_store **out);

/* Open an existing store; see the error list above. */
int vswap_store_open(const char *path, const struct vswap_store_opts *opts,
		     struct vswap_store **out);

/* How far the page-group records of a store opened with lazy_index are
 * loaded (an eager open reports done at once). */
struct vswap_store_load {
	bool lazy;	      /* opened with lazy_index */
	bool done;	      /* every group's records are in memory */
	uint64_t groups;      /* page groups of the page-index space (64 pages each) */
	uint64_t loaded;      /* groups in memory now */
	uint64_t on_demand;   /* of which a call loaded itself: it needed them first */
	uint64_t waits;	      /* calls that waited for the load to end */
	uint64_t bad_records; /* records not believed: their pages are lost */
	uint64_t load_ns;     /* from the open to done (0 while loading) */
};
int vswap_store_load_status(const struct vswap_store *s, struct vswap_store_load *out);
/* Wait until every page-group record is loaded; 0 (at once when eager).
 * These two may be called from any thread, also while another one uses the
 * store (a VMM asking while its handler serves faults). */
int vswap_store_load_wait(struct vswap_store *s);

/*
 * Convert a format-1 store (written by vswap 0.1.0, refused by open with
 * -EPROTONOSUPPORT) to the current format, in place: the index records get
 * their checks, page checksums are recomputed bound to their pages after
 * each slot's bytes are verified against the old checksum (a page whose
 * bytes fail is recorded lost), staged pages get the checksums of what the
 * staging file holds.  The index is converted in one transaction and the
 * superblock rewritten last; an interrupted conversion is finished by
 * running it again.  Returns 0 when converted, 1 if the store is of the
 * current format already, or a negative errno (-EBUSY while a handle has
 * it open).  The vswap-upgrade tool runs it.
 */
int vswap_store_upgrade(const char *path, const struct vswap_store_opts *opts);

/*
 * Commit what is pending, punch the free slots that still hold old bytes
 * (in runs; see vswap_store_commit()), record a clean shutdown and release
 * the store.  The handle is freed even when the final commit fails (its
 * error is returned; the store is then marked unclean for vswap-fsck).
 */
int vswap_store_close(struct vswap_store *s);

/* Release the store like vswap_store_close() but leave it marked unclean:
 * for a repair that did not finish (vswap-fsck cancelled or failed). */
int vswap_store_close_unclean(struct vswap_store *s);

/*
 * Remove a store's files (swap file, index, lock file, staging file), each
 * only if it is a regular file shown to be this store's: the swap file by
 * its superblock, the index by its UUID record, the staging file by its
 * recorded path (in the staging directory, named after the UUID).  -EBUSY
 * while a handle has the store open; -EUCLEAN (nothing removed) if the
 * swap file is not a vswap swap file; -EUCLEAN after removing the swap
 * file if the index could not be shown to be the store's (left in place,
 * named in the log); -ENOENT, logging nothing, if there is nothing at @path.
 */
int vswap_store_destroy(const char *path, const struct vswap_store_opts *opts);

/* ---- regions: the page-index space ------------------------------------ */

/*
 * Define the page-index space as @n regions of @pages[i] pages each, laid
 * end to end in order.  Allowed while no page holds a slot or is staged, or
 * when the layout is unchanged (a reopened store).  Grows the staging file.
 * -E2BIG past the addressable maximum (vswap_store_max_pages()), -EINVAL for
 * an empty region or n == 0, -EBUSY to change the layout of a store in use.
 */
int vswap_store_set_regions(struct vswap_store *s, const uint64_t *pages, unsigned n);
unsigned vswap_store_region_count(const struct vswap_store *s);
/* First page and length of region @i (0 <= i < count). */
int vswap_store_region(const struct vswap_store *s, unsigned i, uint64_t *first, uint64_t *pages);
uint64_t vswap_store_total_pages(const struct vswap_store *s);
uint64_t vswap_store_max_pages(void);
uint32_t vswap_store_page_size(const struct vswap_store *s);

/* ---- write and read ------------------------------------------------------ */

/*
 * Write @count pages starting at @first from @buf (count * page_size bytes).
 * Slots: the page's own stale slot is rewritten in place, else the lowest
 * free slot, else a new one at the end; freed slots become free only after
 * the commit that freed them.  Each page gets an XXH3-64 checksum.  On
 * success the pages are present (in memory now, in the index at the next
 * commit; FULL commits before returning).  On a failed write (-ENOSPC,
 * -EFBIG, -EIO ...) no page changes state and no slot is consumed; in FULL,
 * a write that succeeded but whose commit failed returns the commit's error
 * with the pages present in memory (committed by the next commit).
 */
int vswap_store_write(struct vswap_store *s, uint64_t first, uint32_t count, const void *buf);

/*
 * The same write split in two, for a caller that serialises its calls with a
 * lock of its own and must not hold it while the bytes go to disk (the
 * handler's swap-out keeps several writes in flight while it serves faults):
 *   vswap_store_write_begin()  with the lock: a slot for each of the @count
 *       pages listed in @pages (ascending, gaps allowed) in @slots, chosen as
 *       by vswap_store_write() (so consecutive where the file has room; but
 *       pages whose stale slots would be rewritten in place in runs of a few
 *       pages take one run of free slots, and their stale slots are freed by
 *       the end), and
 *       the descriptor to write them through in *@fd (O_DIRECT where the
 *       store has one: then every buffer must be page-aligned).  The pages
 *       are now "in flight".  -ENOSPC / -ENOMEM: nothing reserved.
 *   without the lock: write page i's bytes at vswap_store_slot_offset(slots[i])
 *       and hash them with vswap_store_page_checksum() into @sums[i].
 *   vswap_store_write_end()  with the lock, given each page's result in
 *       @status (0: its bytes are all written, or a negative errno; NULL: all
 *       written): a written page still in flight becomes present in its slot
 *       with its checksum (its old slot is freed as by a write).  Any state
 *       call on a page between the begin and the end (mark stale, present or
 *       lost, free, stage mark or clear, a write) cancels that page: it keeps
 *       the state that call gave it and its new slot goes back at once (no
 *       record ever named it).  So a caller whose bytes may change while they
 *       are written (guest memory) cancels the page when it lets a change
 *       through, and a page made present always has the checksum of the
 *       bytes its slot holds.  A failed page does not change state and its
 *       slot goes back.  Returns the pages made present, or the first failed
 *       page's error (the written ones are present all the same).
 * A stale slot rewritten in place (its stale mark committed: the index names
 * no current copy there) is given up if its page is cancelled or fails (it
 * may hold neither copy now); a commit that frees it meanwhile does not make
 * it reusable before the end, so no slot is ever written twice at once; no
 * commit names a slot before its end.  Invariants 1 and 2 hold as for
 * vswap_store_write().  Every begin must be ended before the store closes.
 */
int vswap_store_write_begin(struct vswap_store *s, const uint64_t *pages, uint32_t count,
			    uint64_t *slots, int *fd);
int vswap_store_write_end(struct vswap_store *s, const uint64_t *pages, uint32_t count,
			  const uint64_t *slots, const uint64_t *sums, const int *status);

/*
 * Make everything pending durable, in order: sync the swap file (unless
 * NONE), commit the index (synced unless NONE), then make the slots freed
 * since the last commit reusable, and punch the staging bytes of pages that
 * left staging.  A freed slot is not punched then: the write that reuses it
 * overwrites its bytes, and vswap_store_close() punches the free slots left
 * (a punch per freed slot costs the device's discard on file systems
 * mounted with it).  A failed data sync is sticky:
 * every later write and commit returns its error until the store is
 * reopened (the kernel may have dropped the unsynced bytes).  -ECHILD from a
 * forked child of the process that opened the store.
 */
int vswap_store_commit(struct vswap_store *s);

/*
 * The same commit split in three, for a caller that serialises its calls
 * with a lock of its own and must not hold it while the swap file and the
 * index sync (the handler commits on a thread of its own, so no fault
 * waits for an fsync).  On one thread, in order:
 *   vswap_store_commit_begin()  with the lock: takes what is pending (the
 *       changed records, the slots freed, the staging bytes left) and begins
 *       the index transaction.  1: taken; 0: nothing pending (or, while
 *       a lazy_index load runs, only changed page groups: a later commit
 *       takes them; vswap_store_commit() waits for the load); -EAGAIN:
 *       the index map is full, call vswap_store_commit(); -errno.  Named
 *       blobs put or deleted before it go with it.
 *   vswap_store_commit_write()  without the lock: syncs the swap file (unless
 *       NONE) and commits the index.  Meanwhile the other calls may go on
 *       under the lock (faults, reads, writes, frees; a vswap_store_commit()
 *       waits for this write to end, then commits what it took as well),
 *       except
 *       vswap_store_stage_mark(), which says -EBUSY.  -EAGAIN: the index map
 *       is full, nothing was committed: call vswap_store_commit() (it grows
 *       the map).
 *   vswap_store_commit_end()  with the lock, given write's result: on
 *       success the slots the commit freed become reusable (unpunched, as
 *       in vswap_store_commit()) and the staging bytes it let go are
 *       handed to vswap_store_commit_punch() (below); on failure everything taken is pending again
 *       (a failed data sync sticks, as in vswap_store_commit()).  Call it
 *       after a begin that returned 1 even if write was never called.
 * Invariants 1-5 hold as for vswap_store_commit(): what a commit names was
 * written before its begin, and nothing it frees is reused before it lands.
 */
int vswap_store_commit_begin(struct vswap_store *s);
int vswap_store_commit_write(struct vswap_store *s);
void vswap_store_commit_end(struct vswap_store *s, int result);
/*
 * After a successful vswap_store_commit_end(), without the lock, on the
 * same thread: punch the staging bytes the commit let go (punching tens of
 * MiB of shared memory takes milliseconds: no other call should wait for
 * it).  Until it returns, vswap_store_stage_mark() says -EBUSY; nothing else
 * is affected.  Called by vswap_store_close() if the caller did not.
 */
void vswap_store_commit_punch(struct vswap_store *s);

/* Pages written, freed or re-marked since the last commit (0 = nothing). */
uint64_t vswap_store_pending(const struct vswap_store *s);

/*
 * The checksum of a page's bytes as the store records it (format 2): the
 * XXH3-64 of the @page_size bytes at @buf seeded with the store's seed XOR
 * @page, so the valid bytes of another page or of another store fail.  A
 * pure function of the handle's UUID: any thread may call it.
 */
uint64_t vswap_store_page_checksum(const struct vswap_store *s, uint64_t page, const void *buf);

/*
 * Read page @page (present or stale) into @buf and verify its checksum.
 * -EBADMSG or -EIO: the bytes are bad or missing; the page is recorded lost
 * and @buf must not be used.  -ENODATA: no slot.  Lost pages fail at once.
 */
int vswap_store_read_page(struct vswap_store *s, uint64_t page, void *buf);

/*
 * Read @count pages from @first into @buf, in as few large reads as the slot
 * layout allows, with several in flight; verify every page.  @status (may be
 * NULL) receives 0 or a negative errno per page, as vswap_store_read_page().
 * Returns the number of pages that failed, or a negative errno if the read
 * could not be made at all.
 */
int vswap_store_read_run(struct vswap_store *s, uint64_t first, uint32_t count, void *buf,
			 int *status);

/*
 * One page read the caller runs itself (the handler keeps many in flight on
 * its own io_uring).  vswap_store_read_begin() says where page @page's copy
 * is (present or stale; -ENODATA: no slot, -EBADMSG: lost) and what it must
 * hash to: read r->len bytes at r->offset of r->fd into a page-aligned
 * buffer (r->fd may be opened O_DIRECT).  vswap_store_read_end() then
 * verifies the bytes (@got: bytes read or a negative errno) like
 * vswap_store_read_page(): 0, or -EBADMSG / -EIO with the page recorded
 * lost.  Other calls on the store may come in between; if the page no
 * longer holds that copy when the read ends (freed, written again, lost),
 * the bytes say nothing about it: -ESTALE, and nothing is recorded.
 */
struct vswap_read {
	uint64_t page;
	uint64_t slot;
	uint64_t xxh3;
	uint64_t offset;
	uint32_t len;
	int fd;
};
int vswap_store_read_begin(const struct vswap_store *s, uint64_t page, struct vswap_read *r);
int vswap_store_read_end(struct vswap_store *s, const struct vswap_read *r, const void *buf,
			 int32_t got);
/*
 * vswap_store_read_end() with the bytes hashed beforehand: @sum is
 * vswap_store_page_checksum(s, r->page, buf) of the bytes read (unused
 * unless @got is a whole page).  The hash needs no lock (it reads nothing
 * that changes), so a caller that serialises calls on the store hashes a
 * read's pages outside its lock and only ends them inside.
 */
int vswap_store_read_end_sum(struct vswap_store *s, const struct vswap_read *r, uint64_t sum,
			     int32_t got);

/* ---- page state (in memory now, durable at the next commit) ----------- */

enum vswap_page_state {
	VSWAP_PAGE_NONE = 0, /* no slot */
	VSWAP_PAGE_PRESENT = 1,
	VSWAP_PAGE_STALE = 2,
	VSWAP_PAGE_LOST = 3,
};
const char *vswap_page_state_name(enum vswap_page_state st);

struct vswap_page_info {
	enum vswap_page_state state;
	bool staged;
	uint64_t slot; /* valid unless state == NONE */
	uint64_t xxh3; /* checksum of the slot's bytes */
};
int vswap_store_page(const struct vswap_store *s, uint64_t page, struct vswap_page_info *out);

/* Present pages in [first, first+count) become stale (the guest has them
 * again).  Other pages are left alone.  Returns the number changed. */
int64_t vswap_store_mark_stale(struct vswap_store *s, uint64_t first, uint64_t count);

/* A stale page becomes present again without a write (trim of a clean page).
 * -EINVAL if the page is not stale. */
int vswap_store_mark_present(struct vswap_store *s, uint64_t page);

/* Mark a page lost (its bytes are known bad).  Recovery and the handler. */
int vswap_store_mark_lost(struct vswap_store *s, uint64_t page);

/* Drop the slots of the pages in [first, first+count) (remove event, trim of
 * a zero page).  The holes are punched after the next commit.  Returns the
 * number of slots freed. */
int64_t vswap_store_free(struct vswap_store *s, uint64_t first, uint64_t count);

/*
 * Trim's clean-page test: 1 if @buf equals the bytes of @page's stale slot,
 * 0 if not (or the page is not stale).  Compares checksums first and reads
 * the slot only when they match, then compares every byte.
 */
int vswap_store_stale_equals(struct vswap_store *s, uint64_t page, const void *buf);
/*
 * The same test in two steps, for a caller that reads the slot outside its
 * lock (the swap-out).  vswap_store_stale_match(): 1 and *r (where the
 * stale copy is, as vswap_store_read_begin()) if @page is stale and @sum,
 * vswap_store_page_checksum() of the bytes it has now, is its stale copy's
 * checksum; 0 if not.  The caller reads r->len bytes at r->offset of r->fd
 * into a page-aligned buffer and compares every byte with its own; equal,
 * vswap_store_stale_keep() makes the page present again in that slot,
 * without a write (as vswap_store_mark_present()), or returns -ESTALE if
 * the page no longer holds that copy (freed, written, lost meanwhile).
 */
int vswap_store_stale_match(struct vswap_store *s, uint64_t page, uint64_t sum,
			    struct vswap_read *r);
int vswap_store_stale_keep(struct vswap_store *s, const struct vswap_read *r);

/*
 * Find the first run of present pages at or after @from and before @limit
 * whose slots are consecutive, at most @max pages.  Returns 1 and sets
 * *first / *count, or 0 if there is none.
 */
int vswap_store_next_present_run(const struct vswap_store *s, uint64_t from, uint64_t limit,
				 uint32_t max, uint64_t *first, uint32_t *count);

/* ---- staging ------------------------------------------------------------- */

/*
 * The staging file: a shared-memory file sized to the page-index space,
 * page p at offset p * page_size, created with the store and named after
 * its UUID.  The handler maps it; the store records which pages it holds.
 */
int vswap_store_staging_fd(const struct vswap_store *s);
const char *vswap_store_staging_path(const struct vswap_store *s);

/* Extended attribute on the staging file naming its swap file's absolute
 * path: how vswap-fsck tells a closed store's staging file from an orphan. */
#define VSWAP_STAGING_OWNER_XATTR "user.vswap.store"

/*
 * Record pages as staged.  Log ahead (invariant 5): mark, commit, then copy,
 * then record the copies' checksums and commit them before the guest's copy
 * is removed.  A staged page without a committed checksum is never trusted
 * by a later open: it is lost (or dropped from staging if the swap file
 * holds its current copy).
 */
int vswap_store_stage_mark(struct vswap_store *s, uint64_t first, uint64_t count);

/* The checksums (vswap_store_page_checksum()) of the staged copies of
 * [first, first+count), computed while copying.  Durable at the next
 * commit.  -EINVAL if a page is not staged. */
int vswap_store_stage_record_sums(struct vswap_store *s, uint64_t first, uint64_t count,
				  const uint64_t *sums);

/* As vswap_store_stage_record_sums() with the checksums of what the staging
 * file holds now (read through the staging file descriptor): for tools and
 * tests that write the staging file themselves. */
int vswap_store_stage_seal(struct vswap_store *s, uint64_t first, uint64_t count);

/* Pages leave staging: the record is cleared (durable at the next commit) and
 * the staging file's bytes are punched right after that commit (a fault pays
 * no fallocate; a page staged again meanwhile is not punched). */
int vswap_store_stage_clear(struct vswap_store *s, uint64_t first, uint64_t count);

/* Is @page staged?  A staged copy a previous handle left is checked against
 * its checksum first (at its first use, not by the open): one that fails or
 * is missing is lost then (or, present in the swap file, leaves staging), and
 * is not reported staged.  The same for vswap_store_next_staged_run() and
 * vswap_store_page().  A copy that cannot be checked yet (its page group
 * cannot be loaded) is not reported staged either; vswap_store_page() and
 * vswap_store_next_staged_run() then fail with the load's error. */
bool vswap_store_staged(const struct vswap_store *s, uint64_t page);

/* The recorded checksum of @page's staged copy (in memory): 0, or -ENODATA
 * if the page is not staged or its checksum is not recorded. */
int vswap_store_staged_sum(const struct vswap_store *s, uint64_t page, uint64_t *sum);

/* First run of staged pages in [from, limit), at most @max: 1 and the run,
 * or 0 if none; or -errno when the next staged copy cannot be checked (its
 * page group cannot be loaded): a caller must not take that as "none left",
 * or the page would go unserved. */
int vswap_store_next_staged_run(const struct vswap_store *s, uint64_t from, uint64_t limit,
				uint64_t max, uint64_t *first, uint64_t *count);

/*
 * The staged copies a previous handle left are checked at their first use,
 * under the caller's lock (a read and a hash of each: about a millisecond
 * per 2 MiB run, which every other user of the lock waits through).  A
 * caller may check them ahead, without holding its lock for the work:
 *   vswap_store_unverified_run()  with the lock: the next run of copies not
 *       yet checked at or after @from, at most @max pages: 1 and the run, or
 *       0 when none is left.
 *   without the lock: read the run's pages from the staging file (pread on
 *       vswap_store_staging_fd()) and hash each with
 *       vswap_store_page_checksum() into @sums.
 *   vswap_store_unverified_checked()  with the lock: the checksums of the
 *       first @count pages of the run (a short read gives fewer; the rest
 *       stay for their first use).  A page still unverified (its copy
 *       unchanged since: a new copy or a clear ends its unverified state)
 *       is then verified, or, if its checksum differs, lost (left for its
 *       swap-file copy if it has one) as at its first use.  0, or the
 *       error loading its page group (the pages stay unverified).
 */
int vswap_store_unverified_run(const struct vswap_store *s, uint64_t from, uint64_t max,
			       uint64_t *first, uint64_t *count);
int vswap_store_unverified_checked(struct vswap_store *s, uint64_t first, uint64_t count,
				   const uint64_t *sums);

/* ---- metadata ------------------------------------------------------------ */

/* The handler's state-machine state, recorded at the next commit. */
int vswap_store_set_state(struct vswap_store *s, uint32_t state);
uint32_t vswap_store_state(const struct vswap_store *s);

struct vswap_store_info {
	uint8_t uuid[16];
	uint32_t page_size;
	uint32_t format_version;
	uint64_t created_ns; /* CLOCK_REALTIME at creation */
	uint64_t total_pages;
	unsigned regions;
	enum vswap_durability durability;
	bool read_only;
	bool was_clean; /* the previous handle closed the store cleanly */
	uint32_t state; /* handler state recorded in the index */
};

/* Meta records that failed their checks (VSWAP_DAMAGED_*) and were taken as
 * decoded (tolerant opens) or replaced (state taken as Failed, clean as
 * unclean, in every open).  Other damage makes non-tolerant opens refuse the
 * index (-EUCLEAN). */
uint32_t vswap_store_damaged(const struct vswap_store *s);
#define VSWAP_DAMAGED_REGIONS 0x1u
#define VSWAP_DAMAGED_STATE 0x2u
#define VSWAP_DAMAGED_CLEAN 0x4u
#define VSWAP_DAMAGED_STAGING_PATH 0x8u
#define VSWAP_DAMAGED_CREATED 0x10u
/* What the superblock and the index say about the store, into @out; 0. */
int vswap_store_info(const struct vswap_store *s, struct vswap_store_info *out);

/* Format a UUID as 36 characters plus NUL into @buf (>= 37 bytes). */
void vswap_uuid_format(const uint8_t uuid[16], char *buf);

struct vswap_store_stats {
	uint64_t pages_present;
	uint64_t pages_stale;
	uint64_t pages_lost;
	uint64_t pages_staged;
	uint64_t slots_used;
	uint64_t slots_free; /* free slots below the end of the slot space */
	uint64_t slots_end;  /* one past the highest slot ever used */
	uint64_t bytes_written;
	uint64_t bytes_read;
	uint64_t checksum_failures;
	uint64_t commits;
	uint64_t index_map_size;
	uint64_t index_bytes; /* bytes in use by the LMDB environment */
};
int vswap_store_stats(const struct vswap_store *s, struct vswap_store_stats *out);

/* ---- recovery and dump: the index as recorded ------------------------- */

/* Why an index record is not believed. */
enum vswap_record_fault {
	VSWAP_RECORD_OK = 0,
	VSWAP_RECORD_UNDECODABLE = 1, /* wrong length or fields (check valid or not) */
	VSWAP_RECORD_CHECKSUM = 2,    /* its check fails: key or value damaged */
	VSWAP_RECORD_MISPLACED = 3,   /* a valid record of group @claimed_group
				       * stored under another group's key */
};

/*
 * One page record as the index holds it (not the in-memory tables).  A
 * record that is not believed (fault != OK) is passed once with @corrupt
 * set, @page the first page of the group its key names (@key_group) and
 * @group_pages the pages it covers; its pages must be treated as lost
 * (never as absent), and a non-tolerant open refuses the index.
 */
struct vswap_page_record {
	uint64_t page;
	uint64_t slot;		     /* UINT64_MAX: no slot (a lost page whose bytes are gone) */
	enum vswap_page_state state; /* PRESENT, STALE or LOST */
	uint64_t xxh3;
	bool corrupt;
	uint32_t group_pages;
	enum vswap_record_fault fault;
	uint64_t key_group;	/* the group its LMDB key names */
	uint64_t claimed_group; /* MISPLACED: the group the record says it is */
};
typedef int (*vswap_page_record_fn)(void *ctx, const struct vswap_page_record *r);
/* Walk every page record in page order in one read transaction.  A callback
 * returning non-zero stops the walk and that value is returned. */
int vswap_store_foreach_page(struct vswap_store *s, vswap_page_record_fn fn, void *ctx);

/* Walk the staged ranges recorded in the index, coalesced, in page order
 * (records that are not believed are skipped: see the per-page walk). */
typedef int (*vswap_staged_range_fn)(void *ctx, uint64_t first, uint64_t count);
int vswap_store_foreach_staged(struct vswap_store *s, vswap_staged_range_fn fn, void *ctx);

/*
 * One staged page as the index records it.  @summed: the checksum of its
 * staged copy (vswap_store_page_checksum()) was committed and is @xxh3;
 * without it the copy is not trusted (it may be incomplete).  A record that
 * is not believed is passed once with @corrupt set, as for page records.
 */
struct vswap_staged_record {
	uint64_t page;
	bool summed;
	uint64_t xxh3;
	bool corrupt;
	uint32_t group_pages;
	enum vswap_record_fault fault;
	uint64_t key_group;
	uint64_t claimed_group;
};
typedef int (*vswap_staged_record_fn)(void *ctx, const struct vswap_staged_record *r);
int vswap_store_foreach_staged_page(struct vswap_store *s, vswap_staged_record_fn fn, void *ctx);

/* The swap file's descriptor (read-only use: SEEK_DATA walks, verify). */
int vswap_store_swap_fd(const struct vswap_store *s);
/* The byte offset of slot @slot in the swap file (of vswap_store_swap_fd()):
 * the one definition of the swap file's layout (docs/FORMAT.md). */
uint64_t vswap_store_slot_offset(const struct vswap_store *s, uint64_t slot);
const char *vswap_store_path(const struct vswap_store *s);
const char *vswap_store_index_path(const struct vswap_store *s);

/* The owner page of @slot from the in-memory tables: 1 and *page, or 0 if
 * the slot is free. */
int vswap_store_slot_owner(const struct vswap_store *s, uint64_t slot, uint64_t *page);

/*
 * Give the disk back while the store is open: punch the free slots that may
 * still hold bytes (a freed slot is reused as it is, and otherwise punched
 * only at a clean close: docs/FORMAT.md, Slots), lowest first, one call per
 * run, about @max_slots slots' worth per call; once none is left below the
 * highest slot in use, the free tail is cut off.  Returns how many free
 * slots may still hold bytes (0: all given back), or a negative errno (a
 * failed punch is logged; what it left is punched at the clean close).
 * -EINVAL in a tolerant (repair) open.  The handler calls it after a disable
 * (vswap_handler_opts.keep_freed_blocks).
 */
int64_t vswap_store_punch_free(struct vswap_store *s, uint64_t max_slots);

/* Punch slots that no loaded record references (a leak found by recovery).
 * -EBUSY if a slot in the range is in use (nothing punched).  In a tolerant
 * open, records left out of the tables do not count: recovery decides. */
int vswap_store_punch_slot(struct vswap_store *s, uint64_t slot);
int vswap_store_punch_slots(struct vswap_store *s, uint64_t first, uint64_t count);

/* Delete the index records (pages and staging) of group @group (64 pages
 * from page 64 * group) at once, in one synced transaction: for records
 * that cannot be loaded (beyond the regions, undecodable).  Recovery only;
 * the in-memory tables of those pages are reset to "no record".  -ENOENT
 * if neither database held a record under that key (nothing deleted). */
int vswap_store_drop_group(struct vswap_store *s, uint64_t group);

/*
 * A misplaced page-group record (VSWAP_RECORD_MISPLACED): the record under
 * the key of group @key_group passes its check as another group's, so its
 * key is what is damaged.  vswap_store_check_misplaced() weighs the
 * evidence that it is that group's record and nothing else's:
 *   - it is the only misplaced record under that key, and no other record
 *     names its group (under the group's own key, or misplaced too);
 *   - its group and every page it names lie within the regions, and the
 *     tables hold no record of those pages;
 *   - no record the store holds names any of its slots;
 *   - every slot it names for a present or stale page holds bytes that
 *     verify, by their page-seeded checksum, as that page, and not as the
 *     page at the same place under the damaged key; and at least one does.
 * 0 (*group: the record's own group; @group may be NULL), or -ENOENT (no
 * misplaced record under that key), -EEXIST (another record names the
 * group or one of its pages), -ERANGE (beyond the regions), -EBUSY (a slot
 * is another record's or out of range), -EBADMSG (a slot's bytes do not
 * verify as its page), -ENODATA (no slot to confirm it), each logged.
 * vswap_store_move_misplaced() weighs the same evidence in a write
 * transaction and, when it holds, moves the record unchanged under its own
 * key (deleting it where it lay, by its position: a damaged key may be out
 * of LMDB's order) and commits; the tables then hold its entries.
 * Recovery only: a tolerant open (the strict one refuses such an index);
 * move needs a writable handle (-EROFS).
 */
int vswap_store_check_misplaced(struct vswap_store *s, uint64_t key_group, uint64_t *group);
int vswap_store_move_misplaced(struct vswap_store *s, uint64_t key_group, uint64_t *group);

/*
 * The same for a misplaced staging record: the staging record under the key
 * of group @key_group passes its check as another group's.  The evidence
 * that it is that group's and nothing else's:
 *   - it is the only misplaced staging record under that key, and no other
 *     staging record names its group (under the group's own key, or
 *     misplaced too), and the tables hold no staged page of that group;
 *   - its group and every page it says is staged lie within the regions;
 *   - every page it says is staged has its checksum in the record, and the
 *     staging file's copy of that page verifies against it (a staged page
 *     without a checksum may be an incomplete copy: it confirms nothing).
 * 0 (*group: the record's own group; @group may be NULL), or -ENOENT (no
 * misplaced staging record under that key), -EEXIST (another record names
 * the group), -ERANGE (beyond the regions), -ENODATA (a staged page with no
 * checksum or no copy, or no staging file), -EBADMSG (a copy fails its
 * checksum), each logged.  vswap_store_move_misplaced_staging() weighs the
 * same evidence in a write transaction and, when it holds, moves the record
 * unchanged under its own key (by its position, as above) and commits; the
 * tables then hold its staged pages and their checksums.  Recovery only,
 * as above.
 */
int vswap_store_check_misplaced_staging(struct vswap_store *s, uint64_t key_group, uint64_t *group);
int vswap_store_move_misplaced_staging(struct vswap_store *s, uint64_t key_group, uint64_t *group);

/* ---- blobs: named values kept with the pages ------------------------------ */

/*
 * An embedder's own small state, kept in the store beside the guest's pages
 * (a VMM's saved vCPU registers, a working-set record): named values of up
 * to VSWAP_BLOB_MAX bytes.  Names are 1 to VSWAP_BLOB_NAME_MAX characters
 * of [A-Za-z0-9._-] (-EINVAL otherwise).
 *
 * A put or a delete takes effect in memory at once (a get sees it) and is
 * written by the next vswap_store_commit() or vswap_store_close(), in the
 * same index transaction as the page records and the state: a blob and the
 * pages committed with it become durable together, and a crash before that
 * commit leaves the previous value.  Each record carries a checksum over
 * its name and value seeded with the store UUID; a record that fails it is
 * never returned (-EBADMSG, logged).  Blobs are not page data: they are not
 * swapped, and vswap-fsck does not judge them.
 */
#define VSWAP_BLOB_NAME_MAX 63
#define VSWAP_BLOB_MAX (64u << 20)

/* Put @len bytes of @data (copied) under @name, replacing any value.
 * -EROFS on a read-only handle, -EFBIG past VSWAP_BLOB_MAX. */
int vswap_store_blob_put(struct vswap_store *s, const char *name, const void *data, size_t len);
/* A malloc()ed copy of @name's value in *data (free() it) and its length;
 * -ENOENT if there is none, -EBADMSG if its record fails its checksum. */
int vswap_store_blob_get(struct vswap_store *s, const char *name, void **data, size_t *len);
/* Delete @name (-ENOENT if there is none). */
int vswap_store_blob_delete(struct vswap_store *s, const char *name);
/* Walk the committed blobs in name order: @status is 0, or -EBADMSG for a
 * record that fails its check (@len is then the record's size).  A callback
 * returning non-zero stops the walk and that value is returned. */
typedef int (*vswap_blob_fn)(void *ctx, const char *name, size_t len, int status);
int vswap_store_foreach_blob(struct vswap_store *s, vswap_blob_fn fn, void *ctx);

/* Describe a vswap error code (negative errno) in words. */
const char *vswap_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* VSWAP_STORE_H */

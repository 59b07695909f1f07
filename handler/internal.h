/* SPDX-License-Identifier: MIT */
/*
 * Internals of handler/: the handle and what its files share.
 *
 * Threads and locks
 *   monitor thread  owns the epoll, the uffd list, the fault reads, the
 *                   command queue's consumer side and the swap-out progress
 *                   (struct monitor).
 *   commit thread   the lazy index commits, synced without h->lock held
 *                   (struct committer).
 *   job thread      at most one: trim or swap-in (struct job).
 *   swap-in reader  during a swap-in's swap-file pass: reads and hashes
 *                   the runs the job thread plans and copies; never takes
 *                   h->lock (swap_in.c).
 *   pool workers    move-to-staging copies and guest punches (copy mode),
 *                   removals of swapped-out pages (protect mode); touch no
 *                   store state.
 *   callers         enqueue commands; status() reads under the locks.
 * h->lock guards the store handle (not internally locked), the fault
 * counters and every page-state decision; it is held per fault, per chunk,
 * per trim batch.  h->slock guards the state, the transition record and the
 * last error, and h->scond announces state changes.  h->qlock guards the
 * command queue.  h->wp.rlock guards the protect mode's bitmap (the pool's
 * removals hold it alone).  Lock order: lock, then slock or wp.rlock; qlock
 * and cm.mu are never nested; m.drain_mu comes after lock; the swap-in's
 * jp.pipe->mu after lock and drain_mu, with nothing taken under it.
 */
#ifndef VSWAP_HANDLER_INTERNAL_H
#define VSWAP_HANDLER_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <vswap/handler.h>

#include "handler/pool.h"
#include "handler/uffd.h"
#include "handler/uffd_list.h"
#include "store/io.h"

/* A scan's batch (trim, the swap-out's zero pass) that found every page
 * examined: not a count and not a negative errno (-1 is -EPERM). */
#define SCAN_DONE INT64_MIN
#include "util/log.h"

/* Epoll tokens below UFFD_TOKEN_BASE. */
enum { TOKEN_CMD = 1, TOKEN_JOB = 2, TOKEN_READS = 3 };

enum {
	SWAP_OUT_HOOK_WRITTEN = 0,
	SWAP_OUT_HOOK_COMMITTED = 1,
	SWAP_OUT_HOOK_IN_FLIGHT = 2,
	SWAP_OUT_HOOK_REMOVING = 3,
	SWAP_OUT_HOOK_PIECE = 4,
	SWAP_OUT_HOOK_BEGUN = 5,
	SWAP_OUT_HOOK_COMPARED = 6,
};
enum { SWAP_IN_HOOK_READ = 0, SWAP_IN_HOOK_COPIED = 1 };

/* Swap-out commits (and so frees staging) every this many bytes. */
#define SWAP_OUT_GROUP_BYTES (64u << 20)
/* Faults and remove events leave the index behind; the monitor commits
 * when this many changes are pending or it has been idle for a while. */
#define LAZY_COMMIT_PAGES 8192u
#define LAZY_COMMIT_MS 200

struct hregion {
	uintptr_t start, end; /* host addresses [start, end) */
	int memfd;	      /* the handler's own open of the caller's memfd (regions_setup()) */
	bool own_fd;	      /* @memfd is that, closed with the handler; else the caller's */
	off_t offset;
	uint64_t first, pages; /* place in the store's page space */
	const uint8_t *alias;  /* protect mode: see struct protect */
};

struct counters {
	uint64_t from_file, from_staging, zeroed, redundant;  /* reset at each move */
	uint64_t poisoned, checksum_failures, corrupt_errors; /* lifetime */
	uint64_t eagain_retries; /* faults retried after EAGAIN (tests) */
};

enum cmd_type {
	CMD_ENABLE,
	CMD_TRIM,
	CMD_SWAP_OUT,
	CMD_DISABLE,
	CMD_EXIT,
	CMD_DETACH,
	CMD_RELEASE,
	CMD_ADD_UFFD,
	CMD_SET_STATIC,
	CMD_GC,
	CMD_RESUME,
	CMD_DISCARD,
};

struct cmd {
	enum cmd_type type;
	bool slow;	      /* DISABLE */
	int fd;		      /* ADD_UFFD */
	uintptr_t *bases;     /* ADD_UFFD: the uffd's region addresses, or NULL */
	unsigned count;	      /* SET_STATIC */
	uintptr_t start, end; /* DISCARD */
	int result;
	bool done;
	struct cmd *next;
};

/* A run of pages written to the swap file whose staging copy is freed only
 * after the commit that makes the write durable. */
struct run {
	uint64_t first, count;
};

/* A fault read while serving another one (EAGAIN): served next. */
struct deferred_fault {
	unsigned uffd;
	uintptr_t addr;
	bool wp; /* a write-protect fault (protect mode) */
};

/*
 * The protect enable mode (protect.c), under h->lock.  @clean has a bit per
 * page: resident, write-protected on every uffd since the last enable and
 * not written since (the swap-out set).  Only a page whose bit is set may be
 * removed from guest memory by trim or swap-out, and the bit is tested in
 * the same lock hold as the removal; a write-protect fault clears it under
 * the same lock before the writer is let through.
 */
struct protect {
	bool on;     /* the handler enables by protection */
	bool active; /* enabled: the bits are live */
	/* @clean and its count are also changed by the pool workers that
	 * remove swapped-out pages while the monitor writes the next ones:
	 * every access holds @rlock (after h->lock where both are held). */
	pthread_mutex_t rlock;
	uint64_t *clean;
	/* Pages a removal is punching (see protect.c: the pages it takes out
	 * of @clean and the holes between them, one piece at a time, pieces
	 * one at a time under @punch_mu); @removed is signalled under @rlock
	 * when a piece is done. */
	uint64_t *removing;
	pthread_cond_t removed;
	pthread_mutex_t punch_mu;
	atomic_uint removal_waits; /* write faults that waited for a punch (tests) */
	/* Copies into guest memory (every fill: fault, swap-in, prefetch)
	 * begun and ended, under @rlock; fills run under h->lock, one at a
	 * time.  A removal waits on @filled for the fills begun before it
	 * marked its piece (protect_fill_begin()). */
	uint64_t fills_begun, fills_ended;
	pthread_cond_t filled;
	atomic_uint fill_waits;	 /* fills that waited for a punch (tests) */
	atomic_uint drain_waits; /* removals that waited for a fill (tests) */
	atomic_uint punches;	 /* fallocate calls of removals (tests) */
	/* Test hook: called by protect_fill_begin() once the fill counts,
	 * lock held, before the copy. */
	void (*fill_hook)(void *ctx, uint64_t page);
	void *fill_hook_ctx;
	atomic_uint_fast64_t nclean;
	struct run *removals; /* committed runs to remove (swap-out) */
	unsigned nremovals;
	size_t cap_removals;
	uint64_t dirtied;   /* pages that left the set by a write since enable */
	uint64_t wp_faults; /* write-protect faults handled (tests) */
	uint64_t cursor;    /* swap-out: next page to look at */
	/* Swap-out: pages of the set its zero pass found all zeros and gave
	 * no record (swap_out_zero_pass(), trim.c): never written, removed
	 * with the written pages after the pass's commit landed; under
	 * @rlock, emptied at the pass's start and the swap-out's end. */
	uint64_t *zero;
	void *trim_buf; /* trim: guest bytes read with pread() */
};

enum job_kind { JOB_NONE, JOB_TRIM, JOB_SWAP_IN, JOB_SWAP_OUT };

/* Swap-file reads of faults in flight at most (fault_io.c); a fault finding
 * them all busy waits for one to complete. */
#define FAULT_READS 64u

/* A fault's swap-file read in flight.  Every fault on the page while it is
 * in flight waits on it: one read, and each waiting uffd served once. */
struct fault_read {
	struct vswap_read r;	 /* where the bytes are, what they must hash to */
	struct vswap_io_req req; /* on the engine; its tag is this read's index */
	void *buf;		 /* one page, page-aligned */
	bool busy;		 /* submitted, its completion not yet handled */
	bool inline_done;	 /* read at once, off the ring: the result is in req.res */
	bool cancelled;		 /* a remove event covered the page: never copied in */
	/* Each waiting uffd once, with the page's address in its process:
	 * processes may map the guest at different addresses
	 * (vswap_handler_add_uffd_at), so one address does not serve all. */
	struct fault_waiter {
		unsigned uffd;
		uintptr_t addr;
	} * waiters;
	unsigned nwaiters;
	size_t cap_waiters;
};

/* Sequential passes followed at once (fault_io.c: which reads go through
 * the page cache). */
#define FAULT_STREAMS 16u

/* The fault reads' I/O engine; its eventfd sits in the epoll (TOKEN_READS). */
struct fault_io {
	struct vswap_io io;
	bool have_ring; /* else faults pread on the monitor */
	struct fault_read reads[FAULT_READS];
	unsigned busy; /* changed under h->lock */
	/* The slot after the last one each recent sequential pass read (0:
	 * none), and the entry the next new pass takes. */
	uint64_t stream[FAULT_STREAMS];
	unsigned stream_next;
	/* Page-cache reads set aside by fault_io_submit() (indices): @untried
	 * of them to read at once or move to the ring (fault_io.c:
	 * inline_try()), the others read, handled like the ring's completions.
	 * The monitor's alone, like the ring. */
	unsigned ready[FAULT_READS];
	unsigned nready, untried;
	atomic_uint_fast64_t inline_reads; /* those read at once (tests) */
	/* Test hook: while set, the monitor leaves completed reads unhandled
	 * (a test holds reads in flight; it writes the eventfd after clearing
	 * it); waits (ring full, drain) ignore it.  @taken counts the
	 * completions handled or being handled. */
	atomic_bool hold;
	atomic_uint taken;
};

/* State owned by the monitor thread. */
struct monitor {
	int epfd, cmd_efd, job_efd;
	struct uffd_list uffds;
	bool registered; /* regions registered on the uffds (enabled) */
	bool gc_due;
	bool rekeyed; /* a GC ran during this epoll batch */
	/* Remove events were applied in this epoll batch: committed at its
	 * end rather than lazily, so that a handler killed afterwards leaves
	 * an index that knows (the remover is released when the event is
	 * read, so a kill before this commit undoes the remove). */
	bool removed;
	bool exiting;
	struct job job;
	enum job_kind job_kind;
	/* slow file cleanup after a disable: free slots a step per tick */
	bool slow_cleanup, cleanup_active;
	/* Ready after a disable: freed slots' blocks to give back
	 * (cleanup.c: cleanup_punch()), a piece per idle turn. */
	bool punch_due;
	uint64_t cleanup_cursor, cleanup_next_ms;
	/* swap-out progress */
	uint64_t out_cursor, out_pages, out_t0_ms;
	struct run *unclean;
	size_t nunclean, cap_unclean;
	uint64_t unclean_pages;
	/* faults read while retrying after EAGAIN */
	struct deferred_fault *deferred;
	unsigned ndeferred;
	size_t cap_deferred;
	void *page_buf; /* one page: a fault's read from the store (no ring) */
	struct fault_io fio;
	/* Test hook: while set, the monitor leaves the uffds' messages unread
	 * (a test orders a fault after a step of another thread). */
	atomic_bool hold_events;
	/* Test hook: called on the monitor, without the lock, for each remove
	 * event read, before it is applied. */
	void (*remove_hook)(void *ctx);
	void *remove_hook_ctx;
	/* Test hook: called on the monitor, without the lock, after each read
	 * of messages that returned some, before any of them is handled. */
	void (*read_hook)(void *ctx);
	void *read_hook_ctx;
	/* Nonzero while the monitor reads uffd messages and applies the
	 * remove events among them (events_drain()); guarded by @drain_mu,
	 * taken after h->lock or alone.  A page copied in off the monitor
	 * (swap-in, prefetch) is copied only with @drain_mu held and the depth
	 * 0 (events_settle()): a remove event read but not yet applied lets
	 * its remover punch the range, and a copy after that punch would bring
	 * back what the guest removed. */
	pthread_mutex_t drain_mu;
	unsigned drain_depth;
	/* the sweep for faults read and never answered (sweep.c): due
	 * after faults were read or the regions registered, done once */
	bool sweep_due;
	uint64_t sweep_next_ms;
	atomic_uint_fast64_t swept; /* times it found one and woke the ranges */
	/* Test hook: the next this many fault messages read are dropped,
	 * neither served nor woken (as by a handler killed after reading
	 * them). */
	atomic_uint drop_faults;
};

/* The progress of the running trim or swap-in job (read by status()). */
struct job_progress {
	atomic_uint_fast64_t pages;
	uint64_t t0_ms;
	int swap_in_fd;	 /* dup of the main uffd, used by the swap-in thread */
	uint64_t cursor; /* next page to look at */
	bool staged_done;
	/* The swap-in's swap-file runs in flight (swap_in.c), on an engine of
	 * their own: allocated by swap_in_prepare(), freed when a swap-in ends. */
	struct swap_in_run *runs;
	unsigned nruns;
	struct vswap_io io;
	struct swap_in_pipe *pipe; /* the reader thread and its hand-over */
};

/* The commit thread (committer.c).  mu guards the flags and the error and
 * is never held with another lock. */
struct committer {
	pthread_t thread;
	bool inited, started;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a request, the end of a commit, stop */
	bool want, busy, stop;
	int error; /* the last lazy commit's error, 0 after a success */
	/* Commits numbered in the order they begin: begun, the last one that
	 * finished, the last one that landed (committer_ticket()). */
	uint64_t begun, finished, landed;
	/* Test hook: called on the commit thread between a commit's begin and
	 * its write, without the lock (a test holds a commit in flight). */
	void (*hook)(void *ctx);
	void *hook_ctx;
};

struct vswap_handler {
	struct vswap_store *store;
	struct vswap_handler_opts opts; /* defaults filled in */
	struct logger log;
	size_t page_size;
	unsigned page_shift;
	size_t thp_size;

	struct hregion *regions;
	unsigned nregions;
	uint64_t total_pages;
	uint8_t *staging;  /* the store's staging file, mapped shared */
	uint64_t features; /* granted to the main uffd */
	struct protect wp;
	int main_uffd; /* owned by the uffd list (index 0) */

	pthread_mutex_t lock;
	struct counters c;
	struct pool *pool;

	pthread_mutex_t slock;
	pthread_cond_t scond;
	enum vswap_state state;
	struct vswap_transition trans;
	int last_error;

	pthread_mutex_t qlock;
	pthread_cond_t qdone;
	struct cmd *qhead, *qtail;
	bool dead;	  /* the monitor has ended: commands are refused */
	unsigned waiters; /* callers inside cmd_submit (destroy waits for none) */

	/* Test hook: called by the swap-in job without the lock after a
	 * swap-file run's read (SWAP_IN_HOOK_READ) and after its copies
	 * (SWAP_IN_HOOK_COPIED). */
	void (*swap_in_hook)(void *ctx, int where);
	void *swap_in_hook_ctx;
	atomic_uint settle_waits; /* copies that waited for events_settle() */
	/* Test hook: called by the trim and swap-in jobs between batches,
	 * without the lock, so a test can hold a job still meanwhile. */
	void (*job_hook)(void *ctx);
	void *job_hook_ctx;
	/* Test hook: called by the swap-out on the job thread, without the
	 * lock, once a batch's slots are reserved and before its writes are
	 * submitted (SWAP_OUT_HOOK_BEGUN), after its pages were compared
	 * with their stale copies and before they are judged
	 * (SWAP_OUT_HOOK_COMPARED), while they are in flight
	 * (SWAP_OUT_HOOK_IN_FLIGHT),
	 * after each batch's end (SWAP_OUT_HOOK_WRITTEN) and after each commit
	 * before the removals it allows (SWAP_OUT_HOOK_COMMITTED), so a test
	 * can place a guest access in each window; and where a removal runs
	 * (a pool worker, or trim's job), without any lock, before it marks a
	 * piece (SWAP_OUT_HOOK_PIECE) and between marking it removing and
	 * punching it (SWAP_OUT_HOOK_REMOVING, protect mode). */
	void (*swap_out_hook)(void *ctx, int where);
	void *swap_out_hook_ctx;
	/* Test knob: the swap-out's commit group in pages (BATCH and NONE),
	 * 0 for SWAP_OUT_GROUP_BYTES; set before the swap-out starts. */
	uint64_t swap_out_group_pages;
	/* Test knob: the move to staging's wave in pages (copy mode: the
	 * pages whose checksums one commit carries), 0 for the default. */
	uint64_t move_wave_pages;

	pthread_t thread;
	atomic_uint nuffds; /* the monitor's list length, for status() */
	struct monitor m;
	struct job_progress jp;
	struct committer cm;
	struct workset *ws;  /* working-set record and prefetch (workset.c), or NULL */
	struct verifier *vf; /* staged copies checked ahead (verify.c), or NULL */
};

/* log.c */
void hlog(const struct vswap_handler *h, enum vswap_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t now_ms(void);
uint64_t handler_now_us(void);

/* regions.c */
int regions_validate(const struct vswap_region *r, unsigned n, size_t page_size);
int regions_setup(struct vswap_handler *h, const struct vswap_region *r, unsigned n);
/* Close the handler's own memfd descriptors. */
void regions_close(struct vswap_handler *h);
/* The region holding host address @addr, or NULL. */
const struct hregion *region_of_addr(const struct vswap_handler *h, uintptr_t addr);
/* The region holding page @page, or NULL. */
const struct hregion *region_of_page(const struct vswap_handler *h, uint64_t page);
static inline uintptr_t page_addr(const struct vswap_handler *h, const struct hregion *r,
				  uint64_t page)
{
	return r->start + ((page - r->first) << h->page_shift);
}
static inline void *staging_ptr(const struct vswap_handler *h, uint64_t page)
{
	return h->staging + (page << h->page_shift);
}
/* The region holding @addr in the process of uffd @index (at that
 * process's addresses), or NULL; *start gets the region's start there. */
const struct hregion *region_of_uffd_addr(const struct vswap_handler *h, unsigned index,
					  uintptr_t addr, uintptr_t *start);
/* Page @page's address in the process of uffd @index. */
static inline uintptr_t uffd_page_addr(const struct vswap_handler *h, unsigned index,
				       const struct hregion *r, uint64_t page)
{
	const uintptr_t *bases = h->m.uffds.v[index].bases;
	uintptr_t start = bases ? bases[r - h->regions] : r->start;
	return start + ((page - r->first) << h->page_shift);
}
/* Register (or unregister) every region on @fd, at @bases[i] (NULL: the
 * handler's own addresses).  -ESRCH: the uffd's process is gone. */
int regions_register(struct vswap_handler *h, int fd, const uintptr_t *bases);
int regions_unregister(struct vswap_handler *h, int fd, const uintptr_t *bases);
/* Guest pages resident in the memfds (SEEK_DATA/SEEK_HOLE). */
uint64_t regions_resident_pages(const struct vswap_handler *h);

/* fault.c */
/* Lock held: page @page is resident after all; its other copies are stale. */
void fault_page_resident(struct vswap_handler *h, uint64_t page);
int fault_serve(struct vswap_handler *h, unsigned uffd_index, uintptr_t addr);
int remove_range(struct vswap_handler *h, uintptr_t start, uintptr_t end);
/* A REMOVE event of uffd @index: its range at that process's addresses. */
int remove_range_at(struct vswap_handler *h, unsigned index, uintptr_t start, uintptr_t end);
/* Read and handle the events of uffd @index (faults deferred while
 * @defer_faults).  Returns the events handled or -errno. */
int events_drain(struct vswap_handler *h, unsigned index, bool defer_faults);
/* h->lock held (dropped while waiting): returns once no uffd read of the
 * monitor has remove events unapplied, holding m.drain_mu, which keeps the
 * next read from starting until events_release().  Copy pages in between,
 * never drop h->lock there.  Off the monitor, or on it outside a drain. */
void events_settle(struct vswap_handler *h);
void events_release(struct vswap_handler *h);
/* Poison (or report, by policy) a page that cannot be served; lock held.
 * 1: poisoned; 0: left unresolved, error recorded; -errno: ioctl failed. */
int fault_corrupt(struct vswap_handler *h, int fd, uintptr_t addr, uint64_t page, int err,
		  bool wake);

/* fault_io.c: faults' swap-file reads through io_uring */
int fault_io_init(struct vswap_handler *h);
void fault_io_fini(struct vswap_handler *h);
/* Lock held: serve the fault on uffd @index at @addr (page @page, present)
 * from the swap file: joins the page's read in flight or submits one.
 * 0, -EBUSY (every read busy: fault_io_wait(), then resolve again), -ENOSYS
 * (no ring: read synchronously), -errno. */
int fault_io_submit(struct vswap_handler *h, unsigned index, uintptr_t addr, uint64_t page);
/* Handle the completed reads (lock not held); with @wait, wait for one
 * first.  Returns the number handled. */
int fault_io_reap(struct vswap_handler *h, bool wait);
/* Lock not held: enter the reads fault_io_submit() queued (one system call
 * for the faults read together), then handle those complete already (a
 * read the page cache held completes inside its submission), unless the
 * test hook holds them.  Called after each batch of uffd messages and
 * before the monitor sleeps. */
void fault_io_flush(struct vswap_handler *h);
/* Wait for every read in flight; @serve: copy their pages to the waiting
 * faults, else drop them (the faults stay queued: detach). */
void fault_io_drain(struct vswap_handler *h, bool serve);
/* Lock held: a remove event covers [first, first+count): the reads in
 * flight there must never be copied in. */
void fault_io_cancel(struct vswap_handler *h, uint64_t first, uint64_t count);
/* fault.c: a fault message's handling (MISSING or write-protect). */
int fault_dispatch(struct vswap_handler *h, unsigned index, uintptr_t addr, bool wp);

/* protect.c: the protect enable mode; see the comments there. */
/* The mode a handler uses: COPY or PROTECT, or -EOPNOTSUPP / -EINVAL. */
int protect_resolve(enum vswap_enable_mode want, uint64_t features);
/* PROTECT only where no region's memory may hold huge folios: else AUTO
 * becomes COPY, a forced PROTECT -EOPNOTSUPP (logged). */
int protect_check_memory(struct vswap_handler *h, enum vswap_enable_mode want, int resolved);
int protect_init(struct vswap_handler *h);
void protect_fini(struct vswap_handler *h);
int protect_enable(struct vswap_handler *h, uint64_t *pages);
/* Write-protect every region through uffd @index (not under the lock). */
int protect_uffd(struct vswap_handler *h, unsigned index);
void protect_release(struct vswap_handler *h);
int protect_wp_fault(struct vswap_handler *h, unsigned index, uintptr_t addr);
/* Pages that are not resident (a MISSING fault, a REMOVE event) leave the
 * swap-out set; lock held. */
void protect_forget(struct vswap_handler *h, uint64_t first, uint64_t count);
void protect_swap_out_start(struct vswap_handler *h);
/* Lock held: up to @max pages of the swap-out set from the swap-out's
 * cursor on, in at most @max_runs runs (each within a region), into @pages;
 * the cursor moves past them.  0 when none is left. */
uint32_t protect_gather(struct vswap_handler *h, uint64_t *pages, uint32_t max, unsigned max_runs);
/* A page protect_gather() took is still to write: protected, unwritten
 * since, and not one of the zero pass's (lock held). */
bool protect_still_clean(struct vswap_handler *h, uint64_t p);
/* After the commit of written runs (lock held): note the pages still
 * protected and present for removal; protect_remove_start() (lock not held)
 * hands them to the pool (without @wait, what finds its queue full stays
 * noted), protect_remove_wait() queues the rest and waits for them all. */
void protect_remove_written(struct vswap_handler *h, uint64_t first, uint64_t count);
/* The swap-out's zero pass, lock held: judge the protected pages in the
 * window of trim_batch_pages pages from the first one at or after *cursor,
 * read through the alias mapping; those all zeros lose their record (a
 * fault zero-fills them) and are marked in @zero, so that the swap-out
 * skips them and removes them with its written neighbours.  The count, or
 * SCAN_DONE when every protected page was examined. */
int64_t protect_zero_batch(struct vswap_handler *h, uint64_t *cursor);
/* Empty @zero: nothing of it is removed (lock held). */
void protect_zeros_forget(struct vswap_handler *h);
/* At the swap-out's end (lock not held): the marked pages still protected
 * and without a record are noted for removal (their pass's commit
 * landed), and @zero is emptied; protect_remove_wait() then removes them. */
void protect_remove_zeros(struct vswap_handler *h);
void protect_remove_start(struct vswap_handler *h, bool wait);
void protect_remove_wait(struct vswap_handler *h);
/* Around every copy into guest memory (UFFDIO_COPY, UFFDIO_ZEROPAGE) of
 * pages [first, first+count), lock held: begin waits while any of them is
 * in a piece being removed, end says the copy is done.  A removal punches
 * the holes between its pages too, so a hole must not be filled while its
 * piece is punched (protect.c). */
void protect_fill_begin(struct vswap_handler *h, uint64_t first, uint64_t count);
void protect_fill_end(struct vswap_handler *h);
/* After a batch's writes from the alias mapping (@pages sorted, no lock):
 * unmap them from the alias. */
void protect_alias_drop(struct vswap_handler *h, const uint64_t *pages, uint32_t n);
/* One trim batch in place: judged under the lock (pages trimmed, or SCAN_DONE
 * when every protected page was examined), committed by the caller without
 * it, then removed without it too (protect_trim_remove(), which also frees
 * @t; @committed: the commit landed, else nothing is removed). */
struct protect_trim {
	uint64_t *drop; /* bit i: page start + i judged, to remove */
	uint64_t start, limit;
};
int64_t protect_trim_batch(struct vswap_handler *h, uint64_t *cursor, struct protect_trim *t);
void protect_trim_remove(struct vswap_handler *h, struct protect_trim *t, bool committed);

/* move.c */
/* Next data extent of @r at or after relative offset @pos: 1 and
 * [*data, *hole) relative to the region, or 0 at the end, or -errno. */
int region_next_extent(const struct hregion *r, off_t pos, off_t *data, off_t *hole);
int move_to_staging(struct vswap_handler *h, uint64_t *pages);

/* swap_out.c */
/* The swap-out job: every page to write, SWAP_OUT_WRITES batches in flight,
 * committed on the commit thread; 0 when all are out (or aborted). */
int swap_out_job(struct job *j, void *arg);
/* Commit the runs ended and clean them (after the job, on the monitor). */
int swap_out_flush(struct vswap_handler *h);
/* trim.c: before the swap-out's first batch (lock not held), the pages it
 * would write that are all zeros lose their record instead (and leave
 * staging), committed once so that the slots they free are reusable by the
 * swap-out's writes (docs/DESIGN.md, Swap-out).  0 or -errno. */
int swap_out_zero_pass(struct vswap_handler *h, struct job *j);

/* swap_in.c */
int swap_in_job(struct job *j, void *arg);
/* After a complete swap-in, on the monitor thread: poison the lost pages
 * through every uffd.  -EBADMSG: one is unserved (policy). */
int swap_in_poison_lost(struct vswap_handler *h);
int swap_in_prepare(struct vswap_handler *h);
void swap_in_release(struct vswap_handler *h);

/* trim.c */
int trim_job(struct job *j, void *arg);

/* cleanup.c: give the swap file's space back after a disable */
int cleanup_step(struct vswap_handler *h, uint64_t max_pages);
/* One piece of giving the freed slots' blocks back (monitor, Ready). */
void cleanup_punch(struct vswap_handler *h);

/* verify.c: the staged copies a previous handler left, checked ahead of
 * their use with h->lock held only to find and to judge them */
int verify_start(struct vswap_handler *h);
void verify_stop(struct vswap_handler *h);

/* workset.c: record the order pages come in (lock held), prefetch */
void workset_note(struct vswap_handler *h, uint64_t page);
void workset_stop(struct vswap_handler *h);
void workset_free(struct vswap_handler *h);

/* monitor.c */
void *monitor_main(void *arg);
int register_all(struct vswap_handler *h);
void unregister_all(struct vswap_handler *h);
enum vswap_state resting_state(struct vswap_handler *h, enum vswap_state st);
void cleanup_finish(struct vswap_handler *h);

/* sweep.c: no fault waits forever.  Between two epoll batches, at most
 * every SWEEP_MS and only while due (m.sweep_due: faults were read since
 * the last look, or the regions were registered): a uffd whose faults read
 * and not answered outnumber those parked on purpose has lost one: every
 * range of it is woken. */
#define SWEEP_MS 1000
void sweep_unanswered(struct vswap_handler *h);
/* A fault read on uffd @fd is left unanswered on purpose (not served, not
 * woken: a page that cannot be served under the ERROR policy).  On the
 * monitor. */
void sweep_park(struct vswap_handler *h, int fd);

/* resume.c: take over from a handler that died (vswap_handler_resume) */
int do_resume(struct vswap_handler *h);
void state_set(struct vswap_handler *h, enum vswap_state st, struct vswap_transition t);
/* The same, committed by the commit thread, not waited for: for a
 * transition that changed nothing in the store but its recorded state (an
 * enable that took no page), or whose changes the next open rebuilds (a
 * resume's reconcile), so that a kill before that commit loses nothing. */
void state_set_lazy(struct vswap_handler *h, enum vswap_state st, struct vswap_transition t);
int commit_locked(struct vswap_handler *h);

/* committer.c: lazy index commits off the monitor */
int committer_start(struct vswap_handler *h);
void committer_stop(struct vswap_handler *h);
/* Ask for a commit of what is pending (never waits). */
void committer_request(struct vswap_handler *h);
/* Wait until no commit is asked for or running (lock not held). */
void committer_wait_idle(struct vswap_handler *h);
bool committer_busy(struct vswap_handler *h);
/* The last lazy commit's error (logged once), 0 after a success. */
int committer_error(struct vswap_handler *h);
/* Ask for a commit of everything pending now (lock not held): a ticket for
 * committer_result(), which says 0 once it landed, -errno if it failed,
 * -EINPROGRESS while it runs (with @wait: waits for its end). */
uint64_t committer_ticket(struct vswap_handler *h);
int committer_result(struct vswap_handler *h, uint64_t ticket, bool wait);

/* commands.c */
/* Queue @c and wait for its answer; -ESHUTDOWN once the monitor ended. */
int cmd_submit(struct vswap_handler *h, struct cmd *c);

/* lost.c: lost pages and discards */
uint64_t lost_count(struct vswap_handler *h);
int lost_poison_uffd(struct vswap_handler *h, int fd, const uintptr_t *bases);
int lost_discard(struct vswap_handler *h, uintptr_t start, uintptr_t end);
/* The monitor is ending: answer every queued command -ESHUTDOWN and refuse
 * new ones. */
void cmd_refuse_all(struct vswap_handler *h);
/* Wait until no caller is inside cmd_submit (before freeing @h). */
void cmd_wait_callers(struct vswap_handler *h);

#endif

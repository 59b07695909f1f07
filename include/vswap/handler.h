/* SPDX-License-Identifier: MIT */
/*
 * vswap handler: the userfaultfd page handler a VMM embeds.  It owns the
 * guest regions' registration, the staging memory (the store's staging
 * file), faults and remove events, move-to-staging, swap-out, swap-in and
 * trim, and the state machine run by a monitor thread.  It calls store/ for
 * everything on disk.
 *
 * Functions return 0 (or a count) on success, a negative errno on failure.
 *
 * Threads: every function may be called from any thread except the guest's
 * faulting ones (a command waits for the monitor, which may be serving that
 * very fault).  The handler runs its own threads: the monitor (faults,
 * remove events, commands, swap-out), one job thread (trim or swap-in) and
 * a pool of copy workers used by enable.
 *
 * Restarting or resuming (later work) stays possible: everything a fault
 * needs is in the store (staging record + staging file, slots, checksums,
 * the recorded state), and a handler created over a store that still holds
 * pages serves them from there once enabled.
 */
#ifndef VSWAP_HANDLER_H
#define VSWAP_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vswap/store.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vswap_handler;

/* A contiguous host mapping of guest RAM (MAP_SHARED), backed by @memfd at
 * @offset.  @addr, @len and @offset must be page-aligned and @len > 0.  The
 * handler's process (and every process whose uffd is added) maps it at
 * @addr.  Regions are laid end to end in the store's page space, in order.
 * The handler opens @memfd again for itself (through /proc/self/fd, at
 * create; closed with the handler), so its lseek(SEEK_DATA /
 * SEEK_HOLE) scans leave the file offset of the caller's descriptor where
 * it was.  Without /proc it uses @memfd itself (logged at INFO), and that
 * offset moves. */
struct vswap_region {
	void *addr;
	size_t len;
	int memfd;
	off_t offset;
};

/* What a fault does with a page whose bytes fail their checksum. */
enum vswap_corrupt_policy {
	/* UFFDIO_POISON: the guest's access gets SIGBUS; never wrong bytes. */
	VSWAP_CORRUPT_POISON = 0,
	/* Leave the fault unresolved (the faulting thread keeps waiting) and
	 * report the error through the log callback and the status's
	 * last_error: the VMM decides.  A swap-in meeting such a page fails
	 * (state Failed, regions stay registered) rather than leave a hole.
	 * Also the behaviour when the kernel lacks UFFDIO_POISON (< 6.6). */
	VSWAP_CORRUPT_ERROR = 1,
};

/*
 * How enable takes the guest's resident pages out of its memory.
 *
 * PROTECT (the default where the kernel has userfaultfd write protection on
 * shmem, UFFD_FEATURE_WP_HUGETLBFS_SHMEM, checked at run time): enable
 * registers the regions for MISSING and write-protect faults on every uffd
 * and write-protects them in place.  No page is copied and no staging
 * memory is used; the guest may keep running (a VMM may still pause it for a
 * consistent cut: the pause is then the protection's, milliseconds per
 * GiB).  A guest write to a protected page is let through at once (the
 * page is un-protected) and the page leaves the swap-out set: it stays
 * resident and counts in dirtied_pages.  Trim drops zero pages and pages
 * equal to their stale slot from guest memory after committing their
 * state; swap-out writes the protected pages to the swap file straight from
 * guest memory (O_DIRECT), commits, then removes them from the memfd; the
 * guest's next access faults them back from the store.
 *
 * Contract in this mode: guest memory is written only through mappings of
 * the registered processes (whose uffds the handler serves).  A write that
 * bypasses the page tables (a device that pinned guest pages long term, a
 * process forked after enable that writes before its uffd was added) is not
 * seen and may be lost.  No write(2) or pwrite(2) into a registered memfd,
 * in either mode: a partial write into a swapped-out page creates the page
 * with zeros around the written bytes (the store's copy is no longer
 * served), and a pwrite() whose source is guest memory can deadlock against
 * the handler's own hole punch.  A range punched out of the memfd behind
 * the handler's back (fallocate(PUNCH_HOLE) without a REMOVE event and
 * without vswap_handler_discard()) does not simply read as zeros: a page
 * resident when punched does, but a page already swapped out keeps its
 * copy in the store, and the guest's next access is served that copy.  Call
 * vswap_handler_discard() first to make the whole range read as zeros.
 *
 * Huge pages: protect mode removes single pages from guest memory by
 * punching them out of the memfd, and inside a huge (large) shmem folio the
 * kernel zeroes such a sub-range in place and then splits the folio; if
 * anything else holds a reference to it (a device's pin, io_uring fixed
 * buffers, an O_DIRECT in flight) the split fails, the punch still
 * succeeds, and the zeroed pages stay mapped: the guest would read zeros.
 * So protect mode is used only where no region's memory may hold huge
 * folios: st_blksize of every memfd is the page size, its tmpfs (if any) is
 * not mounted with a huge= option other than never, and the kernel's shmem
 * THP policy (/sys/kernel/mm/transparent_hugepage/shmem_enabled and every
 * hugepages-*kB/shmem_enabled) is never or deny.  "advise" counts as huge
 * too: the VMM may MADV_HUGEPAGE guest RAM, which the handler cannot see;
 * an unreadable policy counts as huge.  Otherwise AUTO resolves to COPY
 * (logged at INFO) and a forced PROTECT makes vswap_handler_create() fail
 * with -EOPNOTSUPP (logged at ERROR).  Copy mode removes whole extents only
 * after copying them and is safe on huge pages.  The checks run once, at
 * create: a VMM must not turn huge pages on for guest RAM afterwards.
 *
 * COPY (crosvm vmm-swap's way): enable copies every resident page into the
 * staging file and removes it from guest memory; the guest must not write
 * its RAM during enable (pause the vCPUs and devices).
 *
 * AUTO picks PROTECT where the kernel has it and guest memory cannot hold
 * huge folios (above), else COPY.  Forcing PROTECT on a kernel without it,
 * or on such memory, makes vswap_handler_create() fail with -EOPNOTSUPP.
 *
 * REMOVE events, both modes: the kernel reports MADV_REMOVE and
 * MADV_DONTNEED on a registered range with the same UFFD_EVENT_REMOVE, and
 * the handler cannot tell them apart.  A REMOVE event discards the range's
 * contents: its staged and swapped copies are dropped, and the pages read
 * as zero afterwards (a page still resident in the memfd when a DONTNEED
 * came keeps its bytes there, but the handler no longer tracks it as the
 * guest's).  So a VMM must not MADV_DONTNEED guest RAM whose contents it
 * wants kept while swap is enabled (crosvm's vmm-swap behaves the same).
 */
enum vswap_enable_mode {
	VSWAP_ENABLE_AUTO = 0,
	VSWAP_ENABLE_COPY = 1,
	VSWAP_ENABLE_PROTECT = 2,
};
/* "auto", "copy", "protect"; parses the same names (-EINVAL). */
const char *vswap_enable_mode_name(enum vswap_enable_mode m);
int vswap_enable_mode_parse(const char *name, enum vswap_enable_mode *out);

struct vswap_handler_opts {
	/* The opened store (not owned; close it after vswap_handler_destroy). */
	struct vswap_store *store;
	uint32_t chunk_pages;	   /* swap-out / swap-in chunk; default 512 (2 MiB) */
	uint32_t trim_batch_pages; /* default 1024 */
	unsigned workers;	   /* move-to-staging threads; default CPU count */
	/* Swap-in reads the swap file this many pages ahead of the run it
	 * copies (kernel read-ahead through io_uring); default 4096 (16 MiB). */
	uint64_t prefetch_budget_pages;
	enum vswap_corrupt_policy on_corrupt;
	enum vswap_enable_mode enable_mode; /* default AUTO */
	/* Slow file cleanup after disable: free this many pages' slots every
	 * interval; defaults 16384 (64 MiB) and 5000 ms, like crosvm's vmm-swap. */
	uint64_t cleanup_step_pages;
	uint32_t cleanup_interval_ms;
	/* Logging: the rule is next to enum vswap_log_level (store.h). */
	vswap_log_fn log;
	void *log_ctx;
	enum vswap_log_level log_level;
	/* The time slice, in microseconds, the handler's background threads
	 * (the swap-out, trim and swap-in jobs, the commit thread, the pool's
	 * workers) ask the kernel for (sched_setattr(2): SCHED_OTHER with
	 * sched_runtime; no privilege needed; the kernel clamps it to
	 * 100..100000).  On Linux 6.12 and later a thread that wakes with a
	 * shorter slice preempts a running one at once, so a slice longer than
	 * the guest's threads have (the kernel's default: about 1-3 ms) lets a
	 * vCPU whose fault was served run before the swap-out's work goes on.
	 * 0 (the default): nothing asked, the kernel's default slice. */
	uint32_t background_slice_us;
	/* Swap-out: nonzero makes it look for pages of zeros first (reading
	 * each page in place; the first word of a page that holds data settles
	 * it) and give them no record instead of writing them: a fault
	 * zero-fills them, they leave guest memory with the rest, and the
	 * slots they had are reused by the swap-out's own writes.  It does for
	 * zero pages what trim does, without trim's copy of all guest memory:
	 * a VMM that swaps out without trimming (a hibernation) saves the
	 * writes and the slots.  0 (the default): every page is written, zero
	 * or not, as crosvm's vmm-swap does (its trim drops them). */
	uint32_t skip_zero_pages;
	/* After a disable (Ready: every page resident, no region registered)
	 * the slots the cleanup frees still hold their blocks.  0 (the
	 * default): the monitor gives them back while it is idle, punching
	 * them in runs of at most 8 MiB per turn and cutting the file's free
	 * tail (vswap_store_punch_free()), until none is left or the next
	 * enable (whose swap-out then reuses what is left), as crosvm's
	 * vmm-swap truncates its file.  Nonzero: they stay allocated until a
	 * write reuses them or the store closes cleanly; the next swap-out
	 * then writes over blocks the file has, which on ext4 here ran at
	 * 1.6x the rate of writing fresh ones. */
	uint32_t keep_freed_blocks;
	/* Room for options added later without an ABI break (docs/ABI.md):
	 * must be zero (zero-initialise the struct); -EINVAL otherwise. */
	uint64_t reserved[7];
};

/* States, numbered as crosvm's vmm-swap numbers them; the transitions are
 * tabled in docs/DESIGN.md. */
enum vswap_state {
	VSWAP_STATE_READY = 0,
	VSWAP_STATE_FAILED = 1,
	VSWAP_STATE_PENDING = 2,
	VSWAP_STATE_TRIM_IN_PROGRESS = 3,
	VSWAP_STATE_SWAP_OUT_IN_PROGRESS = 4,
	VSWAP_STATE_ACTIVE = 5,
	VSWAP_STATE_SWAP_IN_IN_PROGRESS = 6,
};
const char *vswap_state_name(enum vswap_state st);

/*
 * Metrics.  How they read in each enable mode:
 *   resident_pages        both: guest pages in the memfds.  After a protect
 *                         enable it is unchanged (nothing moved); it falls
 *                         as trim and swap-out remove pages.
 *   copied_from_staging   copy: faults served from staging.  protect: 0 (no
 *                         staging), unless the store held staged pages of
 *                         an earlier copy-mode handler.
 *   copied_from_file, zeroed_pages, redundant_pages
 *                         both: faults served from the swap file, with
 *                         zeros, or found filled already.  In protect mode a
 *                         guest reading its resident memory takes no fault,
 *                         so these stay 0 until trim or swap-out removes
 *                         pages (or the guest touches a hole).
 *   staging_pages         copy: pages in staging (all moved pages in
 *                         Pending).  protect: 0, as above.
 *   protected_pages       protect: resident pages still write-protected and
 *                         unwritten since enable (the swap-out set, the
 *                         counterpart of staging_pages).  copy: 0.
 *   dirtied_pages         protect: pages taken out of the swap-out set by a
 *                         guest write since the last enable.  copy: 0 (a
 *                         write after a copy enable lands on a page that
 *                         faulted back, counted in copied_from_*).
 *   swap_pages            both: pages whose current copy is in the swap
 *                         file.  In protect mode a page written but not yet
 *                         removed (its commit pending) is counted already.
 * The fault counters and dirtied_pages restart at each enable; all but
 * resident_pages and the store's lifetime counters read 0 in Ready.
 */
struct vswap_metrics {
	/* The seven fields of crosvm's vmm-swap metrics. */
	uint64_t resident_pages;
	uint64_t copied_from_file_pages;
	uint64_t copied_from_staging_pages;
	uint64_t zeroed_pages;
	uint64_t redundant_pages;
	uint64_t staging_pages;
	uint64_t swap_pages;
	/* Added by vswap. */
	uint64_t checksum_failures;
	uint64_t poisoned_pages;
	uint64_t bytes_written; /* store lifetime counters */
	uint64_t bytes_read;
	uint64_t commits;
	uint64_t protected_pages; /* protect mode, see above */
	uint64_t dirtied_pages;
};

struct vswap_transition {
	uint64_t pages;
	uint64_t time_ms;
};

struct vswap_status {
	enum vswap_state state;
	struct vswap_metrics metrics;
	/* The current state's record: Ready = the last swap-in (or zeros),
	 * Pending = the enable (pages moved to staging, or protected
	 * in place; after a trim the pages trimmed),
	 * TrimInProgress = trimmed so far, SwapOutInProgress / Active = pages
	 * written, SwapInInProgress = pages brought in so far, Failed = 0. */
	struct vswap_transition transition;
	/* Added by vswap: the last error met by the monitor or a job (0 =
	 * none; a negative errno, see vswap_strerror()) and the number of
	 * uffds served. */
	int last_error;
	unsigned uffds;
	/* The mode enable uses (AUTO resolved: COPY or PROTECT). */
	enum vswap_enable_mode enable_mode;
};

/*
 * Create a handler over @n regions, set the store's regions (their layout
 * must match a store that already holds pages), map the staging file,
 * create the calling process's userfaultfd and start the monitor thread in
 * state Ready.  Region errors, checked first and distinct:
 *   -EINVAL     n == 0, a negative memfd, or addr/len/offset not page-aligned
 *   -ERANGE     an empty region (len == 0)
 *   -EOVERFLOW  a region whose end wraps below its start
 *   -EEXIST     two regions overlap (identical, left, inside, right, covering)
 * Then -EINVAL without opts->store or with an unknown enable mode, or for a
 * memfd that is not a regular file (a FIFO, a socket, a device; logged with
 * the region's number), -EBADF for a memfd that is not open, -EPERM /
 * -EOPNOTSUPP when userfaultfd is unavailable (see vswap_uffd_create()),
 * -EOPNOTSUPP for VSWAP_ENABLE_PROTECT on a kernel without write protection
 * on shmem, or the store's error.
 */
int vswap_handler_create(const struct vswap_region *regions, unsigned n,
			 const struct vswap_handler_opts *opts, struct vswap_handler **out);

/*
 * Exit: stop a trim, finish a running swap-in or swap everything in, give
 * the swap file's space back, unregister, stop the monitor and free (the
 * store stays open).  Returns the swap-in's error, if any; then the regions
 * stay registered until the uffds close with the handle, which is freed
 * regardless.  Returns -EBADMSG, also freeing the handle, when the swap-in
 * completed but guest pages are lost (see vswap_handler_lost_pages(): list
 * them first; the store keeps them recorded lost): the guest's memory is
 * not whole.
 */
int vswap_handler_destroy(struct vswap_handler *h);

/*
 * Detach: stop the monitor and unregister WITHOUT swapping in, leaving the
 * store holding the guest's pages (present slots in the swap file, staged
 * pages in the staging file), committed, for vswap_store_close(), then
 * vswap-dump / vswap-fsck or a later handler over the same store
 * (hibernate).  A running trim or swap-in is aborted where it is; a
 * swap-out's written chunks are committed and the rest stays staged;
 * remove events already queued are applied.  The recorded state says where
 * the pages rest: Pending if any page is staged, else Active if any is in
 * the swap file, else Ready (Failed stays Failed).
 *
 * The guest's memory is left as it is: holes where pages were moved out.
 * The caller must have stopped the guest (vCPUs and devices) and must not
 * let it touch its RAM again until a handler is over the store once more:
 * an access would read zeros, and a write would leave the store's copy
 * stale.  Faults pending at detach are woken unserved by the unregister.
 *
 * Frees @h like vswap_handler_destroy() (the store stays open).  Returns 0
 * or the error of the final commit (the store's in-memory tables still hold
 * everything; vswap_store_close() tries again).
 */
int vswap_handler_detach(struct vswap_handler *h);

/*
 * Release: stop serving and free @h, leaving the guest to the next handler
 * over the store as a handler that died would, but with its work committed.
 * Nothing is swapped in, unregistered or woken: the regions stay registered
 * (and write-protected) on every uffd, so the guest may keep running and its
 * faults wait in the kernel until a new handler's vswap_handler_resume()
 * serves them (and wakes those this one read but did not answer); remove
 * events not yet read stay queued for it.  A running trim or swap-in is
 * stopped where it is, a swap-out's written chunks are committed, and the
 * tables are committed as they stand (the recorded state is left as it is).
 * For a guest that outlives its link to the handler's process (vswapd: a
 * VMM alive whose connection closed).  Frees @h (the store stays open);
 * returns 0 or the commit's error.
 */
int vswap_handler_release(struct vswap_handler *h);

/*
 * Lost pages: pages whose copy in the store failed verification or is gone
 * (a checksum mismatch, a missing or damaged staged copy, a record vswap-fsck
 * recorded lost).  They are never served.  For as long as the handler lives,
 * every process whose uffd it serves gets SIGBUS on them: while enabled, a
 * fault on one is poisoned (VSWAP_CORRUPT_POISON; the ERROR policy leaves it
 * unresolved); after a swap-in each live uffd carries a poison marker for
 * each; a uffd added while disabled gets them when added.  The markers stay
 * in those processes' page tables after destroy until the guest discards or
 * rewrites the page.
 *
 * Outside such a mapping a lost page is a hole in the guest's memfd: pread()
 * of the memfd, a new mapping of it, a snapshot of it, or a process whose
 * uffd was never added reads it as ZEROS.  A VMM must not take those zeros
 * for data: list the lost pages here (and treat them as the guest having
 * lost them), before destroy or detach, which return -EBADMSG while any
 * exist.
 *
 * vswap_handler_lost_pages() writes up to @cap page numbers (the store's
 * page space, in order) into @pages and sets *@count to how many are lost
 * in all.  It walks the page tables: not for a hot path.
 */
int vswap_handler_lost_pages(struct vswap_handler *h, uint64_t *pages, size_t cap, uint64_t *count);

/*
 * Discard [addr, addr+len) of guest memory as a REMOVE event would: its
 * staged and swapped copies are dropped (lost marks too), so a later fault
 * reads zeros, not the old contents.  A VMM that frees guest memory by
 * punching holes in the memfd (fallocate(FALLOC_FL_PUNCH_HOLE), as QEMU does
 * for shared memory) must call it, because a hole punch sends no event to
 * any uffd: without it the handler would later serve the page's old bytes.
 * Call it before punching, with the guest not touching the range.  The
 * change is committed when it returns: a handler that dies after the punch
 * (vswapd killed, then resumed) still finds the range discarded.
 * Page-aligned @addr and @len (-EINVAL); -EFAULT if the range is outside
 * every region.  Allowed in every state.
 */
int vswap_handler_discard(struct vswap_handler *h, void *addr, size_t len);

/*
 * Enable (any state): register the regions on every uffd (from Ready), then
 * take every resident guest page into the swap-out set: in copy mode by
 * moving it to staging (the caller must keep the guest from writing its RAM
 * until this returns: pause the vCPUs and devices), in protect mode by
 * write-protecting it in place (the guest may run).  Returns 0 in state
 * Pending, or the error: from Ready a registration error leaves the state
 * Ready; a failed move or protection leaves Failed (regions registered,
 * faults served; enable or disable again).  Aborts a running trim or
 * swap-in first.  The transition record is {pages taken, ms}.
 */
int vswap_handler_enable(struct vswap_handler *h);

/*
 * Trim (state Pending): start the background trim and return; the state is
 * TrimInProgress, then Pending again with the pages trimmed as its record.
 * Ignored elsewhere, saying why: -EALREADY in TrimInProgress or Active,
 * -EBUSY in SwapOutInProgress or SwapInInProgress, -EINVAL in Ready or
 * Failed (enable first).
 */
int vswap_handler_trim(struct vswap_handler *h);

/*
 * Swap out (state Pending): the monitor writes the staged pages a chunk at a
 * time between events; the state is SwapOutInProgress, then Active (or
 * Failed if a write fails: nothing is lost, the pages stay staged).
 * Ignored elsewhere, saying why: -EALREADY in SwapOutInProgress or Active,
 * -EBUSY in TrimInProgress or SwapInInProgress, -EINVAL in Ready or Failed.
 */
int vswap_handler_swap_out(struct vswap_handler *h);

/*
 * Disable: abort a trim, start the background swap-in and return; the
 * state is SwapInInProgress, then Ready (regions unregistered, the swap
 * file's slots freed: at once, or with @slow_file_cleanup a step per
 * interval until the next enable or non-slow disable; their blocks are
 * given back while Ready, unless opts.keep_freed_blocks).  In
 * SwapInInProgress only the cleanup flag changes (returns 0).  In Ready it
 * returns -EALREADY (a non-slow disable still finishes a slow cleanup).
 * A swap-in that fails leaves Failed with the regions registered.
 */
int vswap_handler_disable(struct vswap_handler *h, bool slow_file_cleanup);

/* The state, metrics and current record.  Answered by the caller's thread
 * (it does not wait for the monitor).  In Ready only resident_pages and the
 * store's lifetime counters are filled, as crosvm's vmm-swap does. */
int vswap_handler_status(struct vswap_handler *h, struct vswap_status *out);

/* Wait until the state is @st or @timeout_ms passed (-ETIMEDOUT); a
 * negative timeout waits forever.  For tools and tests: no polling. */
int vswap_handler_wait_state(struct vswap_handler *h, enum vswap_state st, int timeout_ms);

/*
 * One page's record as the handler sees it (the store's tables, read under
 * the handler's lock): for tools and tests of a running handler.  @page is
 * in the store's page space (regions end to end).
 */
int vswap_handler_page_info(struct vswap_handler *h, uint64_t page, struct vswap_page_info *out);

/*
 * Several processes.  A forked device process creates its own uffd with
 * vswap_uffd_create() (it binds to the creating process's memory) and hands
 * it to the handler's process (SCM_RIGHTS), which adds it: the handler takes
 * ownership, registers the regions on it if swap is enabled (else at the
 * next enable; in protect mode it also write-protects them there) and
 * serves its faults.  The new process must not write guest memory before
 * vswap_handler_add_uffd() returned (in protect mode such a write would not
 * be seen).  Process death is detected: a uffd
 * whose process died is skipped, and a dynamic one is collected.
 *
 * vswap_uffd_create(): a non-blocking, close-on-exec uffd through
 * /dev/userfaultfd, else the userfaultfd(2) syscall, with MISSING_SHMEM and
 * EVENT_REMOVE (and POISON and WP_HUGETLBFS_SHMEM when the kernel has them).  -EPERM: neither
 * /dev/userfaultfd (needs read-write access) nor the syscall (needs
 * vm.unprivileged_userfaultfd = 1 or CAP_SYS_PTRACE) is allowed;
 * -EOPNOTSUPP: the kernel lacks a needed feature.
 */
int vswap_uffd_create(int *out_fd);
int vswap_handler_add_uffd(struct vswap_handler *h, int uffd);
/*
 * Add the uffd of a process that maps region i at @bases[i] rather than at
 * the handler's own address (a VMM served by vswapd: the daemon maps the
 * memfds itself for the pages' bytes, and resolves the VMM's faults at the
 * VMM's addresses).  @bases has one page-aligned, non-NULL address per
 * region (-EINVAL otherwise); NULL is vswap_handler_add_uffd().  Such a uffd
 * is never dynamic.  Ownership of @uffd passes on success only.
 */
int vswap_handler_add_uffd_at(struct vswap_handler *h, int uffd, void *const *bases);
/*
 * Resume (state Ready, right after create and the uffds' adds): take over a
 * guest whose previous handler died with swap enabled.  Pages resident in
 * the memfds are resident (their staged copy dropped, their swapped copy
 * stale); the rest are where the store says.  If any page is out, the
 * regions are registered on every uffd (a range the dead handler left
 * registered on the same uffd is registered again) and every range is
 * woken, so faults the dead handler had read but not answered come again;
 * the state is then Pending (pages staged) or Active.  Otherwise every
 * uffd's ranges are unregistered, the swap file's stale copies freed, and
 * the state stays Ready.  The transition record counts the resident pages
 * that had a copy.  -EBUSY if swap was enabled by this handler.
 */
int vswap_handler_resume(struct vswap_handler *h);
/* The number of static uffds (the handler's own excluded): settable once,
 * -EALREADY the second time.  Until set, no uffd is dynamic; after it, a
 * uffd added beyond the static ones is dynamic (hot-plugged) and collected
 * when its process dies. */
int vswap_handler_set_static_uffds(struct vswap_handler *h, unsigned count);
/* Collect the dynamic uffds whose process died now (it also happens after
 * every dynamic add and whenever a fault finds a process gone).  Returns
 * the number collected. */
int vswap_handler_gc(struct vswap_handler *h);

/*
 * The working set: the pages a guest needs first, recorded in the order
 * they come in, and read ahead in that order the next time (a resumed
 * guest's cold start).
 *
 * vswap_handler_workset_record(): from now on note every page brought in
 * from the swap file, by a fault or by a prefetch, in order, up to
 * @max_pages (at most the store's pages; -EINVAL otherwise).  Restarts the
 * record.  vswap_handler_workset_take(): stop recording and return a
 * malloc()ed copy of the record (free() it; *n may be 0).
 *
 * vswap_handler_prefetch(): read @pages (n of them, page numbers in the
 * store's page space; copied) ahead on a thread of the handler's, in order,
 * while the guest runs: each page still present in the swap file and not in
 * the guest is read, verified and copied in as a fault would (a page that
 * fails is poisoned by the corruption policy).  Pages the guest faulted in
 * first, pages not in the swap file and numbers beyond the regions are
 * skipped.  Use it once swap is enabled (after vswap_handler_enable()).
 * Returns at once; -EBUSY while a prefetch runs.  Destroy and detach stop
 * it first.
 */
int vswap_handler_workset_record(struct vswap_handler *h, uint64_t max_pages);
int vswap_handler_workset_take(struct vswap_handler *h, uint64_t **pages, size_t *n);
int vswap_handler_prefetch(struct vswap_handler *h, const uint64_t *pages, size_t n);

struct vswap_workset_stats {
	uint64_t recorded; /* pages in the record so far */
	bool recording;
	uint64_t prefetch_pages; /* pages given to the last prefetch */
	uint64_t prefetched;	 /* of those, copied into the guest */
	uint64_t skipped;	 /* already in the guest, not in the file, or beyond */
	uint64_t failed;	 /* failed verification (poisoned or reported) */
	bool prefetch_done;	 /* no prefetch is running */
};
int vswap_handler_workset_stats(struct vswap_handler *h, struct vswap_workset_stats *out);

/* crosvm's vmm-swap status JSON with the added fields; returns the length written
 * (as snprintf: the length needed if @len is too small) or -EINVAL.
 *   {"state":"Active","metrics":{"resident_pages":N,...,"swap_pages":N,
 *    "checksum_failures":N,"poisoned_pages":N,"bytes_written":N,
 *    "bytes_read":N,"commits":N,"protected_pages":N,"dirtied_pages":N},
 *    "state_transition":{"pages":N,"time_ms":N},"last_error":0,"uffds":N,
 *    "enable_mode":"protect"} */
int vswap_status_to_json(const struct vswap_status *st, char *buf, size_t len);

/* The status JSON of vswap_status_to_json() with the lost pages added
 * before its closing brace: "lost_pages":N (the count), "lost":[p,...] (the
 * first 64 page numbers) and "lost_listed_all":true|false.  Returns the
 * length as snprintf, or a negative errno. */
int vswap_handler_status_json(struct vswap_handler *h, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* VSWAP_HANDLER_H */

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
 * @addr.  Regions are laid end to end in the store's page space, in order. */
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

struct vswap_handler_opts {
	/* The opened store (not owned; close it after vswap_handler_destroy). */
	struct vswap_store *store;
	uint32_t chunk_pages;      /* swap-out / swap-in chunk; default 512 (2 MiB) */
	uint32_t trim_batch_pages; /* default 1024 */
	unsigned workers;          /* move-to-staging threads; default CPU count */
	/* Swap-in reads the swap file this many pages ahead of the run it
	 * copies (kernel read-ahead through io_uring); default 4096 (16 MiB). */
	uint64_t prefetch_budget_pages;
	enum vswap_corrupt_policy on_corrupt;
	/* Slow file cleanup after disable: free this many pages' slots every
	 * interval; defaults 16384 (64 MiB) and 5000 ms, like crosvm's vmm-swap. */
	uint64_t cleanup_step_pages;
	uint32_t cleanup_interval_ms;
	vswap_log_fn log;
	void *log_ctx;
	enum vswap_log_level log_level;
	/* Room for options added later without an ABI break (docs/ABI.md):
	 * must be zero (zero-initialise the struct); -EINVAL otherwise. */
	uint64_t reserved[8];
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
};

struct vswap_transition {
	uint64_t pages;
	uint64_t time_ms;
};

struct vswap_status {
	enum vswap_state state;
	struct vswap_metrics metrics;
	/* The current state's record: Ready = the last swap-in (or zeros),
	 * Pending = the move (or after a trim the pages trimmed),
	 * TrimInProgress = trimmed so far, SwapOutInProgress / Active = pages
	 * written, SwapInInProgress = pages brought in so far, Failed = 0. */
	struct vswap_transition transition;
	/* Added by vswap: the last error met by the monitor or a job (0 =
	 * none; a negative errno, see vswap_strerror()) and the number of
	 * uffds served. */
	int last_error;
	unsigned uffds;
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
 * Then -EINVAL without opts->store, -EPERM / -EOPNOTSUPP when userfaultfd is
 * unavailable (see vswap_uffd_create()), or the store's error.
 */
int vswap_handler_create(const struct vswap_region *regions, unsigned n,
			 const struct vswap_handler_opts *opts, struct vswap_handler **out);

/*
 * Exit: stop a trim, finish a running swap-in or swap everything in, give
 * the swap file's space back, unregister, stop the monitor and free (the
 * store stays open).  Returns the swap-in's error, if any; then the regions
 * stay registered until the uffds close with the handle, which is freed
 * regardless.
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
 * Enable (any state): register the regions on every uffd (from Ready), then
 * move every resident guest page to staging.  The caller must keep the
 * guest from writing its RAM until this returns (pause the vCPUs and
 * devices).  Returns 0 in state Pending, or the error: from Ready a
 * registration error leaves the state Ready; a failed move leaves Failed
 * (regions registered, faults served; enable or disable again).  Aborts a
 * running trim or swap-in first.
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
 * file's space freed: at once, or with @slow_file_cleanup a step per
 * interval until the next enable or non-slow disable).  In
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
 * next enable) and serves its faults.  Process death is detected: a uffd
 * whose process died is skipped, and a dynamic one is collected.
 *
 * vswap_uffd_create(): a non-blocking, close-on-exec uffd through
 * /dev/userfaultfd, else the userfaultfd(2) syscall, with MISSING_SHMEM and
 * EVENT_REMOVE (and POISON when the kernel has it).  -EPERM: neither
 * /dev/userfaultfd (needs read-write access) nor the syscall (needs
 * vm.unprivileged_userfaultfd = 1 or CAP_SYS_PTRACE) is allowed;
 * -EOPNOTSUPP: the kernel lacks a needed feature.
 */
int vswap_uffd_create(int *out_fd);
int vswap_handler_add_uffd(struct vswap_handler *h, int uffd);
/* The number of static uffds (the handler's own excluded): settable once,
 * -EALREADY the second time.  Until set, no uffd is dynamic; after it, a
 * uffd added beyond the static ones is dynamic (hot-plugged) and collected
 * when its process dies. */
int vswap_handler_set_static_uffds(struct vswap_handler *h, unsigned count);
/* Collect the dynamic uffds whose process died now (it also happens after
 * every dynamic add and whenever a fault finds a process gone).  Returns
 * the number collected. */
int vswap_handler_gc(struct vswap_handler *h);

/* crosvm's vmm-swap status JSON with the added fields; returns the length written
 * (as snprintf: the length needed if @len is too small) or -EINVAL.
 *   {"state":"Active","metrics":{"resident_pages":N,...,"swap_pages":N,
 *    "checksum_failures":N,"poisoned_pages":N,"bytes_written":N,
 *    "bytes_read":N,"commits":N},"state_transition":{"pages":N,"time_ms":N},
 *    "last_error":0,"uffds":N} */
int vswap_status_to_json(const struct vswap_status *st, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* VSWAP_HANDLER_H */

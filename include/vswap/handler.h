/* SPDX-License-Identifier: MIT */
/*
 * vswap handler: the userfaultfd page handler a VMM embeds.  It owns the
 * guest regions' registration, the staging memory (the store's staging
 * file), faults and remove events, move-to-staging, swap-out, swap-in and
 * trim, and the state machine run by a monitor thread.  It calls store/ for
 * everything on disk.
 *
 * DRAFT CONTRACT: the handler's implementer may extend this header; changes
 * to existing names must be reflected in every caller (tools/, tests/).
 *
 * Functions return 0 (or a count) on success, a negative errno on failure.
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

/* A contiguous host mapping of guest RAM, backed by @memfd at @offset.
 * @addr and @len must be page-aligned and @len > 0. */
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
	/* Leave the fault unresolved and report the error through the
	 * handler's error callback / status (the VMM decides). */
	VSWAP_CORRUPT_ERROR = 1,
};

struct vswap_handler_opts {
	/* The opened store (not owned; close it after vswap_handler_destroy). */
	struct vswap_store *store;
	uint32_t chunk_pages;      /* swap-out / swap-in chunk; default 512 (2 MiB) */
	uint32_t trim_batch_pages; /* default 1024 */
	unsigned workers;          /* move-to-staging threads; default CPU count */
	uint64_t prefetch_budget_pages; /* swap-in read-ahead; default 4096 */
	enum vswap_corrupt_policy on_corrupt;
	vswap_log_fn log;
	void *log_ctx;
	enum vswap_log_level log_level;
};

/* States, numbered as the reference system's C values. */
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
	/* The reference system's seven fields. */
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
	uint64_t bytes_written;
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
	struct vswap_transition transition;
};

/*
 * Create a handler over @n regions (validated: page-aligned, non-empty, not
 * overlapping; distinct errors), set the store's regions, create the main
 * process's userfaultfd and start the monitor thread in state Ready.
 */
int vswap_handler_create(const struct vswap_region *regions, unsigned n,
			 const struct vswap_handler_opts *opts, struct vswap_handler **out);

/* Exit: swap everything in, unregister, stop the monitor, free.  Returns the
 * swap-in's error, if any (the handle is freed regardless). */
int vswap_handler_destroy(struct vswap_handler *h);

/* Commands.  enable() blocks until the move to staging ends and returns its
 * result.  trim(), swap_out() and disable() return once the monitor accepted
 * the command: -EALREADY / -EBUSY (documented per state) when the current
 * state ignores it, so the caller knows. */
int vswap_handler_enable(struct vswap_handler *h);
int vswap_handler_trim(struct vswap_handler *h);
int vswap_handler_swap_out(struct vswap_handler *h);
int vswap_handler_disable(struct vswap_handler *h, bool slow_file_cleanup);
int vswap_handler_status(struct vswap_handler *h, struct vswap_status *out);

/* Wait until the state is @st or @timeout_ms passed (-ETIMEDOUT). */
int vswap_handler_wait_state(struct vswap_handler *h, enum vswap_state st, int timeout_ms);

/* Several processes: a forked device creates its uffd with
 * vswap_uffd_create() and passes it to the handler's process, which adds it
 * (regions are registered on it when swap is enabled). */
int vswap_uffd_create(int *out_fd);
int vswap_handler_add_uffd(struct vswap_handler *h, int uffd);
int vswap_handler_set_static_uffds(struct vswap_handler *h, unsigned count);

/* The reference's JSON with the added fields; returns the length written
 * (as snprintf) or a negative errno. */
int vswap_status_to_json(const struct vswap_status *st, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* VSWAP_HANDLER_H */

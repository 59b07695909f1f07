/* SPDX-License-Identifier: MIT */
/*
 * vswap recovery: audit and repair of a store that is not in use (the
 * library behind vswap-fsck).
 *
 * An audit checks, in this order:
 *   - the superblock and the index metadata (store open: magic, version,
 *     checksum, page size, UUID of the index against the swap file);
 *   - whether the previous handle closed the store cleanly;
 *   - every page record: page inside the page-index space, slot in range,
 *     no slot owned by two records, the slot's bytes present in the swap
 *     file, and the XXH3-64 of every present and stale page (read
 *     sequentially through io_uring, several large reads in flight);
 *   - bytes in the swap file that no record references (SEEK_DATA);
 *   - staging records against the staging file's bytes (SEEK_DATA), and
 *     staging files in the staging directory that no store refers to.
 *
 * A repair never makes a store worse: a slot whose bytes verify against a
 * record is never punched; a record beyond the page-index space whose slot
 * verifies is kept (its key or the regions record is what is damaged); in a
 * store closed cleanly, staged pages whose bytes are gone are recorded lost
 * and staged bytes no record covers are kept.  After a run that repaired
 * anything the store is audited again (read-only): a repair counts only if
 * its problem is gone, and what is found anew is reported, so a REPAIR that
 * exits 0 or 1 is followed by a CHECK that exits 0.  Index records that are
 * not believed (failing their check, undecodable, misplaced under a damaged
 * key) are reported and kept, their slots and staged bytes never punched
 * while their entries are unknown (REPAIR moves a misplaced page-group or
 * staging record back under its own key where the evidence is unambiguous:
 * vswap_store_check_misplaced(), vswap_store_check_misplaced_staging()); a
 * damaged regions, staging_path or created_ns record makes a repair an
 * audit.
 *
 * Repairs (never in CHECK mode):
 *   PREEN and REPAIR: punch leaked slots, drop staging records that cover
 *     no bytes, punch staged bytes no record covers, remove orphan staging
 *     files that hold no bytes, drop stale copies whose bytes are bad (the
 *     guest holds the page), record the clean shutdown.
 *   REPAIR only: mark present pages whose bytes fail their checksum or are
 *     missing as lost (never dropped silently: they are listed in
 *     lost_pages and a later swap-in poisons them), likewise present pages
 *     whose record names a slot out of range or a slot another record keeps
 *     (of the records sharing a slot, the one whose checksum the bytes match
 *     keeps it, moved to a slot of its own if the store had left it out),
 *     delete index records beyond the page-index space (a group that also
 *     holds pages inside it is rewritten without them), remove orphan
 *     staging files that still hold bytes when their store is proven gone
 *     (its swap file does not exist, or is a valid store of another UUID).
 *
 * A run that does not complete (cancelled, failed) commits the repairs it
 * made and leaves the store marked unclean; only a complete run of PREEN or
 * REPAIR records the clean shutdown.
 *
 * Functions return 0 or a negative errno.  No global state: everything hangs
 * off the handle, logging goes through the handle's callback.
 */
#ifndef VSWAP_RECOVERY_H
#define VSWAP_RECOVERY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vswap/store.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vswap_fsck;

enum vswap_fsck_mode {
	VSWAP_FSCK_CHECK = 0,  /* -n: audit only, never writes a byte */
	VSWAP_FSCK_PREEN = 1,  /* -p: only the repairs that lose nothing */
	VSWAP_FSCK_REPAIR = 2, /* -y: every repair */
};

/* e2fsck's exit codes, OR-ed together as e2fsck does. */
enum vswap_fsck_exit {
	VSWAP_FSCK_EXIT_CLEAN = 0,
	VSWAP_FSCK_EXIT_CORRECTED = 1,
	VSWAP_FSCK_EXIT_UNCORRECTED = 4,
	VSWAP_FSCK_EXIT_OPERATIONAL = 8,
	VSWAP_FSCK_EXIT_USAGE = 16,
	VSWAP_FSCK_EXIT_CANCELLED = 32,
};

enum vswap_problem_kind {
	VSWAP_PROBLEM_BAD_SUPERBLOCK = 0,   /* magic, version or checksum wrong */
	VSWAP_PROBLEM_UUID_MISMATCH,	    /* index belongs to another swap file */
	VSWAP_PROBLEM_BAD_INDEX,	    /* index unreadable or unknown format */
	VSWAP_PROBLEM_PAGE_SIZE_MISMATCH,   /* store page size != system's */
	VSWAP_PROBLEM_UNCLEAN_SHUTDOWN,	    /* previous handle did not close */
	VSWAP_PROBLEM_BAD_RECORD,	    /* record undecodable, beyond the page space,
					     * or under another group's key */
	VSWAP_PROBLEM_SLOT_OUT_OF_RANGE,    /* record names a slot past the limit */
	VSWAP_PROBLEM_DOUBLE_REFERENCE,	    /* two records name one slot */
	VSWAP_PROBLEM_MISSING_DATA,	    /* slot is a hole or past end of file */
	VSWAP_PROBLEM_CHECKSUM_MISMATCH,    /* slot bytes fail the record's XXH3 */
	VSWAP_PROBLEM_LEAKED_SLOT,	    /* slot holds bytes no record names */
	VSWAP_PROBLEM_LEAKED_STAGING,	    /* staged bytes no record covers */
	VSWAP_PROBLEM_EMPTY_STAGING_RECORD, /* staging record covers no bytes */
	VSWAP_PROBLEM_ORPHAN_STAGING_FILE,  /* staging file of no store */
	VSWAP_PROBLEM_MISSING_STAGING_FILE, /* the store's staging file is gone */
	VSWAP_PROBLEM_RECORD_CHECKSUM,	    /* a record fails its own checksum */
	VSWAP_PROBLEM_KIND_COUNT,	    /* grows: new kinds are added last */
};

/* The snake_case name used in reports ("checksum_mismatch", ...). */
const char *vswap_problem_kind_name(enum vswap_problem_kind kind);

struct vswap_problem {
	enum vswap_problem_kind kind;
	bool has_page; /* page is meaningful (JSON null otherwise) */
	bool has_slot; /* slot is meaningful (JSON null otherwise) */
	uint64_t page;
	uint64_t slot;
	bool repaired;
	const char *detail; /* human-readable; owned by the handle */
};

/* Progress: @done of @total pages verified, @bytes read so far. */
typedef void (*vswap_fsck_progress_fn)(void *ctx, uint64_t done, uint64_t total, uint64_t bytes);

struct vswap_fsck_opts {
	enum vswap_fsck_mode mode;
	/* LMDB environment path; default "<swap file>.idx". */
	const char *index_path;
	/* Staging directory; default the store's ("/dev/shm"). */
	const char *staging_dir;
	/* Skip the scan of the staging directory for orphan staging files. */
	bool no_orphan_scan;
	/* Verification I/O: reads in flight (default 16) and bytes per read
	 * (default 256 KiB, rounded to whole pages). */
	unsigned queue_depth;
	uint32_t read_bytes;
	vswap_fsck_progress_fn progress;
	void *progress_ctx;
	/* When non-NULL and non-zero the run stops early with -ECANCELED (a
	 * signal handler sets it).  Repairs already made stay made. */
	volatile sig_atomic_t *cancel;
	/* Logging: the rule is next to enum vswap_log_level (store.h). */
	vswap_log_fn log;
	void *log_ctx;
	enum vswap_log_level log_level;
	/* Room for options added later without an ABI break (docs/ABI.md):
	 * must be zero (zero-initialise the struct); -EINVAL otherwise. */
	uint64_t reserved[8];
};

/* Prepare an audit of the store at @path.  Nothing is opened yet. */
int vswap_fsck_new(const char *path, const struct vswap_fsck_opts *opts, struct vswap_fsck **out);

/*
 * Run the audit (and the repairs the mode allows).  Returns 0 when the audit
 * ran to the end, whatever it found (see vswap_fsck_exit_code()), or:
 *   -EBUSY       a repair was asked and a live handler holds the store
 *                (vswap_fsck_busy() names it);
 *   -ECANCELED   *opts.cancel became non-zero;
 *   other        the store could not be audited (it cannot be opened, the
 *                index belongs to another swap file, ...); the problems
 *                found so far are still in the report.
 * A handle runs once.
 */
int vswap_fsck_run(struct vswap_fsck *f);

/* The e2fsck exit code for the run (0, 1, 4, 8, 32 or OR-ed bits). */
int vswap_fsck_exit_code(const struct vswap_fsck *f);

/* How many problems the run found (repaired or not), and the @i-th of them
 * in the order found (NULL when @i >= the count); each is valid until
 * vswap_fsck_free(). */
size_t vswap_fsck_problem_count(const struct vswap_fsck *f);
const struct vswap_problem *vswap_fsck_problem(const struct vswap_fsck *f, size_t i);
/* Problems of @kind found (repaired or not). */
size_t vswap_fsck_count_kind(const struct vswap_fsck *f, enum vswap_problem_kind kind);

/* Every page recorded lost after the run (before and by it), ascending. */
const uint64_t *vswap_fsck_lost_pages(const struct vswap_fsck *f, size_t *count);

struct vswap_fsck_counts {
	uint64_t records;	 /* page records in the index */
	uint64_t pages_checked;	 /* records whose bytes were read and hashed */
	uint64_t bytes_verified; /* bytes read and hashed */
	uint64_t verify_ns;	 /* wall time of the verification pass */
	uint64_t staged_pages;	 /* pages the index records as staged */
	uint64_t repairs;	 /* problems repaired */
};
/* The run's counts into @out (so far, when the run has not ended); 0. */
int vswap_fsck_counts(const struct vswap_fsck *f, struct vswap_fsck_counts *out);

/* True when a live process held the store's lock during the run; *pid (may
 * be NULL) is the holder, 0 when the lock is held but its owner unknown. */
bool vswap_fsck_busy(const struct vswap_fsck *f, pid_t *pid);

/* NULL when the run opened the store (or has not run); otherwise why it
 * could not, naming the file and what is wrong with it (nothing was
 * audited: the exit code is VSWAP_FSCK_EXIT_OPERATIONAL).  Valid until
 * vswap_fsck_free(). */
const char *vswap_fsck_open_failure(const struct vswap_fsck *f);

/* The swap file's path and the mode the handle was made with (as given to
 * vswap_fsck_new()). */
const char *vswap_fsck_path(const struct vswap_fsck *f);
enum vswap_fsck_mode vswap_fsck_mode_of(const struct vswap_fsck *f);

/* Free the handle, its report and everything it returned (a store the run
 * left open is closed unclean: the run did not finish); NULL is a no-op. */
void vswap_fsck_free(struct vswap_fsck *f);

/*
 * Find the process that holds a flock on @path by reading /proc/locks.
 * Returns 1 and *pid when a lock is held (*pid is 0 if the kernel did not
 * say whose), 0 when none is, or a negative errno.
 */
int vswap_lock_holder(const char *path, pid_t *pid);

#ifdef __cplusplus
}
#endif
#endif /* VSWAP_RECOVERY_H */

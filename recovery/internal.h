/* SPDX-License-Identifier: MIT */
/*
 * Private to recovery/: the fsck handle, the record table the audit works on
 * and the helpers each pass uses.  One pass per file:
 *   report.c    problems, lost pages, exit code, accessors
 *   extents.c   SEEK_DATA/SEEK_HOLE maps of the swap and staging files
 *   records.c   the index's page records: range, double references, holes
 *   verify.c    io_uring sequential read and XXH3 check of every slot
 *   leaks.c     swap-file bytes that no record references
 *   staging.c   staging records against the staging file's bytes
 *   orphans.c   staging files that no store refers to
 *   repair.c    applying the repairs the mode allows
 *   holder.c    the process holding a store's flock (/proc/locks)
 *   fsck.c      the run: open, passes in order, close
 */
#ifndef VSWAP_RECOVERY_INTERNAL_H
#define VSWAP_RECOVERY_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vswap/recovery.h>
#include <vswap/store.h>

#include "store/layout.h"
#include "util/log.h"

/* What the audit concluded about one page record. */
enum fsck_verdict {
	FSCK_OK = 0,
	FSCK_UNCHECKED,	   /* lost already, or not read (cancelled) */
	FSCK_BAD_PAGE,	   /* page outside the page-index space */
	FSCK_OUT_OF_RANGE, /* slot past the limit */
	FSCK_DOUBLE,	   /* slot also owned by another record */
	FSCK_MISSING,	   /* slot is a hole or past the end of the file */
	FSCK_MISMATCH,	   /* bytes fail the checksum */
};

struct fsck_record {
	uint64_t page;
	uint64_t slot;
	uint64_t xxh3;
	enum vswap_page_state state;
	enum fsck_verdict verdict;
	bool keeps_slot;	    /* the record that keeps a double-referenced slot */
	bool shared;		    /* names a slot another record names too */
	bool loaded;		    /* the store's tables hold it (shared slots only) */
	bool rehome;		    /* keeps its slot but the store left it out of its
				     * tables: -y copies it to a slot of its own */
	bool rehomed;		    /* ... and did */
	bool dropped;		    /* its group's index record was deleted by this run */
	bool beyond;		    /* its page lies beyond the page-index space */
	bool evidence;		    /* ... and its slot's bytes verify against it: the
				     * record is real, its key or the regions are not */
	uint32_t losers;	    /* records that lost the slot to this one */
	int io_error;		    /* read error behind FSCK_MISSING, or 0 */
	struct fsck_record *keeper; /* FSCK_DOUBLE: the record that keeps the slot */
	ssize_t prob;		    /* its problem, or -1 */
};

/* An index record that could not be decoded: pages [first, first+pages). */
struct fsck_bad_group {
	uint64_t first;
	uint32_t pages;
	ssize_t prob;
	/* A valid record of another group under this group's key (its key
	 * is damaged): it says nothing about this group's pages. */
	bool misplaced;
};

/* Sorted, disjoint ranges [first, end) in page units. */
struct fsck_range {
	uint64_t first;
	uint64_t end;
};
struct fsck_extents {
	struct fsck_range *r;
	size_t n, cap;
	uint64_t file_size;
};

struct vswap_fsck {
	char *path;
	struct vswap_fsck_opts opts;
	struct logger log;
	bool ran;

	struct vswap_store *store;
	struct vswap_store_info info;
	uint32_t page_size;
	uint64_t total_pages;
	uint64_t slot_limit; /* slots at or past this are out of range */

	struct fsck_record *rec; /* in page order */
	size_t nrec, rec_cap;
	struct fsck_record **by_slot; /* records ordered by slot */

	struct fsck_bad_group *bad;
	size_t nbad, bad_cap;

	struct fsck_extents swap_data; /* in slots */

	struct vswap_problem *prob;
	size_t nprob, prob_cap;
	uint64_t *lost;
	size_t nlost, lost_cap;

	struct vswap_fsck_counts counts;
	bool busy;
	pid_t holder;
	bool open_failed;
	char *open_why;	      /* why, when open_failed (vswap_fsck_open_failure()) */
	ssize_t unclean_prob; /* the unclean_shutdown problem, or -1 */
	char *store_error;    /* the store's last error message */
	bool cancelled;
	int error;
	/* The staging file of a store closed cleanly holds bytes no staging
	 * record covers and no other copy backs (see staging.c). */
	bool stray_staged;
	/* Meta records the store found damaged (VSWAP_DAMAGED_*), and whether
	 * they are ones a repair must not rewrite (the run is then an audit). */
	uint32_t damaged;
	bool hold_repairs;
	/* The audit after a repair: the slots' and staged copies' bytes were
	 * checked by the run that repaired, so they are not read again. */
	bool skip_bytes;
	/* Groups whose staging record is not believed (see staging.c). */
	uint64_t *bad_staging;
	size_t nbad_staging, bad_staging_cap;
	ssize_t advice_prob[2]; /* damaged state / clean records, or -1 */
};

/* ---- report.c ---- */
void fsck_log(struct vswap_fsck *f, enum vswap_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Append a problem; @page / @slot are UINT64_MAX when they do not apply.
 * Returns the problem (its index stays valid; the pointer does not), or
 * NULL when out of memory. */
ssize_t fsck_problem(struct vswap_fsck *f, enum vswap_problem_kind kind, uint64_t page,
		     uint64_t slot, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void fsck_problem_repaired(struct vswap_fsck *f, ssize_t idx);
int fsck_lost_add(struct vswap_fsck *f, uint64_t page);
void fsck_lost_sort(struct vswap_fsck *f);
bool fsck_cancelled(struct vswap_fsck *f);
bool fsck_repairing(const struct vswap_fsck *f);
bool fsck_repairing_all(const struct vswap_fsck *f);
#define FSCK_NONE UINT64_MAX
/* Pages per index record (group; store/layout.h); see vswap_store_drop_group(). */
#define FSCK_GROUP_PAGES STORE_GROUP_PAGES

/* ---- fsck.c ---- */
/* Open @path read-only without blocking on a FIFO or a device and refuse
 * anything but a regular file (-EINVAL, *what says what it is). */
int fsck_open_regular(const char *path, int dirfd, const char **what);
/* "a FIFO", "a directory", ... for a file mode that is not regular. */
const char *fsck_file_type(mode_t mode);

/* ---- extents.c ---- */
/* Map the data of @fd from byte @base on, in units of @unit bytes (a unit is
 * data if any of its bytes is). */
int fsck_extents_scan(int fd, uint64_t base, uint32_t unit, struct fsck_extents *out);
bool fsck_extents_contains(const struct fsck_extents *e, uint64_t unit);
void fsck_extents_free(struct fsck_extents *e);

/* ---- records.c ---- */
/* "index record of group G (pages a-b) is stored under the key of pages
 * c-d" (or "staging record ..."): the start of every message about a
 * misplaced record. */
#define MISPLACED_FMT                                                                              \
	"%s of group %llu (pages %llu-%llu) %s under the key of pages %llu-%llu: its key %s "      \
	"damaged"
#define MISPLACED_ARGS(what, claimed, key, verb, tense)                                            \
	what, (unsigned long long)(claimed), (unsigned long long)(claimed)*FSCK_GROUP_PAGES,       \
	    (unsigned long long)(claimed)*FSCK_GROUP_PAGES + FSCK_GROUP_PAGES - 1, verb,           \
	    (unsigned long long)(key)*FSCK_GROUP_PAGES,                                            \
	    (unsigned long long)(key)*FSCK_GROUP_PAGES + FSCK_GROUP_PAGES - 1, tense

/* The problem kind of a record not believed for @fault (not MISPLACED,
 * which is reported with its evidence): one that fails its own checksum
 * (bit rot in its key or value) is record_checksum, one that cannot be
 * decoded bad_record. */
static inline enum vswap_problem_kind fsck_record_fault_kind(enum vswap_record_fault fault)
{
	return fault == VSWAP_RECORD_CHECKSUM ? VSWAP_PROBLEM_RECORD_CHECKSUM
					      : VSWAP_PROBLEM_BAD_RECORD;
}

/* -y, before the records are loaded: move each misplaced page-group or
 * staging record whose evidence is unambiguous back under its own key (the
 * audit then checks it like any other), each a repaired problem. */
int fsck_move_misplaced(struct vswap_fsck *f);
int fsck_load_records(struct vswap_fsck *f);
void fsck_check_records(struct vswap_fsck *f);
/* After verification: of the records naming one slot, keep the one whose
 * checksum the slot's bytes match (the store's own first); the others become
 * FSCK_DOUBLE. */
void fsck_resolve_shared(struct vswap_fsck *f);
/* After verification: records beyond the page-index space become
 * FSCK_BAD_PAGE, those whose bytes verified marked as evidence. */
void fsck_judge_beyond(struct vswap_fsck *f);

/* ---- verify.c ---- */
/* Read and hash every record still FSCK_OK with a slot, in slot order;
 * failing ones become FSCK_MISMATCH or FSCK_MISSING. */
int fsck_verify(struct vswap_fsck *f);

/* ---- leaks.c ---- */
int fsck_check_leaked_slots(struct vswap_fsck *f);

/* ---- staging.c ---- */
int fsck_check_staging(struct vswap_fsck *f);

/* ---- orphans.c ---- */
int fsck_check_orphans(struct vswap_fsck *f);

/* ---- repair.c ---- */
int fsck_report_records(struct vswap_fsck *f);
/* -y: copy shared-slot keepers the store left out to slots of their own,
 * then settle the records that lost the slot.  After the leak pass (the
 * copies take free slots). */
int fsck_repair_shared(struct vswap_fsck *f);
/* -y: make the index forget group @g's records beyond the page-index space
 * without losing a record inside it.  0 when done (durable at the commit or
 * at once), negative when it cannot be done safely. */
int fsck_fix_group_beyond(struct vswap_fsck *f, uint64_t g);

#endif /* VSWAP_RECOVERY_INTERNAL_H */

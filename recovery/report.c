/* SPDX-License-Identifier: MIT */
/* The report of a run: problems, lost pages, counts and the exit code. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recovery/internal.h"
#include "util/array.h"

static const char *const kind_names[VSWAP_PROBLEM_KIND_COUNT] = {
    [VSWAP_PROBLEM_BAD_SUPERBLOCK] = "bad_superblock",
    [VSWAP_PROBLEM_UUID_MISMATCH] = "uuid_mismatch",
    [VSWAP_PROBLEM_BAD_INDEX] = "bad_index",
    [VSWAP_PROBLEM_PAGE_SIZE_MISMATCH] = "page_size_mismatch",
    [VSWAP_PROBLEM_UNCLEAN_SHUTDOWN] = "unclean_shutdown",
    [VSWAP_PROBLEM_BAD_RECORD] = "bad_record",
    [VSWAP_PROBLEM_SLOT_OUT_OF_RANGE] = "slot_out_of_range",
    [VSWAP_PROBLEM_DOUBLE_REFERENCE] = "double_reference",
    [VSWAP_PROBLEM_MISSING_DATA] = "missing_data",
    [VSWAP_PROBLEM_CHECKSUM_MISMATCH] = "checksum_mismatch",
    [VSWAP_PROBLEM_LEAKED_SLOT] = "leaked_slot",
    [VSWAP_PROBLEM_LEAKED_STAGING] = "leaked_staging",
    [VSWAP_PROBLEM_EMPTY_STAGING_RECORD] = "empty_staging_record",
    [VSWAP_PROBLEM_ORPHAN_STAGING_FILE] = "orphan_staging_file",
    [VSWAP_PROBLEM_MISSING_STAGING_FILE] = "missing_staging_file",
    [VSWAP_PROBLEM_RECORD_CHECKSUM] = "record_checksum",
};

const char *vswap_problem_kind_name(enum vswap_problem_kind kind)
{
	if ((unsigned)kind >= VSWAP_PROBLEM_KIND_COUNT)
		return "unknown";
	return kind_names[kind];
}

void fsck_log(struct vswap_fsck *f, enum vswap_log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	logger_vprintf(&f->log, lvl, fmt, ap);
	va_end(ap);
}

ssize_t fsck_problem(struct vswap_fsck *f, enum vswap_problem_kind kind, uint64_t page,
		     uint64_t slot, const char *fmt, ...)
{
	struct vswap_problem *p;
	char detail[512];
	va_list ap;

	if (ARRAY_RESERVE(f->prob, f->prob_cap, f->nprob + 1, 64))
		return -1;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	p = &f->prob[f->nprob];
	*p = (struct vswap_problem){
	    .kind = kind,
	    .has_page = page != FSCK_NONE,
	    .has_slot = slot != FSCK_NONE,
	    .page = page,
	    .slot = slot,
	    .detail = strdup(detail),
	};
	fsck_log(f, VSWAP_LOG_INFO, "%s: %s", vswap_problem_kind_name(kind), detail);
	return (ssize_t)f->nprob++;
}

void fsck_problem_repaired(struct vswap_fsck *f, ssize_t idx)
{
	if (idx < 0 || (size_t)idx >= f->nprob || f->prob[idx].repaired)
		return;
	f->prob[idx].repaired = true;
	f->counts.repairs++;
}

int fsck_lost_add(struct vswap_fsck *f, uint64_t page)
{
	if (ARRAY_RESERVE(f->lost, f->lost_cap, f->nlost + 1, 64))
		return -ENOMEM;
	f->lost[f->nlost++] = page;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort and drop duplicates (a page can be found lost by two passes). */
void fsck_lost_sort(struct vswap_fsck *f)
{
	size_t out = 0;

	if (!f->nlost)
		return;
	qsort(f->lost, f->nlost, sizeof(*f->lost), cmp_u64);
	for (size_t i = 0; i < f->nlost; i++)
		if (out == 0 || f->lost[out - 1] != f->lost[i])
			f->lost[out++] = f->lost[i];
	f->nlost = out;
}

bool fsck_cancelled(struct vswap_fsck *f)
{
	if (!f->cancelled && f->opts.cancel && *f->opts.cancel)
		f->cancelled = true;
	return f->cancelled;
}

bool fsck_repairing(const struct vswap_fsck *f)
{
	return f->opts.mode != VSWAP_FSCK_CHECK && !f->busy && !f->hold_repairs;
}

bool fsck_repairing_all(const struct vswap_fsck *f)
{
	return f->opts.mode == VSWAP_FSCK_REPAIR && !f->busy && !f->hold_repairs;
}

/* ---- public accessors ---- */

int vswap_fsck_exit_code(const struct vswap_fsck *f)
{
	int code = 0;

	if (f->cancelled)
		return VSWAP_FSCK_EXIT_CANCELLED;
	/* A store that cannot be opened is an operational error, as e2fsck
	 * reports a device it cannot open: whatever was named, nothing ran. */
	if (f->open_failed)
		return VSWAP_FSCK_EXIT_OPERATIONAL;
	if (f->error)
		code |= VSWAP_FSCK_EXIT_OPERATIONAL;
	for (size_t i = 0; i < f->nprob; i++)
		code |=
		    f->prob[i].repaired ? VSWAP_FSCK_EXIT_CORRECTED : VSWAP_FSCK_EXIT_UNCORRECTED;
	return code;
}

size_t vswap_fsck_problem_count(const struct vswap_fsck *f)
{
	return f->nprob;
}

const struct vswap_problem *vswap_fsck_problem(const struct vswap_fsck *f, size_t i)
{
	return i < f->nprob ? &f->prob[i] : NULL;
}

size_t vswap_fsck_count_kind(const struct vswap_fsck *f, enum vswap_problem_kind kind)
{
	size_t n = 0;

	for (size_t i = 0; i < f->nprob; i++)
		n += f->prob[i].kind == kind;
	return n;
}

const uint64_t *vswap_fsck_lost_pages(const struct vswap_fsck *f, size_t *count)
{
	*count = f->nlost;
	return f->lost;
}

int vswap_fsck_counts(const struct vswap_fsck *f, struct vswap_fsck_counts *out)
{
	*out = f->counts;
	return 0;
}

bool vswap_fsck_busy(const struct vswap_fsck *f, pid_t *pid)
{
	if (pid)
		*pid = f->holder;
	return f->busy;
}

const char *vswap_fsck_open_failure(const struct vswap_fsck *f)
{
	if (!f->open_failed)
		return NULL;
	return f->open_why ? f->open_why : vswap_strerror(f->error);
}

const char *vswap_fsck_path(const struct vswap_fsck *f)
{
	return f->path;
}

enum vswap_fsck_mode vswap_fsck_mode_of(const struct vswap_fsck *f)
{
	return f->opts.mode;
}

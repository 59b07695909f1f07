/* SPDX-License-Identifier: MIT */
/*
 * One fsck run: decide whether the store is in use, open it (read-only for
 * an audit or a busy store, tolerant so that conflicting records can be
 * examined), run the passes in order, commit the repairs, close.  Closing a
 * writable handle after a complete run records the clean shutdown, which is
 * itself a repair; an incomplete run (cancelled, failed) closes unclean.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recovery/internal.h"

int vswap_fsck_new(const char *path, const struct vswap_fsck_opts *opts, struct vswap_fsck **out)
{
	struct vswap_fsck *f;

	if (!path || !out)
		return -EINVAL;
	static const uint64_t zero[8]; /* the options' reserved space */
	if (opts && memcmp(opts->reserved, zero, sizeof(zero)) != 0)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (opts)
		f->opts = *opts;
	f->log = logger_make("fsck", f->opts.log, f->opts.log_ctx, f->opts.log_level);
	f->path = strdup(path);
	if (!f->path) {
		free(f);
		return -ENOMEM;
	}
	*out = f;
	return 0;
}

void vswap_fsck_free(struct vswap_fsck *f)
{
	if (!f)
		return;
	if (f->store)
		vswap_store_close_unclean(f->store); /* the run did not finish */
	for (size_t i = 0; i < f->nprob; i++)
		free((void *)f->prob[i].detail);
	free(f->prob);
	free(f->lost);
	free(f->rec);
	free(f->by_slot);
	free(f->bad);
	free(f->bad_staging);
	fsck_extents_free(&f->swap_data);
	free(f->store_error);
	free(f->open_why);
	free(f->path);
	free(f);
}

/* The store's log goes to ours; its last error explains a failed open.  A
 * tolerant open warns about each record it leaves out: fsck reports those
 * itself, so they drop to info. */
static void store_log_relay(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	struct vswap_fsck *f = ctx;

	if (lvl == VSWAP_LOG_ERROR) {
		free(f->store_error);
		f->store_error = strdup(msg);
	}
	if (lvl == VSWAP_LOG_WARN && !f->store)
		lvl = VSWAP_LOG_INFO;
	fsck_log(f, lvl, "%s", msg);
}

const char *fsck_file_type(mode_t mode)
{
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISLNK(mode))
		return "a symbolic link";
	return S_ISREG(mode) ? "a regular file" : "not a regular file";
}

/* O_NONBLOCK: opening a FIFO for reading would wait for a writer forever. */
int fsck_open_regular(const char *path, int dirfd, const char **what)
{
	struct stat st;
	int fd = openat(dirfd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	*what = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		int err = errno;

		*what = err ? strerror(err) : fsck_file_type(st.st_mode);
		close(fd);
		return -EINVAL;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

/* Why the superblock was refused, or NULL if page 0 decodes. */
static const char *superblock_problem(const char *path)
{
	const char *why, *what;
	uint8_t uuid[16];
	int fd = fsck_open_regular(path, AT_FDCWD, &what);
	int ret;

	if (fd < 0)
		return "cannot read the superblock";
	ret = store_identify_fd(fd, uuid, &why);
	close(fd);
	if (ret == -EUCLEAN || ret == -EPROTONOSUPPORT)
		return why;
	return ret ? "cannot read the superblock" : NULL;
}

/* A store that cannot be opened: name the problem, if it is one of ours. */
/*
 * The run cannot open the store: why (naming the file and what is wrong with
 * it) is reported as a problem of @kind, or logged as an error when @kind is
 * negative, and kept for vswap_fsck_open_failure(), so that a summary says
 * why nothing was audited.
 */
static void __attribute__((format(printf, 4, 5)))
refuse_open(struct vswap_fsck *f, int err, int kind, const char *fmt, ...)
{
	char why[PATH_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (kind < 0)
		fsck_log(f, VSWAP_LOG_ERROR, "%s", why);
	else
		fsck_problem(f, (enum vswap_problem_kind)kind, FSCK_NONE, FSCK_NONE, "%s", why);
	f->open_failed = true;
	f->error = err;
	free(f->open_why);
	f->open_why = strdup(why); /* NULL: the accessor falls back to the errno */
}

static void open_failed(struct vswap_fsck *f, int err)
{
	const char *msg = f->store_error ? f->store_error : vswap_strerror(err);
	const char *sb =
	    (err == -EUCLEAN || err == -EPROTONOSUPPORT) ? superblock_problem(f->path) : NULL;

	if (sb)
		refuse_open(f, err, VSWAP_PROBLEM_BAD_SUPERBLOCK, "%s: %s", f->path, sb);
	else if (err == -EMEDIUMTYPE)
		refuse_open(f, err, VSWAP_PROBLEM_UUID_MISMATCH, "%s", msg);
	else if (err == -EXDEV)
		refuse_open(f, err, VSWAP_PROBLEM_PAGE_SIZE_MISMATCH, "%s", msg);
	else if (err == -EUCLEAN || err == -EPROTONOSUPPORT || err == -ENOENT)
		refuse_open(f, err, VSWAP_PROBLEM_BAD_INDEX, "%s", msg);
	else
		refuse_open(f, err, -1, "%s: cannot open the store: %s", f->path,
			    vswap_strerror(err));
}

static int find_holder(struct vswap_fsck *f)
{
	pid_t pid = 0;
	int held = vswap_lock_holder(f->path, &pid);

	if (held < 0)
		return held;
	f->busy = held == 1;
	f->holder = pid;
	return 0;
}

/* Meta records whose damage no repair may seal: they say what page numbers
 * mean, which store this is, where its staging file lives.  A writable
 * handle rewrites every meta record when it closes, with a valid check. */
#define DAMAGED_KEEP (VSWAP_DAMAGED_REGIONS | VSWAP_DAMAGED_STAGING_PATH | VSWAP_DAMAGED_CREATED)

static void quiet_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)ctx;
	(void)lvl;
	(void)msg;
}

/* A look that writes nothing and tolerates damage, with nothing logged: the
 * options of the read-only opens fsck makes around a repair. */
static struct vswap_store_opts look_opts(const struct vswap_fsck *f)
{
	return (struct vswap_store_opts){
	    .read_only = true,
	    .tolerant = true,
	    .index_path = f->opts.index_path,
	    .staging_dir = f->opts.staging_dir,
	    .log = quiet_log,
	};
}

/*
 * Before a repair opens the store for writing: a read-only look at its meta
 * records.  If one that must not be rewritten is damaged, the run becomes an
 * audit (the damage is reported, exit 4): closing a writable handle would
 * seal the damaged value as good.
 */
static void probe_meta(struct vswap_fsck *f)
{
	struct vswap_store_opts so = look_opts(f);
	struct vswap_store *s;

	if (f->opts.mode == VSWAP_FSCK_CHECK || f->busy || vswap_store_open(f->path, &so, &s))
		return;
	if (vswap_store_damaged(s) & DAMAGED_KEEP) {
		f->hold_repairs = true;
		fsck_log(f, VSWAP_LOG_WARN,
			 "%s: a meta record that says what the store's pages are is damaged: "
			 "auditing only, nothing is repaired",
			 f->path);
	}
	vswap_store_close(s);
}

static const char *const damaged_names[] = {"regions", "state", "clean", "staging_path",
					    "created_ns"};

/* The meta records the open found damaged, one problem each. */
static void report_damaged(struct vswap_fsck *f)
{
	for (unsigned b = 0; b < 5; b++) {
		uint32_t bit = 1u << b;
		ssize_t idx;

		if (!(f->damaged & bit))
			continue;
		idx = fsck_problem(f, VSWAP_PROBLEM_RECORD_CHECKSUM, FSCK_NONE, FSCK_NONE,
				   "%s: the %s record fails its check%s",
				   vswap_store_index_path(f->store), damaged_names[b],
				   bit & DAMAGED_KEEP ? "; kept as evidence, nothing is repaired"
						      : " (taken as the safe value)");
		if (bit == VSWAP_DAMAGED_STATE)
			f->advice_prob[0] = idx;
		if (bit == VSWAP_DAMAGED_CLEAN)
			f->advice_prob[1] = idx;
	}
}

static int open_store(struct vswap_fsck *f)
{
	struct vswap_store_opts so = {
	    .read_only = f->opts.mode == VSWAP_FSCK_CHECK || f->busy || f->hold_repairs,
	    .tolerant = true,
	    .index_path = f->opts.index_path,
	    .staging_dir = f->opts.staging_dir,
	    .log = store_log_relay,
	    .log_ctx = f,
	    .log_level = VSWAP_LOG_DEBUG,
	};
	int ret = vswap_store_open(f->path, &so, &f->store);

	if (ret == -EBUSY) { /* a handler took the lock after we looked */
		find_holder(f);
		f->busy = true;
	}
	return ret;
}

static int load_store_facts(struct vswap_fsck *f)
{
	int ret = vswap_store_info(f->store, &f->info);

	if (ret)
		return ret;
	f->page_size = f->info.page_size;
	f->total_pages = vswap_store_total_pages(f->store);
	f->slot_limit = vswap_store_max_pages();
	f->damaged = vswap_store_damaged(f->store);
	report_damaged(f);
	if (!f->info.was_clean && !f->busy)
		f->unclean_prob =
		    fsck_problem(f, VSWAP_PROBLEM_UNCLEAN_SHUTDOWN, FSCK_NONE, FSCK_NONE,
				 "%s was not closed cleanly (state %u)", f->path, f->info.state);
	/* The extents in slots: slot s is at vswap_store_slot_offset(s). */
	return fsck_extents_scan(vswap_store_swap_fd(f->store),
				 vswap_store_slot_offset(f->store, 0), f->page_size, &f->swap_data);
}

static int run_passes(struct vswap_fsck *f)
{
	int ret;

	if ((ret = load_store_facts(f)) || (ret = fsck_move_misplaced(f)) ||
	    (ret = fsck_load_records(f)))
		return ret;
	fsck_check_records(f);
	if ((ret = fsck_verify(f)))
		return ret;
	if (fsck_cancelled(f))
		return -ECANCELED;
	fsck_resolve_shared(f);
	fsck_judge_beyond(f);
	if ((ret = fsck_report_records(f)) || (ret = fsck_check_leaked_slots(f)) ||
	    (ret = fsck_repair_shared(f)) || (ret = fsck_check_staging(f)) ||
	    (ret = fsck_check_orphans(f)))
		return ret;
	return fsck_cancelled(f) ? -ECANCELED : 0;
}

/*
 * Commit the repairs and close.  Only a run that went to the end records a
 * clean shutdown: a cancelled or failed run commits the repairs it made
 * (they stay made) but leaves the clean flag 0, so the next run audits the
 * store again.
 */
static int finish(struct vswap_fsck *f, int ret)
{
	bool writable = fsck_repairing(f);
	int cret = 0;

	if (writable && !ret)
		cret = vswap_store_commit(f->store);
	if (f->store) {
		int close_ret = !ret && !cret ? vswap_store_close(f->store)
					      : vswap_store_close_unclean(f->store);

		cret = cret ?: close_ret;
	}
	f->store = NULL;
	if (!ret && cret) {
		fsck_log(f, VSWAP_LOG_ERROR, "%s: committing the repairs failed: %s", f->path,
			 vswap_strerror(cret));
		ret = cret;
	}
	if (!ret && writable && f->unclean_prob >= 0)
		fsck_problem_repaired(f, f->unclean_prob);
	/* The close rewrote the advisory records with their safe values. */
	for (int i = 0; i < 2 && !ret && writable; i++)
		if (f->advice_prob[i] >= 0)
			fsck_problem_repaired(f, f->advice_prob[i]);
	return ret;
}

static bool same_place(const struct vswap_problem *a, const struct vswap_problem *b)
{
	return a->kind == b->kind && a->has_page == b->has_page && a->has_slot == b->has_slot &&
	       (!a->has_page || a->page == b->page) && (!a->has_slot || a->slot == b->slot);
}

/*
 * A repair counts only once it is seen to have taken: after a run that
 * repaired anything, the store is audited again (read-only, without the
 * orphan scan, and without hashing the bytes this run hashed: a repair
 * changes records and punches holes, and a copy it writes is verified as
 * it is made).  A problem found again was not repaired, whatever the call
 * that should have repaired it returned (a keyed delete of a damaged key
 * finds nothing to delete); a problem the first run had not seen is one the
 * repairs made, reported as left.  So -y exits 0 or 1 only when the next
 * -n finds nothing.
 */
static int count_record(void *ctx, const struct vswap_page_record *r)
{
	(void)r;
	(*(size_t *)ctx)++;
	return 0;
}

/* After a run whose only repair is what the close rewrites (the clean flag,
 * the advisory records): the store still opens and holds the records it
 * held.  Cheaper than the audit, which it falls back to when not. */
static bool close_only_took(struct vswap_fsck *f)
{
	struct vswap_store_opts so = look_opts(f);
	struct vswap_store *s;
	size_t n = 0;
	bool same;

	if (vswap_store_open(f->path, &so, &s))
		return false;
	same = vswap_store_foreach_page(s, count_record, &n) == 0 && n == f->nrec + f->nbad;
	vswap_store_close(s);
	return same;
}

static void recheck(struct vswap_fsck *f)
{
	struct vswap_fsck_opts o = f->opts;
	struct vswap_fsck *g;
	int ret;
	uint64_t changes = f->counts.repairs;

	/* The clean flag and the advisory records are rewritten by the close
	 * itself: a run that repaired nothing else needs only the quick look. */
	if (f->unclean_prob >= 0 && f->prob[f->unclean_prob].repaired)
		changes--;
	for (int i = 0; i < 2; i++)
		if (f->advice_prob[i] >= 0 && f->prob[f->advice_prob[i]].repaired)
			changes--;
	if (!fsck_repairing(f) || !f->counts.repairs || (!changes && close_only_took(f)))
		return;
	o.mode = VSWAP_FSCK_CHECK;
	o.no_orphan_scan = true;
	o.progress = NULL;
	if (vswap_fsck_new(f->path, &o, &g))
		return;
	g->skip_bytes = true;
	ret = vswap_fsck_run(g);
	if (ret) {
		fsck_log(f, VSWAP_LOG_ERROR, "%s: the audit after the repairs failed: %s", f->path,
			 vswap_strerror(ret));
		if (ret == -ECANCELED)
			f->cancelled = true;
		else
			f->error = ret;
	}
	for (size_t i = 0; i < g->nprob; i++) {
		const struct vswap_problem *p = &g->prob[i];
		size_t k = 0;

		while (k < f->nprob && !same_place(&f->prob[k], p))
			k++;
		if (k < f->nprob) {
			if (f->prob[k].repaired) {
				f->prob[k].repaired = false;
				f->counts.repairs--;
				fsck_log(f, VSWAP_LOG_WARN, "%s: the repair did not take: %s",
					 f->path, p->detail);
			}
			continue;
		}
		fsck_problem(f, p->kind, p->has_page ? p->page : FSCK_NONE,
			     p->has_slot ? p->slot : FSCK_NONE, "after the repairs: %s", p->detail);
	}
	vswap_fsck_free(g);
}

static void warn_busy(struct vswap_fsck *f)
{
	if (f->holder)
		fsck_log(f, VSWAP_LOG_WARN,
			 "%s is in use by process %d: auditing read-only; changes the handler has "
			 "not committed yet may show as problems",
			 f->path, (int)f->holder);
	else
		fsck_log(f, VSWAP_LOG_WARN, "%s is in use (locked): auditing read-only", f->path);
}

/*
 * Before the store is opened: each of its files that exists must be a
 * regular file (a FIFO would block the open, a device would be read as a
 * store), and the index must not be empty.  The store's own open checks
 * more (sizes, the staging file); these give the tool's message a name.
 */
static int check_file_types(struct vswap_fsck *f)
{
	char index[PATH_MAX], lock[PATH_MAX + 8];
	struct stat st;

	if (stat(f->path, &st) != 0) {
		int ret = -errno;

		refuse_open(f, ret, -1, "%s: %s", f->path, strerror(errno));
		return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		refuse_open(f, -EINVAL, -1, "%s: is %s, not a vswap swap file", f->path,
			    fsck_file_type(st.st_mode));
		return -EINVAL;
	}
	snprintf(index, sizeof(index), "%s%s", f->opts.index_path ? f->opts.index_path : f->path,
		 f->opts.index_path ? "" : ".idx");
	snprintf(lock, sizeof(lock), "%s-lock", index);
	if (stat(index, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_size == 0)) {
		refuse_open(f, -EUCLEAN, VSWAP_PROBLEM_BAD_INDEX, "%s: the index is %s", index,
			    st.st_size == 0 && S_ISREG(st.st_mode) ? "empty (0 bytes)"
								   : fsck_file_type(st.st_mode));
		return -EUCLEAN;
	}
	if (lstat(lock, &st) == 0 && !S_ISREG(st.st_mode)) {
		refuse_open(f, -EUCLEAN, VSWAP_PROBLEM_BAD_INDEX, "%s: the index's lock file is %s",
			    lock, fsck_file_type(st.st_mode));
		return -EUCLEAN;
	}
	return 0;
}

int vswap_fsck_run(struct vswap_fsck *f)
{
	int ret;

	if (f->ran)
		return -EALREADY;
	f->ran = true;
	f->unclean_prob = -1;
	f->advice_prob[0] = f->advice_prob[1] = -1;
	if ((ret = check_file_types(f)))
		return ret;
	if ((ret = find_holder(f)))
		fsck_log(f, VSWAP_LOG_DEBUG, "cannot read /proc/locks: %s", strerror(-ret));
	if (f->busy && f->opts.mode != VSWAP_FSCK_CHECK)
		goto busy;
	probe_meta(f);
	ret = open_store(f);
	if (ret == -EBUSY && f->opts.mode != VSWAP_FSCK_CHECK)
		goto busy;
	if (ret) {
		open_failed(f, ret);
		return ret;
	}
	if (f->busy)
		warn_busy(f);
	ret = finish(f, run_passes(f));
	if (!ret)
		recheck(f);
	fsck_lost_sort(f);
	if (ret == -ECANCELED)
		f->cancelled = true;
	else if (ret)
		f->error = ret;
	return ret;
busy:
	if (f->holder)
		refuse_open(f, -EBUSY, -1,
			    "%s is in use by process %d; not repairing a store in use", f->path,
			    (int)f->holder);
	else
		refuse_open(f, -EBUSY, -1, "%s is in use (locked); not repairing a store in use",
			    f->path);
	return -EBUSY;
}

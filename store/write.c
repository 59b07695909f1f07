/* SPDX-License-Identifier: MIT */
/*
 * The write path and commit.  Order (invariant 1): bytes written, then (in
 * FULL and BATCH) fdatasync, then the index commit that references them,
 * then the slots that commit freed become reusable (invariant 2).  A freed
 * slot is not punched when it is freed: the write that reuses it overwrites
 * its old bytes, and those still free at a clean close are punched then, in
 * runs (slots_punch_free()).  On a file system mounted with discard each
 * fallocate(PUNCH_HOLE) waits for the device (about 0.6 ms for one 4 KiB
 * slot on ext4 here): a punch per freed slot made a trim after a resume,
 * which frees one slot in eight, spend most of its time in them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store/internal.h"
#include "util/array.h"

static int scratch_reserve(struct vswap_store *s, size_t n)
{
	/* Three arrays of one capacity: each grows from the same start to the
	 * same size. */
	size_t cap = s->scratch_cap;
	if (ARRAY_RESERVE(s->scratch_slots, cap, n, 64))
		return -ENOMEM;
	cap = s->scratch_cap;
	if (ARRAY_RESERVE(s->scratch_reqs, cap, n, 64))
		return -ENOMEM;
	cap = s->scratch_cap;
	if (ARRAY_RESERVE(s->scratch_sums, cap, n, 64))
		return -ENOMEM;
	s->scratch_cap = cap;
	return 0;
}

/*
 * Choose a slot per page.  A stale page is rewritten in place when the index
 * already says stale: that old copy is expendable (the current one is in
 * staging until the commit).  If the stale mark is not committed yet (its
 * group is dirty), the index may still call the slot present, so the page
 * gets a new slot like a present or lost one: a crash mid-write never
 * damages a copy the committed index points at.
 */
static int assign_slots(struct vswap_store *s, uint64_t first, uint32_t count, uint64_t *slots)
{
	for (uint32_t i = 0; i < count; i++) {
		uint32_t w = s->pages[first + i];
		uint64_t g = (first + i) / GROUP_PAGES;
		/* A group in a split commit's snapshot is not committed yet
		 * either: the index on disk may still call the slot present. */
		if (pw_state(w) == VSWAP_PAGE_STALE && !bit_test(s->dirty, g) &&
		    !(s->snap.active && bit_test(s->snap.committing, g))) {
			slots[i] = pw_slot(w);
			continue;
		}
		int64_t slot = slot_alloc(s);
		if (slot < 0) {
			for (uint32_t k = 0; k < i; k++)
				if (slots[k] != pw_slot(s->pages[first + k]))
					slot_clear_used(s, slots[k]);
			return (int)slot;
		}
		slots[i] = (uint64_t)slot;
	}
	return 0;
}

/* Cut the swap file at @end slots: what an append grew goes back (keeps a
 * full disk usable).  Slots past @end are free: holes once cut. */
static void cut_tail(struct vswap_store *s, uint64_t end)
{
	if (end < s->slots_end)
		end = s->slots_end;
	if (ftruncate(s->fd, (off_t)slot_offset(s, end)) != 0) {
		store_log(s, VSWAP_LOG_WARN, "%s: cannot shrink after a failed write", s->path);
		return;
	}
	if (end < s->slot_cap)
		slots_mark_punched(s, end, s->slot_cap - end);
}

/* Undo assign_slots() after a failed write: the new slots go back, free
 * (what reached them is old bytes of a free slot, punched at a clean close
 * or overwritten by the next write there). */
static void unassign_slots(struct vswap_store *s, uint64_t first, uint32_t count,
			   const uint64_t *slots, uint64_t old_end)
{
	for (uint32_t i = 0; i < count; i++) {
		if (slots[i] == pw_slot(s->pages[first + i]))
			continue; /* in place: the slot stays the page's */
		slot_clear_used(s, slots[i]);
		slot_mark_unpunched(s, slots[i]);
	}
	cut_tail(s, old_end);
}

/* One request per run of consecutive slots. */
static unsigned build_runs(struct vswap_store *s, const uint8_t *buf, uint32_t count,
			   const uint64_t *slots, struct vswap_io_req *reqs)
{
	unsigned n = 0;
	for (uint32_t i = 0; i < count;) {
		uint32_t j = i + 1;
		while (j < count && j - i < MAX_REQ_PAGES && slots[j] == slots[j - 1] + 1)
			j++;
		reqs[n++] = (struct vswap_io_req){
		    .buf = (void *)(buf + ((size_t)i << s->page_shift)),
		    .off = slot_offset(s, slots[i]),
		    .len = (j - i) << s->page_shift,
		};
		i = j;
	}
	return n;
}

struct hash_job {
	const struct vswap_store *s;
	const uint8_t *buf;
	uint64_t first;
	uint32_t count;
	uint64_t *sums;
};

static void hash_pages(void *arg)
{
	struct hash_job *j = arg;
	for (uint32_t i = 0; i < j->count; i++)
		j->sums[i] = page_sum(j->s, j->first + i, j->buf + ((size_t)i << j->s->page_shift));
}

/*
 * Write the runs and hash the pages while the writes are in flight.  Page-
 * aligned buffers go through the O_DIRECT descriptor: no copy into the page
 * cache, and swapped-out pages really leave RAM.
 */
static int run_writes(struct vswap_store *s, struct vswap_io_req *reqs, unsigned n,
		      struct hash_job *hj)
{
	bool direct = s->dfd >= 0 && ((uintptr_t)hj->buf & (s->page_size - 1)) == 0;
	s->cached_writes |= !direct;
	int ret =
	    vswap_io_run_overlap(&s->io, direct ? s->dfd : s->fd, true, reqs, n, hash_pages, hj);
	if (ret)
		return ret;
	for (unsigned i = 0; i < n; i++) {
		if (reqs[i].res < 0)
			return reqs[i].res;
		if ((uint32_t)reqs[i].res != reqs[i].len)
			return -EIO;
	}
	return 0;
}

int vswap_store_write(struct vswap_store *s, uint64_t first, uint32_t count, const void *buf)
{
	if (s->read_only)
		return -EROFS;
	if (s->sync_error)
		return s->sync_error;
	if (count == 0 || first >= s->total_pages || count > s->total_pages - first)
		return -EINVAL;
	/* New slots: the allocator needs every record's. */
	int ret = index_need_all(s);
	if (!ret) /* bytes follow: the store is known unclean first */
		ret = index_record_unclean(s);
	if (ret)
		return ret;
	ret = scratch_reserve(s, count);
	if (ret)
		return ret;
	uint64_t *slots = s->scratch_slots;
	uint64_t old_end = s->slots_end;
	if ((ret = assign_slots(s, first, count, slots))) {
		store_log(s, VSWAP_LOG_ERROR, "%s: no slot for %u pages: %s", s->path, count,
			  vswap_strerror(ret));
		return ret;
	}
	unsigned nreq = build_runs(s, buf, count, slots, s->scratch_reqs);
	struct hash_job hj = {
	    .s = s, .buf = buf, .first = first, .count = count, .sums = s->scratch_sums};
	ret = run_writes(s, s->scratch_reqs, nreq, &hj);
	if (ret) {
		store_log(s, VSWAP_LOG_ERROR, "%s: writing %u pages at page %llu: %s", s->path,
			  count, (unsigned long long)first, vswap_strerror(ret));
		unassign_slots(s, first, count, slots, old_end);
		return ret;
	}
	/* The bytes are written: now the pages are present (in memory). */
	for (uint32_t i = 0; i < count; i++) {
		uint64_t p = first + i;
		if (pw_has_slot(s->pages[p]) && pw_slot(s->pages[p]) != slots[i])
			page_release_slot(s, p);
		page_set(s, p, pw_make(slots[i], VSWAP_PAGE_PRESENT), s->scratch_sums[i]);
	}
	s->pending_pages += count;
	s->bytes_written += (uint64_t)count << s->page_shift;
	s->data_unsynced = true;
	if (s->durability == VSWAP_DURABILITY_FULL)
		return vswap_store_commit(s);
	return 0;
}

static bool anything_pending(const struct vswap_store *s)
{
	if (s->meta_dirty || s->freed.n || s->pending_pages || s->unpunched.n || blob_pending(s))
		return true;
	for (uint64_t i = 0; i < (s->ngroups + 63) / 64; i++)
		if (s->dirty[i])
			return true;
	return false;
}

/* Page-group records to write: while a lazy load walks the `pages`
 * database, nothing is written into it (the walk reads a snapshot, and a
 * put touches the leaf of its key, which the load has not read yet). */
static bool groups_dirty(const struct vswap_store *s)
{
	for (uint64_t i = 0; i < (s->ngroups + 63) / 64; i++)
		if (s->dirty[i])
			return true;
	return false;
}

static int cmp_pin(const void *a, const void *b)
{
	uint64_t x = ((const struct wpin *)a)->slot, y = ((const struct wpin *)b)->slot;
	return x < y ? -1 : x > y;
}

/* Slots of @f that a split write in flight rewrites in place stay used
 * until its end (vswap_store_write_end() releases them): taken out of @f. */
static void keep_pinned(struct vswap_store *s, struct slot_vec *f)
{
	if (!s->nwpins)
		return;
	qsort(s->wpins, s->nwpins, sizeof(*s->wpins), cmp_pin);
	size_t k = 0;
	for (size_t i = 0; i < f->n; i++) {
		struct wpin key = {.slot = f->v[i]};
		struct wpin *pin = bsearch(&key, s->wpins, s->nwpins, sizeof(*s->wpins), cmp_pin);
		if (pin && !pin->gone)
			pin->due = true;
		else
			f->v[k++] = f->v[i];
	}
	f->n = k;
}

/*
 * Release the slots freed by the commit that just landed: free for the
 * allocator from now on, their bytes left where they are (the slot's next
 * write overwrites them; slots_punch_free() punches those still free at a
 * clean close).  Reusing a slot unpunched keeps invariant 2: no record the
 * index holds names it any more, and the record that will name it again is
 * committed only after the new bytes are durable (invariant 1), so a crash
 * in between leaves bytes no record names: a leak vswap-fsck reclaims
 * (invariant 4), as after a crash between a write and its commit.
 */
static void release_freed(struct vswap_store *s, struct slot_vec *f)
{
	keep_pinned(s, f);
	if (!f->n)
		return;
	/* The slot bitmap is the lazy load's until it ends. */
	if (index_need_all(s))
		return; /* a forked child: they leak until vswap-fsck reclaims them */
	for (size_t i = 0; i < f->n; i++) {
		slot_clear_used(s, f->v[i]);
		slot_mark_unpunched(s, f->v[i]);
	}
	f->n = 0;
}

/*
 * A store opened unclean: the handle that died may have freed slots it never
 * punched, and nothing recorded which.  Every free slot below the file's end
 * is taken as possibly holding bytes, so that a clean close leaves bytes only
 * in slots a record names.  Once, with the whole slot bitmap loaded (a lazy
 * open's load finished); not in a repair open, which may not know every slot.
 */
void slots_inherit_unpunched(struct vswap_store *s)
{
	if (!s->inherit_unpunched || s->read_only || s->tolerant)
		return;
	if (s->loader && index_need_all(s) != 0)
		return; /* the slot bitmap is the load's until it ends */
	struct stat st;
	if (fstat(s->fd, &st) != 0)
		return;
	uint64_t file_slots = (uint64_t)st.st_size >> s->page_shift;
	file_slots = file_slots ? file_slots - 1 : 0; /* the superblock's page */
	if (file_slots > STORE_MAX_SLOTS)
		file_slots = STORE_MAX_SLOTS;
	if (slots_reserve(s, file_slots) != 0)
		return; /* tried again at the next call */
	s->inherit_unpunched = false;
	for (uint64_t k = 0; k < file_slots; k++)
		slot_mark_unpunched(s, k);
}

static int punch_run(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)slot_offset(s, first), (off_t)(count << s->page_shift)) != 0) {
		int err = -errno;
		store_log(s, VSWAP_LOG_WARN,
			  "%s: cannot punch free slots %llu+%llu: %s (vswap-fsck reclaims them)",
			  s->path, (unsigned long long)first, (unsigned long long)count,
			  strerror(-err));
		return err;
	}
	slots_mark_punched(s, first, count);
	return 0;
}

/* The free slots from @k (one that may hold bytes) to the last such one
 * before the next used slot or @end, at most @max of them: the free slots
 * between are holes already, or bytes no record names, so one call covers
 * them all.  Returns the run's length. */
static uint64_t punch_run_len(const struct vswap_store *s, uint64_t k, uint64_t end, uint64_t max)
{
	uint64_t last = k, j = k + 1;
	while (j < end && j - k < max && !slot_is_used(s, j)) {
		if (bit_test(s->slot_unpunched, j))
			last = j;
		j++;
	}
	return last - k + 1;
}

int64_t vswap_store_punch_free(struct vswap_store *s, uint64_t max_slots)
{
	if (s->read_only)
		return -EROFS;
	if (s->tolerant)
		return -EINVAL;	      /* a repair open may not know every slot */
	int need = index_need_all(s); /* the slot bitmap is the load's until it ends */
	if (need)
		return need;
	slots_inherit_unpunched(s);
	uint64_t end = s->slots_end, done = 0;
	uint64_t k = slot_next_unpunched(s, 0);
	while (k < end && done < max_slots) {
		uint64_t n = punch_run_len(s, k, end, max_slots - done);
		int err = punch_run(s, k, n);
		if (err)
			return err;
		done += n;
		k = slot_next_unpunched(s, k + n);
	}
	/* Below the last used slot nothing is left: the free tail goes in one
	 * ftruncate (the blocks it frees count as this call's too). */
	if (k >= end && s->n_unpunched) {
		if (ftruncate(s->fd, (off_t)slot_offset(s, end)) != 0) {
			int err = -errno;
			store_log(s, VSWAP_LOG_WARN, "%s: cannot cut free slots from %llu: %s",
				  s->path, (unsigned long long)end, strerror(-err));
			return err;
		}
		slots_mark_punched(s, end, s->slot_cap - end);
	}
	return (int64_t)s->n_unpunched;
}

/*
 * A run is a stretch of free slots from an unpunched one to the last
 * unpunched one before the next used slot: the free slots between are holes
 * already, or bytes no record names, so one call covers them all.  Free
 * slots past the last used one are cut off instead (one ftruncate), except
 * in a tolerant (repair) open, which may not know every slot.
 */
void slots_punch_free(struct vswap_store *s)
{
	if (s->read_only)
		return;
	slots_inherit_unpunched(s);
	if (!s->n_unpunched)
		return;
	uint64_t end = s->slots_end;
	uint64_t k = slot_next_unpunched(s, 0);
	while (k < end && s->n_unpunched) {
		uint64_t n = punch_run_len(s, k, end, UINT64_MAX);
		(void)punch_run(s, k, n); /* logged; left to vswap-fsck */
		k = slot_next_unpunched(s, k + n);
	}
	if (!s->n_unpunched)
		return;
	if (s->tolerant) {
		uint64_t first = slot_next_unpunched(s, end), top = first;
		for (uint64_t t = first; t < s->slot_cap; t = slot_next_unpunched(s, t + 1))
			top = t;
		if (first < s->slot_cap)
			punch_run(s, first, top - first + 1);
	} else if (ftruncate(s->fd, (off_t)slot_offset(s, end)) == 0) {
		slots_mark_punched(s, end, s->slot_cap - end);
	} else {
		store_log(s, VSWAP_LOG_WARN, "%s: cannot cut free slots from %llu: %s", s->path,
			  (unsigned long long)end, strerror(errno));
	}
}

int vswap_store_commit(struct vswap_store *s)
{
	if (s->read_only)
		return -EROFS;
	if (s->pid != getpid())
		return -ECHILD; /* a forked child must not commit through LMDB */
	if (s->sync_error)
		return s->sync_error;
	struct commit_snap *c = &s->snap;
	bool joined = c->active;
	if (joined) {
		/* A split commit is between its begin and its end: wait until
		 * its write is over (it holds the index's writer lock), then
		 * commit what it took as well, so that this commit makes
		 * everything durable whether or not that one landed. */
		int ret = index_snap_wait(s);
		if (ret)
			return ret;
		if (c->sync_failed) { /* its data sync failed: the kernel may
				       * have dropped bytes it names */
			s->sync_error = c->sync_failed;
			return s->sync_error;
		}
		groups_redirty(s, c->committing);
		s->data_unsynced |= c->sync;
		s->meta_dirty |= c->meta;
		blob_taken_end(s, false); /* pending again: committed here too */
	}
	if (!anything_pending(s))
		return 0;
	if (s->loader && groups_dirty(s)) {
		int ret = index_need_all(s);
		if (!ret)
			ret = index_pages_writable(s);
		if (ret)
			return ret;
	}
	if (s->data_unsynced && s->durability != VSWAP_DURABILITY_NONE) {
		if (fdatasync(s->fd) != 0) {
			/* After a failed sync the kernel may mark the dirty pages
			 * clean: a later sync would succeed without the bytes.
			 * So no commit may ever reference them: the failure
			 * sticks until the store is reopened (the pages are still
			 * in staging; the index still has the old state). */
			s->sync_error = errno == EIO || errno == ENOSPC ? -errno : -EIO;
			store_log(
			    s, VSWAP_LOG_ERROR,
			    "%s: sync failed: %s; nothing more is committed until the store is "
			    "reopened",
			    s->path, strerror(errno));
			return s->sync_error;
		}
		/* Pages written through the page cache should leave RAM too:
		 * that is what swapping is for. */
		if (s->cached_writes)
			posix_fadvise(s->fd, 0, 0, POSIX_FADV_DONTNEED);
		s->cached_writes = false;
	}
	s->data_unsynced = false;
	int ret = index_commit(s);
	if (ret) {
		store_log(s, VSWAP_LOG_ERROR, "%s: index commit failed: %s", s->index_path,
			  vswap_strerror(ret));
		return ret;
	}
	if (s->dirty) {
		memset(s->dirty, 0, (s->ngroups + 63) / 64 * sizeof(uint64_t));
		memset(s->sg_only, 0, (s->ngroups + 63) / 64 * sizeof(uint64_t));
	}
	s->meta_dirty = false;
	s->pending_pages = 0;
	blob_committed(s);
	s->commits++;
	release_freed(s, &s->freed);
	staging_punch_unstaged(s);
	if (joined) { /* recorded by this commit too: the split one's end
		       * finds nothing left to release */
		release_freed(s, &c->freed);
		staging_punch_ranges(s, &c->unpunched);
		c->sync = c->meta = false;
	}
	return 0;
}

/* ---- the split commit ------------------------------------------------------ */

/* Move every element of @from to the end of @to (@from emptied). */
static int slots_move(struct slot_vec *to, struct slot_vec *from)
{
	for (size_t i = 0; i < from->n; i++)
		if (slot_vec_push(to, from->v[i]) != 0)
			return -ENOMEM;
	from->n = 0;
	return 0;
}

static int ranges_move(struct range_vec *to, struct range_vec *from)
{
	for (size_t i = 0; i < from->n; i++)
		if (range_vec_push(to, from->v[i].first, from->v[i].count) != 0)
			return -ENOMEM;
	from->n = 0;
	return 0;
}

int vswap_store_commit_begin(struct vswap_store *s)
{
	struct commit_snap *c = &s->snap;
	if (s->read_only)
		return -EROFS;
	if (s->pid != getpid())
		return -ECHILD;
	if (s->sync_error)
		return s->sync_error;
	if (c->active)
		return -EBUSY;
	if (!anything_pending(s))
		return 0;
	/* The lazy commit waits for the load rather than make its caller wait
	 * (under the caller's lock): taken by a commit after the load. */
	if (s->loader && !loader_done(s) && groups_dirty(s))
		return 0;
	if (s->loader && groups_dirty(s)) {
		int ret = index_pages_writable(s);
		if (ret)
			return ret;
	}
	uint64_t words = (s->ngroups + 63) / 64;
	uint64_t *bm = realloc(c->committing, (words ? words : 1) * sizeof(uint64_t));
	if (!bm)
		return -ENOMEM;
	c->committing = bm;
	/* The transaction first: it makes every later commit wait for this
	 * one, so commits land in the order of their begins. */
	int ret = index_snap_txn(s);
	if (ret)
		return ret;
	c->meta = s->meta_dirty;
	ret = c->meta ? index_snap_meta(s) : 0;
	/* Named blobs go into the transaction now (copied by LMDB): a get
	 * sees them taken until the end says whether they landed. */
	if (!ret && (ret = blob_take(s, c->txn)) != 0)
		ret = ret == MDB_MAP_FULL ? -EAGAIN : -EIO;
	if (!ret)
		ret = index_snap_encode(s);
	/* Slots freed and staging left before this point are recorded by the
	 * groups just encoded: they may go once this commit lands. */
	if (!ret)
		ret = slots_move(&c->freed, &s->freed);
	if (!ret)
		ret = ranges_move(&c->unpunched, &s->unpunched);
	if (ret) {
		slots_move(&s->freed, &c->freed);
		ranges_move(&s->unpunched, &c->unpunched);
		blob_taken_end(s, false);
		index_snap_abort(s);
		return ret;
	}
	if (s->dirty) {
		memset(s->dirty, 0, words * sizeof(uint64_t));
		memset(s->sg_only, 0, words * sizeof(uint64_t));
	}
	c->sync = s->data_unsynced && s->durability != VSWAP_DURABILITY_NONE;
	c->cached = s->cached_writes;
	c->pending = s->pending_pages;
	c->sync_failed = 0;
	s->data_unsynced = false;
	s->cached_writes = false;
	s->meta_dirty = false;
	s->pending_pages = 0;
	c->active = true;
	return 1;
}

int vswap_store_commit_write(struct vswap_store *s)
{
	struct commit_snap *c = &s->snap;
	if (!c->active || !c->txn)
		return -EINVAL;
	/* Invariant 1: the bytes the snapshot's records name were written
	 * before its begin; they are durable before the index names them. */
	if (c->sync && fdatasync(s->fd) != 0) {
		c->sync_failed = errno == EIO || errno == ENOSPC ? -errno : -EIO;
		store_log(
		    s, VSWAP_LOG_ERROR,
		    "%s: sync failed: %s; nothing more is committed until the store is reopened",
		    s->path, strerror(errno));
		index_snap_abort(s);
		return c->sync_failed;
	}
	int ret = index_snap_put(s);
	if (ret) {
		index_snap_abort(s);
		return ret;
	}
	ret = index_snap_commit(s);
	if (ret && ret != -EAGAIN)
		store_log(s, VSWAP_LOG_ERROR, "%s: index commit failed: %s", s->index_path,
			  vswap_strerror(ret));
	index_snap_prepare(s); /* the snapshot is put: its room is free */
	return ret;
}

void vswap_store_commit_end(struct vswap_store *s, int result)
{
	struct commit_snap *c = &s->snap;
	if (!c->active)
		return;
	index_snap_abort(s); /* a write never called */
	blob_taken_end(s, result == 0);
	if (result == 0) {
		s->commits++;
		if (c->cached)
			posix_fadvise(s->fd, 0, 0, POSIX_FADV_DONTNEED);
		/* The slots it freed are free from now on, unpunched. */
		release_freed(s, &c->freed);
		/* The staging bytes go in vswap_store_commit_punch(), without
		 * the caller's lock: punching 64 MiB of shared memory takes
		 * tens of milliseconds, and faults would wait for it. */
		if (!atomic_load(&c->punch_due) &&
		    staging_unstaged_runs(s, &c->unpunched, &c->punch) == 0) {
			c->unpunched.n = 0;
			atomic_store(&c->punch_due, c->punch.n > 0);
		} else {
			staging_punch_ranges(s, &c->unpunched);
		}
	} else {
		/* Nothing landed: everything taken is pending again. */
		groups_redirty(s, c->committing);
		slots_move(&s->freed, &c->freed);
		ranges_move(&s->unpunched, &c->unpunched);
		s->data_unsynced |= c->sync;
		s->cached_writes |= c->cached;
		s->meta_dirty |= c->meta;
		s->pending_pages += c->pending;
		if (c->sync_failed)
			s->sync_error = c->sync_failed;
	}
	c->active = false;
}

void vswap_store_commit_punch(struct vswap_store *s)
{
	struct commit_snap *c = &s->snap;
	if (!atomic_load(&c->punch_due))
		return;
	/* Only this call and the end that filled it touch c->punch; the
	 * runs' pages cannot be staged again before punch_due is cleared. */
	for (size_t i = 0; i < c->punch.n; i++)
		if (staging_punch(s, c->punch.v[i].first, c->punch.v[i].count) != 0)
			store_log(s, VSWAP_LOG_WARN,
				  "%s: cannot punch staging bytes: %s (vswap-fsck reclaims them)",
				  s->staging_path, strerror(errno));
	c->punch.n = 0;
	atomic_store(&c->punch_due, false);
}

uint64_t vswap_store_pending(const struct vswap_store *s)
{
	return s->pending_pages;
}

/* ---- the split write ------------------------------------------------------- */

static int wflight_reserve(struct vswap_store *s)
{
	if (s->wflight_pages == s->total_pages)
		return 0;
	if (s->writes_inflight) /* the layout cannot change under a write */
		return -EBUSY;
	uint64_t words = (s->total_pages + 63) / 64;
	uint64_t *bm = calloc(words ? words : 1, sizeof(uint64_t));
	if (!bm)
		return -ENOMEM;
	free(s->wflight);
	s->wflight = bm;
	s->wflight_pages = s->total_pages;
	return 0;
}

/* A stale slot may be rewritten in place when the index already says
 * stale (as assign_slots()): the page's current copy is elsewhere. */
static bool in_place_ok(const struct vswap_store *s, uint64_t page)
{
	uint64_t g = page / GROUP_PAGES;
	return pw_state(s->pages[page]) == VSWAP_PAGE_STALE && !bit_test(s->dirty, g) &&
	       !(s->snap.active && bit_test(s->snap.committing, g));
}

/*
 * Rewriting stale slots in place keeps the file's size, but after a resume
 * a batch's stale slots rarely follow each other: the pages that became
 * zero are not written (their slots go), the pages that stopped being zero
 * need a new slot, and every such page splits the batch's write.  A write
 * of a few pages at a time ran at a fraction of the disk's rate.  So a
 * batch whose in-place runs would average fewer than FRESH_RUN_PAGES pages
 * takes one run of free slots instead (the lowest that holds it, else at
 * the end), and its pages' stale slots are freed by its end, reusable once
 * that is committed: a later batch's run finds them there, consecutive.
 * The price: the file may grow by what is written before those commits
 * land.  A run is taken only where the file system has room for it
 * (fresh_run_fits()), and none after a write failed with ENOSPC: a batch
 * that fits in place is not made to fail on a full disk.  (The room may go
 * between the check and the write: the swap-out then takes the batch's
 * pages not written again, in place: batch_retry() in handler/swap_out.c.)
 */
#define FRESH_RUN_PAGES 32u

static bool fresh_run_better(const struct vswap_store *s, const uint64_t *pages, uint32_t count)
{
	if (s->fresh_runs_off)
		return false;
	/* The writes in place would make: a run per stretch of consecutive
	 * stale slots, and one per stretch of pages needing a new slot (those
	 * are consecutive among themselves where the file has room). */
	uint32_t runs = 0, in_place = 0;
	uint64_t prev = PW_NO_SLOT;
	bool prev_fresh = false;
	for (uint32_t i = 0; i < count; i++) {
		bool fresh = !in_place_ok(s, pages[i]);
		uint64_t slot = fresh ? PW_NO_SLOT : pw_slot(s->pages[pages[i]]);
		if (fresh ? !prev_fresh : prev == PW_NO_SLOT || slot != prev + 1)
			runs++;
		in_place += !fresh;
		prev = slot;
		prev_fresh = fresh;
	}
	return in_place && count >= FRESH_RUN_PAGES && count / runs < FRESH_RUN_PAGES;
}

/*
 * A fresh run needs new blocks where rewrites in place need none: on a
 * nearly full file system (a swap volume sized for the guest) it would fail
 * with ENOSPC where the batch fitted in place.  So the run is taken only if
 * the file system has room for all of it, with a margin for the index's
 * growth (an upper bound: some of its slots may hold blocks already).
 */
#define FRESH_RUN_MARGIN (1u << 20)

static bool fresh_run_fits(const struct vswap_store *s, uint32_t count)
{
	struct statvfs v;
	if (fstatvfs(s->fd, &v) != 0)
		return false;
	uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
	return avail >= ((uint64_t)count << s->page_shift) + FRESH_RUN_MARGIN;
}

/* The pin of @slot (the pins sorted), or NULL. */
static struct wpin *pin_of(struct vswap_store *s, uint64_t slot)
{
	struct wpin key = {.slot = slot};
	struct wpin *pin = bsearch(&key, s->wpins, s->nwpins, sizeof(*s->wpins), cmp_pin);
	return pin && !pin->gone ? pin : NULL;
}

int vswap_store_write_begin(struct vswap_store *s, const uint64_t *pages, uint32_t count,
			    uint64_t *slots, int *fd)
{
	if (s->read_only)
		return -EROFS;
	if (s->sync_error)
		return s->sync_error;
	if (count == 0)
		return -EINVAL;
	for (uint32_t i = 0; i < count; i++)
		if (pages[i] >= s->total_pages || (i && pages[i] <= pages[i - 1]))
			return -EINVAL;
	/* New slots: the allocator needs every record's. */
	int ret = index_need_all(s);
	if (!ret) /* bytes follow: the store is known unclean first */
		ret = index_record_unclean(s);
	if (ret)
		return ret;
	ret = wflight_reserve(s);
	if (ret)
		return ret;
	if (ARRAY_RESERVE(s->wpins, s->cap_wpins, s->nwpins + count, 256))
		return -ENOMEM;
	/* A page's own stale slot where its stale mark is committed (the
	 * index names nothing else there: a rewrite, even abandoned, damages
	 * only an old copy), else a fresh one.  The stale slot is pinned: no
	 * commit releases it while the write is in flight. */
	size_t pins0 = s->nwpins;
	int64_t run = fresh_run_better(s, pages, count) && fresh_run_fits(s, count)
			  ? slot_alloc_run(s, count)
			  : -1;
	for (uint32_t i = 0; run >= 0 && i < count; i++)
		slots[i] = (uint64_t)run + i;
	for (uint32_t i = 0; run < 0 && i < count; i++) {
		if (in_place_ok(s, pages[i])) {
			slots[i] = pw_slot(s->pages[pages[i]]);
			s->wpins[s->nwpins++] = (struct wpin){.slot = slots[i]};
			continue;
		}
		int64_t slot = slot_alloc(s);
		if (slot < 0) {
			for (uint32_t k = 0; k < i; k++)
				if (slots[k] != pw_slot(s->pages[pages[k]]) ||
				    !in_place_ok(s, pages[k]))
					slot_clear_used(s, slots[k]);
			s->nwpins = pins0;
			store_log(s, VSWAP_LOG_ERROR, "%s: no slot for %u pages: %s", s->path,
				  count, vswap_strerror((int)slot));
			return (int)slot;
		}
		slots[i] = (uint64_t)slot;
	}
	for (uint32_t i = 0; i < count; i++)
		bit_set(s->wflight, pages[i]);
	s->writes_inflight++;
	if (s->dfd >= 0) {
		*fd = s->dfd;
	} else {
		*fd = s->fd;
		s->cached_writes = true;
	}
	return 0;
}

/* Give back a slot of a split write whose bytes no record will name: free,
 * its bytes overwritten by its next write or punched at a clean close. */
static void write_drop_slot(struct vswap_store *s, uint64_t slot)
{
	slot_clear_used(s, slot);
	slot_mark_unpunched(s, slot);
}

int vswap_store_write_end(struct vswap_store *s, const uint64_t *pages, uint32_t count,
			  const uint64_t *slots, const uint64_t *sums, const int *status)
{
	if (!s->writes_inflight || count == 0)
		return -EINVAL;
	int made = 0, err = 0;
	bool dropped_tail = false;
	if (s->nwpins)
		qsort(s->wpins, s->nwpins, sizeof(*s->wpins), cmp_pin);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t p = pages[i], slot = slots[i];
		int st = status ? status[i] : 0;
		bool live = bit_test(s->wflight, p);
		bit_clear(s->wflight, p);
		struct wpin *pin = pin_of(s, slot);
		bool in_place = pin != NULL, due = pin && pin->due;
		if (pin)
			pin->gone = true;
		if (st < 0 && !err)
			err = st;
		/* A full disk: rewrites in place from now on (they need no
		 * new blocks). */
		if (st == -ENOSPC)
			s->fresh_runs_off = true;
		if (live && st == 0) {
			if (pw_has_slot(s->pages[p]) && pw_slot(s->pages[p]) != slot)
				page_release_slot(s, p);
			page_set(s, p, pw_make(slot, VSWAP_PAGE_PRESENT), sums[i]);
			made++;
			continue;
		}
		if (!in_place) {
			write_drop_slot(s, slot);
			dropped_tail = true;
			continue;
		}
		/* The page's own old copy, perhaps partly overwritten: it goes
		 * (after the next commit, like any freed slot), or now if a
		 * commit freed it meanwhile. */
		if (due)
			write_drop_slot(s, slot);
		else if (pw_has_slot(s->pages[p]) && pw_slot(s->pages[p]) == slot)
			page_release_slot(s, p);
	}
	size_t k = 0;
	for (size_t i = 0; i < s->nwpins; i++)
		if (!s->wpins[i].gone)
			s->wpins[k++] = s->wpins[i];
	s->nwpins = k;
	s->writes_inflight--;
	if (made) {
		s->pending_pages += (uint64_t)made;
		s->data_unsynced = true;
	}
	s->bytes_written += (uint64_t)made << s->page_shift;
	if (err) {
		store_log(s, VSWAP_LOG_ERROR, "%s: writing %u pages from page %llu: %s", s->path,
			  count, (unsigned long long)pages[0], vswap_strerror(err));
		/* Give back what an append grew (keeps a full disk usable);
		 * the slots of other writes in flight are still in use. */
		if (dropped_tail)
			cut_tail(s, s->slots_end);
		return err;
	}
	return made;
}

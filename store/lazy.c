/* SPDX-License-Identifier: MIT */
/*
 * The lazily loaded index (vswap_store_opts.lazy_index).  The open checks
 * and loads what it must before it returns (the superblock, the index file,
 * the meta records, the regions, the staging records); the page-group
 * records, nearly all of a large index, are loaded behind it by a thread of
 * the store's own, in key order through one read transaction.  A call that
 * needs a group before the thread has reached it loads that group itself.
 *
 * What is believed, and when (the eager load's rules, in another order):
 *   - A record under its own key that passes its check is believed as soon
 *     as it is read, by either path: it names its own group, so no other
 *     record can change what it says about its pages.  Its pages are then
 *     served (each page's bytes are still checked against its checksum).
 *   - A record that fails its check, or names another group (misplaced),
 *     is not believed: its pages are recorded lost in memory, so a handler
 *     poisons them, and the log names the record (run vswap-fsck).  An
 *     eager open refuses the whole store instead; here the guest may be
 *     running already.
 *   - A group with no record under its key is empty only once the walk is
 *     over: a damaged key may have moved its record under another key,
 *     where the walk finds it (misplaced, claiming the group).  So a call
 *     that finds no record waits for the walk; the claimed groups are then
 *     lost, the others empty (their pages read as zero-fill).
 *   - A slot named by two records belongs to the one loaded first; the
 *     later page is lost (its slot is never reused: the first owner holds
 *     it).  Page checksums are seeded with the page number, so the bytes
 *     served for the first owner are its own or fail.
 *   - A record of a group beyond the regions, and entries beyond them, are
 *     logged and left alone (no page can fault there).
 *
 * Threads and locks.  The caller's calls are serialised (the store is not
 * internally locked); the walk runs on its own thread.  @mu guards every
 * table entry of a group not loaded yet, the slot bitmap and its counts
 * (slots_used, slots_end) and the loader's page counts.  A group's loaded
 * bit is set (release) under @mu after its entries are written; the caller
 * reads a group's entries only after seeing its bit (acquire), and from
 * then on the loader never writes them.  Whatever needs every group (the
 * slot allocator, the counts, a commit that frees slots, a map resize)
 * first waits for the walk to end (@done, release/acquire).  Only read
 * transactions are opened here: the fault path never writes the index.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

/* Records handled per hold of @mu by the walk: an on-demand load waits at
 * most that many. */
#define WALK_BATCH 16u
/* A call needing more groups than this that are not loaded waits for the
 * walk (faster than loading them one by one). */
#define NEED_WAIT_GROUPS 256u
/* The walk's niceness above the opener's: it must not take a core from
 * what the caller does right after the open (a resume creating its VM),
 * and whatever needs a group first loads it on its own thread. */
#define WALK_NICE 10

struct index_loader {
	struct vswap_store *s; /* the walk's handle (s->loader goes NULL at close) */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* @done became true */
	pthread_t thread;
	bool started;
	atomic_bool stop;	  /* the handle is closing */
	bool held;		  /* tests: the walk waits (mu, cv) until released */
	atomic_bool done;	  /* every group is loaded */
	_Atomic uint64_t *loaded; /* bit per group */
	uint64_t *claimed;	  /* bit per group: a misplaced record names it (mu) */
	uint64_t ngroups;
	MDB_txn *txn; /* on-demand loads (mu): reset between uses */
	/* The leaves of `pages`, bounded before LMDB reads them (mu); freed
	 * when the walk is over. */
	struct lmdb_deferred *check;
	bool leaf_damage; /* a leaf failed its check (mu; stable once done) */
	pid_t pid;
	uint64_t t0_ns;
	/* under mu */
	uint64_t n_present, n_stale, n_lost; /* pages loaded, by state */
	/* written under mu; read without it by vswap_store_load_status(),
	 * which a resume calls while the walk runs: a niced walk preempted
	 * holding mu must not hold up the caller's critical path */
	atomic_uint_fast64_t bad_records;
	/* atomics: read by vswap_store_load_status() */
	atomic_uint_fast64_t nloaded, on_demand, waits, load_ns;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool is_loaded(const struct index_loader *ld, uint64_t g)
{
	return atomic_load_explicit(&ld->loaded[g / 64], memory_order_acquire) >> (g % 64) & 1;
}

static void set_loaded(struct index_loader *ld, uint64_t g)
{
	atomic_fetch_or_explicit(&ld->loaded[g / 64], 1ull << (g % 64), memory_order_release);
	atomic_fetch_add(&ld->nloaded, 1);
}

static void count_page(struct index_loader *ld, enum vswap_page_state st)
{
	ld->n_present += st == VSWAP_PAGE_PRESENT;
	ld->n_stale += st == VSWAP_PAGE_STALE;
	ld->n_lost += st == VSWAP_PAGE_LOST;
}

static uint64_t group_end(const struct vswap_store *s, uint64_t g)
{
	uint64_t end = (g + 1) * GROUP_PAGES;
	return end < s->total_pages ? end : s->total_pages;
}

/* Every page of group @g lost, with no slot (mu held, @g not loaded). */
static void group_lost(struct vswap_store *s, struct index_loader *ld, uint64_t g)
{
	for (uint64_t p = g * GROUP_PAGES; p < group_end(s, g); p++) {
		s->pages[p] = pw_make(PW_NO_SLOT, VSWAP_PAGE_LOST);
		s->sums[p] = 0;
		count_page(ld, VSWAP_PAGE_LOST);
	}
	set_loaded(ld, g);
}

struct fill {
	struct vswap_store *s;
	struct index_loader *ld;
	uint64_t group;
	bool bad;
};

/*
 * One entry of the record under group f->group's key (mu held, the group
 * not loaded), or the record once if it is not believed.
 */
static int fill_entry(void *arg, const struct vswap_page_record *r)
{
	struct fill *f = arg;
	struct vswap_store *s = f->s;
	struct index_loader *ld = f->ld;
	if (r->corrupt) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: bad index: the page-group record of key %llu (pages %llu-%llu) %s; "
			  "its pages are lost (run vswap-fsck)",
			  s->index_path, (unsigned long long)f->group,
			  (unsigned long long)(f->group * GROUP_PAGES),
			  (unsigned long long)(group_end(s, f->group) - 1),
			  record_fault_name(r->fault));
		ld->bad_records++;
		if (r->fault == VSWAP_RECORD_MISPLACED && r->claimed_group < ld->ngroups)
			bit_set(ld->claimed, r->claimed_group);
		f->bad = true;
		return 0;
	}
	if (r->page >= s->total_pages) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: bad index: record of page %llu beyond the regions; left alone "
			  "(run vswap-fsck)",
			  s->index_path, (unsigned long long)r->page);
		return 0;
	}
	const char *why = NULL;
	uint64_t slot = r->slot;
	enum vswap_page_state st = r->state;
	if (slot != UINT64_MAX && slot >= STORE_MAX_SLOTS)
		why = "slot out of range";
	else if (slot != UINT64_MAX && slot_reserve_and_test(s, slot))
		why = "slot owned twice";
	if (why) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: index record of page %llu: %s; the page is lost (run vswap-fsck)",
			  s->index_path, (unsigned long long)r->page, why);
		ld->bad_records++;
		slot = UINT64_MAX;
		st = VSWAP_PAGE_LOST;
	}
	if (slot != UINT64_MAX)
		slot_set_used(s, slot);
	s->pages[r->page] = pw_make(slot, st);
	s->sums[r->page] = slot == UINT64_MAX ? 0 : r->xxh3;
	count_page(ld, st);
	return 0;
}

/*
 * The record @v found under the key of group @g (mu held, @g not loaded):
 * believed, its pages are filled; not believed, the group is lost (and the
 * group a misplaced record names is marked claimed).  Either way @g is
 * loaded.
 */
static void take_record(struct vswap_store *s, struct index_loader *ld, uint64_t g,
			const MDB_val *k, const MDB_val *v)
{
	struct fill fl = {s, ld, g, false};
	index_walk_group(s, k, v, fill_entry, &fl);
	if (fl.bad)
		group_lost(s, ld, g);
	else
		set_loaded(ld, g);
}

static int read_txn(struct vswap_store *s, MDB_txn **txn)
{
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
	return rc ? -EIO : 0;
}

static void mark_done(struct index_loader *ld)
{
	pthread_mutex_lock(&ld->mu);
	atomic_store_explicit(&ld->load_ns, mono_ns() - ld->t0_ns, memory_order_relaxed);
	atomic_store_explicit(&ld->done, true, memory_order_release);
	pthread_cond_broadcast(&ld->cv);
	pthread_mutex_unlock(&ld->mu);
}

/*
 * The walk is over (or cannot go on: @broken): the groups it did not load
 * have no record under their key.  Claimed ones are lost; after a broken
 * walk every one is (whatever the rest of the index holds is unknown).
 */
static void finish_walk(struct vswap_store *s, struct index_loader *ld, bool broken)
{
	pthread_mutex_lock(&ld->mu);
	uint64_t lost = 0;
	for (uint64_t g = 0; g < ld->ngroups; g++) {
		if (is_loaded(ld, g))
			continue;
		if (broken || bit_test(ld->claimed, g)) {
			group_lost(s, ld, g);
			lost++;
		} else {
			set_loaded(ld, g); /* empty: its pages have no copy */
		}
	}
	index_lmdb_deferred_free(ld->check); /* no look-up needs it now */
	ld->check = NULL;
	pthread_mutex_unlock(&ld->mu);
	if (lost)
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: bad index: %llu page groups whose records could not be found are "
			  "lost (run vswap-fsck)",
			  s->index_path, (unsigned long long)lost);
	mark_done(ld);
}

/*
 * Leaf @leaf of `pages` failed its check (mu held): LMDB may not read it,
 * so the groups whose keys it holds are lost, every one not loaded yet
 * whose key LMDB's descent leads there (the branch pages that lead there
 * were checked at the open).  No later commit writes `pages`
 * (loader_pages_damaged()).
 */
static void leaf_lost(struct vswap_store *s, struct index_loader *ld, size_t leaf)
{
	if (!ld->leaf_damage)
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: bad index: the page groups in a damaged LMDB page are lost, and "
			  "no page group is recorded again until it is repaired (run vswap-fsck)",
			  s->index_path);
	ld->leaf_damage = true;
	ld->bad_records++;
	for (uint64_t g = 0; g < ld->ngroups; g++) {
		uint64_t kb = htobe64(g);
		if (!is_loaded(ld, g) && index_lmdb_key_leaf(ld->check, &kb, 8) == leaf)
			group_lost(s, ld, g);
	}
}

/* A record the walk met (mu held). */
static void walk_record(struct vswap_store *s, struct index_loader *ld, const MDB_val *k,
			const MDB_val *v)
{
	uint64_t g = UINT64_MAX;
	if (k->mv_size == 8) {
		memcpy(&g, k->mv_data, 8);
		g = be64toh(g);
	}
	if (g >= ld->ngroups) {
		ld->bad_records++;
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: bad index: a page-group record under a key beyond "
			  "the regions; left alone (run vswap-fsck)",
			  s->index_path);
	} else if (!is_loaded(ld, g)) {
		take_record(s, ld, g, k, v);
	}
}

/*
 * The walk reads `pages` leaf by leaf, each checked first
 * (index_lmdb_check_leaf()): the cursor is put on a leaf's first key and
 * steps exactly over its keys, so it never reads a leaf not yet checked.
 * A leaf that fails loses its groups; the walk goes on with the next.
 */
static void *walk_main(void *arg)
{
	struct index_loader *ld = arg;
	struct vswap_store *s = ld->s;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	/* Linux: a thread's niceness is its own (best effort). */
	errno = 0;
	int prio = getpriority(PRIO_PROCESS, (id_t)gettid());
	if (errno == 0)
		setpriority(PRIO_PROCESS, (id_t)gettid(),
			    prio + WALK_NICE > 19 ? 19 : prio + WALK_NICE);
	pthread_mutex_lock(&ld->mu);
	while (ld->held && !atomic_load(&ld->stop))
		pthread_cond_wait(&ld->cv, &ld->mu);
	pthread_mutex_unlock(&ld->mu);
	int rc = read_txn(s, &txn) ? MDB_PANIC : mdb_cursor_open(txn, s->dbi_pages, &cur);
	size_t nleaves = index_lmdb_leaves(ld->check);
	for (size_t i = 0; i < nleaves && rc == 0 && !atomic_load(&ld->stop); i++) {
		unsigned n;
		const void *lo;
		size_t lo_len;
		pthread_mutex_lock(&ld->mu);
		if (index_lmdb_check_leaf(ld->check, i, &n, &lo, &lo_len)) {
			leaf_lost(s, ld, i);
			pthread_mutex_unlock(&ld->mu);
			continue;
		}
		MDB_val k = {.mv_size = lo_len, .mv_data = (void *)lo}, v;
		rc = mdb_cursor_get(cur, &k, &v, lo ? MDB_SET_RANGE : MDB_FIRST);
		for (unsigned j = 0; j < n && rc == 0; j++) {
			if (j)
				rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			if (rc == 0)
				walk_record(s, ld, &k, &v);
		}
		pthread_mutex_unlock(&ld->mu);
	}
	if (cur)
		mdb_cursor_close(cur);
	if (txn)
		mdb_txn_abort(txn);
	if (atomic_load(&ld->stop))
		return NULL; /* closing: nothing waits for the rest */
	if (rc)
		store_log(s, VSWAP_LOG_ERROR, "%s: bad index: loading the page groups: %s",
			  s->index_path, mdb_strerror(rc));
	/* Every leaf read: the record's entry count is what shows a record
	 * hidden by a leaf that looks whole.  Without it (a leaf lost, a read
	 * failed) a group with no record found may have had one: lost. */
	pthread_mutex_lock(&ld->mu);
	bool broken = rc != 0 || ld->leaf_damage || index_lmdb_check_rest(ld->check) != 0;
	pthread_mutex_unlock(&ld->mu);
	finish_walk(s, ld, broken);
	return NULL;
}

int loader_start(struct vswap_store *s)
{
	struct index_loader *ld = calloc(1, sizeof(*ld));
	if (!ld)
		return -ENOMEM;
	ld->s = s;
	ld->ngroups = s->ngroups;
	ld->loaded = calloc((s->ngroups + 63) / 64 + 1, sizeof(*ld->loaded));
	ld->claimed = calloc((s->ngroups + 63) / 64 + 1, sizeof(uint64_t));
	if (!ld->loaded || !ld->claimed) {
		free(ld->loaded);
		free(ld->claimed);
		free(ld);
		return -ENOMEM;
	}
	pthread_mutex_init(&ld->mu, NULL);
	pthread_cond_init(&ld->cv, NULL);
	ld->pid = getpid();
	ld->t0_ns = mono_ns();
	ld->held = s->load_held;
	ld->check = s->deferred; /* the walk's from now on */
	s->deferred = NULL;
	s->loader = ld;
	int rc = pthread_create(&ld->thread, NULL, walk_main, ld);
	if (rc) {
		s->loader = NULL;
		s->deferred = ld->check;
		pthread_cond_destroy(&ld->cv);
		pthread_mutex_destroy(&ld->mu);
		free(ld->loaded);
		free(ld->claimed);
		free(ld);
		return -rc;
	}
	ld->started = true;
	return 0;
}

void loader_stop(struct vswap_store *s)
{
	struct index_loader *ld = s->loader;
	if (!ld)
		return;
	s->loader = NULL;
	/* A forked child has no walk thread and must not touch the
	 * parent's LMDB state: it only lets the memory go. */
	if (ld->pid != getpid())
		return;
	pthread_mutex_lock(&ld->mu);
	atomic_store(&ld->stop, true);
	pthread_cond_broadcast(&ld->cv);
	pthread_mutex_unlock(&ld->mu);
	if (ld->started)
		pthread_join(ld->thread, NULL);
	if (ld->txn)
		mdb_txn_abort(ld->txn);
	index_lmdb_deferred_free(ld->check);
	pthread_cond_destroy(&ld->cv);
	pthread_mutex_destroy(&ld->mu);
	free(ld->loaded);
	free(ld->claimed);
	free(ld);
}

void loader_release(struct vswap_store *s)
{
	struct index_loader *ld = s->loader;
	if (!ld)
		return;
	pthread_mutex_lock(&ld->mu);
	ld->held = false;
	pthread_cond_broadcast(&ld->cv);
	pthread_mutex_unlock(&ld->mu);
}

bool need_fails(const struct vswap_store *s, uint64_t first, uint64_t count)
{
	uint64_t g = atomic_load_explicit(&s->need_fail_group, memory_order_relaxed);
	return count && g >= first / GROUP_PAGES && g <= (first + count - 1) / GROUP_PAGES;
}

void store_fail_group(struct vswap_store *s, uint64_t g, int err)
{
	atomic_store_explicit(&s->need_fail_group, g, memory_order_relaxed);
	atomic_store_explicit(&s->need_fail, err, memory_order_release);
}

/* Wait until the walk is over. */
static int wait_done(const struct vswap_store *s)
{
	struct index_loader *ld = s->loader;
	if (atomic_load_explicit(&ld->done, memory_order_acquire))
		return 0;
	if (ld->pid != getpid())
		return -ECHILD;
	atomic_fetch_add(&ld->waits, 1);
	pthread_mutex_lock(&ld->mu);
	while (!atomic_load_explicit(&ld->done, memory_order_acquire))
		pthread_cond_wait(&ld->cv, &ld->mu);
	pthread_mutex_unlock(&ld->mu);
	return 0;
}

/*
 * Load group @g now if its record is under its key and believed (or not
 * believed: lost); 0 when loaded, 1 when the walk must decide (no record
 * under the key, or the index could not be read).  mu held.
 */
static int load_one(struct vswap_store *s, struct index_loader *ld, uint64_t g)
{
	int rc =
	    ld->txn ? mdb_txn_renew(ld->txn) : mdb_txn_begin(s->env, NULL, MDB_RDONLY, &ld->txn);
	if (rc) {
		if (ld->txn)
			mdb_txn_abort(ld->txn);
		ld->txn = NULL;
		return 1;
	}
	uint64_t kb = htobe64(g);
	MDB_val k = {.mv_size = 8, .mv_data = &kb}, v;
	/* The leaf LMDB's look-up will read, bounded first. */
	if (index_lmdb_check_key(ld->check, &kb, 8)) {
		mdb_txn_reset(ld->txn);
		leaf_lost(s, ld, index_lmdb_key_leaf(ld->check, &kb, 8));
		return 0;
	}
	rc = mdb_get(ld->txn, s->dbi_pages, &k, &v);
	if (rc == 0) {
		take_record(s, ld, g, &k, &v);
		atomic_fetch_add(&ld->on_demand, 1);
	}
	mdb_txn_reset(ld->txn);
	return rc == 0 ? 0 : 1;
}

int loader_need(const struct vswap_store *cs, uint64_t first, uint64_t count)
{
	struct vswap_store *s = (struct vswap_store *)cs; /* the tables' entries only */
	struct index_loader *ld = s->loader;
	if (atomic_load_explicit(&ld->done, memory_order_acquire) || !count ||
	    first >= s->total_pages)
		return 0;
	if (count > s->total_pages - first)
		count = s->total_pages - first;
	uint64_t g0 = first / GROUP_PAGES, g1 = (first + count - 1) / GROUP_PAGES;
	uint64_t missing = 0;
	for (uint64_t g = g0; g <= g1 && missing <= NEED_WAIT_GROUPS; g++)
		missing += !is_loaded(ld, g);
	if (!missing)
		return 0;
	if (ld->pid != getpid())
		return -ECHILD;
	if (missing > NEED_WAIT_GROUPS)
		return wait_done(s);
	for (uint64_t g = g0; g <= g1; g++) {
		if (is_loaded(ld, g))
			continue;
		pthread_mutex_lock(&ld->mu);
		int later = is_loaded(ld, g) ? 0 : load_one(s, ld, g);
		pthread_mutex_unlock(&ld->mu);
		if (later)
			return wait_done(s); /* every group is loaded then */
	}
	return 0;
}

bool loader_done(const struct vswap_store *s)
{
	return atomic_load_explicit(&s->loader->done, memory_order_acquire);
}

int loader_need_all(const struct vswap_store *s)
{
	return wait_done(s);
}

/* The counts of the loaded pages go to the handle's (walk over). */
int loader_absorb(struct vswap_store *s)
{
	struct index_loader *ld = s->loader;
	int ret = wait_done(s);
	if (ret)
		return ret;
	pthread_mutex_lock(&ld->mu);
	s->n_present += ld->n_present;
	s->n_stale += ld->n_stale;
	s->n_lost += ld->n_lost;
	ld->n_present = ld->n_stale = ld->n_lost = 0;
	pthread_mutex_unlock(&ld->mu);
	return 0;
}

void loader_counts(const struct vswap_store *s, uint64_t *present, uint64_t *stale, uint64_t *lost)
{
	struct index_loader *ld = s->loader;
	pthread_mutex_lock(&ld->mu);
	*present += ld->n_present;
	*stale += ld->n_stale;
	*lost += ld->n_lost;
	pthread_mutex_unlock(&ld->mu);
}

bool loader_pages_damaged(const struct vswap_store *s)
{
	struct index_loader *ld = s->loader;
	pthread_mutex_lock(&ld->mu);
	bool bad = ld->leaf_damage;
	pthread_mutex_unlock(&ld->mu);
	return bad;
}

bool loader_found_damage(const struct vswap_store *s)
{
	struct index_loader *ld = s->loader;
	pthread_mutex_lock(&ld->mu);
	bool bad = ld->bad_records != 0;
	pthread_mutex_unlock(&ld->mu);
	return bad;
}

int vswap_store_load_status(const struct vswap_store *s, struct vswap_store_load *out)
{
	if (!s || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->groups = s->ngroups;
	struct index_loader *ld = s->loader;
	if (!ld) {
		out->done = true;
		out->loaded = s->ngroups;
		return 0;
	}
	out->lazy = true;
	out->done = atomic_load_explicit(&ld->done, memory_order_acquire);
	out->loaded = atomic_load(&ld->nloaded);
	out->on_demand = atomic_load(&ld->on_demand);
	out->waits = atomic_load(&ld->waits);
	out->load_ns = atomic_load(&ld->load_ns);
	out->bad_records = atomic_load(&ld->bad_records);
	return 0;
}

int vswap_store_load_wait(struct vswap_store *s)
{
	if (!s)
		return -EINVAL;
	return s->loader ? wait_done(s) : 0;
}

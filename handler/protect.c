/* SPDX-License-Identifier: MIT */
/*
 * The protect enable mode: guest memory is write-protected in place
 * (userfaultfd WP on shmem) instead of being copied to staging, and trim and
 * swap-out work on the protected pages where they are.
 *
 * The swap-out set is the bitmap h->wp.clean (struct protect): a page is in
 * it when it is resident, write-protected through every uffd, and no write
 * to it has been let through since.  Every rule below keeps one property:
 *
 *   A page is removed from guest memory (trim, swap-out) only while its bit
 *   is set, tested in the same h->lock hold as the removal, and only after
 *   the commit that records where its bytes now are.
 *
 * Why that is enough for "no write lost":
 *   - A registered process cannot change a protected page without a WP
 *     fault, and the fault waits until the handler un-protects the page.
 *     protect_wp_fault() clears the bit under h->lock *before* un-protecting.
 *     So while the bit is set under the lock, the page's bytes are the ones
 *     that trim compared or swap-out wrote: the store's copy is the guest's.
 *   - Swap-out writes batches of protected pages on the job thread while
 *     the monitor serves WP faults (handler/swap_out.c).  A WP fault handled
 *     while a page's write is in flight (race c) marks the page stale under
 *     h->lock, which cancels the page in the store's write
 *     (vswap_store_write_end()): the page stays as it was, its new slot goes
 *     back, and bytes the guest changed mid-write are never recorded.  A
 *     page still in flight at the end had its bit set all along, so its
 *     bytes did not change while they were written and hashed.  A WP fault
 *     handled after the write's end but before the commit (race a) marks
 *     the page stale: the slot's bytes still match its checksum, so the
 *     store keeps a valid older copy, never a present one that the guest
 *     has changed; the page stays resident, unremoved.
 *   - A writer that blocked on WP before the removal and whose message is
 *     read only after it (race b) finds its bit clear: nothing changes in
 *     the store, the page is un-protected (which clears the uffd-wp marker
 *     the removal left in the page table) and the writer woken; it refaults
 *     as MISSING, is served the committed copy from the store, and its write
 *     lands on that.  A stale WP message must never mark such a page stale:
 *     the store's copy is then the only one.
 *   - A MISSING fault or a REMOVE event (balloon) means the page is not (or
 *     soon not) resident: its bit is cleared (protect_forget) before any
 *     later removal could test it.
 *
 * Swap-out removes its committed pages on the pool's workers, so that the
 * job writes the next batches meanwhile (the punch costs a third of the
 * write); trim removes its judged pages on the job thread.  A removal holds
 * h->wp.rlock, never h->lock; so the bitmap has a lock of its own, taken by
 * every reader and writer of a bit.  A removal takes a piece of pages out
 * of the set and marks the piece removing in one rlock hold, then punches
 * it without it (a punch takes milliseconds: the job's gather and every
 * write-protect fault would wait for it), and clears the marks under rlock
 * again.  protect_wp_fault() waits while its page is marked removing,
 * before it tests the bit and un-protects: so the rule above holds with
 * "the bit set when the removal began, and no write let through until it
 * ended".  A piece's punch also runs across the holes between its pages
 * (remove_piece()), so every copy into guest memory waits for the marks
 * too (protect_fill_begin()).  The worker's snapshot was taken after the
 * commit, and a page whose bit is still set has not changed since (every
 * path that changes its record clears the bit first).  The monitor waits
 * for the workers before Active, enable, and leaving protection.
 *
 * Guest bytes are read without ever touching the registered mappings, so the
 * handler's own reads can never wait for a userfault it would serve itself:
 * trim uses pread() on the memfd (a hole reads as zeros and stays a hole),
 * swap-out writes with O_DIRECT from a read-only alias mapping of each
 * region that no uffd covers (zero copy: the same page-cache pages).  Only
 * pages whose bit is set are read through the alias, so it never fills a
 * hole the handler made.  A page punched behind the handler's back (no
 * REMOVE event, no vswap_handler_discard()) while resident keeps its bit:
 * the alias reads it as zeros and swap-out stores zeros, which is what the
 * punch did to it.  A page punched after it was swapped out has no bit and
 * no page-cache page to punch: its store copy stays and is served on the
 * next fault (only the discard API drops it).
 *
 * Memory that may hold huge folios never runs in this mode
 * (protect_check_memory()): a punch of a sub-range of a huge folio whose
 * split fails leaves the range zeroed in the page cache with no fault to
 * serve, so the guest would read zeros where its swapped-out data was.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "handler/internal.h"
#include "util/array.h"

/* Trim reads guest bytes this many pages at a time. */
#define TRIM_READ_PAGES 64u

const char *vswap_enable_mode_name(enum vswap_enable_mode m)
{
	switch (m) {
	case VSWAP_ENABLE_AUTO:
		return "auto";
	case VSWAP_ENABLE_COPY:
		return "copy";
	case VSWAP_ENABLE_PROTECT:
		return "protect";
	}
	return "unknown";
}

int vswap_enable_mode_parse(const char *name, enum vswap_enable_mode *out)
{
	if (!name || !out)
		return -EINVAL;
	for (int m = VSWAP_ENABLE_AUTO; m <= VSWAP_ENABLE_PROTECT; m++)
		if (!strcmp(name, vswap_enable_mode_name((enum vswap_enable_mode)m))) {
			*out = (enum vswap_enable_mode)m;
			return 0;
		}
	return -EINVAL;
}

int protect_resolve(enum vswap_enable_mode want, uint64_t features)
{
	bool can = features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	switch (want) {
	case VSWAP_ENABLE_AUTO:
		return can ? VSWAP_ENABLE_PROTECT : VSWAP_ENABLE_COPY;
	case VSWAP_ENABLE_COPY:
		return VSWAP_ENABLE_COPY;
	case VSWAP_ENABLE_PROTECT:
		return can ? VSWAP_ENABLE_PROTECT : -EOPNOTSUPP;
	}
	return -EINVAL;
}

/* ---- memory that may hold huge folios ------------------------------------ */

/*
 * Why protect mode refuses memory that may be backed by huge folios (shmem
 * THP, any size above the base page): protect mode removes single pages
 * (or short runs) from guest memory by punching them out of the memfd.
 * Inside a large folio the kernel zeroes the punched sub-range in place and
 * then tries to split the folio; if anything else holds a reference at that
 * moment (a device's pin, io_uring fixed buffers, an O_DIRECT in flight)
 * the split fails, fallocate() still returns 0, and the zeroed pages stay
 * in the page cache: the guest would read zeros with no MISSING fault.
 * Copy mode removes only whole extents after copying them, so it is safe.
 *
 * Tests, each failing safe ("may be huge"):
 *   - st_blksize of the memfd above the page size: shmem reports the PMD
 *     size when the inode may take huge folios without any madvise (tmpfs
 *     huge=always|within_size, shmem_enabled=always|within_size|force).
 *   - the shmem THP policy in sysfs (top level and every per-size knob):
 *     anything but never/deny (or inherit, which defers to the top level)
 *     counts as may be huge.  "advise" counts too: a VMM may MADV_HUGEPAGE
 *     guest RAM, and the handler cannot see another process's madvise; an
 *     unreadable or unknown policy counts too.  A kernel without THP has no
 *     such files (ENOENT at the top level): no huge folios.
 *   - the huge= option of the tmpfs mount holding the file (huge=advise
 *     is not in st_blksize: the VMM's madvise decides), from mountinfo.
 * What none of these can see (a kernel policy changed after create) is why
 * the documentation tells a VMM not to give protect mode huge pages.
 */
static int read_policy(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int e = n < 0 ? -errno : 0;
	close(fd);
	if (n < 0)
		return e;
	buf[n] = 0;
	return 0;
}

/* The bracketed word of a sysfs policy line, e.g. "always [never] deny". */
static bool policy_is(const char *buf, const char *word)
{
	const char *b = strchr(buf, '[');
	size_t n = strlen(word);
	return b && !strncmp(b + 1, word, n) && b[1 + n] == ']';
}

#define THP_SYSFS "/sys/kernel/mm/transparent_hugepage"

/* Whether the shmem THP policy may give huge folios; @why names the knob. */
static bool shmem_policy_may_be_huge(char *why, size_t why_len)
{
	char buf[256];
	int rc = read_policy(THP_SYSFS "/shmem_enabled", buf, sizeof(buf));
	if (rc == -ENOENT)
		return false; /* no THP in this kernel */
	if (rc < 0 || !(policy_is(buf, "never") || policy_is(buf, "deny"))) {
		snprintf(why, why_len, "shmem_enabled is %s",
			 rc < 0		    ? "unreadable"
			 : strchr(buf, '[') ? strchr(buf, '[')
					    : "unknown");
		why[strcspn(why, "\n")] = 0;
		return true;
	}
	if (policy_is(buf, "deny"))
		return false; /* overrides every per-size knob and mount */
	static const char *const sizes[] = {"8",   "16",  "32",	  "64",	 "128",
					    "256", "512", "1024", "2048"};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char path[128];
		snprintf(path, sizeof(path), THP_SYSFS "/hugepages-%skB/shmem_enabled", sizes[i]);
		rc = read_policy(path, buf, sizeof(buf));
		if (rc == -ENOENT)
			continue; /* no such size here (or no per-size knobs) */
		if (rc < 0 || !(policy_is(buf, "never") || policy_is(buf, "inherit"))) {
			snprintf(why, why_len, "hugepages-%skB shmem_enabled is not never",
				 sizes[i]);
			return true;
		}
	}
	return false;
}

/* Whether the mount holding @st (a tmpfs mounted with huge=advise, say)
 * may give huge folios: its super options in /proc/self/mountinfo name a
 * huge= policy other than never.  A memfd lives on the kernel's internal
 * mount, absent from the table (the sysfs policy governs it). */
static bool mount_may_be_huge(const struct stat *st, char *why, size_t why_len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f) {
		snprintf(why, why_len, "/proc/self/mountinfo unreadable");
		return true;
	}
	char want[32], line[4096];
	snprintf(want, sizeof(want), " %u:%u ", major(st->st_dev), minor(st->st_dev));
	bool huge = false;
	while (!huge && fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");
		const char *dev = strstr(line, want);
		if (!sep || !dev || dev > sep)
			continue;
		const char *h = strstr(sep, "huge=");
		if (h && strncmp(h, "huge=never", 10) != 0) {
			snprintf(why, why_len, "its tmpfs is mounted %.*s", (int)strcspn(h, ", \n"),
				 h);
			huge = true;
		}
	}
	fclose(f);
	return huge;
}

/* The device of the kernel's internal shmem mount, where every memfd
 * lives (0 if no memfd can be made to ask). */
static dev_t memfd_dev(void)
{
	int fd = memfd_create("vswap-mount-probe", MFD_CLOEXEC);
	struct stat st;
	dev_t dev = fd >= 0 && fstat(fd, &st) == 0 ? st.st_dev : 0;
	if (fd >= 0)
		close(fd);
	return dev;
}

int protect_check_memory(struct vswap_handler *h, enum vswap_enable_mode want, int resolved)
{
	if (resolved != VSWAP_ENABLE_PROTECT)
		return resolved;
	char why[128] = "";
	dev_t internal = 0;
	bool asked = false;
	for (unsigned i = 0; i < h->nregions && !why[0]; i++) {
		struct stat st;
		if (fstat(h->regions[i].memfd, &st) < 0) {
			snprintf(why, sizeof(why), "region %u: fstat: %s", i,
				 vswap_strerror(-errno));
			continue;
		}
		if ((uint64_t)st.st_blksize > h->page_size) {
			snprintf(why, sizeof(why),
				 "region %u's memory may hold %ld-byte huge pages", i,
				 (long)st.st_blksize);
			continue;
		}
		/* A memfd's mount is not in the mount table: reading the table
		 * (a quarter of a millisecond on a resume's path) could only
		 * find nothing. */
		if (!asked) {
			internal = memfd_dev();
			asked = true;
		}
		if (!internal || st.st_dev != internal)
			mount_may_be_huge(&st, why, sizeof(why));
	}
	if (!why[0])
		shmem_policy_may_be_huge(why, sizeof(why));
	if (!why[0])
		return VSWAP_ENABLE_PROTECT;
	if (want == VSWAP_ENABLE_PROTECT) {
		hlog(h, VSWAP_LOG_ERROR,
		     "protect mode refused: %s (removing single pages of a huge page can leave "
		     "zeros in guest memory); use copy mode",
		     why);
		return -EOPNOTSUPP;
	}
	hlog(h, VSWAP_LOG_INFO, "copy mode: %s (protect mode removes single pages, unsafe there)",
	     why);
	return VSWAP_ENABLE_COPY;
}

/* ---- the bitmap ---------------------------------------------------------- */

static inline bool bit_get(const uint64_t *v, uint64_t i)
{
	return v[i >> 6] >> (i & 63) & 1;
}

/* Set or clear bits [first, first+count); returns how many changed. */
static uint64_t bits_change(uint64_t *v, uint64_t first, uint64_t count, bool set)
{
	uint64_t changed = 0, i = first, end = first + count;
	while (i < end) {
		unsigned lo = (unsigned)(i & 63);
		uint64_t n = 64 - lo < end - i ? 64 - lo : end - i;
		uint64_t mask = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << lo;
		uint64_t *w = &v[i >> 6];
		uint64_t diff = set ? mask & ~*w : mask & *w;
		changed += (uint64_t)__builtin_popcountll(diff);
		*w = set ? *w | mask : *w & ~mask;
		i += n;
	}
	return changed;
}

/* The first set bit in [from, limit), or limit. */
static uint64_t next_set(const uint64_t *v, uint64_t from, uint64_t limit)
{
	uint64_t i = from;
	while (i < limit) {
		uint64_t w = v[i >> 6] >> (i & 63);
		if (w)
			return i + (uint64_t)__builtin_ctzll(w) < limit
				   ? i + (uint64_t)__builtin_ctzll(w)
				   : limit;
		i = (i | 63) + 1;
	}
	return limit;
}

/* Take [first, first+count) out of the set; rlock held. */
static void forget_locked(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	struct protect *wp = &h->wp;
	if (first >= h->total_pages)
		return;
	if (count > h->total_pages - first)
		count = h->total_pages - first;
	atomic_fetch_sub(&wp->nclean, bits_change(wp->clean, first, count, false));
}

void protect_forget(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	struct protect *wp = &h->wp;
	if (!wp->clean)
		return;
	pthread_mutex_lock(&wp->rlock);
	forget_locked(h, first, count);
	pthread_mutex_unlock(&wp->rlock);
}

/* ---- set-up -------------------------------------------------------------- */

int protect_init(struct vswap_handler *h)
{
	struct protect *wp = &h->wp;
	if (!wp->on)
		return 0;
	pthread_mutex_init(&wp->rlock, NULL);
	pthread_mutex_init(&wp->punch_mu, NULL);
	pthread_cond_init(&wp->removed, NULL);
	pthread_cond_init(&wp->filled, NULL);
	wp->clean = calloc((h->total_pages + 63) / 64, sizeof(uint64_t));
	wp->removing = calloc((h->total_pages + 63) / 64, sizeof(uint64_t));
	wp->zero = calloc((h->total_pages + 63) / 64, sizeof(uint64_t));
	if (!wp->clean || !wp->removing || !wp->zero)
		return -ENOMEM;
	for (unsigned i = 0; i < h->nregions; i++) {
		struct hregion *r = &h->regions[i];
		void *p = mmap(NULL, r->end - r->start, PROT_READ, MAP_SHARED, r->memfd, r->offset);
		if (p == MAP_FAILED)
			return -errno;
		r->alias = p;
	}
	return 0;
}

void protect_fini(struct vswap_handler *h)
{
	for (unsigned i = 0; h->regions && i < h->nregions; i++)
		if (h->regions[i].alias)
			munmap((void *)h->regions[i].alias,
			       h->regions[i].end - h->regions[i].start);
	if (h->wp.clean) {
		pthread_cond_destroy(&h->wp.filled);
		pthread_cond_destroy(&h->wp.removed);
		pthread_mutex_destroy(&h->wp.punch_mu);
		pthread_mutex_destroy(&h->wp.rlock);
	}
	free(h->wp.clean);
	h->wp.clean = NULL;
	free(h->wp.removing);
	h->wp.removing = NULL;
	free(h->wp.zero);
	h->wp.zero = NULL;
	free(h->wp.removals);
	h->wp.removals = NULL;
}

/* ---- (un)protecting through the uffds ------------------------------------ */

/* One UFFDIO_WRITEPROTECT through uffd @index, reading the events that make
 * it fail with EAGAIN (a REMOVE event queued: the kernel refuses until it is
 * read); faults read meanwhile are deferred.  Not under h->lock. */
static int wp_range(struct vswap_handler *h, unsigned index, uintptr_t addr, size_t len,
		    bool protect)
{
	for (;;) {
		int rc = uffd_writeprotect(h->m.uffds.v[index].fd, addr, len, protect, !protect);
		if (rc != -EAGAIN)
			return rc;
		int n = events_drain(h, index, true);
		if (n < 0)
			return n;
		if (n == 0) /* read, but the remover has not resumed yet */
			sched_yield();
	}
}

int protect_uffd(struct vswap_handler *h, unsigned index)
{
	for (unsigned i = 0; i < h->nregions; i++) {
		const struct hregion *r = &h->regions[i];
		int rc = wp_range(h, index, uffd_page_addr(h, index, r, r->first),
				  r->end - r->start, true);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * The resident pages: the memfds' data extents, in store pages.  Write
 * protection costs per page table entry, holes included (on shmem the
 * kernel leaves a marker in every empty entry of a protected range), so
 * enable protects where the data is, not whole regions.
 *
 * Finding the extents must cost less than protecting them.  SEEK_HOLE
 * visits every page of an extent in the page cache (a reference taken and
 * dropped on each folio: several times the protection's own cost per
 * page), so the scan asks mincore() of the handler's own mapping instead:
 * where that mapping has the page mapped (the usual case: the VMM's guest
 * mapping in this process) the answer comes from the page table, a few ns
 * a page; elsewhere from one page-cache lookup.  SEEK_DATA still skips
 * holes (the page cache's tree is searched, not walked).  mincore() says
 * "not in memory" of a hole and of a page in the kernel's swap alike, which
 * SEEK_HOLE counts as data; so the runs it reports absent are looked up
 * again with SEEK_DATA/SEEK_HOLE, unless the memfd's allocated blocks equal
 * the pages mincore() found (memfd_all_in_core()).  Either way the extents
 * are SEEK_HOLE's.
 */
#define SCAN_PAGES 4096u /* pages per mincore() call (one byte each) */

struct extent {
	const struct hregion *r;
	uint64_t first, count; /* store pages */
};

struct extents {
	struct extent *v;
	size_t n, cap;
};

static int extents_push(struct extents *x, const struct hregion *r, uint64_t first, uint64_t count)
{
	if (x->n && x->v[x->n - 1].r == r && x->v[x->n - 1].first + x->v[x->n - 1].count == first) {
		x->v[x->n - 1].count += count;
		return 0;
	}
	if (ARRAY_RESERVE(x->v, x->cap, x->n + 1, 64))
		return -ENOMEM;
	x->v[x->n++] = (struct extent){.r = r, .first = first, .count = count};
	return 0;
}

static int extent_cmp(const void *a, const void *b)
{
	const struct extent *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* Sort by page (regions do not overlap in page space) and join touching
 * extents of one region. */
static void extents_sort(struct extents *x)
{
	if (x->n < 2)
		return;
	qsort(x->v, x->n, sizeof(*x->v), extent_cmp);
	size_t o = 0;
	for (size_t i = 1; i < x->n; i++) {
		struct extent *last = &x->v[o];
		if (x->v[i].r == last->r && last->first + last->count == x->v[i].first)
			last->count += x->v[i].count;
		else
			x->v[++o] = x->v[i];
	}
	x->n = o + 1;
}

/* The data of region @r in [from, to) (offsets in the region) by
 * SEEK_DATA/SEEK_HOLE. */
static int seek_span(struct vswap_handler *h, const struct hregion *r, off_t from, off_t to,
		     struct extents *x)
{
	while (from < to) {
		off_t d = lseek(r->memfd, r->offset + from, SEEK_DATA);
		if (d < 0)
			return errno == ENXIO ? 0 : -errno;
		d -= r->offset;
		if (d >= to)
			return 0;
		off_t e = lseek(r->memfd, r->offset + d, SEEK_HOLE);
		if (e < 0)
			return -errno;
		e -= r->offset;
		if (e > to)
			e = to;
		int rc = extents_push(x, r, r->first + ((uint64_t)d >> h->page_shift),
				      (uint64_t)(e - d) >> h->page_shift);
		if (rc < 0)
			return rc;
		from = e;
	}
	return 0;
}

/* Pages [i, n) of @vec from the first whose residency bit differs from @in. */
static unsigned run_end(const unsigned char *vec, unsigned i, unsigned n, bool in)
{
	while (i < n && (bool)(vec[i] & 1) == in)
		i++;
	return i;
}

/* What mincore() found: the resident extents, the runs it reported not in
 * memory between data (holes, or pages in the kernel's swap), and how many
 * resident pages each memfd showed. */
struct scan {
	struct extents x, doubt;
	uint64_t *in_core; /* per region */
};

static int scan_region(struct vswap_handler *h, unsigned k, struct scan *sc)
{
	const struct hregion *r = &h->regions[k];
	unsigned char vec[SCAN_PAGES];
	off_t len = (off_t)(r->end - r->start), pos = 0;
	while (pos < len) {
		off_t d = lseek(r->memfd, r->offset + pos, SEEK_DATA);
		if (d < 0)
			return errno == ENXIO ? 0 : -errno;
		d = (d - r->offset) & ~(off_t)(h->page_size - 1);
		if (d >= len)
			return 0;
		uint64_t left = (uint64_t)(len - d) >> h->page_shift;
		unsigned n = left < SCAN_PAGES ? (unsigned)left : SCAN_PAGES;
		uint64_t first = r->first + ((uint64_t)d >> h->page_shift);
		if (mincore((void *)(r->start + (uintptr_t)d), (size_t)n << h->page_shift, vec) < 0)
			/* No mapping to ask: all of it is in doubt. */
			return extents_push(&sc->doubt, r, first,
					    ((uint64_t)len - d) >> h->page_shift);
		for (unsigned i = 0; i < n;) {
			bool in = vec[i] & 1;
			unsigned j = run_end(vec, i, n, in);
			int rc = extents_push(in ? &sc->x : &sc->doubt, r, first + i, j - i);
			if (rc < 0)
				return rc;
			if (in)
				sc->in_core[k] += j - i;
			i = j;
		}
		pos = d + ((off_t)n << h->page_shift);
	}
	return 0;
}

/*
 * Whether every data page of region @k's memfd is in the scan's resident
 * extents: the memfd's allocated blocks (which count a page in the kernel's
 * swap as well) are the resident pages the scan found in the regions on
 * it.  Then the runs in doubt are holes and need no look of their own (one
 * SEEK_DATA each: with scattered resident pages, most of the scan's cost).
 */
static bool memfd_all_in_core(struct vswap_handler *h, unsigned k, const struct scan *sc)
{
	struct stat st;
	if (fstat(h->regions[k].memfd, &st) < 0)
		return false;
	uint64_t pages = 0;
	for (unsigned i = 0; i < h->nregions; i++)
		if (h->regions[i].memfd == h->regions[k].memfd)
			pages += sc->in_core[i];
	return (uint64_t)st.st_blocks * 512 == pages << h->page_shift;
}

/* The resident extents of every region, exactly SEEK_HOLE's (see above). */
static int find_resident(struct vswap_handler *h, struct extents *out)
{
	struct scan sc = {.in_core = calloc(h->nregions, sizeof(uint64_t))};
	int rc = sc.in_core ? 0 : -ENOMEM;
	for (unsigned k = 0; k < h->nregions && rc == 0; k++)
		rc = scan_region(h, k, &sc);
	size_t in_order = sc.x.n;
	for (unsigned k = 0; k < h->nregions && rc == 0; k++) {
		if (memfd_all_in_core(h, k, &sc))
			continue;
		const struct hregion *r = &h->regions[k];
		for (size_t i = 0; i < sc.doubt.n && rc == 0; i++) {
			const struct extent *e = &sc.doubt.v[i];
			if (e->r != r)
				continue;
			off_t from = (off_t)((e->first - r->first) << h->page_shift);
			rc =
			    seek_span(h, r, from, from + (off_t)(e->count << h->page_shift), &sc.x);
		}
	}
	free(sc.in_core);
	free(sc.doubt.v);
	if (rc == 0 && sc.x.n != in_order) /* runs in doubt held data */
		extents_sort(&sc.x);
	if (rc < 0) {
		free(sc.x.v);
		return rc;
	}
	*out = sc.x;
	return 0;
}

/* Take the resident pages @x into the set (and the store's view of them). */
static int take_resident(struct vswap_handler *h, const struct extents *x)
{
	struct protect *wp = &h->wp;
	uint64_t sf, sc;
	int rc = 0;
	pthread_mutex_lock(&h->lock);
	/* A group whose staged copies cannot be read (-errno) may still hold
	 * staged bits: clear as if staged (clearing an unstaged page is a
	 * no-op), so that no resident page keeps an older staged copy that
	 * would be served once the page leaves memory. */
	bool staged = vswap_store_next_staged_run(h->store, 0, h->total_pages, 1, &sf, &sc) != 0;
	for (size_t i = 0; i < x->n && rc == 0; i++) {
		uint64_t first = x->v[i].first, count = x->v[i].count;
		/* Resident wins: a swapped or staged copy of a page the guest
		 * holds is older than the guest's. */
		int64_t n = vswap_store_mark_stale(h->store, first, count);
		rc = n < 0 ? (int)n : 0;
		if (rc == 0 && staged)
			rc = vswap_store_stage_clear(h->store, first, count);
		if (rc == 0) {
			pthread_mutex_lock(&wp->rlock);
			atomic_fetch_add(&wp->nclean, bits_change(wp->clean, first, count, true));
			pthread_mutex_unlock(&wp->rlock);
		}
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/*
 * Protecting a range costs per mapped page table entry: the kernel rewrites
 * each one (most of an enable's pause; un-protecting at disable the same).  Calls over disjoint
 * pieces of a range run on several CPUs at once (they share the mmap lock for reading, and each
 * page table has its own lock), so a large range is cut into pieces that the monitor and the pool's
 * workers take in turn until none is left.  Taken in turn, not dealt out: a worker that the
 * scheduler keeps off its CPU costs the monitor at most the one piece it holds, never half the
 * range.  A worker cannot read the events that make a call fail with EAGAIN (a remove event waits:
 * only the monitor reads them), so a piece a worker could not protect, whatever the error, is
 * protected again on the monitor by wp_range(), and that worker takes no more; protecting twice is
 * harmless.  The monitor returns once no piece is held, so the range is
 * protected through this uffd when protect_split() returns, as with one
 * call.  Leaving protection un-protects the same way (each piece's call
 * wakes the writers waiting in it; a piece redone on the monitor wakes
 * its own).  The pieces outlive the call until the last worker task that was
 * queued for them has run (a worker may start after the work is done).
 */
#define WP_PIECE_PAGES 8192u /* 32 MiB of 4 KiB pages, ~0.5 ms of protection */

struct wp_split {
	pthread_mutex_t mu;
	pthread_cond_t idle;
	int fd;
	uintptr_t addr;
	uint64_t pages;
	size_t page_shift;
	bool protect;	  /* or un-protect (and wake the writers waiting) */
	unsigned n, next; /* pieces; the next one to take */
	unsigned held;	  /* pieces taken by workers, not done */
	unsigned refs;	  /* the monitor and every worker task queued */
	bool *failed;	  /* per piece: a worker could not protect it */
};

/* Take the next piece (a worker's is held until piece_done()); false when
 * none is left. */
static bool piece_take(struct wp_split *w, bool worker, unsigned *k)
{
	pthread_mutex_lock(&w->mu);
	bool got = w->next < w->n;
	if (got) {
		*k = w->next++;
		w->held += worker;
	}
	pthread_mutex_unlock(&w->mu);
	return got;
}

static void piece_span(const struct wp_split *w, unsigned k, uintptr_t *addr, size_t *len)
{
	uint64_t first = (uint64_t)k * WP_PIECE_PAGES;
	uint64_t count = w->pages - first < WP_PIECE_PAGES ? w->pages - first : WP_PIECE_PAGES;
	*addr = w->addr + (uintptr_t)(first << w->page_shift);
	*len = (size_t)(count << w->page_shift);
}

/* Drop a reference; the last one frees. */
static void split_put(struct wp_split *w)
{
	pthread_mutex_lock(&w->mu);
	bool last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (!last)
		return;
	pthread_cond_destroy(&w->idle);
	pthread_mutex_destroy(&w->mu);
	free(w->failed);
	free(w);
}

static void wp_split_task(void *arg)
{
	struct wp_split *w = arg;
	unsigned k;
	bool failed = false;
	while (!failed && piece_take(w, true, &k)) {
		uintptr_t addr;
		size_t len;
		piece_span(w, k, &addr, &len);
		failed = uffd_writeprotect(w->fd, addr, len, w->protect, !w->protect) < 0;
		pthread_mutex_lock(&w->mu);
		w->failed[k] = failed;
		if (--w->held == 0)
			pthread_cond_broadcast(&w->idle);
		pthread_mutex_unlock(&w->mu);
	}
	split_put(w);
}

static int protect_split(struct vswap_handler *h, unsigned index, uintptr_t addr, uint64_t pages,
			 bool protect)
{
	unsigned helpers = h->pool ? pool_workers(h->pool) - 1 : 0;
	struct wp_split *w = NULL;
	if (helpers > 0 && pages >= 2 * WP_PIECE_PAGES && (w = calloc(1, sizeof(*w)))) {
		*w = (struct wp_split){
		    .fd = h->m.uffds.v[index].fd,
		    .addr = addr,
		    .pages = pages,
		    .page_shift = h->page_shift,
		    .protect = protect,
		    .n = (unsigned)((pages + WP_PIECE_PAGES - 1) / WP_PIECE_PAGES),
		    .refs = 1,
		};
		w->failed = calloc(w->n, sizeof(*w->failed));
		if (!w->failed) {
			free(w);
			w = NULL;
		}
	}
	if (!w) /* one call */
		return wp_range(h, index, addr, pages << h->page_shift, protect);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->idle, NULL);
	if (helpers > w->n - 1)
		helpers = w->n - 1;
	for (unsigned i = 0; i < helpers; i++) {
		pthread_mutex_lock(&w->mu);
		w->refs++;
		pthread_mutex_unlock(&w->mu);
		if (pool_try_push(h->pool, wp_split_task, w) < 0) {
			split_put(w); /* that worker's reference: not queued */
			break;
		}
	}
	int rc = 0;
	unsigned k;
	while (rc == 0 && piece_take(w, false, &k)) {
		uintptr_t a;
		size_t len;
		piece_span(w, k, &a, &len);
		rc = wp_range(h, index, a, len, protect);
	}
	pthread_mutex_lock(&w->mu);
	w->next = w->n; /* after an error: none taken any more */
	while (w->held)
		pthread_cond_wait(&w->idle, &w->mu);
	pthread_mutex_unlock(&w->mu);
	for (k = 0; k < w->n && rc == 0; k++)
		if (w->failed[k]) {
			uintptr_t a;
			size_t len;
			piece_span(w, k, &a, &len);
			rc = wp_range(h, index, a, len, protect);
		}
	split_put(w);
	return rc;
}

/* [first, first+count) of region @r through every live uffd; a dead one is
 * marked for collection. */
static int protect_range(struct vswap_handler *h, const struct hregion *r, uint64_t first,
			 uint64_t count)
{
	struct monitor *m = &h->m;
	for (unsigned i = 0; i < m->uffds.n; i++) {
		if (uffd_list_is_dead(&m->uffds, i))
			continue;
		int rc = protect_split(h, i, uffd_page_addr(h, i, r, first), count, true);
		if (rc == -ESRCH) {
			m->uffds.v[i].dead = true;
			m->gc_due = true;
			continue;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * Protect the extents, a gap shorter than one page table's span (512
 * entries of 4 KiB: 2 MiB) protected with them: every page table such a gap
 * touches also maps a resident page, so it costs no table of its own, and
 * scattered resident pages cost one call per run of extents, not one per
 * extent (a call costs far more than an entry).
 */
#define WP_GAP_PAGES 512u

static int protect_extents(struct vswap_handler *h, const struct extents *x)
{
	for (size_t i = 0; i < x->n;) {
		const struct hregion *r = x->v[i].r;
		uint64_t first = x->v[i].first, end = first + x->v[i].count;
		size_t j = i + 1;
		while (j < x->n && x->v[j].r == r && x->v[j].first - end < WP_GAP_PAGES) {
			end = x->v[j].first + x->v[j].count;
			j++;
		}
		int rc = protect_range(h, r, first, end - first);
		if (rc < 0)
			return rc;
		i = j;
	}
	return 0;
}

/*
 * Enable by protection: find the resident pages, take them into the set,
 * then write-protect them through every uffd (each process has its own
 * page tables; on shmem a protected range also protects its entries not
 * mapped yet, so a resident page mapped later is mapped protected).
 *
 * Why only resident pages are protected: only pages of the set are ever
 * removed, so only they must trap writes, and the set holds only pages the
 * scan found resident; every one of them is protected before enable
 * returns.  A page that becomes resident after the scan read its place is
 * not in the set: it stays, protected or not, and nothing is lost.  Why the
 * set may be filled before the protection: nothing removes a page before
 * enable returns (removal is trim's and swap-out's, started later), and by
 * then every page in the set is protected everywhere, so every write from
 * then on traps.  A write that lands before its page is protected is simply
 * in memory when trim or swap-out reads it; writes raised during enable
 * wait for the monitor (this thread) and are handled right after, clearing
 * their bits.  A REMOVE event read while protecting (EAGAIN) clears its
 * range from the set, which is filled by then.
 */
int protect_enable(struct vswap_handler *h, uint64_t *pages)
{
	struct protect *wp = &h->wp;
	*pages = 0;
	protect_remove_wait(h);
	pthread_mutex_lock(&h->lock);
	pthread_mutex_lock(&wp->rlock);
	memset(wp->clean, 0, (h->total_pages + 63) / 64 * sizeof(uint64_t));
	atomic_store(&wp->nclean, 0);
	pthread_mutex_unlock(&wp->rlock);
	wp->active = false;
	wp->dirtied = 0;
	wp->cursor = 0;
	h->c.from_file = h->c.from_staging = h->c.zeroed = h->c.redundant = 0;
	pthread_mutex_unlock(&h->lock);
	struct extents x = {0};
	int rc = 0;
	rc = find_resident(h, &x);
	if (rc == 0)
		rc = take_resident(h, &x);
	if (rc == 0)
		rc = protect_extents(h, &x);
	free(x.v);
	pthread_mutex_lock(&h->lock);
	if (rc < 0)
		protect_forget(h, 0, h->total_pages);
	wp->active = rc == 0;
	*pages = atomic_load(&wp->nclean);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/*
 * Leave protection (disable, exit, detach): the set is emptied first, under
 * the lock, then every region is un-protected through every uffd, which
 * wakes the writers waiting.  In that order no page can be removed (nor
 * counted clean) after a write was let through; removal runs only on this
 * thread and on the trim job, both stopped here.
 */
void protect_release(struct vswap_handler *h)
{
	struct protect *wp = &h->wp;
	struct monitor *m = &h->m;
	if (!wp->on)
		return;
	protect_remove_wait(h);
	pthread_mutex_lock(&h->lock);
	bool was = wp->active;
	wp->active = false;
	protect_forget(h, 0, h->total_pages);
	pthread_mutex_unlock(&h->lock);
	if (!was || !m->registered)
		return;
	for (unsigned i = 0; i < m->uffds.n; i++) {
		if (uffd_list_is_dead(&m->uffds, i))
			continue;
		for (unsigned k = 0; k < h->nregions; k++) {
			const struct hregion *r = &h->regions[k];
			int rc =
			    protect_split(h, i, uffd_page_addr(h, i, r, r->first), r->pages, false);
			if (rc == -ESRCH) {
				m->uffds.v[i].dead = true;
				m->gc_due = true;
				break;
			}
			if (rc < 0) /* unregistering clears the protection too */
				hlog(h, VSWAP_LOG_WARN, "un-protect uffd %u: %s", i,
				     vswap_strerror(rc));
		}
	}
}

/* ---- write-protect faults ------------------------------------------------ */

/*
 * A write to a protected page: the page leaves the set (it stays resident)
 * and the writer goes on at once.  The bit is cleared before the page is
 * un-protected, under the lock that removal holds.  A page written by this
 * swap-out and not yet removed becomes stale: its slot keeps the bytes its
 * checksum was computed on.  A message whose page is no longer in the set
 * (dirtied through another uffd, or removed after the writer blocked)
 * changes nothing in the store.
 */
int protect_wp_fault(struct vswap_handler *h, unsigned index, uintptr_t addr)
{
	struct protect *wp = &h->wp;
	addr &= ~(uintptr_t)(h->page_size - 1);
	int fd = h->m.uffds.v[index].fd;
	uintptr_t start; /* the region's start in that uffd's process */
	const struct hregion *r = region_of_uffd_addr(h, index, addr, &start);
	if (!r) {
		hlog(h, VSWAP_LOG_WARN, "write-protect fault at %#lx outside every region",
		     (unsigned long)addr);
		return uffd_wake(fd, addr, h->page_size);
	}
	uint64_t page = r->first + ((addr - start) >> h->page_shift);
	for (;;) {
		pthread_mutex_lock(&h->lock);
		bool was_clean = false;
		if (wp->clean) {
			pthread_mutex_lock(&wp->rlock);
			/* Being punched: let the write through only after (it
			 * then refaults as MISSING and lands on the store's
			 * copy).  The worker never takes h->lock. */
			if (bit_get(wp->removing, page))
				atomic_fetch_add(&wp->removal_waits, 1);
			while (bit_get(wp->removing, page))
				pthread_cond_wait(&wp->removed, &wp->rlock);
			was_clean = bit_get(wp->clean, page);
			if (was_clean)
				forget_locked(h, page, 1);
			pthread_mutex_unlock(&wp->rlock);
		}
		if (was_clean) {
			wp->dirtied++;
			vswap_store_mark_stale(h->store, page, 1);
		}
		wp->wp_faults++;
		int rc = uffd_writeprotect(fd, addr, h->page_size, false, true);
		pthread_mutex_unlock(&h->lock);
		if (rc == -ENOENT || rc == -EINVAL) /* no longer registered there */
			return uffd_wake(fd, addr, h->page_size);
		if (rc != -EAGAIN)
			return rc;
		h->c.eagain_retries++;
		int n = events_drain(h, index, true);
		if (n < 0)
			return n;
		if (n == 0)
			sched_yield();
	}
}

/* ---- swap-out ------------------------------------------------------------ */

void protect_swap_out_start(struct vswap_handler *h)
{
	pthread_mutex_lock(&h->lock);
	h->wp.cursor = 0;
	pthread_mutex_unlock(&h->lock);
}

uint32_t protect_gather(struct vswap_handler *h, uint64_t *pages, uint32_t max, unsigned max_runs)
{
	struct protect *wp = &h->wp;
	if (!wp->active)
		return 0;
	uint32_t n = 0;
	uint64_t p = wp->cursor;
	pthread_mutex_lock(&wp->rlock);
	for (unsigned runs = 0; n < max && runs < max_runs; runs++) {
		/* The zero pass's pages are not written (no record names them). */
		p = next_set(wp->clean, p, h->total_pages);
		while (p < h->total_pages && bit_get(wp->zero, p))
			p = next_set(wp->clean, p + 1, h->total_pages);
		if (p >= h->total_pages)
			break;
		const struct hregion *r = region_of_page(h, p);
		uint64_t rend = r->first + r->pages;
		while (p < rend && n < max && bit_get(wp->clean, p) && !bit_get(wp->zero, p))
			pages[n++] = p++;
	}
	pthread_mutex_unlock(&wp->rlock);
	wp->cursor = p;
	return n;
}

bool protect_still_clean(struct vswap_handler *h, uint64_t p)
{
	struct protect *wp = &h->wp;
	if (!wp->active)
		return false;
	pthread_mutex_lock(&wp->rlock);
	bool clean = bit_get(wp->clean, p) && !bit_get(wp->zero, p);
	pthread_mutex_unlock(&wp->rlock);
	return clean;
}

/* Note a run to remove, cut at region ends and at the chunk size (a write
 * fault on a page being punched waits for its piece's punch). */
static int removal_add(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	struct protect *wp = &h->wp;
	while (count) {
		const struct hregion *r = region_of_page(h, first);
		uint64_t n = r->first + r->pages - first;
		if (n > count)
			n = count;
		if (n > h->opts.chunk_pages)
			n = h->opts.chunk_pages;
		if (ARRAY_RESERVE(wp->removals, wp->cap_removals, wp->nremovals + 1, 64))
			return -ENOMEM;
		wp->removals[wp->nremovals++] = (struct run){first, n};
		first += n;
		count -= n;
	}
	return 0;
}

static bool in_state(struct vswap_handler *h, uint64_t p, enum vswap_page_state st)
{
	struct vswap_page_info pi;
	return vswap_store_page(h->store, p, &pi) == 0 && pi.state == st;
}

/* Still protected, and committed where its bytes are: written (present),
 * or found all zeros by the zero pass (no record); @rlock held. */
static bool removable(struct vswap_handler *h, uint64_t p)
{
	struct protect *wp = &h->wp;
	if (!bit_get(wp->clean, p))
		return false;
	return bit_get(wp->zero, p) ? in_state(h, p, VSWAP_PAGE_NONE)
				    : in_state(h, p, VSWAP_PAGE_PRESENT);
}

void protect_remove_written(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	struct protect *wp = &h->wp;
	if (!wp->active)
		return;
	uint64_t end = first + count, p = first;
	pthread_mutex_lock(&wp->rlock);
	/* The zero pages right after the run go with it: the removal then
	 * punches the run and them in one call, where a zero page left
	 * resident between two runs would cut the range there. */
	const struct hregion *r = region_of_page(h, end - 1);
	while (end < r->first + r->pages && bit_get(wp->zero, end) && bit_get(wp->clean, end))
		end++;
	while (p < end) {
		while (p < end && !removable(h, p))
			p++;
		uint64_t q = p;
		while (q < end && removable(h, q))
			q++;
		/* Without memory for the list the pages stay: resident,
		 * protected and present, consistent (see punch_taken()). */
		if (q > p && removal_add(h, p, q - p) < 0)
			hlog(h, VSWAP_LOG_WARN,
			     "no memory to remove pages %llu+%llu after swap-out",
			     (unsigned long long)p, (unsigned long long)(q - p));
		p = q;
	}
	pthread_mutex_unlock(&wp->rlock);
}

/* The runs one commit made removable, for one pool task. */
struct removal {
	struct vswap_handler *h;
	struct run *v;
	unsigned n;
};

/* Whether any bit of [first, first+count) is set. */
static bool any_set(const uint64_t *v, uint64_t first, uint64_t count)
{
	return next_set(v, first, first + count) < first + count;
}

void protect_fill_begin(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	struct protect *wp = &h->wp;
	if (!wp->clean || first >= h->total_pages)
		return;
	if (count > h->total_pages - first)
		count = h->total_pages - first;
	pthread_mutex_lock(&wp->rlock);
	/* The worker never takes h->lock: waiting here with it held is safe. */
	if (any_set(wp->removing, first, count))
		atomic_fetch_add(&wp->fill_waits, 1);
	while (any_set(wp->removing, first, count))
		pthread_cond_wait(&wp->removed, &wp->rlock);
	wp->fills_begun++;
	pthread_mutex_unlock(&wp->rlock);
	if (wp->fill_hook)
		wp->fill_hook(wp->fill_hook_ctx, first);
}

void protect_fill_end(struct vswap_handler *h)
{
	struct protect *wp = &h->wp;
	if (!wp->clean)
		return;
	pthread_mutex_lock(&wp->rlock);
	wp->fills_ended++;
	pthread_cond_broadcast(&wp->filled);
	pthread_mutex_unlock(&wp->rlock);
}

/* The first page at or after @p of region @r that holds data in its memfd
 * (resident, or in the kernel's swap), or UINT64_MAX if none; @p itself on
 * an error (taken as data: nothing is punched across it). */
static uint64_t next_data(struct vswap_handler *h, const struct hregion *r, uint64_t p)
{
	off_t off = r->offset + (off_t)((p - r->first) << h->page_shift);
	off_t d = lseek(r->memfd, off, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? UINT64_MAX : p;
	return r->first + ((uint64_t)(d - r->offset) >> h->page_shift);
}

/* Punch [first, first+count) of region @r; 0 or -errno (logged). */
static int punch_range(struct vswap_handler *h, const struct hregion *r, uint64_t first,
		       uint64_t count)
{
	off_t off = r->offset + (off_t)((first - r->first) << h->page_shift);
	if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
		      (off_t)(count << h->page_shift)) == 0)
		return 0;
	int rc = -errno;
	hlog(h, VSWAP_LOG_WARN, "removing pages %llu+%llu from guest memory: %s",
	     (unsigned long long)first, (unsigned long long)count, vswap_strerror(rc));
	return rc;
}

static inline bool take_get(const uint64_t *take, uint64_t i)
{
	return take[i >> 6] >> (i & 63) & 1;
}

/* The first page of the piece at or after @i taken (relative), or @n. */
static uint64_t take_next(const uint64_t *take, uint64_t i, uint64_t n)
{
	while (i < n && !take_get(take, i))
		i++;
	return i;
}

/* Punch the piece's range [s, e) (relative to @a); a failure puts its taken
 * pages back in the set: resident, protected and present in the store, and
 * a later write makes them stale like any other (no write passed them
 * meanwhile: their write-protect faults waited). */
static void punch_taken(struct vswap_handler *h, const struct hregion *r, uint64_t a,
			const uint64_t *take, uint64_t s, uint64_t e)
{
	struct protect *wp = &h->wp;
	if (punch_range(h, r, a + s, e - s) == 0)
		return;
	pthread_mutex_lock(&wp->rlock);
	for (uint64_t i = s; i < e; i++)
		if (take_get(take, i))
			atomic_fetch_add(&wp->nclean, bits_change(wp->clean, a + i, 1, true));
	pthread_mutex_unlock(&wp->rlock);
}

/*
 * Remove one piece: the runs v[0..n) (ascending, in region @r, spanning at
 * most chunk_pages pages).  Punching page by page costs a fallocate each
 * (its unmap and TLB shootdown, serialised on the memfd's inode lock): on
 * scattered pages (every fourth) that was most of the swap-out's CPU.  So a
 * piece is punched in as few ranges as its holes allow: a range runs across
 * the pages between the taken ones when they hold no data.
 *
 * Why punching those pages loses nothing: in one rlock hold the piece's
 * pages still in the set are taken out of it and every page of the piece is
 * marked removing.  From then on no write to a page of the piece is let
 * through (protect_wp_fault() waits) and no copy into one begins
 * (protect_fill_begin() waits; every fill of a hole in guest memory is the
 * handler's own copy, under h->lock).  A copy begun before the marks is
 * waited for (@fills_ended).  Only then are the pages between taken ones
 * looked up (SEEK_DATA: a resident page or one in the kernel's swap is
 * data), and a range is cut wherever one holds data: that page stays
 * (at most half the piece's pages are ranges: each holds a taken page and
 * is followed by a page that is not).  A
 * hole found then stays a hole until the marks go, so punching it is a
 * no-op.  Pieces run one at a time (@punch_mu), so a mark is never another
 * piece's.
 */
static void remove_piece(struct vswap_handler *h, const struct hregion *r, const struct run *v,
			 unsigned n, uint64_t *take, struct run *cut)
{
	struct protect *wp = &h->wp;
	uint64_t a = v[0].first, len = v[n - 1].first + v[n - 1].count - a, taken = 0;
	memset(take, 0, (len + 63) / 64 * sizeof(*take));
	if (h->swap_out_hook)
		h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_PIECE);
	pthread_mutex_lock(&wp->punch_mu);
	pthread_mutex_lock(&wp->rlock);
	for (unsigned k = 0; k < n; k++)
		for (uint64_t p = v[k].first; p < v[k].first + v[k].count; p++)
			if (bit_get(wp->clean, p)) {
				take[(p - a) >> 6] |= 1ULL << ((p - a) & 63);
				forget_locked(h, p, 1);
				taken++;
			}
	if (taken) {
		bits_change(wp->removing, a, len, true);
		uint64_t begun = wp->fills_begun;
		if (wp->fills_ended < begun)
			atomic_fetch_add(&wp->drain_waits, 1);
		while (wp->fills_ended < begun)
			pthread_cond_wait(&wp->filled, &wp->rlock);
	}
	pthread_mutex_unlock(&wp->rlock);
	if (!taken) {
		pthread_mutex_unlock(&wp->punch_mu);
		return;
	}
	/* The ranges (relative to @a): taken pages and the holes between. */
	unsigned ncut = 0;
	uint64_t s = take_next(take, 0, len), e = s + 1;
	while (e < len) {
		uint64_t t = take_next(take, e, len);
		if (t == len)
			break;
		if (t > e && next_data(h, r, a + e) < a + t) {
			cut[ncut++] = (struct run){s, e - s};
			s = t;
		}
		e = t + 1;
	}
	cut[ncut++] = (struct run){s, e - s};
	if (h->swap_out_hook)
		h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_REMOVING);
	for (unsigned i = 0; i < ncut; i++)
		punch_taken(h, r, a, take, cut[i].first, cut[i].first + cut[i].count);
	atomic_fetch_add(&wp->punches, ncut);
	pthread_mutex_lock(&wp->rlock);
	bits_change(wp->removing, a, len, false);
	pthread_cond_broadcast(&wp->removed);
	pthread_mutex_unlock(&wp->rlock);
	pthread_mutex_unlock(&wp->punch_mu);
}

/* Remove the runs v[0..n) (each within a region and at most chunk_pages
 * long), in pieces of runs that follow each other in one region; lock not
 * held.  Without memory for the piece's map the pages stay: resident,
 * protected and present, consistent (see punch_taken()). */
static void remove_runs(struct vswap_handler *h, const struct run *v, unsigned n)
{
	uint64_t span = h->opts.chunk_pages;
	uint64_t *take = malloc((span + 63) / 64 * sizeof(*take));
	struct run *cut = malloc((span / 2 + 1) * sizeof(*cut));
	if (!take || !cut) {
		hlog(h, VSWAP_LOG_WARN, "no memory to remove %u runs of pages from guest memory",
		     n);
		free(take);
		free(cut);
		return;
	}
	for (unsigned i = 0; i < n;) {
		const struct hregion *r = region_of_page(h, v[i].first);
		unsigned j = i + 1;
		while (j < n && region_of_page(h, v[j].first) == r &&
		       v[j].first >= v[j - 1].first + v[j - 1].count &&
		       v[j].first + v[j].count - v[i].first <= span)
			j++;
		remove_piece(h, r, v + i, j - i, take, cut);
		i = j;
	}
	free(take);
	free(cut);
}

/* On a pool worker: the runs of one commit, in order. */
static void removal_task(void *arg)
{
	struct removal *t = arg;
	remove_runs(t->h, t->v, t->n);
	free(t->v);
	free(t);
}

/* Note runs for a later start again (lock not held); without memory their
 * pages stay, resident, protected and present (see punch_taken()). */
static void removals_keep(struct vswap_handler *h, const struct run *v, unsigned n)
{
	struct protect *wp = &h->wp;
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < n; i++) {
		if (ARRAY_RESERVE(wp->removals, wp->cap_removals, wp->nremovals + 1, 64)) {
			hlog(h, VSWAP_LOG_WARN, "no memory to remove %u runs of swapped-out pages",
			     n - i);
			break;
		}
		wp->removals[wp->nremovals++] = v[i];
	}
	pthread_mutex_unlock(&h->lock);
}

/*
 * Hand the runs noted for removal to the pool, in one task per worker of
 * about equal pages (a commit's pages punched on every CPU), not one per
 * run: the pool's queue holds as many tasks as it has workers, and a push
 * waits for room, so a task per 2 MiB run made the swap-out wait for the
 * punches of earlier commits (under load half its time) while the disk had
 * nothing to write.  Without @wait nothing waits: runs that find the queue
 * full stay noted for the next call; with @wait (the end of a swap-out,
 * protect_remove_wait()) every run is queued.
 */
void protect_remove_start(struct vswap_handler *h, bool wait)
{
	struct protect *wp = &h->wp;
	pthread_mutex_lock(&h->lock);
	struct run *v = wp->removals;
	unsigned n = wp->nremovals;
	wp->removals = NULL;
	wp->nremovals = wp->cap_removals = 0;
	pthread_mutex_unlock(&h->lock);
	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += v[i].count;
	unsigned parts = pool_workers(h->pool), i = 0;
	for (unsigned k = 0; k < parts && i < n; k++) {
		/* Runs [i, j): this part's share of the pages. */
		uint64_t share = (total + parts - k - 1) / (parts - k), got = 0;
		unsigned j = i;
		while (j < n && (got < share || j == i))
			got += v[j++].count;
		total -= got;
		struct removal *t = malloc(sizeof(*t));
		struct run *part = malloc((j - i) * sizeof(*part));
		int rc = t && part ? 0 : -ENOMEM;
		if (rc == 0) {
			memcpy(part, v + i, (j - i) * sizeof(*part));
			*t = (struct removal){h, part, j - i};
			rc = wait ? pool_push(h->pool, removal_task, t)
				  : pool_try_push(h->pool, removal_task, t);
		}
		if (rc < 0) {
			free(t);
			free(part);
		}
		if (rc == -EAGAIN || rc == -ENOMEM) {
			removals_keep(h, v + i, n - i);
			break;
		}
		if (rc < 0) /* the pool is closed: the pages stay */
			hlog(h, VSWAP_LOG_WARN,
			     "cannot queue the removal of %u runs of swapped-out pages", j - i);
		i = j;
	}
	free(v);
}

/*
 * The O_DIRECT writes mapped the pages into the alias (the kernel faults
 * them in to pin them), so the punch that removes a page would unmap it
 * from two mappings: on scattered pages (a punch per page) that doubled
 * the punch's cost.  One MADV_DONTNEED per region the batch spans unmaps
 * them here instead (only the alias's page table entries go; the pages stay
 * in the memfd, and a page another batch has in flight stays pinned).
 */
void protect_alias_drop(struct vswap_handler *h, const uint64_t *pages, uint32_t n)
{
	for (uint32_t i = 0; i < n;) {
		const struct hregion *r = region_of_page(h, pages[i]);
		uint64_t rend = r->first + r->pages;
		uint32_t j = i;
		while (j + 1 < n && pages[j + 1] < rend)
			j++;
		uintptr_t a = (uintptr_t)r->alias + ((pages[i] - r->first) << h->page_shift);
		size_t len = (size_t)(pages[j] - pages[i] + 1) << h->page_shift;
		madvise((void *)a, len, MADV_DONTNEED); /* a failure costs only speed */
		i = j + 1;
	}
}

void protect_remove_wait(struct vswap_handler *h)
{
	if (!h->wp.on)
		return;
	protect_remove_start(h, true);
	pool_wait_complete(h->pool);
}

/* ---- trim in place ------------------------------------------------------- */

static bool all_zero(const uint8_t *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)p;
	for (size_t i = 0; i < len / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

/* Judge one run of protected pages read from the memfd: zero pages lose
 * their slot, pages equal to their stale slot become present.  Both get
 * their bit in @drop (relative to @base) for removal after the commit.
 * Returns the count. */
static uint64_t trim_judge(struct vswap_handler *h, uint64_t first, uint64_t count,
			   const uint8_t *buf, uint64_t *drop, uint64_t base)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < count; i++) {
		const uint8_t *bytes = buf + (i << h->page_shift);
		uint64_t p = first + i;
		if (all_zero(bytes, h->page_size))
			vswap_store_free(h->store, p, 1);
		else if (vswap_store_stale_equals(h->store, p, bytes) != 1 ||
			 vswap_store_mark_present(h->store, p) != 0)
			continue;
		drop[(p - base) >> 6] |= 1ULL << ((p - base) & 63);
		n++;
	}
	return n;
}

/*
 * One batch, in two lock holds: protect_trim_batch() reads the protected
 * pages in the window of trim_batch_pages pages from the first one at or
 * after *cursor with pread() and judges them (the store's records change in
 * memory); the caller then has them committed without the lock (the commit
 * thread: write-protect faults go on meanwhile), and protect_trim_remove()
 * removes from guest memory the judged pages that are still in the set.  A
 * page whose bit is still set after the commit was not written since it was
 * judged (a write clears the bit before it is let through), so its record
 * as committed is the guest's.  If the commit fails nothing is removed: the
 * pages stay resident and protected; their uncommitted records are
 * rewritten by the swap-out or made stale by a guest write.
 */
int64_t protect_trim_batch(struct vswap_handler *h, uint64_t *cursor, struct protect_trim *t)
{
	struct protect *wp = &h->wp;
	*t = (struct protect_trim){0};
	uint64_t start = wp->active ? next_set(wp->clean, *cursor, h->total_pages) : h->total_pages;
	if (start >= h->total_pages)
		return SCAN_DONE;
	uint64_t limit = h->total_pages - start < h->opts.trim_batch_pages
			     ? h->total_pages - start
			     : h->opts.trim_batch_pages;
	uint64_t *drop = calloc((limit + 63) / 64, sizeof(uint64_t));
	uint8_t *buf = malloc((size_t)TRIM_READ_PAGES << h->page_shift);
	int64_t trimmed = 0;
	if (!drop || !buf) {
		free(drop);
		free(buf);
		return -ENOMEM;
	}
	uint64_t p = start, wend = start + limit;
	while ((p = next_set(wp->clean, p, wend)) < wend) {
		const struct hregion *r = region_of_page(h, p);
		uint64_t end = r->first + r->pages < wend ? r->first + r->pages : wend;
		if (end - p > TRIM_READ_PAGES)
			end = p + TRIM_READ_PAGES;
		uint64_t q = p + 1;
		while (q < end && bit_get(wp->clean, q))
			q++;
		size_t len = (size_t)(q - p) << h->page_shift;
		off_t off = r->offset + (off_t)((p - r->first) << h->page_shift);
		if (pread(r->memfd, buf, len, off) == (ssize_t)len)
			trimmed += (int64_t)trim_judge(h, p, q - p, buf, drop, start);
		else /* not judged: they stay, swap-out writes them */
			hlog(h, VSWAP_LOG_WARN,
			     "trim: reading pages %llu+%llu of guest memory failed",
			     (unsigned long long)p, (unsigned long long)(q - p));
		p = q;
	}
	*cursor = wend;
	free(buf);
	*t = (struct protect_trim){.drop = drop, .start = start, .limit = limit};
	return trimmed;
}

void protect_trim_remove(struct vswap_handler *h, struct protect_trim *t, bool committed)
{
	struct run *v = NULL;
	size_t n = 0, cap = 0;
	for (uint64_t i = 0; committed && t->drop && i < t->limit; i++) {
		if (!(t->drop[i >> 6] >> (i & 63) & 1))
			continue;
		uint64_t j = i + 1;
		while (j < t->limit && t->drop[j >> 6] >> (j & 63) & 1)
			j++;
		/* Runs within a region, at most chunk_pages long. */
		for (uint64_t p = t->start + i, end = t->start + j; p < end;) {
			const struct hregion *r = region_of_page(h, p);
			uint64_t q = r->first + r->pages < end ? r->first + r->pages : end;
			if (q - p > h->opts.chunk_pages)
				q = p + h->opts.chunk_pages;
			if (ARRAY_RESERVE(v, cap, n + 1, 64)) {
				/* They stay: resident, protected, consistent. */
				hlog(h, VSWAP_LOG_WARN, "trim: no memory to remove pages");
				j = t->limit;
				break;
			}
			v[n++] = (struct run){p, q - p};
			p = q;
		}
		i = j;
	}
	if (n)
		remove_runs(h, v, (unsigned)n);
	free(v);
	free(t->drop);
	t->drop = NULL;
}

/* ---- the swap-out's zero pass -------------------------------------------- */

/*
 * Read through the alias mapping (no copy: the first word of a page that
 * holds data settles it).  A page whose bit is set was not written since
 * the enable, and stays unwritten while the lock is held (a write-protect
 * fault clears the bit under h->lock before the writer goes on), so the
 * bytes judged are the guest's.  The record goes now, in memory; the
 * caller commits it before anything removes the page (protect_remove_
 * written(), protect_remove_zeros()); a write after the judgement clears
 * the bit, and the page then stays resident with no record: the guest's
 * copy in memory wins, as for any page not yet written.
 */
int64_t protect_zero_batch(struct vswap_handler *h, uint64_t *cursor)
{
	struct protect *wp = &h->wp;
	if (!wp->active)
		return SCAN_DONE;
	pthread_mutex_lock(&wp->rlock);
	uint64_t p = next_set(wp->clean, *cursor, h->total_pages);
	if (p >= h->total_pages) {
		pthread_mutex_unlock(&wp->rlock);
		return SCAN_DONE;
	}
	uint64_t end = h->total_pages - p < h->opts.trim_batch_pages ? h->total_pages
								     : p + h->opts.trim_batch_pages;
	int64_t found = 0;
	const struct hregion *r = region_of_page(h, p);
	for (; p < end; p = next_set(wp->clean, p + 1, end)) {
		if (p >= r->first + r->pages)
			r = region_of_page(h, p);
		const uint8_t *bytes = r->alias + ((p - r->first) << h->page_shift);
		if (!all_zero(bytes, h->page_size) || vswap_store_free(h->store, p, 1) < 0)
			continue; /* a failed free: written like any page */
		wp->zero[p >> 6] |= 1ULL << (p & 63);
		found++;
	}
	pthread_mutex_unlock(&wp->rlock);
	*cursor = end;
	return found;
}

void protect_zeros_forget(struct vswap_handler *h)
{
	struct protect *wp = &h->wp;
	if (!wp->zero)
		return;
	pthread_mutex_lock(&wp->rlock);
	memset(wp->zero, 0, (h->total_pages + 63) / 64 * sizeof(uint64_t));
	pthread_mutex_unlock(&wp->rlock);
}

void protect_remove_zeros(struct vswap_handler *h)
{
	struct protect *wp = &h->wp;
	if (!wp->zero)
		return;
	pthread_mutex_lock(&h->lock);
	pthread_mutex_lock(&wp->rlock);
	uint64_t p = next_set(wp->zero, 0, h->total_pages);
	while (p < h->total_pages) {
		const struct hregion *r = region_of_page(h, p);
		uint64_t rend = r->first + r->pages, q = p;
		while (q < rend && bit_get(wp->zero, q) && removable(h, q))
			q++;
		/* Without memory for the list the pages stay: resident and
		 * protected, with no record (the guest's copy wins). */
		if (q > p && removal_add(h, p, q - p) < 0)
			hlog(h, VSWAP_LOG_WARN, "no memory to remove zero pages %llu+%llu",
			     (unsigned long long)p, (unsigned long long)(q - p));
		p = next_set(wp->zero, q > p ? q : p + 1, h->total_pages);
	}
	memset(wp->zero, 0, (h->total_pages + 63) / 64 * sizeof(uint64_t));
	pthread_mutex_unlock(&wp->rlock);
	pthread_mutex_unlock(&h->lock);
}

/* SPDX-License-Identifier: MIT */
/*
 * Resume: a handler takes over a guest whose previous handler died (vswapd
 * restarted).  The guest's process kept its uffds and memfds; its faults
 * waited in the kernel.  What the store says is reconciled with guest
 * memory, the regions are registered again, and every registered range is
 * woken.
 *
 * Reconcile: a page resident in its memfd is resident, whatever the index
 * says.  The dead handler may have copied it in (a fault, the swap-in) or
 * not yet punched it (the move to staging) before its index caught up; the
 * guest's copy is then the newest, so its staged copy is dropped and its
 * swapped copy becomes stale; a page the store's open marked lost (staged,
 * its checksum not yet committed) is the guest's again.  Every other page is where the index and
 * the staging file say (crash invariants 1-5 make them trustworthy).  A remove event the dead
 * handler read but did not commit yet (the monitor commits at the end of the batch that read it;
 * the remover is released by the read itself) is undone: each page of the range reads as the store
 * last recorded it, an earlier version of that very page (say the copy a fault served from the swap
 * file, its staleness not yet committed), or zeros; never another page's bytes.  Ballooned memory
 * carries no content the guest may rely on, but a VMM that must not see it again tells the guest's
 * balloon to fault it with zeros (or removes it while vswapd is known to be alive).
 *
 * Wake: a uffd message is consumed when read, so a fault the dead handler
 * read but did not answer is never delivered again; UFFDIO_WAKE on every
 * range makes the waiting threads fault again, and this handler reads them.
 * Registering a range the same uffd already has registered is allowed.
 */
#include <errno.h>
#include <unistd.h>

#include "handler/internal.h"

/* Drop the staged and swapped copies of every page resident in @r's memfd,
 * and the lost mark of any; lock held.  *@pages counts the resident pages
 * that had a copy, *@found_lost those that were marked lost. */
static int reconcile_region(struct vswap_handler *h, const struct hregion *r, uint64_t *pages,
			    uint64_t *found_lost)
{
	off_t len = (off_t)(r->end - r->start), pos = 0;
	while (pos < len) {
		off_t d = lseek(r->memfd, r->offset + pos, SEEK_DATA);
		if (d < 0)
			return errno == ENXIO ? 0 : -errno;
		if (d >= r->offset + len)
			return 0;
		off_t e = lseek(r->memfd, d, SEEK_HOLE);
		if (e < 0)
			return -errno;
		if (e > r->offset + len)
			e = r->offset + len;
		uint64_t first = r->first + ((uint64_t)(d - r->offset) >> h->page_shift);
		uint64_t count = (uint64_t)(e - d) >> h->page_shift;
		/* The staged copies are dropped unread: the guest's copy
		 * stands, so checking them first (vswap_store_staged() reads
		 * and hashes a copy the open left unverified) is work for
		 * nothing, and one that failed would be logged lost.  Every
		 * staged page has its checksum recorded here (the open dropped
		 * the others), so vswap_store_staged_sum() tells them. */
		for (uint64_t p = first; p < first + count; p++) {
			uint64_t sum;
			*pages += vswap_store_staged_sum(h->store, p, &sum) == 0;
		}
		int rc = vswap_store_stage_clear(h->store, first, count);
		if (rc < 0)
			return rc;
		for (uint64_t p = first; p < first + count; p++) {
			/* Lost by the open (staged, its checksum not committed:
			 * the kill came between the copy and that commit, before
			 * the guest's copy went) yet resident: a lost page is a
			 * hole of its memfd, so these bytes are the guest's own
			 * and the newest.  The page is the guest's again. */
			struct vswap_page_info pi;
			if (vswap_store_page(h->store, p, &pi) == 0 &&
			    pi.state == VSWAP_PAGE_LOST) {
				int64_t f = vswap_store_free(h->store, p, 1);
				if (f < 0)
					return (int)f;
				(*found_lost)++;
			}
		}
		int64_t n = vswap_store_mark_stale(h->store, first, count);
		if (n < 0)
			return (int)n;
		*pages += (uint64_t)n;
		pos = e - r->offset;
	}
	return 0;
}

/* Wake every registered range on every live uffd: the faults a dead
 * handler read come again. */
static void wake_all(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	for (unsigned i = 0; i < m->uffds.n; i++) {
		if (m->uffds.v[i].dead)
			continue;
		for (unsigned j = 0; j < h->nregions; j++) {
			const struct hregion *g = &h->regions[j];
			uintptr_t a = m->uffds.v[i].bases ? m->uffds.v[i].bases[j] : g->start;
			int rc = uffd_wake(m->uffds.v[i].fd, a, g->end - g->start);
			if (rc == -ESRCH) {
				m->uffds.v[i].dead = true;
				break;
			}
			if (rc < 0)
				hlog(h, VSWAP_LOG_WARN, "resume: wake uffd %u region %u: %s", i, j,
				     vswap_strerror(rc));
		}
	}
}

/*
 * A protect-mode guest killed between its enable and the end of its
 * swap-out (recorded Pending, trimming or swapping out) had its swap-out set
 * in the dead handler's memory alone: the store holds no staged page, so
 * by the pages alone it would come back Ready (nothing resident out) or
 * Active, and the trim or swap-out the VMM asked for would not go on.  It
 * is enabled again instead, by protection: correct with the guest running
 * (protect_enable()), so the resident pages are the set again and the
 * command, sent again by the client, carries on.  Not over staged pages
 * (a store the copy mode left): those are where the index says already.
 */
static bool reprotects(const struct vswap_handler *h, enum vswap_state recorded,
		       const struct vswap_store_stats *ss)
{
	if (!h->wp.on || ss->pages_staged)
		return false;
	return recorded == VSWAP_STATE_PENDING || recorded == VSWAP_STATE_TRIM_IN_PROGRESS ||
	       recorded == VSWAP_STATE_SWAP_OUT_IN_PROGRESS;
}

static int resume_protected(struct vswap_handler *h, uint64_t t0, uint64_t u0, uint64_t u1,
			    const struct vswap_store_stats *ss)
{
	int rc = register_all(h);
	if (rc < 0) {
		hlog(h, VSWAP_LOG_ERROR, "resume: register: %s", vswap_strerror(rc));
		return rc;
	}
	uint64_t u2 = handler_now_us();
	uint64_t pages = 0;
	rc = protect_enable(h, &pages);
	uint64_t u3 = handler_now_us();
	/* After the protection: a writer the dead handler left blocked
	 * faults again into this one's set. */
	wake_all(h);
	uint64_t u4 = handler_now_us();
	if (rc < 0) {
		/* Nothing is protected then (protect_enable() forgot the set):
		 * the caller resumes the guest as its pages say. */
		hlog(h, VSWAP_LOG_ERROR, "resume: write-protect: %s", vswap_strerror(rc));
		return rc;
	}
	state_set_lazy(h, VSWAP_STATE_PENDING, (struct vswap_transition){pages, now_ms() - t0});
	hlog(h, VSWAP_LOG_INFO,
	     "resumed: %llu swapped pages, %llu protected again (the swap-out set) in %llu ms "
	     "(reconcile %llu us, register %llu us, wake %llu us, protect %llu us)",
	     (unsigned long long)ss->pages_present, (unsigned long long)pages,
	     (unsigned long long)(now_ms() - t0), (unsigned long long)(u1 - u0),
	     (unsigned long long)(u2 - u1), (unsigned long long)(u4 - u3),
	     (unsigned long long)(u3 - u2));
	return 0;
}

int do_resume(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	pthread_mutex_lock(&h->slock);
	enum vswap_state st = h->state;
	pthread_mutex_unlock(&h->slock);
	if (m->registered || st != VSWAP_STATE_READY)
		return -EBUSY;
	uint64_t t0 = now_ms(), pages = 0, found_lost = 0;
	uint64_t u0 = handler_now_us();
	struct vswap_store_stats ss = {0};
	pthread_mutex_lock(&h->lock);
	int rc = 0;
	for (unsigned i = 0; i < h->nregions && rc == 0; i++)
		rc = reconcile_region(h, &h->regions[i], &pages, &found_lost);
	/* Not committed here: the commit thread records it (with the state,
	 * below) while faults are served.  A kill before that loses nothing:
	 * the next resume reconciles the same memfd again. */
	if (rc == 0)
		rc = vswap_store_stats(h->store, &ss);
	enum vswap_state recorded = (enum vswap_state)vswap_store_state(h->store);
	uint64_t uf, uc;
	bool unverified = rc == 0 && vswap_store_unverified_run(h->store, 0, 1, &uf, &uc) > 0;
	pthread_mutex_unlock(&h->lock);
	/* The staged copies the dead handler left, checked from now on
	 * without h->lock for the work (verify.c), not under it by the first
	 * job or fault to reach each; resident pages' copies are gone
	 * already (reconcile_region()). */
	if (unverified && verify_start(h) < 0)
		hlog(h, VSWAP_LOG_WARN, "resume: staged copies are checked at their first use");
	if (rc < 0) {
		hlog(h, VSWAP_LOG_ERROR, "resume: reconcile: %s", vswap_strerror(rc));
		return rc;
	}
	if (found_lost)
		hlog(h, VSWAP_LOG_WARN,
		     "resume: %llu pages the store could not verify (its open said so) are "
		     "resident in guest memory: the guest's copies stand, nothing is lost",
		     (unsigned long long)found_lost);
	struct vswap_transition t = {pages, 0};
	uint64_t u1 = handler_now_us();
	if (reprotects(h, recorded, &ss) && resume_protected(h, t0, u0, u1, &ss) == 0)
		return 0;
	if (ss.pages_staged || ss.pages_present || ss.pages_lost) {
		rc = register_all(h);
		if (rc < 0) {
			hlog(h, VSWAP_LOG_ERROR, "resume: register: %s", vswap_strerror(rc));
			return rc;
		}
		uint64_t u2 = handler_now_us();
		wake_all(h);
		uint64_t u3 = handler_now_us();
		t.time_ms = now_ms() - t0;
		state_set_lazy(h, resting_state(h, st), t);
		/* Each step's time: a restart's figures (the kill tests). */
		hlog(h, VSWAP_LOG_INFO,
		     "resumed: %llu staged, %llu swapped pages; %llu found resident in %llu ms "
		     "(reconcile %llu us, register %llu us, wake %llu us)",
		     (unsigned long long)ss.pages_staged, (unsigned long long)ss.pages_present,
		     (unsigned long long)pages, (unsigned long long)t.time_ms,
		     (unsigned long long)(u1 - u0), (unsigned long long)(u2 - u1),
		     (unsigned long long)(u3 - u2));
		return 0;
	}
	/* Every page is in guest memory: the ranges a dead handler left
	 * registered are unregistered (which wakes their waiters: their pages
	 * are there), and the stale copies go, as after a complete swap-in. */
	m->registered = true;
	unregister_all(h);
	uint64_t u2 = handler_now_us();
	m->cleanup_cursor = 0;
	m->cleanup_active = true;
	cleanup_finish(h);
	uint64_t u3 = handler_now_us();
	t.time_ms = now_ms() - t0;
	state_set_lazy(h, VSWAP_STATE_READY, t);
	hlog(h, VSWAP_LOG_INFO,
	     "resumed: every page resident, Ready (reconcile %llu us, unregister %llu us, "
	     "cleanup %llu us)",
	     (unsigned long long)(u1 - u0), (unsigned long long)(u2 - u1),
	     (unsigned long long)(u3 - u2));
	return 0;
}

int vswap_handler_resume(struct vswap_handler *h)
{
	if (!h)
		return -EINVAL;
	struct cmd c = {.type = CMD_RESUME};
	return cmd_submit(h, &c);
}

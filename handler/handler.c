/* SPDX-License-Identifier: MIT */
/* Creating and destroying a handler. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "handler/internal.h"

static size_t thp_size(void)
{
	size_t v = 0;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "re");
	if (f) {
		if (fscanf(f, "%zu", &v) != 1)
			v = 0;
		fclose(f);
	}
	/* Must be a power of two: batches are cut at its boundaries. */
	return v && !(v & (v - 1)) ? v : 2u << 20;
}

static void opts_defaults(struct vswap_handler *h, const struct vswap_handler_opts *o)
{
	h->opts = *o;
	if (!h->opts.chunk_pages)
		h->opts.chunk_pages = 512;
	if (!h->opts.trim_batch_pages)
		h->opts.trim_batch_pages = 1024;
	if (!h->opts.workers) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		h->opts.workers = n > 0 ? (unsigned)n : 1;
	}
	if (!h->opts.prefetch_budget_pages)
		h->opts.prefetch_budget_pages = 4096;
	if (!h->opts.cleanup_step_pages)
		h->opts.cleanup_step_pages = 16384;
	if (!h->opts.cleanup_interval_ms)
		h->opts.cleanup_interval_ms = 5000;
	h->log = logger_make("handler", h->opts.log, h->opts.log_ctx, h->opts.log_level);
}

static int epoll_add(int epfd, int fd, uint64_t tok)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tok};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int sync_init(struct vswap_handler *h)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->slock, NULL);
	pthread_mutex_init(&h->qlock, NULL);
	pthread_mutex_init(&h->m.drain_mu, NULL);
	pthread_cond_init(&h->scond, &ca);
	pthread_cond_init(&h->qdone, NULL);
	pthread_condattr_destroy(&ca);
	return 0;
}

/* The monitor's descriptors, the uffd list and the main uffd. */
static int monitor_init(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	m->epfd = epoll_create1(EPOLL_CLOEXEC);
	m->cmd_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->job_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->epfd < 0 || m->cmd_efd < 0 || m->job_efd < 0)
		return -errno;
	job_init(&m->job, m->job_efd);
	m->job.slice_us = h->opts.background_slice_us;
	int rc = epoll_add(m->epfd, m->cmd_efd, TOKEN_CMD);
	if (rc == 0)
		rc = epoll_add(m->epfd, m->job_efd, TOKEN_JOB);
	if (rc == 0)
		rc = uffd_list_init(&m->uffds, m->epfd, h->page_size);
	if (rc < 0)
		return rc;
	int fd;
	rc = uffd_open(&fd, &h->features);
	if (rc < 0)
		return rc;
	rc = uffd_list_add(&m->uffds, fd, NULL);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	h->main_uffd = fd;
	atomic_store(&h->nuffds, 1);
	if (posix_memalign(&m->page_buf, h->page_size, h->page_size))
		return -ENOMEM;
	return fault_io_init(h);
}

static void handler_free(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	verify_stop(h); /* before the store goes back to the caller */
	committer_stop(h);
	fault_io_fini(h); /* before the uffds: a drain may still name them */
	workset_free(h);
	uffd_list_fini(&m->uffds);
	pool_destroy(h->pool);
	if (h->staging)
		munmap(h->staging, h->total_pages << h->page_shift);
	if (m->epfd >= 0)
		close(m->epfd);
	if (m->cmd_efd >= 0)
		close(m->cmd_efd);
	if (m->job_efd >= 0)
		close(m->job_efd);
	free(m->page_buf);
	free(m->unclean);
	free(m->deferred);
	swap_in_release(h);
	protect_fini(h);
	regions_close(h);
	free(h->regions);
	pthread_cond_destroy(&h->qdone);
	pthread_cond_destroy(&h->scond);
	pthread_mutex_destroy(&h->m.drain_mu);
	pthread_mutex_destroy(&h->qlock);
	pthread_mutex_destroy(&h->slock);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int handler_init(struct vswap_handler *h, const struct vswap_region *regions, unsigned n)
{
	/* A store that has its regions already (a reattach, a resume) is not
	 * changed by the create: nothing to commit. */
	bool had_regions = vswap_store_total_pages(h->store) != 0;
	int rc = regions_setup(h, regions, n);
	if (rc < 0)
		return rc;
	if (vswap_store_staging_fd(h->store) < 0)
		return -EBADF;
	void *p = mmap(NULL, h->total_pages << h->page_shift, PROT_READ | PROT_WRITE, MAP_SHARED,
		       vswap_store_staging_fd(h->store), 0);
	if (p == MAP_FAILED)
		return -errno;
	h->staging = p;
	rc = pool_create(h->opts.workers, h->opts.workers, h->opts.background_slice_us, &h->pool);
	if (rc == 0)
		rc = monitor_init(h);
	if (rc < 0)
		return rc;
	/* The mode follows what the kernel granted the main uffd. */
	rc = protect_resolve(h->opts.enable_mode, h->features);
	if (rc >= 0)
		rc = protect_check_memory(h, h->opts.enable_mode, rc);
	if (rc < 0)
		return rc;
	h->wp.on = rc == VSWAP_ENABLE_PROTECT;
	rc = protect_init(h);
	if (rc < 0)
		return rc;
	/* Counted only once the store's index is loaded: a lazy load is not
	 * waited for here. */
	struct vswap_store_load ld;
	struct vswap_store_stats st;
	if (vswap_store_load_status(h->store, &ld) == 0 && ld.done &&
	    vswap_store_stats(h->store, &st) == 0 && (st.pages_present || st.pages_staged))
		hlog(h, VSWAP_LOG_INFO, "store holds %llu swapped and %llu staged pages",
		     (unsigned long long)st.pages_present, (unsigned long long)st.pages_staged);
	/* The recorded state stays what it was (a detach's resting state
	 * says where the pages are) until the first transition records
	 * another.  A fresh store's regions are committed now, which also
	 * proves it writable; a store that had them is left as it is, and
	 * whatever its caller left pending (a blob put or delete) goes with
	 * the first commit, so a resume's first guest instruction waits for
	 * no sync here. */
	rc = had_regions ? 0 : vswap_store_commit(h->store);
	if (rc < 0)
		return rc;
	h->state = VSWAP_STATE_READY;
	rc = committer_start(h);
	if (rc < 0)
		return rc;
	rc = pthread_create(&h->thread, NULL, monitor_main, h);
	return -rc;
}

int vswap_handler_create(const struct vswap_region *regions, unsigned n,
			 const struct vswap_handler_opts *opts, struct vswap_handler **out)
{
	static const uint64_t zero[7]; /* the options' reserved space */
	if (opts && memcmp(opts->reserved, zero, sizeof(zero)) != 0)
		return -EINVAL;
	long ps = sysconf(_SC_PAGESIZE);
	int rc = regions_validate(regions, n, (size_t)ps);
	if (rc < 0)
		return rc;
	if (!opts || !opts->store || !out)
		return -EINVAL;
	if ((uint32_t)ps != vswap_store_page_size(opts->store))
		return -EXDEV;
	struct vswap_handler *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->store = opts->store;
	h->page_size = (size_t)ps;
	h->page_shift = (unsigned)__builtin_ctzl((unsigned long)ps);
	h->thp_size = thp_size();
	h->m.epfd = h->m.cmd_efd = h->m.job_efd = -1;
	h->m.uffds.epfd = -1;
	opts_defaults(h, opts);
	sync_init(h);
	rc = handler_init(h, regions, n);
	if (rc < 0) {
		handler_free(h);
		return rc;
	}
	*out = h;
	return 0;
}

/* Lost pages are an error of destroy and detach: the VMM must not take
 * the guest's memory for whole (vswap_handler_lost_pages() lists them). */
static int lost_verdict(struct vswap_handler *h, const char *what)
{
	uint64_t n = lost_count(h);
	if (!n)
		return 0;
	hlog(h, VSWAP_LOG_ERROR, "%s: %llu guest pages are lost (poisoned; recorded in the store)",
	     what, (unsigned long long)n);
	return -EBADMSG;
}

/* The handler's last command (exit, detach or release), then its end: the
 * monitor joined, every caller answered and returned, the handle freed.
 * @what names the lost pages' verdict (NULL: none, a release hands them
 * over). */
static int finish(struct vswap_handler *h, enum cmd_type type, const char *what)
{
	struct cmd c = {.type = type};
	workset_stop(h); /* no prefetch copy races the final swap-in */
	int rc = cmd_submit(h, &c);
	pthread_join(h->thread, NULL);
	cmd_wait_callers(h); /* answered, but perhaps not yet returned */
	if (rc == 0 && what)
		rc = lost_verdict(h, what);
	handler_free(h);
	return rc;
}

int vswap_handler_destroy(struct vswap_handler *h)
{
	return h ? finish(h, CMD_EXIT, "destroy") : 0;
}

int vswap_handler_detach(struct vswap_handler *h)
{
	return h ? finish(h, CMD_DETACH, "detach") : -EINVAL;
}

int vswap_handler_release(struct vswap_handler *h)
{
	return h ? finish(h, CMD_RELEASE, NULL) : -EINVAL;
}

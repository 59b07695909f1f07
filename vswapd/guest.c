/* SPDX-License-Identifier: MIT */
/*
 * One VMM's guest: the memfds mapped here (the daemon reads and writes the
 * pages' bytes through its own mappings), the store, and a handler that
 * resolves the VMM's faults at the VMM's addresses through the VMM's uffds.
 * Everything a request says is checked before it is used: a hostile value
 * gets an error, never a signal (a memfd shorter than its region would make
 * the daemon's own accesses fault, so the sizes are checked and the memfd
 * must be sealed against shrinking).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vswapd/internal.h"

bool guest_attached(const struct guest *g)
{
	return g->h != NULL;
}

static void close_all(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static bool is_uffd(int fd)
{
	char link[64], target[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return strcmp(target, "anon_inode:[userfaultfd]") == 0;
}

/* A memfd region: a regular file sealed against shrinking, holding
 * [offset, offset + len). */
static int check_memfd(int fd, const struct wire_region *r, size_t ps)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADF;
	if (r->len == 0 || (r->len | r->offset) & (ps - 1))
		return -EINVAL;
	if (r->offset > (uint64_t)LLONG_MAX || r->len > (uint64_t)LLONG_MAX - r->offset ||
	    r->len > SIZE_MAX)
		return -EOVERFLOW;
	if (r->offset + r->len > (uint64_t)st.st_size)
		return -ERANGE;
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return -EPERM;
	return 0;
}

static int check_bases(const uint64_t *bases, const struct wire_region *r, unsigned n, size_t ps)
{
	for (unsigned i = 0; i < n; i++) {
		if (!bases[i] || bases[i] & (ps - 1) || bases[i] > UINTPTR_MAX ||
		    bases[i] + r[i].len < bases[i])
			return -EINVAL;
	}
	return 0;
}

static bool name_ok(const char *p, uint32_t len, bool may_be_empty)
{
	if (len > WIRE_MAX_PATH || (!len && !may_be_empty))
		return false;
	return memchr(p, 0, len) == NULL;
}

enum guest_end {
	END_DETACH,  /* every page stays in the store, the ranges unregistered */
	END_EXIT,    /* everything swapped in */
	END_RELEASE, /* the ranges stay registered: the next attach resumes */
};

/* Undo an attach, in reverse. */
static int guest_free(struct guest *g, enum guest_end how)
{
	int rc = 0;
	if (g->h)
		rc = how == END_DETACH ? vswap_handler_detach(g->h)
		     : how == END_EXIT ? vswap_handler_destroy(g->h)
				       : vswap_handler_release(g->h);
	g->h = NULL;
	if (g->store) {
		int crc = vswap_store_close(g->store);
		if (!rc)
			rc = crc;
	}
	g->store = NULL;
	for (unsigned i = 0; i < g->n; i++) {
		if (g->map[i])
			munmap(g->map[i], g->len[i]);
		close(g->memfd[i]);
	}
	g->n = 0;
	for (unsigned u = 0; u < g->nprobes; u++)
		close(g->probe_fd[u]);
	g->nprobes = 0;
	return rc;
}

/*
 * A uffd's address space is gone once its process exited: every ioctl that
 * reaches the memory then fails with ESRCH.  The probe is a copy from
 * address 0 of this process, which never succeeds: a live address space
 * answers EFAULT (or EEXIST, ENOENT, EAGAIN) and nothing is mapped.  A
 * socket's peer (SO_PEERCRED) is no proof either way: the process that
 * connected need not be the one whose memory the uffds serve.
 */
bool guest_vmm_alive(const struct guest *g)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	for (unsigned u = 0; u < g->nprobes; u++) {
		struct uffdio_copy c = {.dst = g->probe_addr[u], .src = 0, .len = ps};
		if (ioctl(g->probe_fd[u], UFFDIO_COPY, &c) == 0 || errno != ESRCH)
			return true;
	}
	return g->nprobes == 0; /* nothing to ask: assume it lives */
}

static int open_store(struct guest *g, const struct wire_attach *a, const char *staging)
{
	struct vswap_store_opts so = {
	    .durability = (enum vswap_durability)a->durability,
	    .staging_dir = staging && *staging ? staging : g->d->staging_dir,
	    .log = guest_log,
	    .log_ctx = g,
	    .log_level = g->d->log_level,
	};
	if (a->flags & WIRE_ATTACH_RESUME)
		return vswap_store_open(g->path, &so, &g->store);
	return vswap_store_create(g->path, &so, &g->store);
}

static int start_handler(struct guest *g, const struct wire_region *r, uint32_t mode)
{
	struct vswap_region reg[WIRE_MAX_REGIONS];
	for (unsigned i = 0; i < g->n; i++)
		reg[i] =
		    (struct vswap_region){g->map[i], g->len[i], g->memfd[i], (off_t)r[i].offset};
	struct vswap_handler_opts ho = {
	    .store = g->store,
	    .enable_mode = (enum vswap_enable_mode)mode,
	    .log = guest_log,
	    .log_ctx = g,
	    .log_level = g->d->log_level,
	};
	return vswap_handler_create(reg, g->n, &ho, &g->h);
}

/* The VMM's uffds, each at its own addresses.  Ownership passes one by one:
 * the ones not yet added are closed by the caller. */
static int add_uffds(struct guest *g, int *ufds, unsigned n, const uint64_t *bases)
{
	for (unsigned u = 0; u < n; u++) {
		void *b[WIRE_MAX_REGIONS];
		for (unsigned i = 0; i < g->n; i++)
			b[i] = (void *)(uintptr_t)bases[u * g->n + i];
		int probe = fcntl(ufds[u], F_DUPFD_CLOEXEC, 0);
		if (probe < 0)
			return -errno;
		int rc = vswap_handler_add_uffd_at(g->h, ufds[u], b);
		if (rc < 0) {
			close(probe);
			return rc;
		}
		ufds[u] = -1;
		g->probe_fd[g->nprobes] = probe;
		g->probe_addr[g->nprobes++] = (uintptr_t)b[0];
	}
	return 0;
}

static int attach_checked(struct guest *g, const struct wire_attach *a, const struct wire_region *r,
			  const uint64_t *bases, const char *staging, int *fds)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	for (unsigned i = 0; i < a->nregions; i++) {
		int rc = check_memfd(fds[i], &r[i], ps);
		if (rc < 0) {
			dlog(g->d->log_level, VSWAP_LOG_WARN, "attach: region %u: %s", i,
			     vswap_strerror(rc));
			return rc;
		}
	}
	for (unsigned u = 0; u < a->nuffds; u++) {
		if (!is_uffd(fds[a->nregions + u]))
			return -EBADF;
		int rc = check_bases(bases + (size_t)u * a->nregions, r, a->nregions, ps);
		if (rc < 0)
			return rc;
	}
	uint64_t t0 = now_us();
	for (unsigned i = 0; i < a->nregions; i++) {
		void *p = mmap(NULL, r[i].len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i],
			       (off_t)r[i].offset);
		g->memfd[g->n] = fds[i];
		fds[i] = -1;
		g->map[g->n] = p == MAP_FAILED ? NULL : p;
		g->len[g->n++] = r[i].len;
		if (p == MAP_FAILED)
			return -errno;
	}
	/* Each step's time at debug level: restart-to-serving is a figure. */
	uint64_t t1 = now_us();
	struct stat st;
	if ((a->flags & WIRE_ATTACH_RESUME) && stat(g->path, &st) == 0 &&
	    orphans_take(g->d->orphans, st.st_dev, st.st_ino))
		dlog(g->d->log_level, VSWAP_LOG_INFO,
		     "%s: taken over from the connection that closed", g->path);
	uint64_t t2 = now_us(), c2 = process_cpu_us();
	int rc = open_store(g, a, staging);
	if (rc == 0 && stat(g->path, &st) == 0) {
		g->dev = st.st_dev;
		g->ino = st.st_ino;
	}
	uint64_t t3 = now_us(), c3 = process_cpu_us();
	if (rc == 0)
		rc = start_handler(g, r, a->enable_mode);
	uint64_t t4 = now_us(), c4 = process_cpu_us();
	if (rc == 0)
		rc = add_uffds(g, fds + a->nregions, a->nuffds, bases);
	uint64_t t5 = now_us(), c5 = process_cpu_us();
	if (rc == 0 && (a->flags & WIRE_ATTACH_RESUME))
		rc = vswap_handler_resume(g->h);
	uint64_t t6 = now_us(), c6 = process_cpu_us();
	struct attach_times *at = &g->times;
	at->map = t1 - t0;
	at->takeover = t2 - t1;
	at->open = t3 - t2;
	at->handler = t4 - t3;
	at->uffds = t5 - t4;
	at->resume = t6 - t5;
	at->total = t6 - t0;
	at->open_cpu = c3 - c2;
	at->handler_cpu = c4 - c3;
	at->uffds_cpu = c5 - c4;
	at->resume_cpu = c6 - c5;
	g->resumed = rc == 0 && (a->flags & WIRE_ATTACH_RESUME);
	dlog(g->d->log_level, VSWAP_LOG_DEBUG,
	     "%s: attach: map %llu us, takeover %llu us, store %llu us, handler %llu us, uffds "
	     "%llu us, resume %llu us",
	     g->path, (unsigned long long)at->map, (unsigned long long)at->takeover,
	     (unsigned long long)at->open, (unsigned long long)at->handler,
	     (unsigned long long)at->uffds, (unsigned long long)at->resume);
	g->attach_us = now_us() - t0;
	return rc;
}

int guest_attach(struct guest *g, const void *payload, size_t len, int *fds, unsigned nfds)
{
	const struct wire_attach *a = payload;
	int rc = 0;
	if (g->h)
		rc = -EISCONN;
	else if (len < sizeof(*a))
		rc = -EBADMSG;
	else if (!a->nregions || !a->nuffds || a->flags & ~WIRE_ATTACH_RESUME ||
		 a->durability > VSWAP_DURABILITY_NONE || a->enable_mode > VSWAP_ENABLE_PROTECT ||
		 a->pad)
		rc = -EINVAL;
	else if (a->nregions > WIRE_MAX_REGIONS || a->nuffds > WIRE_MAX_UFFDS)
		rc = -E2BIG;
	else if (nfds != a->nregions + a->nuffds)
		rc = -EBADF;
	else if (len != sizeof(*a) + a->nregions * sizeof(struct wire_region) +
			    (size_t)a->nuffds * a->nregions * sizeof(uint64_t) +
			    (size_t)a->path_len + a->staging_len)
		rc = -EBADMSG;
	if (rc < 0) {
		close_all(fds, nfds);
		return rc;
	}
	/* Copies: the payload's fields are not aligned for every type. */
	struct wire_region r[WIRE_MAX_REGIONS];
	uint64_t bases[WIRE_MAX_REGIONS * WIRE_MAX_UFFDS];
	const char *p = (const char *)(a + 1);
	memcpy(r, p, a->nregions * sizeof(r[0]));
	p += a->nregions * sizeof(r[0]);
	memcpy(bases, p, (size_t)a->nuffds * a->nregions * sizeof(bases[0]));
	p += (size_t)a->nuffds * a->nregions * sizeof(bases[0]);
	char staging[WIRE_MAX_PATH + 1];
	if (!name_ok(p, a->path_len, false) || !name_ok(p + a->path_len, a->staging_len, true)) {
		close_all(fds, nfds);
		return -EINVAL;
	}
	memcpy(g->path, p, a->path_len);
	g->path[a->path_len] = 0;
	memcpy(staging, p + a->path_len, a->staging_len);
	staging[a->staging_len] = 0;
	rc = attach_checked(g, a, r, bases, staging, fds);
	close_all(fds, nfds); /* those not taken */
	if (rc < 0) {
		dlog(g->d->log_level, VSWAP_LOG_ERROR, "%s: attach: %s", g->path,
		     vswap_strerror(rc));
		/* A fresh store that failed is left for the VMM to remove:
		 * the daemon removes no file.  Nothing was swapped yet.  A
		 * resume that failed leaves the ranges registered: the
		 * guest's faults wait for an attach that succeeds (an
		 * unregistered range would map zeros where data is). */
		guest_free(g, a->flags & WIRE_ATTACH_RESUME ? END_RELEASE : END_DETACH);
		return rc;
	}
	dlog(g->d->log_level, VSWAP_LOG_INFO, "%s: attached (%u regions, %u uffds%s) in %llu us",
	     g->path, a->nregions, a->nuffds, a->flags & WIRE_ATTACH_RESUME ? ", resumed" : "",
	     (unsigned long long)g->attach_us);
	return 0;
}

int guest_add_uffd(struct guest *g, const void *payload, size_t len, int fd)
{
	const struct wire_add_uffd *a = payload;
	int rc = 0;
	if (!g->h)
		rc = -ENOTCONN;
	else if (len < sizeof(*a) || len != sizeof(*a) + (size_t)a->nregions * sizeof(uint64_t))
		rc = -EBADMSG;
	else if (a->nregions != g->n)
		rc = -EINVAL;
	else if (!is_uffd(fd))
		rc = -EBADF;
	uint64_t bases[WIRE_MAX_REGIONS];
	struct wire_region r[WIRE_MAX_REGIONS];
	if (rc == 0) {
		memcpy(bases, a + 1, g->n * sizeof(bases[0]));
		for (unsigned i = 0; i < g->n; i++)
			r[i].len = g->len[i];
		rc = check_bases(bases, r, g->n, (size_t)sysconf(_SC_PAGESIZE));
	}
	if (rc == 0) {
		int u = fd;
		rc = add_uffds(g, &u, 1, bases);
		fd = u;
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

int guest_discard(struct guest *g, const struct wire_discard *d)
{
	if (!g->h)
		return -ENOTCONN;
	uint64_t total = 0;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	for (unsigned i = 0; i < g->n; i++)
		total += g->len[i] / ps;
	if (!d->count || d->first >= total || d->count > total - d->first)
		return -EINVAL;
	/* The guest's page space is the regions end to end: each piece at
	 * the daemon's own mapping of its region. */
	uint64_t first = 0;
	for (unsigned i = 0; i < g->n; i++) {
		uint64_t n = g->len[i] / ps;
		uint64_t a = d->first > first ? d->first : first;
		uint64_t b = d->first + d->count < first + n ? d->first + d->count : first + n;
		if (a < b) {
			int rc = vswap_handler_discard(
			    g->h, (uint8_t *)g->map[i] + (a - first) * ps, (size_t)(b - a) * ps);
			if (rc < 0)
				return rc;
		}
		first += n;
	}
	return 0;
}

int guest_command(struct guest *g, const struct wire_command *c)
{
	if (!g->h)
		return -ENOTCONN;
	switch (c->cmd) {
	case WIRE_CMD_ENABLE:
		return vswap_handler_enable(g->h);
	case WIRE_CMD_TRIM:
		return vswap_handler_trim(g->h);
	case WIRE_CMD_SWAP_OUT:
		return vswap_handler_swap_out(g->h);
	case WIRE_CMD_DISABLE:
		return c->arg > 1 ? -EINVAL : vswap_handler_disable(g->h, c->arg == 1);
	case WIRE_CMD_STATUS:
		return 0; /* every reply carries the status */
	case WIRE_CMD_WAIT_STATE:
		if (c->arg > VSWAP_STATE_SWAP_IN_IN_PROGRESS || c->timeout_ms < 0 ||
		    c->timeout_ms > 60000)
			return -EINVAL;
		return vswap_handler_wait_state(g->h, (enum vswap_state)c->arg, c->timeout_ms);
	case WIRE_CMD_DETACH:
	case WIRE_CMD_EXIT: {
		bool keep = c->cmd == WIRE_CMD_DETACH;
		int rc = guest_free(g, keep ? END_DETACH : END_EXIT);
		dlog(g->d->log_level, rc ? VSWAP_LOG_ERROR : VSWAP_LOG_INFO, "%s: %s: %s", g->path,
		     keep ? "detached" : "exited", rc ? vswap_strerror(rc) : "done");
		return rc;
	}
	}
	return -EINVAL;
}

void guest_abandon(struct guest *g)
{
	if (!g->h)
		return;
	dlog(g->d->log_level, VSWAP_LOG_WARN,
	     "%s: the VMM exited without detaching: its guest is freed (the store keeps its "
	     "pages)",
	     g->path);
	int rc = guest_free(g, END_DETACH);
	if (rc < 0)
		dlog(g->d->log_level, VSWAP_LOG_ERROR, "%s: detach: %s", g->path,
		     vswap_strerror(rc));
}

void guest_release(struct guest *g)
{
	if (!g->h)
		return;
	int rc = guest_free(g, END_RELEASE);
	if (rc < 0)
		dlog(g->d->log_level, VSWAP_LOG_ERROR, "%s: release: %s", g->path,
		     vswap_strerror(rc));
}

/* SPDX-License-Identifier: MIT */
/* The list of uffds, dead-uffd detection and its garbage collection. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "handler/uffd.h"
#include "handler/uffd_list.h"
#include "util/array.h"

int uffd_list_init(struct uffd_list *l, int epfd, size_t page_size)
{
	*l = (struct uffd_list){.static_count = -1, .page_size = page_size, .epfd = epfd};
	/* Shared anonymous, so every process forked from here inherits the
	 * same page at the same address: a dynamic uffd registers it and a
	 * ZEROPAGE on it tells whether the uffd's process still exists. */
	void *p = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	l->dummy = (uintptr_t)p;
	return 0;
}

void uffd_list_fini(struct uffd_list *l)
{
	for (unsigned i = 0; i < l->n; i++) {
		close(l->v[i].fd);
		free(l->v[i].bases);
	}
	free(l->v);
	if (l->dummy)
		munmap((void *)l->dummy, l->page_size);
	*l = (struct uffd_list){.static_count = -1, .epfd = -1};
}

static int epoll_key(struct uffd_list *l, int op, unsigned i)
{
	if (l->epfd < 0)
		return 0;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UFFD_TOKEN_BASE + i};
	return epoll_ctl(l->epfd, op, l->v[i].fd, &ev) < 0 ? -errno : 0;
}

static int list_add(struct uffd_list *l, int fd, uintptr_t *bases, unsigned *index)
{
	if (ARRAY_RESERVE(l->v, l->cap, l->n + 1, 8))
		return -ENOMEM;
	bool dynamic = !bases && l->static_count >= 0 && l->n >= (unsigned long)l->static_count + 1;
	if (dynamic) {
		int rc = uffd_register(fd, l->dummy, l->page_size);
		if (rc < 0)
			return rc;
	}
	unsigned i = l->n;
	l->v[i] = (struct uffd_entry){.fd = fd, .dynamic = dynamic, .bases = bases};
	int rc = epoll_key(l, EPOLL_CTL_ADD, i);
	if (rc < 0)
		return rc;
	l->n++;
	if (index)
		*index = i;
	return 0;
}

int uffd_list_add(struct uffd_list *l, int fd, unsigned *index)
{
	return list_add(l, fd, NULL, index);
}

int uffd_list_add_at(struct uffd_list *l, int fd, uintptr_t *bases, unsigned *index)
{
	return list_add(l, fd, bases, index);
}

int uffd_list_set_static(struct uffd_list *l, unsigned count)
{
	if (l->static_count >= 0)
		return -EALREADY;
	l->static_count = count;
	return 0;
}

bool uffd_list_is_dead(struct uffd_list *l, unsigned i)
{
	struct uffd_entry *e = &l->v[i];
	if (e->dead || !e->dynamic)
		return e->dead;
	/* ESRCH: the uffd's mm is gone.  Success or EEXIST: alive. */
	if (uffd_zeropage(e->fd, l->dummy, l->page_size, false) == -ESRCH)
		e->dead = true;
	return e->dead;
}

int uffd_list_gc(struct uffd_list *l)
{
	int dropped = 0;
	for (unsigned i = l->n; i-- > 0;) {
		if (!l->v[i].dynamic || !uffd_list_is_dead(l, i))
			continue;
		if (l->epfd >= 0)
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->v[i].fd, NULL);
		close(l->v[i].fd);
		free(l->v[i].bases);
		l->n--;
		dropped++;
		if (i == l->n)
			continue;
		/* Swap-remove: the last entry takes this index and its token. */
		l->v[i] = l->v[l->n];
		int rc = epoll_key(l, EPOLL_CTL_MOD, i);
		if (rc < 0)
			return rc;
	}
	/* The live uffds' ZEROPAGEs filled the checker page; give the memory
	 * back (the kernel checks the mm before the page, so EEXIST on a full
	 * page would still mean alive: a failure here is harmless). */
	if (madvise((void *)l->dummy, l->page_size, MADV_REMOVE) < 0)
		dropped += 0;
	return dropped;
}

/* SPDX-License-Identifier: MIT */
/* Guest regions: validation, lookup, (un)registration, resident pages. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handler/internal.h"

int regions_validate(const struct vswap_region *r, unsigned n, size_t ps)
{
	if (n == 0 || !r)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)r[i].addr;
		if (r[i].len == 0)
			return -ERANGE;
		if (a + r[i].len < a) /* end < start */
			return -EOVERFLOW;
		if ((a | r[i].len | (uintptr_t)r[i].offset) & (ps - 1) || r[i].offset < 0 ||
		    r[i].memfd < 0)
			return -EINVAL;
	}
	/* Few regions: the quadratic check is the clearest. */
	for (unsigned i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)r[i].addr, ae = a + r[i].len;
		for (unsigned j = i + 1; j < n; j++) {
			uintptr_t b = (uintptr_t)r[j].addr, be = b + r[j].len;
			if (a < be && b < ae)
				return -EEXIST;
		}
	}
	return 0;
}

/*
 * The handler's own descriptor of a region's memfd: a new open file
 * description of the same file (through /proc/self/fd), so that its
 * lseek(SEEK_DATA / SEEK_HOLE) scans never move the file offset of the
 * embedder's descriptor (shared by dup() and by SCM_RIGHTS, so a VMM's
 * memfd handed to vswapd would move too).  -1 when it cannot be had (no
 * /proc): the caller's descriptor is used then, as the header says.
 */
static int private_fd(int fd)
{
	char path[32];
	int mode = fcntl(fd, F_GETFL);
	if (mode < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int own = open(path, (mode & O_ACCMODE) | O_CLOEXEC);
	if (own < 0)
		return -1;
	struct stat a, b;
	if (fstat(fd, &a) != 0 || fstat(own, &b) != 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		close(own);
		return -1;
	}
	return own;
}

void regions_close(struct vswap_handler *h)
{
	for (unsigned i = 0; h->regions && i < h->nregions; i++)
		if (h->regions[i].own_fd) {
			close(h->regions[i].memfd);
			h->regions[i].own_fd = false;
		}
}

int regions_setup(struct vswap_handler *h, const struct vswap_region *r, unsigned n)
{
	h->regions = calloc(n, sizeof(*h->regions));
	uint64_t *pages = calloc(n, sizeof(*pages));
	if (!h->regions || !pages) {
		free(pages);
		return -ENOMEM;
	}
	uint64_t first = 0;
	for (unsigned i = 0; i < n; i++) {
		struct hregion *g = &h->regions[i];
		g->start = (uintptr_t)r[i].addr;
		g->end = g->start + r[i].len;
		/* Regions on one memfd share one descriptor (protect.c tells
		 * them by its number). */
		unsigned j = 0;
		while (j < i && r[j].memfd != r[i].memfd)
			j++;
		int own = j < i ? h->regions[j].memfd : private_fd(r[i].memfd);
		g->memfd = own >= 0 ? own : r[i].memfd;
		g->own_fd = j == i && own >= 0;
		if (own < 0)
			hlog(h, VSWAP_LOG_INFO,
			     "region %u: memfd %d cannot be reopened through /proc/self/fd: "
			     "its file offset will move",
			     i, r[i].memfd);
		g->offset = r[i].offset;
		g->first = first;
		g->pages = r[i].len >> h->page_shift;
		pages[i] = g->pages;
		first += g->pages;
		h->nregions = i + 1; /* its descriptor is closed with the handler */
	}
	h->total_pages = first;
	int rc = vswap_store_set_regions(h->store, pages, n);
	free(pages);
	return rc;
}

const struct hregion *region_of_addr(const struct vswap_handler *h, uintptr_t addr)
{
	for (unsigned i = 0; i < h->nregions; i++)
		if (addr >= h->regions[i].start && addr < h->regions[i].end)
			return &h->regions[i];
	return NULL;
}

const struct hregion *region_of_page(const struct vswap_handler *h, uint64_t page)
{
	for (unsigned i = 0; i < h->nregions; i++)
		if (page >= h->regions[i].first && page - h->regions[i].first < h->regions[i].pages)
			return &h->regions[i];
	return NULL;
}

const struct hregion *region_of_uffd_addr(const struct vswap_handler *h, unsigned index,
					  uintptr_t addr, uintptr_t *start)
{
	const uintptr_t *bases = h->m.uffds.v[index].bases;
	if (!bases) {
		const struct hregion *r = region_of_addr(h, addr);
		if (r)
			*start = r->start;
		return r;
	}
	for (unsigned i = 0; i < h->nregions; i++) {
		const struct hregion *g = &h->regions[i];
		if (addr >= bases[i] && addr - bases[i] < g->end - g->start) {
			*start = bases[i];
			return g;
		}
	}
	return NULL;
}

int regions_register(struct vswap_handler *h, int fd, const uintptr_t *bases)
{
	for (unsigned i = 0; i < h->nregions; i++) {
		const struct hregion *g = &h->regions[i];
		uintptr_t a = bases ? bases[i] : g->start;
		int rc = uffd_register_mode(fd, a, g->end - g->start, h->wp.on);
		if (rc < 0) {
			while (i-- > 0)
				uffd_unregister(fd, bases ? bases[i] : h->regions[i].start,
						h->regions[i].end - h->regions[i].start);
			return rc;
		}
	}
	return 0;
}

int regions_unregister(struct vswap_handler *h, int fd, const uintptr_t *bases)
{
	int err = 0;
	for (unsigned i = 0; i < h->nregions; i++) {
		const struct hregion *g = &h->regions[i];
		uintptr_t a = bases ? bases[i] : g->start;
		int rc = uffd_unregister(fd, a, g->end - g->start);
		if (rc < 0 && !err)
			err = rc;
	}
	return err;
}

static uint64_t resident_in(const struct vswap_handler *h, const struct hregion *g)
{
	off_t pos = g->offset, end = g->offset + (off_t)(g->end - g->start);
	uint64_t bytes = 0;
	while (pos < end) {
		off_t data = lseek(g->memfd, pos, SEEK_DATA);
		if (data < 0 || data >= end)
			break;
		off_t hole = lseek(g->memfd, data, SEEK_HOLE);
		if (hole < 0)
			return 0;
		if (hole > end)
			hole = end;
		bytes += (uint64_t)(hole - data);
		pos = hole;
	}
	return bytes >> h->page_shift;
}

uint64_t regions_resident_pages(const struct vswap_handler *h)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < h->nregions; i++)
		n += resident_in(h, &h->regions[i]);
	return n;
}

/* SPDX-License-Identifier: MIT */
/*
 * Where a sparse file holds bytes: SEEK_DATA / SEEK_HOLE walked once into a
 * sorted list of unit ranges.  The swap file is mapped in slots (from byte
 * page_size on), the staging file in pages.  A unit with any data byte
 * counts as data, so a partly written slot is never mistaken for a hole.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recovery/internal.h"
#include "util/array.h"

static int extents_push(struct fsck_extents *e, uint64_t first, uint64_t end)
{
	if (e->n && e->r[e->n - 1].end >= first) {
		if (end > e->r[e->n - 1].end)
			e->r[e->n - 1].end = end;
		return 0;
	}
	if (ARRAY_RESERVE(e->r, e->cap, e->n + 1, 64))
		return -ENOMEM;
	e->r[e->n++] = (struct fsck_range){first, end};
	return 0;
}

int fsck_extents_scan(int fd, uint64_t base, uint32_t unit, struct fsck_extents *out)
{
	struct stat st;
	off_t data, hole;
	uint64_t size;
	int ret = 0;

	out->n = 0;
	if (fstat(fd, &st) != 0)
		return -errno;
	size = (uint64_t)st.st_size;
	out->file_size = size;
	for (off_t pos = (off_t)base; (uint64_t)pos < size && !ret; pos = hole) {
		data = lseek(fd, pos, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		ret = extents_push(out, ((uint64_t)data - base) / unit,
				   ((uint64_t)hole - base + unit - 1) / unit);
	}
	return ret;
}

bool fsck_extents_contains(const struct fsck_extents *e, uint64_t unit)
{
	size_t lo = 0, hi = e->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (unit < e->r[mid].first)
			hi = mid;
		else if (unit >= e->r[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

void fsck_extents_free(struct fsck_extents *e)
{
	free(e->r);
	*e = (struct fsck_extents){0};
}

/* SPDX-License-Identifier: MIT */
/*
 * The staging file: a named shared-memory file that holds staged pages, so
 * they survive a crash of the handler's process and can be audited.  It
 * lives in a shared directory (/dev/shm), so it is created O_EXCL |
 * O_NOFOLLOW and checked to be ours before every use.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

static int staging_name(struct vswap_store *s, const char *dir)
{
	char uuid[37];
	vswap_uuid_format(s->sb.uuid, uuid);
	if (asprintf(&s->staging_path, "%s/vswap-%s.staging", dir ? dir : "/dev/shm", uuid) < 0) {
		s->staging_path = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* A regular file, owned by us, private to us. */
static int check_ours(struct vswap_store *s, int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: staging file is not a private regular file of ours; refusing it",
			  s->staging_path);
		return -EPERM;
	}
	return 0;
}

int staging_create(struct vswap_store *s, const char *dir)
{
	int ret = staging_name(s, dir);
	if (ret)
		return ret;
	s->staging_fd =
		open(s->staging_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (s->staging_fd < 0) {
		ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot create staging file: %s", s->staging_path,
			  strerror(errno));
		return ret;
	}
	return 0;
}

int staging_open(struct vswap_store *s)
{
	if (!s->staging_path) {
		store_log(s, VSWAP_LOG_ERROR, "%s: index names no staging file", s->index_path);
		return -EUCLEAN;
	}
	int flags = (s->read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC;
	s->staging_fd = open(s->staging_path, flags);
	if (s->staging_fd < 0 && errno == ENOENT) {
		if (s->read_only) {
			s->staging_fd = -1; /* an audit reports it; nothing to read */
			return 0;
		}
		if (s->n_staged && !s->tolerant) {
			store_log(s, VSWAP_LOG_ERROR,
				  "%s: staging file is gone but the index records %llu staged pages; "
				  "run vswap-fsck",
				  s->staging_path, (unsigned long long)s->n_staged);
			return -ENOENT;
		}
		s->staging_fd = open(s->staging_path,
				     O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	}
	if (s->staging_fd < 0) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot open staging file: %s", s->staging_path,
			  strerror(errno));
		return ret;
	}
	int ret = check_ours(s, s->staging_fd);
	if (!ret && !s->read_only)
		ret = staging_resize(s);
	return ret;
}

/* Size the file to the page-index space (sparse; tmpfs allocates on write). */
int staging_resize(struct vswap_store *s)
{
	if (ftruncate(s->staging_fd, (off_t)(s->total_pages << s->page_shift)) != 0) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot size staging file: %s", s->staging_path,
			  strerror(errno));
		return ret;
	}
	return 0;
}

void staging_close(struct vswap_store *s)
{
	if (s->staging_fd >= 0)
		close(s->staging_fd);
	s->staging_fd = -1;
}

int staging_punch(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (fallocate(s->staging_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(first << s->page_shift), (off_t)(count << s->page_shift)) != 0)
		return -errno;
	return 0;
}

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
#include <sys/xattr.h>
#include <unistd.h>

#include "store/internal.h"

/* The index records an absolute path: resolve the directory now. */
static int staging_name(struct vswap_store *s, const char *dir)
{
	char uuid[37];
	vswap_uuid_format(s->sb.uuid, uuid);
	char *abs = realpath(dir ? dir : "/dev/shm", NULL);
	if (!abs) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: staging directory: %s", dir ? dir : "/dev/shm",
			  strerror(errno));
		return ret;
	}
	int n = asprintf(&s->staging_path, "%s/vswap-%s.staging", abs, uuid);
	free(abs);
	if (n < 0) {
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

/*
 * Link the staging file back to its swap file (xattr user.vswap.store = the
 * swap file's absolute path), so that vswap-fsck can tell the staging file
 * of a closed store from a true orphan.  Best effort: a file system without
 * user xattrs only loses that proof, and fsck then never removes the file
 * while it holds bytes.
 */
static void staging_link_owner(struct vswap_store *s)
{
	/* The swap file may not have its name yet (created unnamed, linked
	 * last): resolve its directory and append the name. */
	char *dir = strdup(s->path), *abs = NULL;
	if (!dir)
		return;
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : s->path;
	const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
	char *rdir = realpath(d, NULL);
	if (rdir && asprintf(&abs, "%s/%s", strcmp(rdir, "/") ? rdir : "", base) < 0)
		abs = NULL;
	free(rdir);
	free(dir);
	if (!abs)
		return;
	if (fsetxattr(s->staging_fd, VSWAP_STAGING_OWNER_XATTR, abs, strlen(abs), 0) != 0)
		store_log(s, VSWAP_LOG_DEBUG, "%s: no owner xattr: %s", s->staging_path,
			  strerror(errno));
	free(abs);
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
	staging_link_owner(s);
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
	if (!ret && !s->read_only) {
		staging_link_owner(s);
		ret = staging_resize(s);
	}
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

/*
 * Punch the staging bytes of pages that left staging since the last commit,
 * skipping any page staged again meanwhile.  Deferred to the commit so that
 * a fault costs no fallocate (a punch unmaps the page from every mapping of
 * the file); a crash before it leaves bytes that no committed record covers
 * only if the commit landed, and vswap-fsck reclaims those.
 */
int staging_punch_unstaged(struct vswap_store *s)
{
	return staging_punch_ranges(s, &s->unpunched);
}

/* The same for the ranges of @v (a split commit's, set aside at its begin). */
int staging_punch_ranges(struct vswap_store *s, struct range_vec *v)
{
	int ret = 0;
	for (size_t i = 0; i < v->n; i++) {
		uint64_t p = v->v[i].first, end = p + v->v[i].count;
		while (p < end) {
			while (p < end && bit_test(s->staged, p))
				p++;
			uint64_t run = p;
			while (p < end && !bit_test(s->staged, p))
				p++;
			if (p > run && staging_punch(s, run, p - run) != 0 && !ret)
				ret = -errno;
		}
	}
	v->n = 0;
	if (ret)
		store_log(s, VSWAP_LOG_WARN, "%s: cannot punch staging bytes: %s (vswap-fsck "
			  "reclaims them)", s->staging_path, strerror(-ret));
	return ret;
}

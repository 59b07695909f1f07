/* SPDX-License-Identifier: MIT */
/*
 * LD_PRELOAD shim of the power-loss test: records the write stream of the
 * files under one directory, like dm-log-writes does for a block device.
 *
 *   VSWAP_WRITELOG=PATH       the log to append to (no log, no recording)
 *   VSWAP_WRITELOG_DIR=DIR    only files under DIR are recorded
 *
 * Every call that changes a watched file's bytes, size or durability is
 * passed to libc and, when it succeeded, appended to the log with the
 * bytes it wrote (format: writelog.h).  One mutex is held across the real
 * call and the append, so the log order is the order the calls happened.
 *
 * Interposed: open/open64/openat/openat64/creat/creat64 (and the fortified
 * __open_2 family), close, write, writev, pwrite/pwrite64, pwritev/
 * pwritev64/pwritev2/pwritev64v2, ftruncate/ftruncate64, truncate/
 * truncate64, fallocate/fallocate64, fsync, fdatasync, sync_file_range,
 * rename, unlink.  Writes on an fd opened O_SYNC/O_DSYNC (LMDB's meta
 * page) are a write followed by a sync.  Not interposed, because neither
 * the store nor liblmdb 0.9.24 uses them on data files (checked with
 * strace and nm -D): dup*, fcntl(F_DUPFD), mmap writes and msync (LMDB
 * uses them only with MDB_WRITEMAP), io_uring (run with VSWAP_IO=sync).
 *
 * Built without sanitizers: it is preloaded into sanitized programs after
 * the sanitizer runtime and must not need it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "writelog.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_FDS 4096
#define MAX_IOV 64

/* ---- the real functions ----------------------------------------------------- */

static void *real_sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		static const char msg[] = "vswap writelog shim: a libc symbol is missing\n";
		/* Not write(): that is ours, and may hold the lock. */
		(void)!syscall(SYS_write, 2, msg, sizeof(msg) - 1);
		_exit(127);
	}
	return p;
}

/* Resolve once per symbol; a benign race resolves the same pointer twice. */
#define REAL(type, name)                                                                           \
	static type real_##name;                                                                   \
	if (!real_##name)                                                                          \
	real_##name = (type)real_sym(#name)

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open2_fn)(const char *, int);
typedef int (*openat2_fn)(int, const char *, int);
typedef int (*close_fn)(int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*pwritev2_fn)(int, const struct iovec *, int, off_t, int);
typedef int (*ftruncate_fn)(int, off_t);
typedef int (*truncate_fn)(const char *, off_t);
typedef int (*fallocate_fn)(int, int, off_t, off_t);
typedef int (*fsync_fn)(int);
typedef int (*sfr_fn)(int, off_t, off_t, unsigned int);
typedef int (*rename_fn)(const char *, const char *);
typedef int (*unlink_fn)(const char *);

/* ---- state ------------------------------------------------------------------ */

struct watched_fd {
	char *rel;   /* path relative to the watched directory; NULL: not watched */
	bool sync;   /* opened O_SYNC or O_DSYNC: every write is durable */
	bool append; /* opened O_APPEND */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int log_fd = -1;
static char watch_dir[PATH_MAX];
static size_t watch_len;
static uint64_t seq;
static struct watched_fd fds[MAX_FDS];

static void die(const char *what)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "vswap writelog shim: %s: %s\n", what, strerror(errno));
	(void)!syscall(SYS_write, 2, msg, (size_t)n); /* write() is ours */
	abort();
}

static void init(void)
{
	const char *log = getenv("VSWAP_WRITELOG");
	const char *dir = getenv("VSWAP_WRITELOG_DIR");
	if (!log || !*log || !dir || !*dir)
		return;
	if (!realpath(dir, watch_dir))
		die("VSWAP_WRITELOG_DIR");
	watch_len = strlen(watch_dir);
	REAL(open_fn, open);
	log_fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log_fd < 0)
		die("VSWAP_WRITELOG");
}

static bool active(void)
{
	pthread_once(&once, init);
	return log_fd >= 0;
}

/* ---- paths ------------------------------------------------------------------- */

/*
 * The watched-relative path of @path (opened relative to @dirfd), or NULL
 * when it is outside the watched directory.  The directory part is
 * resolved with realpath (it exists when a file in it is opened); the last
 * component is taken as given.
 */
static char *watched_rel(int dirfd, const char *path)
{
	char full[PATH_MAX * 2], dir[PATH_MAX];
	if (path[0] == '/') {
		snprintf(full, sizeof(full), "%s", path);
	} else if (dirfd == AT_FDCWD) {
		if (!getcwd(dir, sizeof(dir)))
			return NULL;
		snprintf(full, sizeof(full), "%s/%s", dir, path);
	} else {
		char link[64];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		ssize_t n = readlink(link, dir, sizeof(dir) - 1);
		if (n < 0)
			return NULL;
		dir[n] = 0;
		snprintf(full, sizeof(full), "%s/%s", dir, path);
	}
	char *slash = strrchr(full, '/');
	*slash = 0;
	const char *base = slash + 1;
	if (!realpath(full[0] ? full : "/", dir))
		return NULL;
	if (strncmp(dir, watch_dir, watch_len) != 0 || (dir[watch_len] && dir[watch_len] != '/'))
		return NULL;
	char rel[PATH_MAX * 2];
	const char *sub = dir + watch_len + (dir[watch_len] == '/');
	snprintf(rel, sizeof(rel), "%s%s%s", sub, *sub ? "/" : "", base);
	return strdup(rel);
}

static struct watched_fd *watched(int fd)
{
	return fd >= 0 && fd < MAX_FDS && fds[fd].rel ? &fds[fd] : NULL;
}

/* ---- the log ------------------------------------------------------------------ */

static void write_all(struct iovec *iov, int n)
{
	REAL(writev_fn, writev);
	while (n > 0) {
		ssize_t k = real_writev(log_fd, iov, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			die("appending to the write log");
		while (n > 0 && (size_t)k >= iov->iov_len) {
			k -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= (size_t)k;
		}
	}
}

/*
 * Append one record whose data is the first @data_len bytes of @data
 * (@ndata vectors).  Caller holds the lock.
 */
static void append(enum wl_type type, const char *path, size_t path_len, uint32_t flags,
		   uint64_t off, uint64_t len, const struct iovec *data, int ndata,
		   uint64_t data_len)
{
	struct wl_header h = {.magic = WL_MAGIC,
			      .type = type,
			      .path_len = (uint32_t)path_len,
			      .flags = flags,
			      .off = off,
			      .len = len,
			      .data_len = data_len,
			      .seq = seq++};
	struct iovec iov[MAX_IOV + 2];
	iov[0] = (struct iovec){&h, sizeof(h)};
	iov[1] = (struct iovec){(void *)path, path_len};
	int n = 2;
	uint64_t left = data_len;
	char *copy = NULL;
	if (ndata > MAX_IOV) { /* rare: flatten */
		copy = malloc(data_len ? data_len : 1);
		if (!copy)
			die("malloc");
		for (int i = 0, at = 0; i < ndata && left; i++) {
			size_t k = data[i].iov_len < left ? data[i].iov_len : left;
			memcpy(copy + at, data[i].iov_base, k);
			at += (int)k;
			left -= k;
		}
		iov[n++] = (struct iovec){copy, data_len};
		left = 0;
		ndata = 0;
	}
	for (int i = 0; i < ndata && left; i++) {
		size_t k = data[i].iov_len < left ? data[i].iov_len : left;
		iov[n++] = (struct iovec){data[i].iov_base, k};
		left -= k;
	}
	write_all(iov, n);
	free(copy);
}

static void append_simple(enum wl_type type, const char *rel, uint32_t flags, uint64_t off,
			  uint64_t len)
{
	append(type, rel, strlen(rel), flags, off, len, NULL, 0, 0);
}

/* A write of @ret bytes at @off just happened on @w. */
static void append_write(struct watched_fd *w, const struct iovec *iov, int n, off_t off,
			 ssize_t ret, bool sync)
{
	if (ret <= 0)
		return;
	append(WL_WRITE, w->rel, strlen(w->rel), 0, (uint64_t)off, 0, iov, n, (uint64_t)ret);
	if (sync || w->sync)
		append_simple(WL_SYNC, w->rel, 0, 0, 0);
}

EXPORT void vswap_writelog_mark(const char *label, const void *payload, uint64_t len)
{
	if (!active())
		return;
	struct iovec d = {(void *)payload, len};
	pthread_mutex_lock(&lock);
	append(WL_MARK, label, strlen(label), 0, 0, 0, &d, 1, len);
	pthread_mutex_unlock(&lock);
}

/* ---- open and close --------------------------------------------------------------- */

/* Called with the lock held after a successful open of @fd. */
static void note_open(int fd, int dirfd, const char *path, int flags)
{
	char *rel = watched_rel(dirfd, path);
	if (!rel)
		return;
	if (fd >= MAX_FDS)
		die("watched fd beyond the shim's table");
	free(fds[fd].rel);
	fds[fd] = (struct watched_fd){
	    .rel = rel, .sync = (flags & O_DSYNC) != 0, .append = (flags & O_APPEND) != 0};
	if (flags & (O_CREAT | O_TRUNC))
		append_simple(WL_CREATE, rel, 0, (flags & O_TRUNC) ? 1 : 0, 0);
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	REAL(openat_fn, openat);
	if (!active())
		return real_openat(dirfd, path, flags, mode);
	pthread_mutex_lock(&lock);
	int fd = real_openat(dirfd, path, flags, mode);
	int saved = errno;
	if (fd >= 0)
		note_open(fd, dirfd, path, flags);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return fd;
}

static mode_t open_mode(int flags, va_list ap)
{
	bool needs = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
	return needs ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return do_openat(AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return do_openat(AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return do_openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return do_openat(dirfd, path, flags, mode);
}

EXPORT int __open_2(const char *path, int flags)
{
	return do_openat(AT_FDCWD, path, flags, 0);
}

EXPORT int __open64_2(const char *path, int flags)
{
	return do_openat(AT_FDCWD, path, flags, 0);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return do_openat(dirfd, path, flags, 0);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return do_openat(dirfd, path, flags, 0);
}

EXPORT int creat(const char *path, mode_t mode)
{
	return do_openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

EXPORT int creat64(const char *path, mode_t mode)
{
	return do_openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

EXPORT int close(int fd)
{
	REAL(close_fn, close);
	if (!active())
		return real_close(fd);
	pthread_mutex_lock(&lock);
	if (watched(fd)) {
		free(fds[fd].rel);
		fds[fd].rel = NULL;
	}
	int ret = real_close(fd);
	int saved = errno;
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

/* ---- writes ------------------------------------------------------------------------ */

/* The offset a write() on @fd will land at: the end for O_APPEND. */
static off_t current_offset(int fd, const struct watched_fd *w)
{
	if (w->append) {
		struct stat st;
		return fstat(fd, &st) == 0 ? st.st_size : -1;
	}
	return lseek(fd, 0, SEEK_CUR);
}

/* Every positional write goes through here: @off < 0 means "at the file
 * position" (write, writev, pwritev2 with offset -1). */
static ssize_t do_write(int fd, const struct iovec *iov, int n, off_t off, int rwf_flags,
			ssize_t (*call)(int, const struct iovec *, int, off_t, int))
{
	if (!active())
		return call(fd, iov, n, off, rwf_flags);
	pthread_mutex_lock(&lock);
	struct watched_fd *w = watched(fd);
	off_t at = off;
	if (w && off < 0)
		at = current_offset(fd, w);
	ssize_t ret = call(fd, iov, n, off, rwf_flags);
	int saved = errno;
	if (w)
		append_write(w, iov, n, at, ret, (rwf_flags & (RWF_DSYNC | RWF_SYNC)) != 0);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

static ssize_t call_write(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
	(void)n, (void)flags;
	REAL(write_fn, write);
	REAL(pwrite_fn, pwrite);
	return off < 0 ? real_write(fd, iov->iov_base, iov->iov_len)
		       : real_pwrite(fd, iov->iov_base, iov->iov_len, off);
}

static ssize_t call_writev(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
	REAL(writev_fn, writev);
	REAL(pwritev2_fn, pwritev2);
	if (off < 0 && !flags)
		return real_writev(fd, iov, n);
	return real_pwritev2(fd, iov, n, off, flags);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	struct iovec v = {(void *)buf, len};
	return do_write(fd, &v, 1, -1, 0, call_write);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	struct iovec v = {(void *)buf, len};
	return do_write(fd, &v, 1, off, 0, call_write);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	return do_write(fd, iov, n, -1, 0, call_writev);
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	return do_write(fd, iov, n, off, 0, call_writev);
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
	return pwritev(fd, iov, n, off);
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
	return do_write(fd, iov, n, off < 0 ? -1 : off, flags, call_writev);
}

EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
	return pwritev2(fd, iov, n, off, flags);
}

/* ---- size, holes and syncs ------------------------------------------------------------- */

EXPORT int ftruncate(int fd, off_t len)
{
	REAL(ftruncate_fn, ftruncate);
	if (!active())
		return real_ftruncate(fd, len);
	pthread_mutex_lock(&lock);
	int ret = real_ftruncate(fd, len);
	int saved = errno;
	struct watched_fd *w = watched(fd);
	if (ret == 0 && w)
		append_simple(WL_TRUNCATE, w->rel, 0, (uint64_t)len, 0);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

EXPORT int ftruncate64(int fd, off_t len)
{
	return ftruncate(fd, len);
}

EXPORT int truncate(const char *path, off_t len)
{
	REAL(truncate_fn, truncate);
	if (!active())
		return real_truncate(path, len);
	pthread_mutex_lock(&lock);
	int ret = real_truncate(path, len);
	int saved = errno;
	char *rel = ret == 0 ? watched_rel(AT_FDCWD, path) : NULL;
	if (rel)
		append_simple(WL_TRUNCATE, rel, 0, (uint64_t)len, 0);
	free(rel);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

EXPORT int truncate64(const char *path, off_t len)
{
	return truncate(path, len);
}

static enum wl_type fallocate_type(int mode)
{
	int op = mode & ~FALLOC_FL_KEEP_SIZE;
	if (op == FALLOC_FL_PUNCH_HOLE)
		return WL_PUNCH;
	if (op == FALLOC_FL_ZERO_RANGE)
		return WL_ZERO;
	if (op == 0)
		return WL_ALLOC;
	errno = ENOTSUP;
	die("fallocate mode the replayer cannot model");
	return 0;
}

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	REAL(fallocate_fn, fallocate);
	if (!active())
		return real_fallocate(fd, mode, off, len);
	pthread_mutex_lock(&lock);
	int ret = real_fallocate(fd, mode, off, len);
	int saved = errno;
	struct watched_fd *w = watched(fd);
	if (ret == 0 && w)
		append_simple(fallocate_type(mode), w->rel,
			      (mode & FALLOC_FL_KEEP_SIZE) ? WL_F_KEEP_SIZE : 0, (uint64_t)off,
			      (uint64_t)len);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
	return fallocate(fd, mode, off, len);
}

static int do_sync(int fd, fsync_fn call)
{
	if (!active())
		return call(fd);
	pthread_mutex_lock(&lock);
	int ret = call(fd);
	int saved = errno;
	struct watched_fd *w = watched(fd);
	if (ret == 0 && w)
		append_simple(WL_SYNC, w->rel, 0, 0, 0);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

EXPORT int fsync(int fd)
{
	REAL(fsync_fn, fsync);
	return do_sync(fd, real_fsync);
}

EXPORT int fdatasync(int fd)
{
	REAL(fsync_fn, fdatasync);
	return do_sync(fd, real_fdatasync);
}

EXPORT int sync_file_range(int fd, off_t off, off_t len, unsigned int flags)
{
	REAL(sfr_fn, sync_file_range);
	if (!active())
		return real_sync_file_range(fd, off, len, flags);
	pthread_mutex_lock(&lock);
	int ret = real_sync_file_range(fd, off, len, flags);
	int saved = errno;
	struct watched_fd *w = watched(fd);
	if (ret == 0 && w)
		append_simple(WL_RANGE, w->rel, 0, (uint64_t)off, (uint64_t)len);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

/* ---- names ------------------------------------------------------------------------------- */

EXPORT int rename(const char *from, const char *to)
{
	REAL(rename_fn, rename);
	if (!active())
		return real_rename(from, to);
	pthread_mutex_lock(&lock);
	char *a = watched_rel(AT_FDCWD, from), *b = watched_rel(AT_FDCWD, to);
	int ret = real_rename(from, to);
	int saved = errno;
	if (ret == 0 && (a || b)) {
		/* A rename across the boundary of the watched directory is a
		 * create or an unlink as far as the replay is concerned. */
		char both[PATH_MAX * 2 + 2];
		size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
		memcpy(both, a ? a : "", la + 1);
		memcpy(both + la + 1, b ? b : "", lb);
		append(WL_RENAME, both, la + 1 + lb, 0, 0, 0, NULL, 0, 0);
	}
	free(a);
	free(b);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

EXPORT int unlink(const char *path)
{
	REAL(unlink_fn, unlink);
	if (!active())
		return real_unlink(path);
	pthread_mutex_lock(&lock);
	char *rel = watched_rel(AT_FDCWD, path);
	int ret = real_unlink(path);
	int saved = errno;
	if (ret == 0 && rel)
		append_simple(WL_UNLINK, rel, 0, 0, 0);
	free(rel);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return ret;
}

/* SPDX-License-Identifier: MIT */
/* Store lifecycle: create, open, close, destroy, regions, info and stats. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

#define IO_DEPTH 64

uint64_t vswap_store_max_pages(void)
{
	return STORE_MAX_SLOTS;
}

struct vswap_store *handle_new(const char *path, const struct vswap_store_opts *opts)
{
	static const struct vswap_store_opts defaults = {.log_level = VSWAP_LOG_WARN};
	if (!opts)
		opts = &defaults;
	struct vswap_store *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->fd = s->dfd = s->lock_fd = s->staging_fd = s->index_fd = -1;
	s->pid = getpid();
	s->read_only = opts->read_only;
	s->tolerant = opts->tolerant;
	s->durability = opts->durability;
	s->log = logger_make("store", opts->log, opts->log_ctx, opts->log_level);
	s->map_size = opts->map_size;
	long psz = sysconf(_SC_PAGESIZE);
	s->page_size = (uint32_t)psz;
	s->page_shift = (unsigned)__builtin_ctzl((unsigned long)psz);
	s->path = strdup(path);
	if (opts->index_path)
		s->index_path = strdup(opts->index_path);
	else if (asprintf(&s->index_path, "%s.idx", path) < 0)
		s->index_path = NULL;
	if (!s->path || !s->index_path) {
		free(s->path);
		free(s->index_path);
		free(s);
		return NULL;
	}
	return s;
}

void handle_free(struct vswap_store *s)
{
	loader_stop(s); /* before the environment it reads goes */
	index_lmdb_deferred_free(s->deferred);
	vswap_io_fini(&s->io);
	index_close(s);
	staging_close(s);
	if (s->dfd >= 0)
		close(s->dfd);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	if (s->index_fd >= 0)
		close(s->index_fd);
	if (s->fd >= 0)
		close(s->fd); /* releases the flock */
	tables_free(s);
	free(s->wflight);
	free(s->wpins);
	blob_free(s);
	free(s->region_pages);
	free(s->staging_path);
	free(s->index_path);
	free(s->path);
	free(s);
}

/*
 * The flock lives on a descriptor of its own.  io_uring requests in flight
 * hold references to the descriptor they use; had the lock been taken on
 * that one, a killed handler's lock would outlive it until the kernel tore
 * its ring down, and the next open (a restarted monitor, vswap-fsck) would
 * see a store "in use" by a dead process.
 */
int lock_store(struct vswap_store *s)
{
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", s->fd);
	s->lock_fd = open(self, O_RDONLY | O_CLOEXEC);
	if (s->lock_fd < 0)
		s->lock_fd = open(s->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (s->lock_fd < 0)
		return -errno;
	/* A read-only handle shares the lock: no writable handle opens
	 * while it reads, and it still reads a store already open. */
	if (flock(s->lock_fd, (s->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK && s->read_only) {
		store_log(s, VSWAP_LOG_WARN,
			  "%s: store is open for writing elsewhere; reading it as it changes",
			  s->path);
		close(s->lock_fd);
		s->lock_fd = -1;
		return 0;
	}
	if (errno == EWOULDBLOCK) {
		store_log(s, VSWAP_LOG_ERROR, "%s: store is in use (locked by another handle)",
			  s->path);
		return -EBUSY;
	}
	return -errno;
}

/* Open a file of the store without blocking (a FIFO would block) and
 * refuse anything but a regular file, naming it. */
int open_regular(const struct vswap_store *s, const char *path, int flags, const char *what)
{
	int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot open %s: %s", path, what,
			  strerror(errno));
		return ret;
	}
	struct stat st;
	int fl = fcntl(fd, F_GETFL);
	if (fstat(fd, &st) != 0 || fl < 0 || !S_ISREG(st.st_mode) ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
		int ret = S_ISREG(st.st_mode) ? -errno : -EINVAL;
		if (ret == -EINVAL)
			store_log(s, VSWAP_LOG_ERROR, "%s: %s is not a regular file", path, what);
		close(fd);
		return ret;
	}
	return fd;
}

static void start_io(struct vswap_store *s)
{
	/* Writes, and the handler's fault reads (vswap_store_read_begin()),
	 * bypass the page cache where the file system allows it. */
	if (!s->read_only)
		s->dfd = open(s->path, O_RDWR | O_DIRECT | O_CLOEXEC);
	/* VSWAP_IO=sync forces pread/pwrite and named file creation: for
	 * fault-injection and write-stream recording shims, which cannot see
	 * io_uring's requests or follow an unnamed O_TMPFILE. */
	const char *mode = getenv("VSWAP_IO");
	if (mode && strcmp(mode, "sync") == 0) {
		memset(&s->io, 0, sizeof(s->io));
		return;
	}
	int ret = vswap_io_init(&s->io, IO_DEPTH);
	if (ret)
		store_log(s, VSWAP_LOG_INFO, "io_uring unavailable (%s); using pread/pwrite",
			  strerror(-ret));
}

static int write_superblock(struct vswap_store *s)
{
	uint8_t *page = calloc(1, s->page_size);
	if (!page)
		return -ENOMEM;
	superblock_encode(&s->sb, page);
	ssize_t k = pwrite(s->fd, page, s->page_size, 0);
	int ret = k == (ssize_t)s->page_size ? 0 : (k < 0 ? -errno : -EIO);
	free(page);
	if (!ret && fsync(s->fd) != 0)
		ret = -errno;
	return ret;
}

/* A new file survives power loss only once its directory entry does. */
static void sync_parent_dir(const char *path)
{
	char *dir = strdup(path);
	if (!dir)
		return;
	char *slash = strrchr(dir, '/');
	const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
	int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(dir);
}

/*
 * The swap file starts as an unnamed O_TMPFILE in its directory and is
 * linked under its name once the store is complete, so a crash during
 * creation never leaves a swap file without a superblock or an index.
 * File systems without O_TMPFILE get a named file at once (O_EXCL).
 */
static int make_swap_file(struct vswap_store *s)
{
	char *dir = strdup(s->path);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
	/* I/O-recording shims (VSWAP_IO=sync) follow files by name. */
	const char *io = getenv("VSWAP_IO");
	bool plain = io && strcmp(io, "sync") == 0;
	s->fd = plain ? -1 : open(d, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	free(dir);
	s->unlinked = s->fd >= 0;
	if (s->fd < 0) {
		s->fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		s->made_swap = s->fd >= 0;
	}
	if (s->fd < 0) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot create swap file: %s", s->path,
			  strerror(errno));
		return ret;
	}
	return 0;
}

static int link_swap_file(struct vswap_store *s)
{
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", s->fd);
	if (linkat(s->fd, "", AT_FDCWD, s->path, AT_EMPTY_PATH) != 0 &&
	    (errno == EEXIST ||
	     linkat(AT_FDCWD, self, AT_FDCWD, s->path, AT_SYMLINK_FOLLOW) != 0)) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot name the new swap file: %s", s->path,
			  strerror(errno));
		return ret;
	}
	s->unlinked = false;
	s->made_swap = true;
	return 0;
}

static int lock_path(const struct vswap_store *s, char *buf, size_t len)
{
	return snprintf(buf, len, "%s-lock", s->index_path) >= (int)len ? -ENAMETOOLONG : 0;
}

/* Whether @path exists (as anything, a dangling link included). */
static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 || errno != ENOENT;
}

/*
 * An index whose swap file does not exist is what a crash in the middle of
 * a creation leaves: the swap file is named last.  It may be replaced only
 * if it is one (a regular file holding a vswap index, with the UUID record
 * intact) and no creation is using it: every creation holds an exclusive
 * flock on its index until the swap file is named, so a create that finds
 * the lock taken has lost a race, and leaves everything alone.  Then the
 * swap file's absence is checked again under the lock.
 */
static int replace_stale_index(struct vswap_store *s, const char *staging_dir)
{
	int fd = open(s->index_path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: cannot create the index: a file of that name exists", s->index_path);
		return -EEXIST;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		store_log(s, VSWAP_LOG_ERROR, "%s: another creation of this store is under way",
			  s->index_path);
		return -EEXIST;
	}
	uint8_t uuid[16];
	int ret = exists(s->path) ? -EEXIST : index_identify(s, uuid);
	if (ret) {
		close(fd);
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot create the store: %s", s->index_path,
			  ret == -EEXIST ? "its swap file exists now"
					 : "a file that is not a vswap index has the index's name");
		return -EEXIST;
	}
	char lock[4096], uu[37], name[STORE_STAGING_NAME_LEN + 1], *staging = NULL;
	vswap_uuid_format(uuid, uu);
	store_staging_name(uuid, name);
	store_log(s, VSWAP_LOG_WARN,
		  "%s: replacing the index of store %s, whose swap file does not exist (a "
		  "creation that did not finish)",
		  s->index_path, uu);
	if (lock_path(s, lock, sizeof(lock)) == 0 && lstat(lock, &st) == 0 && S_ISREG(st.st_mode))
		unlink(lock);
	char *dir = realpath(staging_dir ? staging_dir : "/dev/shm", NULL);
	if (dir && asprintf(&staging, "%s/%s", dir, name) > 0 && lstat(staging, &st) == 0 &&
	    S_ISREG(st.st_mode) && st.st_uid == geteuid())
		unlink(staging);
	free(staging);
	free(dir);
	unlink(s->index_path);
	close(fd);
	return 0;
}

/*
 * Make the index file, exclusively, and hold an flock on it until the
 * store is complete (see replace_stale_index()).  LMDB initialises the
 * empty file.  Its lock file must not exist: a file of that name that no
 * index of ours accounts for is not ours to overwrite.
 */
static int claim_index(struct vswap_store *s, const char *staging_dir)
{
	char lock[4096];
	int ret = lock_path(s, lock, sizeof(lock));
	if (ret)
		return ret;
	for (int tries = 0; tries < 2; tries++) {
		s->index_fd =
		    open(s->index_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (s->index_fd >= 0)
			break;
		if (errno != EEXIST || tries) {
			ret = errno == EEXIST ? -EEXIST : -errno;
			store_log(s, VSWAP_LOG_ERROR, "%s: cannot create the index: %s",
				  s->index_path, strerror(errno));
			return ret;
		}
		if ((ret = replace_stale_index(s, staging_dir)))
			return ret;
	}
	s->made_index = true;
	/* Blocking: only a create looking at it (replace_stale_index()) can
	 * hold it, briefly, and it leaves an empty index alone. */
	if (flock(s->index_fd, LOCK_EX) != 0)
		return -errno;
	if (exists(lock)) {
		store_log(
		    s, VSWAP_LOG_ERROR,
		    "%s: cannot create the store: a file of the index lock file's name exists",
		    lock);
		return -EEXIST;
	}
	s->made_lock = true; /* LMDB creates it in index_open() */
	return 0;
}

/* After a failed creation: remove exactly what this creation made. */
static void unmake(struct vswap_store *s)
{
	char lock[4096];
	if (s->made_swap)
		unlink(s->path);
	if (s->made_lock && lock_path(s, lock, sizeof(lock)) == 0)
		unlink(lock);
	if (s->made_index)
		unlink(s->index_path);
	if (s->staging_fd >= 0 && s->made_staging)
		unlink(s->staging_path);
}

int vswap_store_create(const char *path, const struct vswap_store_opts *opts,
		       struct vswap_store **out)
{
	if (!path || !out || (opts && opts->read_only))
		return -EINVAL;
	static const uint64_t zero[sizeof(((struct vswap_store_opts *)0)->reserved) /
				   8]; /* the options' reserved space */
	if (opts && memcmp(opts->reserved, zero, sizeof(zero)) != 0)
		return -EINVAL;
	struct vswap_store *s = handle_new(path, opts);
	if (!s)
		return -ENOMEM;
	const char *staging_dir = opts ? opts->staging_dir : NULL;
	int ret;
	if (exists(path)) {
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot create the store: the file exists", path);
		ret = -EEXIST;
		goto fail;
	}
	if ((ret = claim_index(s, staging_dir)) || (ret = make_swap_file(s)) ||
	    (ret = lock_store(s)))
		goto fail;
	s->sb.format_version = VSWAP_FORMAT_VERSION;
	s->sb.page_size = s->page_size;
	if (getrandom(s->sb.uuid, sizeof(s->sb.uuid), 0) != sizeof(s->sb.uuid)) {
		ret = -EIO;
		goto fail;
	}
	s->sb.uuid[6] = (s->sb.uuid[6] & 0x0f) | 0x40; /* RFC 4122 version 4 */
	s->sb.uuid[8] = (s->sb.uuid[8] & 0x3f) | 0x80;
	s->seed = checksum_store_seed(s->sb.uuid);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->sb.created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if ((ret = write_superblock(s)) || (ret = index_open(s, true)) ||
	    (ret = staging_create(s, staging_dir)))
		goto fail;
	s->made_staging = true;
	if ((ret = index_write_meta_initial(s)))
		goto fail;
	/* Only now does the swap file get its name: a store is visible only
	 * complete, with its superblock, index and staging file. */
	if (s->unlinked && (ret = link_swap_file(s)))
		goto fail;
	sync_parent_dir(path);
	close(s->index_fd); /* the store is named: the creation is over */
	s->index_fd = -1;
	start_io(s);
	*out = s;
	return 0;
fail:
	index_close(s);
	unmake(s);
	handle_free(s);
	return ret;
}

static int read_superblock(struct vswap_store *s)
{
	uint8_t buf[VSWAP_SB_BYTES];
	ssize_t k = pread(s->fd, buf, sizeof(buf), 0);
	if (k < 0)
		return -errno;
	const char *why;
	int ret = superblock_decode(buf, (size_t)k, &s->sb, &why);
	if (ret == -EPROTONOSUPPORT && s->sb.format_version == VSWAP_FORMAT_V1) {
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: format 1 store (written by vswap 0.1.0): convert it to format %u "
			  "with: vswap-upgrade %s",
			  s->path, VSWAP_FORMAT_VERSION, s->path);
		return ret;
	}
	if (ret) {
		store_log(s, VSWAP_LOG_ERROR, "%s: bad superblock: %s", s->path, why);
		return ret;
	}
	if (s->sb.page_size != s->page_size) {
		store_log(s, VSWAP_LOG_ERROR, "%s: store page size %u, system page size %u",
			  s->path, s->sb.page_size, s->page_size);
		return -EXDEV;
	}
	s->seed = checksum_store_seed(s->sb.uuid);
	return 0;
}

static int open_store(const char *path, const struct vswap_store_opts *opts, unsigned flags,
		      struct vswap_store **out)
{
	if (!path || !out)
		return -EINVAL;
	static const uint64_t zero[sizeof(((struct vswap_store_opts *)0)->reserved) /
				   8]; /* the options' reserved space */
	if (opts && memcmp(opts->reserved, zero, sizeof(zero)) != 0)
		return -EINVAL;
	struct vswap_store *s = handle_new(path, opts);
	if (!s)
		return -ENOMEM;
	const char *staging_dir = opts ? opts->staging_dir : NULL;
	int ret;
	s->fd = open_regular(s, path, s->read_only ? O_RDONLY : O_RDWR, "the swap file");
	if (s->fd < 0) {
		ret = s->fd;
		s->fd = -1;
		goto fail;
	}
	s->load_held = flags & STORE_OPEN_LOAD_HELD;
	if ((flags & STORE_OPEN_LOCK) && (ret = lock_store(s)))
		goto fail;
	/* Lazy: the page groups load behind the open (store/lazy.c); repair
	 * and read-only opens judge the whole index first. */
	bool lazy = opts && opts->lazy_index && !s->read_only && !s->tolerant;
	s->lazy_open = lazy;
	if ((ret = read_superblock(s)) || (ret = index_open(s, false)) ||
	    (ret = index_load(s, staging_dir, lazy)) || (ret = staging_open(s, staging_dir)))
		goto fail;
	/* A killed handle's freed slots may still hold bytes (punched at a
	 * clean close); a lazy open's bitmap is complete only once loaded. */
	s->inherit_unpunched = !s->read_only && !s->tolerant && !s->was_clean;
	if (!lazy)
		slots_inherit_unpunched(s);
	/* Nothing a previous handle staged is served before it is checked:
	 * at its first use (staging_verify_loaded()). */
	bool verify = false;
	if (!s->read_only && !s->tolerant && s->n_staged) {
		int64_t changed = staging_verify_loaded(s);
		if (changed < 0) {
			ret = (int)changed;
			goto fail;
		}
		verify = changed > 0;
	}
	/* From here until a clean close, a crash is visible to vswap-fsck: the
	 * flag is made durable even in NONE (one sync per open).  A store whose
	 * intact record says it was not closed cleanly needs neither (the
	 * restart of a killed vswapd); a missing or damaged one is written.
	 * A lazy open (a resume: its guest runs before anything is synced)
	 * leaves it to the store's first change instead: the first write
	 * transaction carries it, and no byte reaches the swap file before
	 * one landed (index_record_unclean()).  Until then the files are as
	 * the last close left them, so a crash meanwhile leaves nothing
	 * vswap-fsck must know of. */
	if (!s->read_only && !s->recorded_unclean && lazy)
		atomic_store(&s->unclean_due, true);
	else if (!s->read_only && !s->recorded_unclean &&
		 ((ret = index_set_clean(s, false)) ||
		  (s->durability == VSWAP_DURABILITY_NONE && mdb_env_sync(s->env, 1))))
		goto fail;
	start_io(s);
	if (verify && (ret = vswap_store_commit(s)))
		goto fail;
	*out = s;
	return 0;
fail:
	handle_free(s);
	return ret;
}

int vswap_store_open(const char *path, const struct vswap_store_opts *opts,
		     struct vswap_store **out)
{
	return open_store(path, opts, STORE_OPEN_LOCK, out);
}

int store_open_flags(const char *path, const struct vswap_store_opts *opts, unsigned flags,
		     struct vswap_store **out)
{
	return open_store(path, opts, flags, out);
}

static int close_store(struct vswap_store *s, bool clean)
{
	if (!s)
		return 0;
	int ret = 0;
	if (s->pid == getpid())
		vswap_store_commit_punch(s); /* a split commit's, if its caller did not */
	/* A forked child that inherited the handle only lets go of it: the
	 * LMDB environment belongs to the parent (LMDB forbids using an
	 * environment in a forked child). */
	if (!s->read_only && s->pid == getpid()) {
		/* Records the lazy load could not believe are still in the
		 * index: the store stays unclean, for vswap-fsck. */
		bool damaged = s->loader && loader_found_damage(s);
		if (damaged)
			clean = false;
		s->meta_dirty = true;
		ret = vswap_store_commit(s);
		/* The free slots that still hold old bytes are punched before
		 * the clean record: a store closed cleanly holds bytes only in
		 * slots its records name (docs/FORMAT.md, Slots). */
		if (!ret && clean)
			slots_punch_free(s);
		/* A clean close is durable in every mode. */
		if (!ret && fdatasync(s->fd) != 0)
			ret = -errno;
		if (!ret && clean)
			ret = index_set_clean(s, true);
		if (!ret)
			mdb_env_sync(s->env, 1);
		/* A lazy open leaves the unclean record to the first commit;
		 * if none landed (this one failed, say over a damaged leaf
		 * that refuses page groups), the record is made now on its
		 * own, a transaction of meta values that the damage allows.
		 * (A deliberate unclean close of an unchanged store leaves it
		 * as it was, like a kill.) */
		if (ret || damaged) {
			int rc = index_record_unclean(s);
			if (rc)
				store_log(s, VSWAP_LOG_ERROR, "%s: closing: recording unclean: %s",
					  s->path, vswap_strerror(rc));
		}
		if (ret)
			store_log(s, VSWAP_LOG_ERROR, "%s: closing: %s; store left unclean",
				  s->path, vswap_strerror(ret));
	}
	handle_free(s);
	return ret;
}

int vswap_store_close(struct vswap_store *s)
{
	return close_store(s, true);
}

int vswap_store_close_unclean(struct vswap_store *s)
{
	return close_store(s, false);
}

/* Unlink @path if it is still the regular file @want (same inode). */
static bool unlink_if_same(const char *path, const struct stat *want)
{
	struct stat st;
	if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_dev != want->st_dev ||
	    st.st_ino != want->st_ino)
		return false;
	return unlink(path) == 0;
}

int vswap_store_destroy(const char *path, const struct vswap_store_opts *opts)
{
	if (!path)
		return -EINVAL;
	struct vswap_store_opts ro = opts ? *opts : (struct vswap_store_opts){0};
	ro.read_only = true;
	ro.tolerant = true;
	/* Nothing there is no error to log: the caller asked for the store
	 * to be gone and decides what -ENOENT means (a VMM's teardown removes
	 * a store a daemon may have removed first). */
	struct stat there;
	if (lstat(path, &there) != 0 && errno == ENOENT)
		return -ENOENT;
	struct vswap_store *probe = handle_new(path, &ro);
	if (!probe)
		return -ENOMEM;
	/* Never pull a store from under a handle that has it open. */
	int lfd = open_regular(probe, path, O_RDONLY | O_NOFOLLOW, "the swap file");
	if (lfd < 0) {
		handle_free(probe);
		return lfd;
	}
	struct stat swap_st;
	fstat(lfd, &swap_st);
	if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
		close(lfd);
		handle_free(probe);
		return -EBUSY;
	}
	/* The swap file is the store's only if its superblock is intact. */
	probe->fd = lfd;
	int ret = read_superblock(probe);
	probe->fd = -1;
	handle_free(probe);
	if (ret && !(ret == -EPROTONOSUPPORT)) {
		close(lfd);
		return -EUCLEAN;
	}
	/* The index and the staging file are the store's only if the index
	 * carries its UUID; the staging path is then checked by the open. */
	struct vswap_store *s = NULL;
	struct stat idx_st, lock_st, stg_st;
	bool idx = false, lck = false, stg = false;
	char lock[4096] = "";
	char *index_path = NULL, *staging = NULL;
	if (open_store(path, &ro, 0, &s) == 0) {
		index_path = strdup(s->index_path);
		idx = stat(s->index_path, &idx_st) == 0;
		if (lock_path(s, lock, sizeof(lock)) == 0)
			lck = lstat(lock, &lock_st) == 0 && S_ISREG(lock_st.st_mode);
		if (s->staging_fd >= 0 && fstat(s->staging_fd, &stg_st) == 0) {
			staging = strdup(s->staging_path);
			stg = staging != NULL;
		}
		vswap_store_close(s);
	}
	ret = unlink_if_same(path, &swap_st) ? 0 : -errno;
	if (idx && index_path)
		unlink_if_same(index_path, &idx_st);
	if (lck)
		unlink_if_same(lock, &lock_st);
	if (stg)
		unlink_if_same(staging, &stg_st);
	if (!ret && !idx) {
		/* Unproven (damaged, another store's) or missing: left alone. */
		char def[4096];
		snprintf(def, sizeof(def), "%s.idx", path);
		const char *ip = opts && opts->index_path ? opts->index_path : def;
		if (exists(ip)) {
			struct vswap_store *q = handle_new(path, &ro);
			if (q)
				store_log(q, VSWAP_LOG_ERROR,
					  "%s: not removed: not shown to be this store's index",
					  ip);
			if (q)
				handle_free(q);
			ret = -EUCLEAN;
		}
	}
	free(index_path);
	free(staging);
	close(lfd);
	return ret;
}

/* ---- regions ---------------------------------------------------------------- */

static bool same_layout(const struct vswap_store *s, const uint64_t *pages, unsigned n)
{
	if (n != s->nregions)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (pages[i] != s->region_pages[i])
			return false;
	return true;
}

int vswap_store_set_regions(struct vswap_store *s, const uint64_t *pages, unsigned n)
{
	if (s->read_only)
		return -EROFS;
	if (!pages || n == 0)
		return -EINVAL;
	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		if (pages[i] == 0)
			return -EINVAL;
		total += pages[i];
		if (pages[i] > vswap_store_max_pages() || total > vswap_store_max_pages()) {
			store_log(s, VSWAP_LOG_ERROR,
				  "%s: %llu+ pages exceed the store's limit of %llu pages", s->path,
				  (unsigned long long)total,
				  (unsigned long long)vswap_store_max_pages());
			return -E2BIG;
		}
	}
	if (same_layout(s, pages, n))
		return 0;
	int need = s->loader ? loader_absorb(s) : 0;
	if (need)
		return need;
	if (s->slots_used || s->n_staged || s->n_lost) {
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot change the regions of a store in use",
			  s->path);
		return -EBUSY;
	}
	uint64_t *copy = malloc(n * sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, pages, n * sizeof(*copy));
	/* No slot is in use: the old bytes free slots still hold go now (the
	 * new tables know nothing of them). */
	slots_punch_free(s);
	/* Build the new tables aside; the handle keeps the old layout until
	 * everything is allocated. */
	struct vswap_store next = *s;
	next.pages = NULL;
	next.sums = next.staged = next.summed = next.ssums = next.dirty = next.slot_used = NULL;
	next.sg_only = NULL;
	next.slot_unpunched = NULL;
	next.n_unpunched = 0;
	next.unverified = NULL; /* none: nothing is staged (above) */
	next.slot_cap = 0;
	next.total_pages = total;
	int ret = tables_alloc(&next);
	if (ret) {
		tables_free_pages(&next);
		free(copy);
		return ret;
	}
	uint64_t old_total = s->total_pages;
	s->total_pages = total;
	ret = staging_resize(s, s->n_staged == 0 && !s->tolerant);
	if (ret) {
		s->total_pages = old_total;
		tables_free_pages(&next);
		free(copy);
		return ret;
	}
	tables_free(s);
	free(s->region_pages);
	s->pages = next.pages;
	s->sums = next.sums;
	s->staged = next.staged;
	s->summed = next.summed;
	s->ssums = next.ssums;
	s->ssums_bytes = next.ssums_bytes;
	s->ssums_held = false;
	s->dirty = next.dirty;
	s->sg_only = next.sg_only;
	s->slot_used = next.slot_used;
	s->slot_unpunched = next.slot_unpunched;
	s->n_unpunched = 0;
	s->slot_cap = next.slot_cap;
	s->ngroups = next.ngroups;
	s->region_pages = copy;
	s->nregions = n;
	s->slots_end = s->free_hint = s->slots_used = 0;
	s->unpunched.n = 0;
	s->meta_dirty = true;
	return vswap_store_commit(s);
}

unsigned vswap_store_region_count(const struct vswap_store *s)
{
	return s->nregions;
}

int vswap_store_region(const struct vswap_store *s, unsigned i, uint64_t *first, uint64_t *pages)
{
	if (i >= s->nregions)
		return -EINVAL;
	uint64_t f = 0;
	for (unsigned k = 0; k < i; k++)
		f += s->region_pages[k];
	*first = f;
	*pages = s->region_pages[i];
	return 0;
}

uint64_t vswap_store_total_pages(const struct vswap_store *s)
{
	return s->total_pages;
}

uint32_t vswap_store_page_size(const struct vswap_store *s)
{
	return s->page_size;
}

/* ---- metadata and accessors --------------------------------------------------- */

int vswap_store_set_state(struct vswap_store *s, uint32_t state)
{
	if (s->read_only)
		return -EROFS;
	if (s->state != state) {
		s->state = state;
		s->meta_dirty = true;
	}
	return 0;
}

uint32_t vswap_store_state(const struct vswap_store *s)
{
	return s->state;
}

int vswap_store_info(const struct vswap_store *s, struct vswap_store_info *out)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->uuid, s->sb.uuid, 16);
	out->page_size = s->page_size;
	out->format_version = s->sb.format_version;
	out->created_ns = s->sb.created_ns;
	out->total_pages = s->total_pages;
	out->regions = s->nregions;
	out->durability = s->durability;
	out->read_only = s->read_only;
	out->was_clean = s->was_clean;
	out->state = s->state;
	return 0;
}

int vswap_store_stats(const struct vswap_store *s, struct vswap_store_stats *out)
{
	memset(out, 0, sizeof(*out));
	int need = index_need_all(s);
	if (need)
		return need;
	out->pages_present = s->n_present;
	out->pages_stale = s->n_stale;
	out->pages_lost = s->n_lost;
	if (s->loader) /* the pages the lazy load counted */
		loader_counts(s, &out->pages_present, &out->pages_stale, &out->pages_lost);
	out->pages_staged = s->n_staged;
	out->slots_used = s->slots_used;
	out->slots_end = s->slots_end;
	out->slots_free = s->slots_end - s->slots_used;
	out->bytes_written = s->bytes_written;
	out->bytes_read = s->bytes_read;
	out->checksum_failures = s->checksum_failures;
	out->commits = s->commits;
	out->index_map_size = s->map_size;
	out->index_bytes = index_bytes_used((struct vswap_store *)s);
	return 0;
}

uint32_t vswap_store_damaged(const struct vswap_store *s)
{
	return s->damaged;
}

int vswap_store_swap_fd(const struct vswap_store *s)
{
	return s->fd;
}
const char *vswap_store_path(const struct vswap_store *s)
{
	return s->path;
}
const char *vswap_store_index_path(const struct vswap_store *s)
{
	return s->index_path;
}
int vswap_store_staging_fd(const struct vswap_store *s)
{
	return s->staging_fd;
}
const char *vswap_store_staging_path(const struct vswap_store *s)
{
	return s->staging_path;
}

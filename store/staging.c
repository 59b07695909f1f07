/* SPDX-License-Identifier: MIT */
/*
 * The staging file: a named shared-memory file that holds staged pages, so
 * they survive a crash of the handler's process and can be audited.  It
 * lives in a shared directory (/dev/shm), so it is created O_EXCL |
 * O_NOFOLLOW and checked to be ours before every use.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "store/internal.h"

/* The staging file's name: the one place it is spelled (store/layout.h). */
static const char staging_prefix[] = "vswap-", staging_suffix[] = ".staging";

void store_staging_name(const uint8_t uuid[16], char name[STORE_STAGING_NAME_LEN + 1])
{
	char u[37];

	vswap_uuid_format(uuid, u);
	snprintf(name, STORE_STAGING_NAME_LEN + 1, "%s%s%s", staging_prefix, u, staging_suffix);
}

bool store_staging_name_parse(const char *name, char uuid[37])
{
	const size_t plen = sizeof(staging_prefix) - 1;
	const char *u = name + plen;

	if (strlen(name) != STORE_STAGING_NAME_LEN || strncmp(name, staging_prefix, plen) != 0)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? u[i] != '-' : !isxdigit((unsigned char)u[i]))
			return false;
	}
	if (strcmp(u + 36, staging_suffix) != 0)
		return false;
	if (uuid) {
		memcpy(uuid, u, 36);
		uuid[36] = '\0';
	}
	return true;
}

bool store_staging_path_split(const char *path, const uint8_t uuid[16], size_t *dirlen)
{
	char name[STORE_STAGING_NAME_LEN + 1];
	size_t n = path ? strlen(path) : 0;

	store_staging_name(uuid, name);
	if (n <= STORE_STAGING_NAME_LEN + 1 || path[0] != '/' ||
	    path[n - STORE_STAGING_NAME_LEN - 1] != '/' ||
	    strcmp(path + n - STORE_STAGING_NAME_LEN, name) != 0)
		return false;
	*dirlen = n - STORE_STAGING_NAME_LEN - 1;
	return true;
}

/* The index records an absolute path: resolve the directory now. */
static int staging_name(struct vswap_store *s, const char *dir)
{
	char name[STORE_STAGING_NAME_LEN + 1];
	store_staging_name(s->sb.uuid, name);
	char *abs = realpath(dir ? dir : "/dev/shm", NULL);
	if (!abs) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: staging directory: %s", dir ? dir : "/dev/shm",
			  strerror(errno));
		return ret;
	}
	int n = asprintf(&s->staging_path, "%s/%s", abs, name);
	free(abs);
	if (n < 0) {
		s->staging_path = NULL;
		return -ENOMEM;
	}
	return 0;
}

/*
 * A regular file (a FIFO or a device would block a read or stand for
 * something else), and for a writable open ours and private to us.  The
 * staging directory is shared (/dev/shm): a file another user planted under
 * the store's name would read the guest's memory we stage into it, or change
 * it under us, and group or other access would let others do the same.  A
 * read-only open (an audit, vswap-dump) writes nothing and believes no
 * staged byte unchecked (each is checked against its committed checksum),
 * so any regular file it can read will do: a user with read access may
 * audit.  When that file is ours but not private, say that a writable open
 * will refuse it, so that a clean audit does not hide it.
 */
static int check_ours(struct vswap_store *s, int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode)) {
		store_log(s, VSWAP_LOG_ERROR, "%s: staging file is not a regular file; refusing it",
			  s->staging_path);
		return -EINVAL;
	}
	bool ours = st.st_uid == geteuid() && !(st.st_mode & 077);
	if (s->read_only) {
		if (!ours && st.st_uid == geteuid())
			store_log(s, VSWAP_LOG_WARN,
				  "%s: staging file is not private (mode %04o): a writable open "
				  "refuses it",
				  s->staging_path, (unsigned)(st.st_mode & 07777));
		return 0;
	}
	if (!ours) {
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

/* Whether the recorded staging path lies in @dir (given or default). */
static bool in_directory(const struct vswap_store *s, const char *dir)
{
	char *real = realpath(dir ? dir : "/dev/shm", NULL);
	const char *slash = strrchr(s->staging_path, '/');
	bool ok = real && slash && (size_t)(slash - s->staging_path) == strlen(real) &&
		  strncmp(s->staging_path, real, strlen(real)) == 0;
	free(real);
	return ok;
}

/* Open without blocking (a FIFO would), then check it is ours. */
static int open_existing(struct vswap_store *s)
{
	int flags = (s->read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	s->staging_fd = open(s->staging_path, flags);
	if (s->staging_fd < 0)
		return -errno;
	int ret = check_ours(s, s->staging_fd);
	int fl = ret ? -1 : fcntl(s->staging_fd, F_GETFL);
	if (!ret && (fl < 0 || fcntl(s->staging_fd, F_SETFL, fl & ~O_NONBLOCK) != 0))
		ret = -errno;
	if (ret) {
		close(s->staging_fd);
		s->staging_fd = -1;
		return ret;
	}
	return 0;
}

int staging_open(struct vswap_store *s, const char *dir)
{
	if (!s->staging_path) {
		store_log(s, VSWAP_LOG_ERROR, "%s: bad index: it names no staging file",
			  s->index_path);
		return -EUCLEAN;
	}
	int ret = open_existing(s);
	if (ret == -ENOENT) {
		if (s->read_only) {
			s->staging_fd = -1; /* an audit reports it; nothing to read */
			return 0;
		}
		if (s->n_staged && !s->tolerant) {
			store_log(
			    s, VSWAP_LOG_ERROR,
			    "%s: staging file is gone but the index records %llu staged pages; "
			    "run vswap-fsck",
			    s->staging_path, (unsigned long long)s->n_staged);
			return -ENOENT;
		}
		/* Never create a file where a damaged index points: only in
		 * the staging directory this open was given (or the default). */
		if (!in_directory(s, dir)) {
			store_log(s, VSWAP_LOG_ERROR,
				  "%s: staging file missing, and not in the staging directory %s: "
				  "not creating it",
				  s->staging_path, dir ? dir : "/dev/shm");
			return -ENOENT;
		}
		s->staging_fd =
		    open(s->staging_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		ret = s->staging_fd < 0 ? -errno : 0;
	}
	if (ret) {
		if (ret != -EPERM && ret != -EINVAL)
			store_log(s, VSWAP_LOG_ERROR, "%s: cannot open staging file: %s",
				  s->staging_path, strerror(-ret));
		return ret;
	}
	if (!s->read_only) {
		staging_link_owner(s);
		ret = staging_resize(s, false);
	}
	return ret;
}

/*
 * A staged copy that cannot be trusted (@why) leaves staging: present in the
 * swap file, the page is served from there; else it is lost, never zero.
 * @maybe: it has no committed checksum (a crash cut its copy short before
 * the guest's own copy went), so a handler that finds the page resident in
 * guest memory gives it back (its resume): not (yet) a loss.  Its group was
 * loaded (index_need()).  1 if the page is lost now, else 0.
 */
static int staged_untrusted(struct vswap_store *s, uint64_t pg, const char *why, bool maybe)
{
	uint32_t w = s->pages[pg];
	vswap_store_stage_clear(s, pg, 1);
	if (pw_state(w) == VSWAP_PAGE_PRESENT)
		return 0;
	if (s->unverified_failed++ < 8)
		store_log(s, maybe ? VSWAP_LOG_WARN : VSWAP_LOG_ERROR,
			  maybe ? "%s: staged page %llu %s: not served; lost unless guest memory "
				  "still holds it"
				: "%s: staged page %llu %s: lost",
			  s->staging_path, (unsigned long long)pg, why);
	page_set(s, pg, pw_make(pw_slot(w), VSWAP_PAGE_LOST), s->sums[pg]);
	s->pending_pages++;
	return 1;
}

void staging_unverified_clear(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (!s->unverified)
		return;
	for (uint64_t p = first; p < first + count && s->n_unverified; p++)
		if (bit_test(s->unverified, p)) {
			bit_clear(s->unverified, p);
			s->n_unverified--;
		}
}

/* Every copy checked: the bitmap and the buffer go (not inside a check or
 * the open's walk, which still use them). */
static void unverified_release_if_empty(struct vswap_store *s)
{
	if (s->unverified && !s->n_unverified) {
		free(s->unverified);
		free(s->check_buf);
		s->unverified = NULL;
		s->check_buf = NULL;
	}
}

/*
 * Staged pages a previous handle left are checked before anything serves
 * them, each against the checksum its staging record carries.  Reading and
 * hashing every copy at the open made a restart linear in the guest (a GiB
 * staged: a third of a second), so only the part that needs no read is done
 * here: a copy with no committed checksum (a crash between the copy and the
 * commit of its checksum) is not served.  The others are marked unverified,
 * and vswap_store_staged() and vswap_store_next_staged_run(), through which
 * every user of a staged copy finds it (a fault, trim, swap-out, swap-in),
 * check them first (staging_check()): a copy that fails or is missing is
 * lost then, as it would have been here.  Writable, non-tolerant opens;
 * recovery judges the others.  The changes are committed by the caller.
 */
int64_t staging_verify_loaded(struct vswap_store *s)
{
	if (!s->n_staged)
		return 0;
	/* The check's buffer now: a check must never fail for memory (an
	 * unverified copy is not served, and a fault needs its page). */
	s->unverified = calloc((s->total_pages + 63) / 64, sizeof(uint64_t));
	s->check_buf = malloc((size_t)STAGING_CHECK_RUN << s->page_shift);
	if (!s->unverified || !s->check_buf)
		return -ENOMEM;
	uint64_t unsummed = 0, dropped = 0;
	int64_t changed = 0;
	/* The bitmap word by word (vswap_store_next_staged_run() would check
	 * the copies it finds). */
	for (uint64_t w = 0; w < (s->total_pages + 63) / 64; w++) {
		uint64_t bits = s->staged[w];
		while (bits) {
			uint64_t pg = w * 64 + (uint64_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			if (bit_test(s->summed, pg)) {
				bit_set(s->unverified, pg);
				s->n_unverified++;
				continue;
			}
			int ret = index_need(s, pg, 1);
			if (ret)
				return ret;
			int lost = staged_untrusted(s, pg, "has no committed checksum", true);
			unsummed += (uint64_t)lost;
			dropped += (uint64_t)!lost;
			changed++;
		}
	}
	unverified_release_if_empty(s);
	if (unsummed)
		store_log(
		    s, VSWAP_LOG_WARN,
		    "%s: %llu staged pages have no committed checksum (a crash cut their copy "
		    "short): recorded lost unless guest memory still holds them, as it does "
		    "for a handler resuming the guest, which gives those back",
		    s->staging_path, (unsigned long long)unsummed);
	if (dropped)
		store_log(s, VSWAP_LOG_WARN,
			  "%s: %llu staged copies unverified; their swap-file copies are current",
			  s->staging_path, (unsigned long long)dropped);
	return changed;
}

int staging_check(struct vswap_store *s, uint64_t first, uint64_t count)
{
	uint64_t end = first + count;
	int err = 0;
	for (uint64_t p = first; s->n_unverified && p < end;) {
		if (!bit_test(s->unverified, p)) {
			p++;
			continue;
		}
		uint64_t n = 1;
		while (n < STAGING_CHECK_RUN && p + n < end && bit_test(s->unverified, p + n))
			n++;
		/* A group that cannot be loaded: the copies stay unverified,
		 * never served, and the page's own calls fail the same way. */
		int need = index_need(s, p, n);
		if (need) {
			err = err ? err : need;
			p += n;
			continue;
		}
		uint8_t *buf = s->check_buf;
		ssize_t k =
		    pread(s->staging_fd, buf, n << s->page_shift, (off_t)(p << s->page_shift));
		uint64_t lost = 0;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t pg = p + i;
			bool have = k >= 0 && (uint64_t)k >= (i + 1) << s->page_shift;
			bool good =
			    have && page_sum(s, pg, buf + (i << s->page_shift)) == s->ssums[pg];
			if (!good)
				lost += staged_untrusted(s, pg,
							 k < 0	 ? "cannot be read"
							 : !have ? "is missing"
								 : "fails its checksum",
							 false);
		}
		staging_unverified_clear(s, p, n);
		if (lost)
			store_log(s, VSWAP_LOG_ERROR,
				  "%s: %llu staged pages failed verification and are lost",
				  s->staging_path, (unsigned long long)lost);
		p += n;
	}
	unverified_release_if_empty(s);
	return err;
}

int vswap_store_unverified_run(const struct vswap_store *s, uint64_t from, uint64_t max,
			       uint64_t *first, uint64_t *count)
{
	if (!s->unverified || !s->n_unverified || max == 0)
		return 0;
	uint64_t p = from;
	while (p < s->total_pages) {
		uint64_t w = s->unverified[p / 64] >> (p % 64);
		if (w) {
			p += (uint64_t)__builtin_ctzll(w);
			break;
		}
		p = (p | 63) + 1;
	}
	if (p >= s->total_pages)
		return 0;
	uint64_t n = 1;
	while (n < max && p + n < s->total_pages && bit_test(s->unverified, p + n))
		n++;
	*first = p;
	*count = n;
	return 1;
}

int vswap_store_unverified_checked(struct vswap_store *s, uint64_t first, uint64_t count,
				   const uint64_t *sums)
{
	if (first >= s->total_pages || count > s->total_pages - first)
		return -EINVAL;
	if (!s->unverified)
		return 0;
	int need = index_need(s, first, count);
	if (need)
		return need;
	uint64_t lost = 0;
	for (uint64_t i = 0; i < count && s->n_unverified; i++) {
		uint64_t pg = first + i;
		if (!bit_test(s->unverified, pg))
			continue; /* checked meanwhile, or a new copy came */
		if (sums[i] == s->ssums[pg])
			staging_unverified_clear(s, pg, 1);
		else
			lost += staged_untrusted(s, pg, "fails its checksum", false);
	}
	if (lost)
		store_log(s, VSWAP_LOG_ERROR,
			  "%s: %llu staged pages failed verification and are lost", s->staging_path,
			  (unsigned long long)lost);
	unverified_release_if_empty(s);
	return 0;
}

/*
 * Size the file to the page-index space (sparse; tmpfs allocates on
 * write).  Never shorter: an open over a damaged or missing regions record
 * must not cut the only copy of staged pages.  Only set_regions() on a
 * store with nothing staged may shrink it (@shrink).
 */
int staging_resize(struct vswap_store *s, bool shrink)
{
	struct stat st;
	off_t want = (off_t)(s->total_pages << s->page_shift);
	if (fstat(s->staging_fd, &st) != 0)
		return -errno;
	if (st.st_size == want || (st.st_size > want && !shrink))
		return 0;
	if (ftruncate(s->staging_fd, want) != 0) {
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
int staging_unstaged_runs(struct vswap_store *s, const struct range_vec *v, struct range_vec *out)
{
	out->n = 0;
	for (size_t i = 0; i < v->n; i++) {
		uint64_t p = v->v[i].first, end = p + v->v[i].count;
		while (p < end) {
			while (p < end && bit_test(s->staged, p))
				p++;
			uint64_t run = p;
			while (p < end && !bit_test(s->staged, p))
				p++;
			if (p > run && range_vec_push(out, run, p - run) != 0)
				return -ENOMEM;
		}
	}
	return 0;
}

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
		store_log(s, VSWAP_LOG_WARN,
			  "%s: cannot punch staging bytes: %s (vswap-fsck "
			  "reclaims them)",
			  s->staging_path, strerror(-ret));
	return ret;
}

/* SPDX-License-Identifier: MIT */
/*
 * The index's files checked before LMDB maps them.  LMDB trusts its data
 * file: it maps it and reads the pages its meta page names, so a truncated
 * file (8 KiB, half) would be read past its end and kill the process with
 * SIGBUS, and a FIFO would block its open.  vswap_store_open() is called
 * inside embedding VMMs, so these are checked here first: the file is a
 * regular file, opened without blocking, and both meta pages (LMDB 0.9's
 * layout, below) are intact and name no page past the end of the file.
 *
 *   page header   u64 pgno, u16 pad, u16 flags (P_META 0x08), u16 lower,
 *                 u16 upper                                  (16 bytes)
 *   meta          u32 magic 0xBEEFC0DE, u32 version 1, u64 address,
 *                 u64 mapsize, 2 x db (u32 pad = page size in the first,
 *                 u16 flags, u16 depth, u64 branch, leaf, overflow pages,
 *                 u64 entries, u64 root), u64 last page, u64 txnid
 *
 * Meta page 0 is at offset 0, meta page 1 at one LMDB page size.  Then
 * the B-trees the meta page in use names are walked and bounded
 * (store/lmdb_check.c): LMDB trusts what lies within the file too (a lazy
 * open leaves the leaves of `pages` to its loader, store/lazy.c).  The
 * records' own checks judge what LMDB returns.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_DATA_VERSION 1u
#define P_META 0x08u
#define PAGE_HDR 16u
#define META_BYTES 136u
#define P_INVALID UINT64_MAX
#define MAX_DEPTH 32u /* LMDB's cursor stack */
/* Room for LMDB's lock file (126 readers of 64 bytes and the header). */
#define LOCK_FILE_ROOM (64u << 10)

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return le16toh(v);
}
static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static int bad(const struct vswap_store *s, const char *why, unsigned long long a,
	       unsigned long long b)
{
	char msg[200];
	snprintf(msg, sizeof(msg), why, a, b);
	store_log(s, VSWAP_LOG_ERROR, "%s: bad index: %s", s->index_path, msg);
	return -EUCLEAN;
}

struct meta {
	uint32_t psize;
	uint64_t last_pg, txnid;
};

/* One meta page at @off: its header, magic, version and B-tree roots. */
static int read_meta(const struct vswap_store *s, int fd, uint64_t off, uint64_t size,
		     unsigned which, struct meta *m)
{
	uint8_t b[PAGE_HDR + META_BYTES];
	if (off + sizeof(b) > size)
		return bad(s, "file too short for LMDB meta page %llu (%llu bytes)", which, size);
	ssize_t k = pread(fd, b, sizeof(b), (off_t)off);
	if (k != (ssize_t)sizeof(b))
		return k < 0 ? -errno : -EIO;
	const uint8_t *mm = b + PAGE_HDR;
	if (!(get16(b + 10) & P_META) || get32(mm) != LMDB_MAGIC)
		return bad(s, "not an LMDB file (meta page %llu%.0llu has no LMDB magic)", which,
			   0);
	if (get32(mm + 4) != LMDB_DATA_VERSION)
		return bad(s, "LMDB data version %llu in meta page %llu is not 1", get32(mm + 4),
			   which);
	m->psize = get32(mm + 24);
	m->last_pg = get64(mm + 120);
	m->txnid = get64(mm + 128);
	if (m->psize < 512 || m->psize > 65536 || (m->psize & (m->psize - 1)))
		return bad(s, "LMDB page size %llu in meta page %llu", m->psize, which);
	for (unsigned db = 0; db < 2; db++) {
		const uint8_t *d = mm + 24 + 48 * db;
		uint64_t root = get64(d + 40);
		if (get16(d + 6) > MAX_DEPTH || (root != P_INVALID && root > m->last_pg))
			return bad(s, "meta page %llu names a B-tree root past its last page %llu",
				   which, m->last_pg);
	}
	return 0;
}

int index_file_check(struct vswap_store *s)
{
	int fd = open(s->index_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: %s: %s", s->index_path,
			  errno == ENOENT ? "index missing" : "cannot open the index",
			  strerror(errno));
		return ret;
	}
	struct stat st;
	int ret = fstat(fd, &st) ? -errno : 0;
	if (!ret && !S_ISREG(st.st_mode)) {
		store_log(s, VSWAP_LOG_ERROR, "%s: the index is not a regular file", s->index_path);
		ret = -EINVAL;
	}
	if (!ret && st.st_size == 0)
		ret = bad(s, "empty file%.0llu%.0llu", 0, 0);
	struct meta m[2];
	if (!ret)
		ret = read_meta(s, fd, 0, (uint64_t)st.st_size, 0, &m[0]);
	if (!ret)
		ret = read_meta(s, fd, m[0].psize, (uint64_t)st.st_size, 1, &m[1]);
	if (!ret && m[1].psize != m[0].psize)
		ret = bad(s, "meta pages disagree on the page size (%llu, %llu)", m[0].psize,
			  m[1].psize);
	for (unsigned i = 0; i < 2 && !ret; i++) {
		/* LMDB uses the meta page of the newer transaction, but a
		 * writer falls back to the other one: both must fit. */
		uint64_t need = (m[i].last_pg + 1) * m[i].psize;
		if (m[i].last_pg >= ((uint64_t)1 << 48) || need > (uint64_t)st.st_size)
			ret = bad(s, "truncated: %llu bytes, its meta page needs %llu",
				  (unsigned long long)st.st_size,
				  m[i].last_pg >= ((uint64_t)1 << 48) ? ~0ull : need);
	}
	/* A lazy open checks the leaves of `pages` as it loads them. */
	if (!ret && s->lazy_open)
		ret = index_lmdb_check_deferred(s, fd, (uint64_t)st.st_size, &s->deferred);
	else if (!ret)
		ret = index_lmdb_check(s, fd, (uint64_t)st.st_size);
	close(fd);
	return ret;
}

/*
 * The lock file of a writable open: a regular file (a FIFO would block
 * LMDB), and with its blocks allocated now, so that LMDB's writes through
 * its mapping of it cannot meet a full file system (SIGBUS).
 */
int index_lock_file_prepare(struct vswap_store *s)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s-lock", s->index_path) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int ret = -errno;
		store_log(s, VSWAP_LOG_ERROR, "%s: cannot open the index lock file: %s", path,
			  strerror(errno));
		return ret;
	}
	struct stat st;
	int ret = fstat(fd, &st) ? -errno : 0;
	if (!ret && !S_ISREG(st.st_mode)) {
		store_log(s, VSWAP_LOG_ERROR, "%s: the index lock file is not a regular file",
			  path);
		ret = -EINVAL;
	}
	if (!ret && (ret = -posix_fallocate(fd, 0, LOCK_FILE_ROOM)) != 0)
		store_log(s, VSWAP_LOG_ERROR, "%s: no room for the index lock file: %s", path,
			  strerror(-ret));
	close(fd);
	return ret;
}

/* SPDX-License-Identifier: MIT */
/* Power-loss replay: decode the shim's write log, rebuild files from it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "tests/helpers/powerloss_replay.h"

#define BLK 4096u

/* ---- the log ------------------------------------------------------------------ */

static int file_index(struct pl_log *log, const char *path, size_t len)
{
	for (int i = 0; i < log->nfiles; i++)
		if (strlen(log->files[i]) == len && memcmp(log->files[i], path, len) == 0)
			return i;
	char **files = realloc(log->files, (size_t)(log->nfiles + 1) * sizeof(*files));
	if (!files)
		return -1;
	log->files = files;
	files[log->nfiles] = strndup(path, len);
	return files[log->nfiles] ? log->nfiles++ : -1;
}

/* Decode the record at @p (which has @left bytes) into @op. */
static int decode(struct pl_log *log, const uint8_t *p, size_t left, uint64_t want_seq,
		  struct pl_op *op, size_t *used, char *err, size_t errlen)
{
	struct wl_header h;
	if (left < sizeof(h))
		goto torn;
	memcpy(&h, p, sizeof(h));
	if (h.magic != WL_MAGIC || h.seq != want_seq) {
		snprintf(err, errlen, "record %llu: bad magic or sequence",
			 (unsigned long long)want_seq);
		return -1;
	}
	if (left - sizeof(h) < (uint64_t)h.path_len + h.data_len)
		goto torn;
	const char *path = (const char *)p + sizeof(h);
	*op = (struct pl_op){.type = h.type,
			     .flags = h.flags,
			     .file = -1,
			     .file2 = -1,
			     .off = h.off,
			     .len = h.len,
			     .data = (const uint8_t *)path + h.path_len,
			     .data_len = h.data_len};
	if (h.type == WL_MARK) {
		op->label = path;
		op->label_len = h.path_len;
	} else if (h.type == WL_RENAME) {
		size_t a = strnlen(path, h.path_len);
		op->file = file_index(log, path, a);
		op->file2 = file_index(log, path + a + 1, h.path_len - a - 1);
	} else {
		op->file = file_index(log, path, h.path_len);
	}
	*used = sizeof(h) + h.path_len + h.data_len;
	return 0;
torn:
	snprintf(err, errlen, "record %llu is cut short", (unsigned long long)want_seq);
	return -1;
}

int pl_log_load(const char *path, struct pl_log *log, char *err, size_t errlen)
{
	memset(log, 0, sizeof(*log));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	log->map_len = (size_t)st.st_size;
	log->map = log->map_len ? mmap(NULL, log->map_len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (log->map == MAP_FAILED) {
		snprintf(err, errlen, "mmap %s: %s", path, strerror(errno));
		log->map = NULL;
		return -1;
	}
	size_t cap = 0, at = 0;
	while (at < log->map_len) {
		if (log->nops == cap) {
			cap = cap ? cap * 2 : 1024;
			struct pl_op *ops = realloc(log->ops, cap * sizeof(*ops));
			if (!ops) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			log->ops = ops;
		}
		size_t used;
		if (decode(log, (const uint8_t *)log->map + at, log->map_len - at, log->nops,
			   &log->ops[log->nops], &used, err, errlen))
			return -1;
		at += used;
		log->nops++;
	}
	return 0;
}

void pl_log_free(struct pl_log *log)
{
	if (log->map)
		munmap(log->map, log->map_len);
	for (int i = 0; i < log->nfiles; i++)
		free(log->files[i]);
	free(log->files);
	free(log->ops);
	memset(log, 0, sizeof(*log));
}

int pl_log_find_file(const struct pl_log *log, const char *suffix)
{
	size_t ls = strlen(suffix);
	for (int i = 0; i < log->nfiles; i++) {
		size_t lf = strlen(log->files[i]);
		if (lf >= ls && strcmp(log->files[i] + lf - ls, suffix) == 0)
			return i;
	}
	return -1;
}

bool pl_op_is_mark(const struct pl_op *op, const char *label)
{
	return op->type == WL_MARK && op->label_len == strlen(label) &&
	       memcmp(op->label, label, op->label_len) == 0;
}

/* ---- images ----------------------------------------------------------------------- */

static void image_reserve(struct pl_image *img, uint64_t bytes)
{
	if (bytes <= img->cap)
		return;
	uint64_t cap = img->cap ? img->cap : 16 * BLK;
	while (cap < bytes)
		cap *= 2;
	uint8_t *data = realloc(img->data, cap);
	uint8_t *alloc = realloc(img->alloc, cap / BLK);
	if (!data || !alloc)
		abort(); /* a test helper: a few MiB at most */
	memset(data + img->cap, 0, cap - img->cap);
	memset(alloc + img->cap / BLK, 0, (cap - img->cap) / BLK);
	img->data = data;
	img->alloc = alloc;
	img->cap = cap;
}

static void image_copy(struct pl_image *dst, const struct pl_image *src)
{
	image_reserve(dst, src->cap);
	if (src->cap) {
		memcpy(dst->data, src->data, src->cap);
		memcpy(dst->alloc, src->alloc, src->cap / BLK);
	}
	if (dst->cap > src->cap) {
		memset(dst->data + src->cap, 0, dst->cap - src->cap);
		memset(dst->alloc + src->cap / BLK, 0, (dst->cap - src->cap) / BLK);
	}
	dst->exists = src->exists;
	dst->size = src->size;
	dst->hash = src->hash;
	dst->hash_ok = src->hash_ok;
}

static void image_clear(struct pl_image *img)
{
	if (img->cap) {
		memset(img->data, 0, img->cap);
		memset(img->alloc, 0, img->cap / BLK);
	}
	img->size = 0;
}

/* Blocks wholly inside [off, end) lose their data; partial ones are zeroed. */
static void image_hole(struct pl_image *img, uint64_t off, uint64_t end)
{
	if (end > img->cap)
		end = img->cap;
	if (off >= end)
		return;
	memset(img->data + off, 0, end - off);
	for (uint64_t b = (off + BLK - 1) / BLK; (b + 1) * BLK <= end; b++)
		img->alloc[b] = 0;
}

static void image_allocate(struct pl_image *img, uint64_t off, uint64_t end)
{
	image_reserve(img, end);
	for (uint64_t b = off / BLK; b * BLK < end; b++)
		img->alloc[b] = 1;
}

static void image_truncate(struct pl_image *img, uint64_t size)
{
	if (size < img->size)
		image_hole(img, size, img->size);
	/* A block cut in two keeps its data; blocks past the end have none. */
	for (uint64_t b = (size + BLK - 1) / BLK; b < img->cap / BLK; b++)
		img->alloc[b] = 0;
	image_reserve(img, size);
	img->size = size;
}

static void image_apply(struct pl_image *img, const struct pl_op *op)
{
	img->hash_ok = false;
	bool keep = op->flags & WL_F_KEEP_SIZE;
	uint64_t end = op->off + op->len;
	switch (op->type) {
	case WL_CREATE:
		if (op->off || !img->exists)
			image_clear(img);
		img->exists = true;
		break;
	case WL_WRITE:
		image_allocate(img, op->off, op->off + op->data_len);
		memcpy(img->data + op->off, op->data, op->data_len);
		if (op->off + op->data_len > img->size)
			img->size = op->off + op->data_len;
		break;
	case WL_TRUNCATE:
		image_truncate(img, op->off);
		break;
	case WL_PUNCH:
		image_hole(img, op->off, end < img->size ? end : img->size);
		break;
	case WL_ZERO:
		image_allocate(img, op->off, end);
		memset(img->data + op->off, 0, op->len);
		if (!keep && end > img->size)
			img->size = end;
		break;
	case WL_ALLOC:
		image_allocate(img, op->off, end);
		if (!keep && end > img->size)
			img->size = end;
		break;
	default:
		break;
	}
}

uint64_t pl_image_hash(struct pl_image *img)
{
	if (img->hash_ok)
		return img->hash;
	XXH3_state_t *st = XXH3_createState();
	XXH3_64bits_reset(st);
	uint8_t head[9];
	memcpy(head, &img->size, 8);
	head[8] = img->exists;
	XXH3_64bits_update(st, head, sizeof(head));
	uint64_t blocks = (img->size + BLK - 1) / BLK;
	if (img->exists && blocks) {
		XXH3_64bits_update(st, img->data, img->size);
		XXH3_64bits_update(st, img->alloc, blocks);
	}
	img->hash = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	img->hash_ok = true;
	return img->hash;
}

/* ---- the replay --------------------------------------------------------------------- */

int pl_replay_init(struct pl_replay *r, const struct pl_log *log)
{
	memset(r, 0, sizeof(*r));
	r->log = log;
	r->skip_file = -1;
	r->full = calloc((size_t)log->nfiles + 1, sizeof(*r->full));
	r->synced = calloc((size_t)log->nfiles + 1, sizeof(*r->synced));
	return r->full && r->synced ? 0 : -ENOMEM;
}

void pl_replay_free(struct pl_replay *r)
{
	for (int i = 0; r->full && i < r->log->nfiles; i++) {
		free(r->full[i].data);
		free(r->full[i].alloc);
		free(r->synced[i].data);
		free(r->synced[i].alloc);
	}
	free(r->full);
	free(r->synced);
	memset(r, 0, sizeof(*r));
}

/* Names are treated as durable at once (the store renames nothing; a
 * directory's own durability is outside this model). */
static void replay_rename(struct pl_replay *r, const struct pl_op *op)
{
	struct pl_image *views[2] = {r->full, r->synced};
	for (int v = 0; v < 2; v++) {
		struct pl_image *from = &views[v][op->file], *to = &views[v][op->file2];
		struct pl_image tmp = *to;
		*to = *from;
		*from = tmp;
		image_clear(from);
		from->exists = false;
		from->hash_ok = to->hash_ok = false;
	}
}

void pl_replay_step(struct pl_replay *r)
{
	size_t i = r->next++;
	const struct pl_op *op = &r->log->ops[i];
	if (op->file >= 0 && op->file == r->skip_file && op->type == r->skip_type &&
	    i >= r->skip_from)
		return;
	switch (op->type) {
	case WL_MARK:
	case WL_RANGE:
		return;
	case WL_SYNC:
		image_copy(&r->synced[op->file], &r->full[op->file]);
		return;
	case WL_RENAME:
		replay_rename(r, op);
		return;
	case WL_UNLINK:
		for (int v = 0; v < 2; v++) {
			struct pl_image *img = v ? &r->synced[op->file] : &r->full[op->file];
			image_clear(img);
			img->exists = false;
			img->hash_ok = false;
		}
		return;
	case WL_CREATE:
		/* The name exists at once in both views; its bytes need a sync. */
		image_apply(&r->full[op->file], op);
		if (!r->synced[op->file].exists) {
			r->synced[op->file].exists = true;
			r->synced[op->file].hash_ok = false;
		}
		return;
	default:
		image_apply(&r->full[op->file], op);
		return;
	}
}

/* ---- materialise ------------------------------------------------------------------------ */

static int write_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t k = pwrite(fd, p, len, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		p += k;
		off += (uint64_t)k;
		len -= (uint64_t)k;
	}
	return 0;
}

int pl_image_write(const struct pl_image *img, const char *path)
{
	if (unlink(path) != 0 && errno != ENOENT)
		return -errno;
	if (!img->exists)
		return 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int ret = ftruncate(fd, (off_t)img->size) ? -errno : 0;
	uint64_t blocks = (img->size + BLK - 1) / BLK;
	for (uint64_t b = 0; b < blocks && !ret;) {
		if (!img->alloc[b]) {
			b++;
			continue;
		}
		uint64_t e = b;
		while (e < blocks && img->alloc[e])
			e++;
		uint64_t end = e * BLK < img->size ? e * BLK : img->size;
		ret = write_all(fd, img->data + b * BLK, end - b * BLK, b * BLK);
		b = e;
	}
	close(fd);
	return ret;
}

int pl_write_partial(const struct pl_op *op, uint64_t keep, const char *path)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = write_all(fd, op->data, keep, op->off);
	close(fd);
	return ret;
}

/* SPDX-License-Identifier: MIT */
/*
 * The replay half of the power-loss test: read a write log made by the
 * shim (tests/powerloss/writelog.h), rebuild the files it describes in
 * memory one record at a time, and write any mix of "everything so far"
 * and "only what was synced" of each file to disk, as a power loss at that
 * point could have left it (CrashMonkey / dm-log-writes style).
 *
 * A file image tracks its size, its bytes and which 4 KiB blocks hold
 * data, so that holes punched by the store stay holes on disk (fsck finds
 * leaked slots with SEEK_DATA).
 */
#ifndef VSWAP_TESTS_POWERLOSS_REPLAY_H
#define VSWAP_TESTS_POWERLOSS_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/powerloss/writelog.h"

/* One record of the log, decoded.  Pointers point into the mapped log. */
struct pl_op {
	enum wl_type type;
	uint32_t flags;
	int file;  /* index into pl_log.files; -1 for marks */
	int file2; /* RENAME: the new name's index */
	uint64_t off, len;
	const uint8_t *data;
	uint64_t data_len;
	const char *label; /* MARK: the label (not terminated) */
	uint32_t label_len;
};

struct pl_log {
	void *map;
	size_t map_len;
	struct pl_op *ops;
	size_t nops;
	char **files; /* relative paths, terminated */
	int nfiles;
};

/* Map and decode @path.  Returns 0, or -1 with a reason in @err. */
int pl_log_load(const char *path, struct pl_log *log, char *err, size_t errlen);
void pl_log_free(struct pl_log *log);
/* The index of the file whose path ends with @suffix, or -1. */
int pl_log_find_file(const struct pl_log *log, const char *suffix);
bool pl_op_is_mark(const struct pl_op *op, const char *label);

/* One file as a power loss might leave it. */
struct pl_image {
	bool exists;
	uint64_t size;
	uint64_t cap; /* bytes allocated in data (multiple of the block size) */
	uint8_t *data;
	uint8_t *alloc; /* per 4 KiB block: 1 = holds data on disk */
	uint64_t hash;	/* of everything above; valid when hash_ok */
	bool hash_ok;
};

/*
 * The replay: every file's image after the records [0, next) ("full"),
 * and as of that file's last sync in that range ("synced").
 */
struct pl_replay {
	const struct pl_log *log;
	size_t next;
	/* Mutation (to prove the checker has teeth): records of type skip_type
	 * on file skip_file at index >= skip_from are not applied.  Off when
	 * skip_file is -1 (pl_replay_init). */
	int skip_file;
	enum wl_type skip_type;
	size_t skip_from;
	struct pl_image *full;
	struct pl_image *synced;
};

int pl_replay_init(struct pl_replay *r, const struct pl_log *log);
void pl_replay_free(struct pl_replay *r);
/* Apply record r->next and advance. */
void pl_replay_step(struct pl_replay *r);

uint64_t pl_image_hash(struct pl_image *img);
/* Write @img to @path: created fresh, sized, data blocks written, holes left
 * as holes.  An image that does not exist removes @path.  0 or -errno. */
int pl_image_write(const struct pl_image *img, const char *path);
/* Write the first @keep bytes of write record @op into @path (a torn write). */
int pl_write_partial(const struct pl_op *op, uint64_t keep, const char *path);

#endif

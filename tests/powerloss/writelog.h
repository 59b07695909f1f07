/* SPDX-License-Identifier: MIT */
/*
 * The write log of the power-loss test: what the LD_PRELOAD shim
 * (tests/powerloss/shim.c) appends for every data-changing call on a file
 * under the watched directory, and what the replayer
 * (tests/helpers/powerloss_replay.c) reads back.
 *
 * A log is a sequence of records, each a fixed header, then path_len bytes
 * of path (relative to the watched directory, no terminator; for RENAME
 * "old\0new"), then data_len bytes of data.  Records are written in the
 * order the calls returned (the shim holds one mutex across the real call
 * and the append), only for calls that succeeded, and with the length the
 * call really wrote.  Host byte order: the log never leaves the machine.
 */
#ifndef VSWAP_TESTS_POWERLOSS_WRITELOG_H
#define VSWAP_TESTS_POWERLOSS_WRITELOG_H

#include <stdint.h>

#define WL_MAGIC 0x314c5756u /* "VWL1" */

enum wl_type {
	WL_CREATE = 1,	 /* open with O_CREAT or O_TRUNC: file exists (off = 1: truncated) */
	WL_WRITE = 2,	 /* data_len bytes at off (pwrite, write, writev, pwritev) */
	WL_TRUNCATE = 3, /* size becomes off (ftruncate, truncate) */
	WL_PUNCH = 4,	 /* fallocate(PUNCH_HOLE | KEEP_SIZE): [off, off + len) reads zero */
	WL_ZERO = 5,	 /* fallocate(ZERO_RANGE): zeros, size grows unless KEEP_SIZE */
	WL_ALLOC = 6,	 /* fallocate(0 or KEEP_SIZE): size grows unless KEEP_SIZE */
	WL_SYNC = 7,	 /* fsync / fdatasync / a write on an O_SYNC or O_DSYNC fd */
	WL_RENAME = 8,	 /* path is "old\0new" */
	WL_UNLINK = 9,
	WL_MARK = 10,  /* a label from the workload (path = label, data = payload) */
	WL_RANGE = 11, /* sync_file_range: not a durability barrier, kept for the record */
};

/* flags */
#define WL_F_KEEP_SIZE 1u /* fallocate kept the size */

struct wl_header {
	uint32_t magic;
	uint32_t type; /* enum wl_type */
	uint32_t path_len;
	uint32_t flags;
	uint64_t off;
	uint64_t len;	   /* PUNCH/ZERO/ALLOC/RANGE: length of the range */
	uint64_t data_len; /* bytes of data after the path */
	uint64_t seq;	   /* 0, 1, 2, ...: a gap means a record was lost */
};

/*
 * The workload marks points of its sequence by calling this function when
 * the shim is preloaded (found with dlsym(RTLD_DEFAULT, WL_MARK_SYMBOL)).
 */
#define WL_MARK_SYMBOL "vswap_writelog_mark"
typedef void (*wl_mark_fn)(const char *label, const void *payload, uint64_t len);

#endif

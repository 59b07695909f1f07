/* SPDX-License-Identifier: MIT */
/*
 * Test fixtures for recovery, fsck and dump: stores built through the store
 * API in a private directory (its own staging directory too, so that no
 * test ever scans /dev/shm), the built tools run as child processes, file
 * hashes to prove that a read-only run changed nothing, and the crash
 * harness the kill and power-loss tests call after each simulated crash.
 */
#ifndef VSWAP_TESTS_RECOVERY_FIXTURE_H
#define VSWAP_TESTS_RECOVERY_FIXTURE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <vswap/recovery.h>
#include <vswap/store.h>

struct rfx_store {
	char dir[256];	     /* private directory, removed by rfx_cleanup */
	char path[PATH_MAX]; /* the swap file */
	char index[PATH_MAX + 8];
	uint64_t total_pages;
	uint32_t page_size;
};

/* Shape of a fixture built by rfx_build(). */
struct rfx_shape {
	uint64_t total_pages; /* page-index space, split in two regions */
	uint64_t written;     /* pages 0..written-1 are written (present) */
	uint64_t stale_first; /* then [stale_first, +stale_count) become stale */
	uint64_t stale_count;
	uint64_t staged_first; /* and [staged_first, +staged_count) are staged */
	uint64_t staged_count; /* (recorded, committed, bytes copied in) */
	enum vswap_durability durability;
};

/* Make a private directory for a store named "store.swap" in it. */
int rfx_init(struct rfx_store *fx, const char *tag);
/* Build and close a store of @shape.  Returns 0 or a negative errno. */
int rfx_build(struct rfx_store *fx, const struct rfx_shape *shape);
/* Open the fixture's store (read-only or writable) with a quiet log. */
int rfx_open(const struct rfx_store *fx, bool read_only, struct vswap_store **out);
/* Remove the directory and everything in it. */
void rfx_cleanup(struct rfx_store *fx);
/* cmocka setup and teardown: *@state becomes a heap fixture built with
 * @shape in a directory tagged @tag (-1 if that fails); teardown removes it. */
int rfx_setup(void **state, const char *tag, const struct rfx_shape *shape);
int rfx_teardown(void **state);
/* Remove the fixture's store and build a fresh one of @shape. */
int rfx_rebuild(struct rfx_store *fx, const char *tag, const struct rfx_shape *shape);

/* The deterministic bytes of @page (never all zero). */
void rfx_pattern(uint64_t page, uint32_t page_size, void *buf);

/* Byte offset of @slot in a swap file. */
static inline uint64_t rfx_slot_offset(const struct rfx_store *fx, uint64_t slot)
{
	return (slot + 1) * (uint64_t)fx->page_size;
}
/* Flip bit @bit of the byte at @off of @path.  0 or -errno. */
int rfx_flip_bit(const char *path, uint64_t off, unsigned bit);
/* Write @len bytes of @byte at @off of @path. */
int rfx_fill(const char *path, uint64_t off, int byte, size_t len);

/* XXH3 of a file's size, allocation map and bytes; 0 if it is missing. */
uint64_t rfx_hash_file(const char *path);
/* Hash of every file of the store except LMDB's lock file. */
uint64_t rfx_hash_store(const struct rfx_store *fx);

/* Run $VSWAP_BUILD_DIR/@tool with @args (NULL-terminated, without argv[0]);
 * stdout goes to *out (malloc'ed, may be NULL), stderr to *err.  Returns the
 * exit code, 128+signal if killed, or -1. */
int rfx_run_tool(const char *tool, const char *const *args, char **out, char **err);
/* Run @tool like rfx_run_tool(), as @uid when non-zero, stdout and stderr
 * both into *out (may be NULL); a child still running after @timeout_s
 * seconds dies of SIGALRM (128 + 14), so a hang fails the test. */
int rfx_run_tool_as(uid_t uid, unsigned timeout_s, const char *tool, const char *const *args,
		    char **out);
/* 0 when $VSWAP_BUILD_DIR/@tool is built; otherwise says so on stderr and
 * returns 77, ctest's skip: a build without the tools (-DVSWAP_TOOLS=OFF,
 * as the TSan build is) cannot run a suite that runs them. */
int rfx_require_tool(const char *tool);
/* vswap-fsck @flag [--json] PATH; returns the exit code. */
int rfx_fsck(const struct rfx_store *fx, const char *flag, char **out, char **err);
/* The same with --orphans: the exit code is the orphan staging files'. */
int rfx_fsck_orphans(const struct rfx_store *fx, const char *flag, char **out, char **err);

/* Fork a child that opens the store writable and waits; it holds the lock
 * until rfx_holder_stop().  Returns the child's PID or -1. */
pid_t rfx_holder_start(const struct rfx_store *fx);
void rfx_holder_stop(pid_t pid);

/* ---- fsck results ----------------------------------------------------------- */

/* Whether @f reported a problem of @kind about @page and @slot (UINT64_MAX:
 * any) whose repaired flag is @repaired (-1: either). */
bool rfx_has_problem(const struct vswap_fsck *f, enum vswap_problem_kind kind, uint64_t page,
		     uint64_t slot, int repaired);
/* Whether @f lists @page lost. */
bool rfx_is_lost(const struct vswap_fsck *f, uint64_t page);
/* Every problem of @f on stderr, one a line (a failing test's evidence). */
void rfx_print_problems(const struct vswap_fsck *f);
/* The slot @page's record names, through a read-only open.  0 or -errno. */
int rfx_slot_of(const struct rfx_store *fx, uint64_t page, uint64_t *slot);

/* ---- the crash harness --------------------------------------------------- */

struct rfx_crash_result {
	int repair_exit;   /* vswap-fsck -y: must be 0 or 1 */
	int check_exit;	   /* the second run, vswap-fsck -n: must be 0 */
	uint64_t verified; /* present and stale pages read and verified */
	uint64_t lost;	   /* pages recorded lost */
	uint64_t bad;	   /* pages that failed to verify after the repair */
	char why[256];	   /* what failed, when the result is not 0 */
};

/*
 * After a simulated crash of a store at @path (both vswap-fsck runs are made
 * for the store and again with --orphans): run vswap-fsck -y (exit 0 or
 * 1), then vswap-fsck -n (exit 0), then open the store read-only and read
 * every present and stale page through the store, which verifies each
 * checksum.  Returns 0 when every invariant held, -1 otherwise (r->why).
 * @index_path may be NULL (the default PATH.idx).
 */
int rfx_check_after_crash(const char *path, const char *index_path, struct rfx_crash_result *r);

#endif /* VSWAP_TESTS_RECOVERY_FIXTURE_H */

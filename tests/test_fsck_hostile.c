/* SPDX-License-Identifier: MIT */
/*
 * Hostile store files against vswap-fsck and vswap-dump, which must give a
 * clear error naming the file (vswap-fsck: exit 8, bad_index for a bad
 * index) and never die of a signal, hang, or write where they should not:
 *   - the index truncated to 8 KiB, 12 KiB or half its size (LMDB mapped
 *     past the end of the file: SIGBUS, in the tools and in any process
 *     calling vswap_store_open());
 *   - a FIFO in place of the staging file;
 *   - a full file system and the index's lock file missing (LMDB created it
 *     sparse and its writes through the mapping found no room: SIGBUS);
 *   - an index whose staging path points outside the staging directory
 *     (-y created a file there, in / for example);
 *   - a run that cannot open its store said "0 problems" beside exit 8:
 *     its summary (and --json's open_error) now says why nothing was
 *     audited;
 *   - -n and vswap-dump write no byte of any file, the lock file included
 *     (they wrote and recreated it), and work with read access only: run as
 *     an unprivileged user who owns the files read-only (mode 0400) in a
 *     directory it cannot write, every byte and mtime is checked after;
 *     and as a user who owns none of them and may only read them (mode
 *     0644: the staging file used to be refused, "not a private regular
 *     file of ours", fsck exit 8, vswap-dump exit 1), while a writable open
 *     still refuses a staging file that is not ours and private.
 * The tools run as child processes under a time limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <lmdb.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>
#include <cmocka.h>

#include <vswap/recovery.h>

#include "tests/helpers/recovery_fixture.h"

#define TOOL_TIMEOUT_S 20
#define NOBODY 65534

static const struct rfx_shape shape = {
    .total_pages = 1024,
    .written = 512,
    .staged_first = 700,
    .staged_count = 20,
};

static int setup(void **state)
{
	return rfx_setup(state, "fsckhostile", &shape);
}

static int teardown(void **state)
{
	return rfx_teardown(state);
}

/* Run @tool with @args, as @uid when non-zero, killed by SIGALRM after
 * TOOL_TIMEOUT_S (the alarm survives exec).  Returns the exit code or 128 +
 * signal; *out gets stdout and stderr (may be NULL). */
static int run_tool_as(uid_t uid, const char *tool, const char *const *args, char **out)
{
	return rfx_run_tool_as(uid, TOOL_TIMEOUT_S, tool, args, out);
}

static int fsck_as(uid_t uid, const struct rfx_store *fx, const char *flag, char **out)
{
	const char *args[] = {flag, "--no-progress", fx->path, NULL};

	return run_tool_as(uid, "vswap-fsck", args, out);
}

static int dump_as(uid_t uid, const struct rfx_store *fx, char **out)
{
	const char *args[] = {fx->path, NULL};

	return run_tool_as(uid, "vswap-dump", args, out);
}

static void staging_path(const struct rfx_store *fx, char *buf, size_t len)
{
	struct vswap_store *s;

	assert_int_equal(rfx_open(fx, true, &s), 0);
	snprintf(buf, len, "%s", vswap_store_staging_path(s));
	vswap_store_close(s);
}

static void quiet(void *ctx, enum vswap_log_level l, const char *msg)
{
	(void)ctx;
	(void)l;
	(void)msg;
}

/* vswap_store_open() in a child: its error, or 128 + the signal it died of. */
static int open_in_child(const struct rfx_store *fx, bool read_only)
{
	int status = 0;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct vswap_store_opts o = {.read_only = read_only, .log = quiet};
		struct vswap_store *s;
		int ret;

		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		alarm(TOOL_TIMEOUT_S);
		ret = vswap_store_open(fx->path, &o, &s);
		if (!ret)
			vswap_store_close(s);
		_exit(ret ? 1 : 0);
	}
	waitpid(pid, &status, 0);
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* ---- a store that cannot be opened -------------------------------------------- */

/* The summary of a run that could not open its store says so, and why: its
 * counts of 0 used to read as a clean audit ("0 problems") beside exit 8. */
static void expect_not_audited(const char *out)
{
	if (!strstr(out, "the store could not be opened") || strstr(out, " 0 problems"))
		fprintf(stderr, "summary of a failed open:\n%s\n", out);
	assert_non_null(strstr(out, "the store could not be opened"));
	assert_non_null(strstr(out, "nothing was audited"));
	assert_null(strstr(out, " 0 problems"));
}

/* The swap file gone: the summary, the JSON and the library name the file
 * and what is wrong; a run that opened its store reports no such reason. */
static void test_failed_open_says_why(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_fsck_opts o = {.mode = VSWAP_FSCK_CHECK, .log = quiet};
	const char *json[] = {"-n", "--json", fx->path, NULL};
	struct vswap_fsck *f;
	char *out = NULL;
	char want[PATH_MAX + 64];

	assert_int_equal(vswap_fsck_new(fx->path, &o, &f), 0);
	assert_int_equal(vswap_fsck_run(f), 0);
	assert_null(vswap_fsck_open_failure(f));
	vswap_fsck_free(f);

	assert_int_equal(unlink(fx->path), 0);
	assert_int_equal(fsck_as(0, fx, "-n", &out), 8);
	expect_not_audited(out);
	assert_non_null(strstr(out, strerror(ENOENT)));
	free(out);
	assert_int_equal(run_tool_as(0, "vswap-fsck", json, &out), 8);
	snprintf(want, sizeof(want), "\"open_error\":\"%s: %s\"", fx->path, strerror(ENOENT));
	if (!strstr(out, want))
		fprintf(stderr, "want %s in:\n%s\n", want, out);
	assert_non_null(strstr(out, want));
	free(out);
	assert_int_equal(vswap_fsck_new(fx->path, &o, &f), 0);
	assert_int_equal(vswap_fsck_run(f), -ENOENT);
	assert_int_equal(vswap_fsck_exit_code(f), VSWAP_FSCK_EXIT_OPERATIONAL);
	assert_non_null(vswap_fsck_open_failure(f));
	assert_non_null(strstr(vswap_fsck_open_failure(f), fx->path));
	vswap_fsck_free(f);
}

/* ---- a truncated index ---------------------------------------------------- */

static void truncated_index(struct rfx_store *fx, off_t size)
{
	struct stat st;
	char *out = NULL;
	int code;

	assert_int_equal(stat(fx->index, &st), 0);
	if (size < 0)
		size = st.st_size / 2;
	assert_true(size < st.st_size);
	assert_int_equal(truncate(fx->index, size), 0);
	for (int m = 0; m < 3; m++) {
		code = fsck_as(0, fx, m == 0 ? "-n" : m == 1 ? "-p" : "-y", &out);
		if (code != 8)
			fprintf(stderr, "fsck exited %d:\n%s\n", code, out);
		assert_int_equal(code, 8);
		assert_non_null(strstr(out, "bad_index"));
		assert_non_null(strstr(out, fx->index));
		expect_not_audited(out);
		free(out);
	}
	code = dump_as(0, fx, &out);
	if (code != 1)
		fprintf(stderr, "vswap-dump exited %d:\n%s\n", code, out);
	assert_int_equal(code, 1);
	assert_non_null(strstr(out, fx->index));
	free(out);
	assert_int_equal(open_in_child(fx, true), 1);
	assert_int_equal(open_in_child(fx, false), 1);
}

static void test_index_truncated_8k(void **state)
{
	truncated_index(*state, 8192);
}

static void test_index_truncated_12k(void **state)
{
	truncated_index(*state, 12288);
}

static void test_index_truncated_half(void **state)
{
	truncated_index(*state, -1);
}

/* ---- a full file system without the lock file --------------------------------- */

static const struct rfx_shape small_shape = {
    .total_pages = 256,
    .written = 128,
    .staged_first = 200,
    .staged_count = 20,
};

/* The store rebuilt on a 4 MiB tmpfs of its own, mounted on its directory
 * (root only): false when no such file system can be had. */
static bool store_on_small_fs(struct rfx_store *fx)
{
	if (geteuid() != 0)
		return false;
	rfx_cleanup(fx);
	assert_int_equal(rfx_init(fx, "fsckfull"), 0);
	if (mount("vswaptest", fx->dir, "tmpfs", 0, "size=4m,mode=0700") != 0)
		return false;
	assert_int_equal(rfx_build(fx, &small_shape), 0);
	return true;
}

static int teardown_small_fs(void **state)
{
	struct rfx_store *fx = *state;

	umount2(fx->dir, MNT_DETACH); /* not mounted (skipped): nothing to do */
	return rfx_teardown(state);
}

/* Write a file in @dir until the file system is full. */
static void fill_fs(const char *dir, char *filler, size_t len)
{
	static const char chunk[4096];
	int fd;

	snprintf(filler, len, "%s/filler", dir);
	fd = open(filler, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	while (write(fd, chunk, sizeof(chunk)) == (ssize_t)sizeof(chunk))
		;
	assert_int_equal(errno, ENOSPC);
	close(fd);
}

/*
 * A full file system, the index's lock file gone: LMDB created it sparse
 * and its first write through the mapping found no room (SIGBUS in fsck -y
 * and in any writable vswap_store_open()).  Now a writable open allocates
 * the lock file's blocks before LMDB maps it and fails naming it; -n and
 * vswap-dump need no lock file at all.
 *
 * The failed open leaves an empty lock file behind.  That is the store's
 * own file (made by vswap, with the name LMDB gives it, removed by
 * vswap_store_destroy()), what LMDB itself would have left, and harmless:
 * a read-only open never uses it, and the next writable open with room
 * allocates it and uses it (checked below).  Removing it again would mean
 * unlinking a lock file another opener may hold open.
 */
static void test_full_fs_without_lock_file(void **state)
{
	struct rfx_store *fx = *state;
	char lock[PATH_MAX + 16], filler[PATH_MAX], *out = NULL;
	struct stat st;
	int code;

	if (!store_on_small_fs(fx))
		skip();
	snprintf(lock, sizeof(lock), "%s-lock", fx->index);
	assert_int_equal(unlink(lock), 0); /* first: its blocks would make room */
	fill_fs(fx->dir, filler, sizeof(filler));
	for (int m = 0; m < 2; m++) {
		code = fsck_as(0, fx, m == 0 ? "-y" : "-p", &out);
		if (code != 8 || !strstr(out, "no room for the index lock file"))
			fprintf(stderr, "fsck %s exited %d:\n%s\n", m == 0 ? "-y" : "-p", code,
				out);
		assert_int_equal(code, 8);
		assert_non_null(strstr(out, lock));
		assert_non_null(strstr(out, "no room for the index lock file"));
		assert_non_null(strstr(out, strerror(ENOSPC)));
		free(out);
	}
	code = fsck_as(0, fx, "-n", &out);
	if (code != 0)
		fprintf(stderr, "fsck -n exited %d:\n%s\n", code, out);
	assert_int_equal(code, 0);
	free(out);
	code = dump_as(0, fx, &out);
	if (code != 0)
		fprintf(stderr, "vswap-dump exited %d:\n%s\n", code, out);
	assert_int_equal(code, 0);
	free(out);
	assert_int_equal(open_in_child(fx, false), 1);
	assert_int_equal(open_in_child(fx, true), 0);
	/* The empty lock file left behind, reused once there is room. */
	assert_int_equal(lstat(lock, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_blocks, 0);
	assert_int_equal(unlink(filler), 0);
	assert_int_equal(open_in_child(fx, false), 0);
	assert_int_equal(lstat(lock, &st), 0);
	assert_true(st.st_blocks > 0);
	assert_int_equal(fsck_as(0, fx, "-y", NULL), 0);
	assert_int_equal(fsck_as(0, fx, "-n", NULL), 0);
}

/* ---- a FIFO as the staging file ---------------------------------------------- */

static void test_fifo_staging_file(void **state)
{
	struct rfx_store *fx = *state;
	char staging[PATH_MAX], *out = NULL;
	int code;

	staging_path(fx, staging, sizeof(staging));
	assert_int_equal(unlink(staging), 0);
	assert_int_equal(mkfifo(staging, 0600), 0);
	for (int m = 0; m < 3; m++) {
		code = fsck_as(0, fx, m == 0 ? "-n" : m == 1 ? "-p" : "-y", &out);
		if (code != 8)
			fprintf(stderr, "fsck exited %d:\n%s\n", code, out);
		assert_int_equal(code, 8);
		assert_non_null(strstr(out, staging));
		free(out);
	}
	code = dump_as(0, fx, &out);
	assert_true(code < 128);
	free(out);
	assert_int_equal(open_in_child(fx, false), 1);
}

/* ---- the staging path steering a repair ----------------------------------- */

static void set_staging_path(const struct rfx_store *fx, const char *path)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
	MDB_val k = {.mv_size = 12, .mv_data = "staging_path"};
	MDB_val v = {.mv_size = strlen(path), .mv_data = (void *)path};

	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 8);
	assert_int_equal(mdb_env_open(env, fx->index, MDB_NOSUBDIR, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* Point the index's staging path at @dir (same file name), run every mode,
 * and check that nothing was created there. */
static void steer_to(struct rfx_store *fx, const char *dir)
{
	char staging[PATH_MAX], target[PATH_MAX + 64];
	int code;

	staging_path(fx, staging, sizeof(staging));
	snprintf(target, sizeof(target), "%s%s", strcmp(dir, "/") ? dir : "",
		 strrchr(staging, '/'));
	assert_int_equal(unlink(staging), 0); /* a missing file is what -y would create */
	set_staging_path(fx, target);
	for (int m = 0; m < 3; m++) {
		code = fsck_as(0, fx, m == 0 ? "-n" : m == 1 ? "-p" : "-y", NULL);
		assert_true(code == 4 || code == 8);
		assert_int_equal(access(target, F_OK), -1);
	}
	assert_true(dump_as(0, fx, NULL) < 128);
	assert_int_equal(open_in_child(fx, false), 1);
	assert_int_equal(access(target, F_OK), -1);
}

static void test_staging_path_outside_directory(void **state)
{
	struct rfx_store *fx = *state;
	char other[] = "/var/tmp/vswap-steer-XXXXXX";

	assert_non_null(mkdtemp(other));
	steer_to(fx, other);
	rmdir(other);
}

/* "//vswap-<uuid>.staging" passed the old check (absolute, named after the
 * UUID) and -y created it in /. */
static void test_staging_path_in_root(void **state)
{
	steer_to(*state, "//");
}

/* ---- read-only tools write nothing -------------------------------------------- */

struct file_state {
	char path[PATH_MAX + 16];
	bool exists;
	uint64_t hash;
	struct timespec mtime;
};

static void snap(struct file_state *f)
{
	struct stat st;

	f->exists = stat(f->path, &st) == 0;
	f->hash = f->exists ? rfx_hash_file(f->path) : 0;
	f->mtime = f->exists ? st.st_mtim : (struct timespec){0};
}

static void expect_unchanged(const struct file_state *before, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct file_state now = before[i];

		snap(&now);
		if (now.exists != before[i].exists || now.hash != before[i].hash ||
		    now.mtime.tv_sec != before[i].mtime.tv_sec ||
		    now.mtime.tv_nsec != before[i].mtime.tv_nsec)
			fail_msg("%s changed (exists %d -> %d)", before[i].path, before[i].exists,
				 now.exists);
	}
}

/* Give the store's files to @uid, read-only, in a directory it may not
 * write; returns the number of files recorded in @fs. */
static size_t hand_over_read_only(const struct rfx_store *fx, uid_t uid, struct file_state *fs,
				  bool with_lock)
{
	char staging[PATH_MAX];
	size_t n = 0;

	staging_path(fx, staging, sizeof(staging));
	snprintf(fs[n++].path, sizeof(fs[0].path), "%s", fx->path);
	snprintf(fs[n++].path, sizeof(fs[0].path), "%s", fx->index);
	snprintf(fs[n++].path, sizeof(fs[0].path), "%s-lock", fx->index);
	snprintf(fs[n++].path, sizeof(fs[0].path), "%s", staging);
	if (!with_lock)
		unlink(fs[2].path);
	for (size_t i = 0; i < n; i++) {
		if (access(fs[i].path, F_OK) != 0)
			continue;
		assert_int_equal(chown(fs[i].path, uid, uid), 0);
		assert_int_equal(chmod(fs[i].path, 0400), 0);
	}
	assert_int_equal(chmod(fx->dir, 0755), 0);
	for (size_t i = 0; i < n; i++)
		snap(&fs[i]);
	return n;
}

static void read_only_user(struct rfx_store *fx, bool with_lock)
{
	struct file_state fs[4];
	size_t n;
	char *out = NULL;
	int code;

	if (geteuid() != 0) {
		/* As the files' owner: the same checks, with read access only. */
		n = hand_over_read_only(fx, geteuid(), fs, with_lock);
	} else {
		n = hand_over_read_only(fx, NOBODY, fs, with_lock);
	}
	code = fsck_as(geteuid() == 0 ? NOBODY : 0, fx, "-n", &out);
	if (code != 0)
		fprintf(stderr, "fsck -n exited %d:\n%s\n", code, out);
	assert_int_equal(code, 0);
	free(out);
	expect_unchanged(fs, n);
	code = dump_as(geteuid() == 0 ? NOBODY : 0, fx, &out);
	if (code != 0)
		fprintf(stderr, "vswap-dump exited %d:\n%s\n", code, out);
	assert_int_equal(code, 0);
	free(out);
	expect_unchanged(fs, n);
}

static void test_read_only_user_with_lock_file(void **state)
{
	read_only_user(*state, true);
}

/* Root's store, every file readable by all (0644): a user who owns none of
 * them audits it and dumps it, writing nothing. */
static void test_reader_who_owns_nothing(void **state)
{
	struct rfx_store *fx = *state;
	struct file_state fs[4];
	size_t n;
	char *out = NULL;
	int code;

	if (geteuid() != 0)
		skip(); /* needs a second user */
	n = hand_over_read_only(fx, 0, fs, true);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(chmod(fs[i].path, 0644), 0);
	for (size_t i = 0; i < n; i++)
		snap(&fs[i]);
	code = fsck_as(NOBODY, fx, "-n", &out);
	if (code != 0)
		fprintf(stderr, "fsck -n exited %d:\n%s\n", code, out);
	assert_int_equal(code, 0);
	assert_null(strstr(out, "refusing"));
	free(out);
	code = dump_as(NOBODY, fx, &out);
	if (code != 0)
		fprintf(stderr, "vswap-dump exited %d:\n%s\n", code, out);
	assert_int_equal(code, 0);
	free(out);
	expect_unchanged(fs, n);
}

/* The store's messages, appended to @ctx (1 KiB). */
static void keep_log(void *ctx, enum vswap_log_level l, const char *msg)
{
	size_t n = strlen(ctx);

	(void)l;
	snprintf((char *)ctx + n, 1024 - n, "%s\n", msg);
}

/* A writable open keeps refusing a staging file that is not ours and
 * private (a file planted in the shared directory would read or change the
 * guest's staged memory); a read-only open takes it, and tells its owner
 * that a writable open would not. */
static void test_writable_open_wants_a_private_staging_file(void **state)
{
	struct rfx_store *fx = *state;
	char staging[PATH_MAX], said[1024] = "", *out = NULL;

	staging_path(fx, staging, sizeof(staging));
	assert_int_equal(chmod(staging, 0640), 0);
	assert_int_equal(open_in_child(fx, false), 1);
	assert_int_equal(open_in_child(fx, true), 0);
	assert_int_equal(fsck_as(0, fx, "-y", &out), 8);
	assert_non_null(strstr(out, "not a private regular file of ours"));
	free(out);
	struct vswap_store_opts o = {
	    .read_only = true, .log = keep_log, .log_ctx = said, .log_level = VSWAP_LOG_WARN};
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(fx->path, &o, &s), 0);
	vswap_store_close(s);
	if (!strstr(said, "a writable open refuses it"))
		fprintf(stderr, "the read-only open said:\n%s", said);
	assert_non_null(strstr(said, "a writable open refuses it"));
	assert_int_equal(fsck_as(0, fx, "-n", NULL), 0);
	if (geteuid() == 0) {
		assert_int_equal(chmod(staging, 0600), 0);
		assert_int_equal(chown(staging, NOBODY, NOBODY), 0);
		assert_int_equal(open_in_child(fx, false), 1);
		assert_int_equal(open_in_child(fx, true), 0);
		assert_int_equal(chown(staging, 0, 0), 0);
	}
	assert_int_equal(chmod(staging, 0600), 0);
	assert_int_equal(open_in_child(fx, false), 0);
}

static void test_read_only_user_without_lock_file(void **state)
{
	read_only_user(*state, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_failed_open_says_why, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_index_truncated_8k, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_index_truncated_12k, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_index_truncated_half, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_full_fs_without_lock_file, setup,
					    teardown_small_fs),
	    cmocka_unit_test_setup_teardown(test_fifo_staging_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_path_outside_directory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_path_in_root, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_only_user_with_lock_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_only_user_without_lock_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reader_who_owns_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writable_open_wants_a_private_staging_file, setup,
					    teardown),
	};

	if (rfx_require_tool("vswap-fsck"))
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

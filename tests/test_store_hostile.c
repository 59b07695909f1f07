/* SPDX-License-Identifier: MIT */
/*
 * store/ against damaged, hostile and racing files: a truncated or empty or
 * foreign index gives a clean error (never SIGBUS), non-regular files are
 * refused without blocking, the index cannot steer the staging file
 * elsewhere, a read-only open writes no byte, creation over existing files
 * touches nothing and of concurrent creates exactly one wins, destroy
 * removes only the store's own files, and index records that fail their
 * checks (a moved key, a flipped state) or staged copies that fail theirs
 * are never believed.  Each was a bug of format 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/raw_index.h"
#include "tests/helpers/store_fixture.h"

#define TOTAL 2048
#define WRITTEN 1024

struct ctx {
	struct store_fixture f;
	char idx[400], lock[400];
	uint8_t *buf;
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(fixture_init(&c->f), 0);
	snprintf(c->idx, sizeof(c->idx), "%s.idx", c->f.path);
	snprintf(c->lock, sizeof(c->lock), "%s.idx-lock", c->f.path);
	c->buf = aligned_alloc(c->f.page_size, 64 * (size_t)c->f.page_size);
	assert_non_null(c->buf);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	fixture_cleanup(&c->f);
	free(c->buf);
	free(c);
	return 0;
}

/* A closed store: WRITTEN pages present, pages 1500..1509 staged. */
static void make_store(struct ctx *c)
{
	struct vswap_store *s;
	uint64_t regions[] = {TOTAL};
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &s), 0);
	assert_int_equal(vswap_store_set_regions(s, regions, 1), 0);
	for (uint64_t p = 0; p < WRITTEN; p += 64) {
		for (unsigned i = 0; i < 64; i++)
			fixture_pattern(c->buf + (size_t)i * c->f.page_size, c->f.page_size, p + i,
					1);
		assert_int_equal(vswap_store_write(s, p, 64, c->buf), 0);
	}
	assert_int_equal(vswap_store_stage_mark(s, 1500, 10), 0);
	assert_int_equal(vswap_store_commit(s), 0);
	for (uint64_t p = 1500; p < 1510; p++) {
		fixture_pattern(c->buf, c->f.page_size, p, 2);
		assert_int_equal(pwrite(vswap_store_staging_fd(s), c->buf, c->f.page_size,
					(off_t)p * c->f.page_size),
				 c->f.page_size);
	}
	assert_int_equal(vswap_store_stage_seal(s, 1500, 10), 0);
	assert_int_equal(vswap_store_close(s), 0);
}

/* Open in a child (a signal or a hang must not take the suite down):
 * returns the open's result, or 1000 + signal if the child died of one. */
static int open_in_child(struct ctx *c, bool read_only, bool tolerant)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(10); /* a hang ends in SIGALRM */
		struct vswap_store_opts o = c->f.opts;
		o.read_only = read_only;
		o.tolerant = tolerant;
		struct vswap_store *s;
		int ret = vswap_store_open(c->f.path, &o, &s);
		if (!ret)
			vswap_store_close(s);
		_exit(ret < 0 ? -ret : 0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		return 1000 + WTERMSIG(status);
	return -WEXITSTATUS(status);
}

static off_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* ---- the index before LMDB maps it ------------------------------------------- */

static void test_truncated_index_is_an_error_not_sigbus(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	off_t size = file_size(c->idx);
	assert_true(size > 16384);
	const off_t cuts[] = {8192, 12288, size / 2};
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(truncate(c->idx, cuts[i]), 0);
		assert_int_equal(open_in_child(c, true, true), -EUCLEAN);
		assert_int_equal(open_in_child(c, false, false), -EUCLEAN);
		assert_int_equal(open_in_child(c, false, true), -EUCLEAN);
	}
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, "bad index: truncated"));
	assert_non_null(strstr(c->f.last_log, c->idx));
}

static void test_empty_or_foreign_index_named(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	struct vswap_store *s;
	assert_int_equal(truncate(c->idx, 0), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, "bad index: empty file"));
	/* Not an LMDB file at all: a bad index, not a bad superblock. */
	int fd = open(c->idx, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	memset(c->buf, 'x', 3 * 4096);
	assert_int_equal(write(fd, c->buf, 3 * 4096), 3 * 4096);
	close(fd);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, "bad index: not an LMDB file"));
	assert_null(strstr(c->f.last_log, "superblock"));
	assert_non_null(strstr(vswap_strerror(-EUCLEAN), "damaged"));
}

/* ---- non-regular files -------------------------------------------------------------- */

static void replace_with_fifo(const char *path)
{
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
}

static void test_fifos_refused_without_blocking(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	char staging[512], saved[512];
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(s));
	assert_int_equal(vswap_store_close(s), 0);
	const char *paths[] = {c->f.path, c->idx, staging, c->lock};
	for (unsigned i = 0; i < 4; i++) {
		snprintf(saved, sizeof(saved), "%s.saved", paths[i]);
		assert_int_equal(rename(paths[i], saved), 0);
		replace_with_fifo(paths[i]);
		/* The lock file is used by writable opens only. */
		if (i < 3)
			assert_int_equal(open_in_child(c, true, true), -EINVAL);
		assert_int_equal(open_in_child(c, false, false), -EINVAL);
		assert_int_equal(unlink(paths[i]), 0);
		assert_int_equal(rename(saved, paths[i]), 0);
	}
	assert_int_equal(open_in_child(c, false, false), 0);
}

/* ---- the staging path ------------------------------------------------------------------ */

static void test_staging_path_cannot_steer(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	struct vswap_store *s;
	struct vswap_store_info info;
	char uuid[37], elsewhere[512];
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	vswap_store_info(s, &info);
	assert_int_equal(vswap_store_close(s), 0);
	vswap_uuid_format(info.uuid, uuid);
	/* The store's own name, a valid record, another directory. */
	snprintf(elsewhere, sizeof(elsewhere), "/tmp/vswap-%s.staging", uuid);
	unlink(elsewhere);
	struct raw_index ri;
	assert_int_equal(raw_index_open(&ri, c->idx), 0);
	assert_int_equal(raw_meta_put(&ri, "staging_path", elsewhere, strlen(elsewhere)), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, elsewhere));
	assert_non_null(strstr(c->f.last_log, "staging directory"));
	c->f.opts.tolerant = true;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_int_equal(access(elsewhere, F_OK), -1);
	/* A relative path or a ".." is refused even without a directory. */
	c->f.opts.staging_dir = NULL;
	snprintf(elsewhere, sizeof(elsewhere), "%s/../vswap-%s.staging", c->f.dir, uuid);
	assert_int_equal(raw_index_open(&ri, c->idx), 0);
	assert_int_equal(raw_meta_put(&ri, "staging_path", elsewhere, strlen(elsewhere)), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
}

/* ---- read-only opens -------------------------------------------------------------------- */

static uint64_t hash_file(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	uint64_t h = 1469598103934665603ull;
	uint8_t b[4096];
	ssize_t k;
	while ((k = read(fd, b, sizeof(b))) > 0)
		for (ssize_t i = 0; i < k; i++)
			h = (h ^ b[i]) * 1099511628211ull;
	close(fd);
	return h;
}

static int count_record(void *ctx, const struct vswap_page_record *r)
{
	(*(uint64_t *)ctx) += !r->corrupt;
	return 0;
}

static void test_read_only_writes_nothing(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	assert_int_equal(unlink(c->lock), 0);
	uint64_t before[2] = {hash_file(c->f.path), hash_file(c->idx)};
	struct stat st0;
	assert_int_equal(stat(c->idx, &st0), 0);
	struct vswap_store_opts o = c->f.opts;
	o.read_only = true;
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(c->f.path, &o, &s), 0);
	uint64_t n = 0;
	assert_int_equal(vswap_store_foreach_page(s, count_record, &n), 0);
	assert_int_equal(n, WRITTEN);
	assert_int_equal(vswap_store_read_page(s, 5, c->buf), 0);
	assert_int_equal(vswap_store_close(s), 0);
	/* No lock file created, no byte of the store changed. */
	assert_int_equal(access(c->lock, F_OK), -1);
	assert_true(hash_file(c->f.path) == before[0]);
	assert_true(hash_file(c->idx) == before[1]);
	struct stat st1;
	assert_int_equal(stat(c->idx, &st1), 0);
	assert_int_equal(st1.st_mtim.tv_nsec, st0.st_mtim.tv_nsec);
	assert_int_equal(st1.st_mtim.tv_sec, st0.st_mtim.tv_sec);
}

/* ---- creation and removal ------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void expect_text(const char *path, const char *text)
{
	char b[64] = "";
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(read(fd, b, sizeof(b) - 1) >= 0);
	close(fd);
	assert_string_equal(b, text);
}

static unsigned staging_files(const struct ctx *c)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls %s | grep -c '^vswap-.*\\.staging$'", c->f.dir);
	FILE *p = popen(cmd, "r");
	unsigned n = 0;
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%u", &n), 1);
	pclose(p);
	return n;
}

static void test_create_over_existing_touches_nothing(void **state)
{
	struct ctx *c = *state;
	struct vswap_store *s = NULL;
	/* The swap file's name taken by a plain file. */
	write_file(c->f.path, "mine");
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &s), -EEXIST);
	expect_text(c->f.path, "mine");
	assert_int_equal(access(c->idx, F_OK), -1);
	assert_int_equal(unlink(c->f.path), 0);
	/* The index's name taken by a file that is not an index. */
	write_file(c->idx, "also mine");
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &s), -EEXIST);
	expect_text(c->idx, "also mine");
	assert_int_equal(access(c->f.path, F_OK), -1);
	assert_int_equal(access(c->lock, F_OK), -1);
	assert_int_equal(staging_files(c), 0);
	assert_int_equal(unlink(c->idx), 0);
	/* The lock file's name taken. */
	write_file(c->lock, "mine too");
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &s), -EEXIST);
	expect_text(c->lock, "mine too");
	assert_int_equal(access(c->idx, F_OK), -1);
	assert_int_equal(access(c->f.path, F_OK), -1);
	assert_int_equal(staging_files(c), 0);
	assert_int_equal(unlink(c->lock), 0);
	/* A store: every file of it stays, and it still opens. */
	make_store(c);
	uint64_t h = hash_file(c->idx);
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &s), -EEXIST);
	assert_true(hash_file(c->idx) == h);
	assert_int_equal(staging_files(c), 1);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	assert_int_equal(vswap_store_read_page(s, 7, c->buf), 0);
	assert_int_equal(vswap_store_close(s), 0);
}

static void test_concurrent_creates_one_wins(void **state)
{
	struct ctx *c = *state;
	enum { N = 6, ROUNDS = 5 };
	for (unsigned round = 0; round < ROUNDS; round++) {
		int go[2];
		pid_t kids[N];
		assert_int_equal(pipe(go), 0);
		for (unsigned i = 0; i < N; i++) {
			kids[i] = fork();
			assert_true(kids[i] >= 0);
			if (kids[i] == 0) {
				char b;
				close(go[1]);
				if (read(go[0], &b, 1) < 0)
					_exit(99);
				struct vswap_store *s;
				uint64_t regions[] = {64};
				int ret = vswap_store_create(c->f.path, &c->f.opts, &s);
				if (ret)
					_exit(ret == -EEXIST ? 1 : 98);
				ret = vswap_store_set_regions(s, regions, 1);
				fixture_pattern(c->buf, c->f.page_size, 3, round);
				ret = ret ? ret : vswap_store_write(s, 3, 1, c->buf);
				ret = ret ? ret : vswap_store_close(s);
				_exit(ret ? 97 : 0);
			}
		}
		close(go[0]);
		close(go[1]); /* all start */
		unsigned won = 0, lost = 0;
		for (unsigned i = 0; i < N; i++) {
			int status;
			assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
			assert_true(WIFEXITED(status));
			won += WEXITSTATUS(status) == 0;
			lost += WEXITSTATUS(status) == 1;
		}
		assert_int_equal(won, 1);
		assert_int_equal(lost, N - 1);
		/* Nothing of the winner's was removed by the losers. */
		struct vswap_store *s;
		assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
		uint8_t *want = c->buf + c->f.page_size;
		fixture_pattern(want, c->f.page_size, 3, round);
		assert_int_equal(vswap_store_read_page(s, 3, c->buf), 0);
		assert_memory_equal(c->buf, want, c->f.page_size);
		assert_int_equal(vswap_store_close(s), 0);
		assert_int_equal(staging_files(c), 1);
		assert_int_equal(vswap_store_destroy(c->f.path, &c->f.opts), 0);
		assert_int_equal(staging_files(c), 0);
	}
}

static void test_destroy_removes_only_the_stores_files(void **state)
{
	struct ctx *c = *state;
	/* Not a store: nothing removed. */
	write_file(c->f.path, "mine");
	write_file(c->idx, "mine");
	assert_int_equal(vswap_store_destroy(c->f.path, &c->f.opts), -EUCLEAN);
	expect_text(c->f.path, "mine");
	expect_text(c->idx, "mine");
	assert_int_equal(unlink(c->f.path), 0);
	assert_int_equal(unlink(c->idx), 0);
	/* A store whose index was replaced by someone's file: the swap
	 * file goes, the file that is not its index stays. */
	make_store(c);
	assert_int_equal(unlink(c->idx), 0);
	write_file(c->idx, "mine");
	assert_int_equal(vswap_store_destroy(c->f.path, &c->f.opts), -EUCLEAN);
	assert_int_equal(access(c->f.path, F_OK), -1);
	expect_text(c->idx, "mine");
}

/* ---- records that are not believed ------------------------------------------------------- */

struct faults {
	unsigned n;
	struct vswap_page_record r;
};

static int find_fault(void *ctx, const struct vswap_page_record *r)
{
	struct faults *f = ctx;
	if (r->corrupt) {
		f->n++;
		f->r = *r;
	}
	return 0;
}

static struct faults tolerant_walk(struct ctx *c)
{
	struct vswap_store_opts o = c->f.opts;
	o.read_only = true;
	o.tolerant = true;
	struct vswap_store *s;
	struct faults f = {0};
	assert_int_equal(vswap_store_open(c->f.path, &o, &s), 0);
	assert_int_equal(vswap_store_foreach_page(s, find_fault, &f), 0);
	assert_int_equal(vswap_store_close(s), 0);
	return f;
}

/* One flipped bit in a group key (13 -> 29): format 1 served group 13's
 * records as pages of group 29 and group 13's pages as zeros. */
static void test_moved_group_key_not_believed(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	struct raw_index ri;
	uint8_t val[2048];
	size_t len = sizeof(val);
	uint64_t k13 = __builtin_bswap64(13), k29 = __builtin_bswap64(29);
	assert_int_equal(raw_index_open(&ri, c->idx), 0);
	assert_int_equal(raw_value_get(&ri, ri.pages, &k13, 8, val, &len), 0);
	MDB_val k = {.mv_size = 8, .mv_data = &k13};
	assert_int_equal(mdb_del(ri.txn, ri.pages, &k, NULL), 0);
	assert_int_equal(raw_value_put(&ri, ri.pages, &k29, 8, val, len), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, "stored under another group's key"));
	struct faults f = tolerant_walk(c);
	assert_int_equal(f.n, 1);
	assert_int_equal(f.r.fault, VSWAP_RECORD_MISPLACED);
	assert_int_equal(f.r.key_group, 29);
	assert_int_equal(f.r.claimed_group, 13);
}

/* One byte of an entry's state (present -> stale): format 1 read the page
 * as stale, then as zeros. */
static void test_flipped_state_not_believed(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	struct raw_index ri;
	uint8_t val[2048];
	size_t len = sizeof(val);
	uint64_t k13 = __builtin_bswap64(13);
	assert_int_equal(raw_index_open(&ri, c->idx), 0);
	assert_int_equal(raw_value_get(&ri, ri.pages, &k13, 8, val, &len), 0);
	assert_int_equal(val[16 + 16 * 5 + 4], VSWAP_PAGE_PRESENT);
	val[16 + 16 * 5 + 4] = VSWAP_PAGE_STALE; /* the check is left as it was */
	assert_int_equal(raw_value_put(&ri, ri.pages, &k13, 8, val, len), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, "fails its checksum"));
	struct faults f = tolerant_walk(c);
	assert_int_equal(f.n, 1);
	assert_int_equal(f.r.fault, VSWAP_RECORD_CHECKSUM);
	assert_int_equal(f.r.page, 13 * 64);
	assert_int_equal(f.r.group_pages, 64);
}

static void test_damaged_regions_refused(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	struct raw_index ri;
	uint8_t val[64];
	size_t len = sizeof(val);
	assert_int_equal(raw_index_open(&ri, c->idx), 0);
	assert_int_equal(raw_value_get(&ri, ri.meta, "regions", 7, val, &len), 0);
	val[5] ^= 0x10; /* 2048 pages -> 6144 */
	assert_int_equal(raw_value_put(&ri, ri.meta, "regions", 7, val, len), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, "regions record fails its checksum"));
	struct vswap_store_opts o = c->f.opts;
	o.tolerant = true;
	o.read_only = true;
	assert_int_equal(vswap_store_open(c->f.path, &o, &s), 0);
	assert_true(vswap_store_damaged(s) & VSWAP_DAMAGED_REGIONS);
	assert_int_equal(vswap_store_close(s), 0);
	/* Gone while records exist: damage too, not a new store. */
	assert_int_equal(raw_index_open(&ri, c->idx), 0);
	MDB_val k = {.mv_size = 7, .mv_data = "regions"};
	assert_int_equal(mdb_del(ri.txn, ri.meta, &k, NULL), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, "regions record missing"));
}

/* ---- staged copies -------------------------------------------------------------------------- */

static void test_flipped_staged_byte_is_lost_not_served(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	char staging[512];
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(s));
	assert_int_equal(vswap_store_close(s), 0);
	assert_int_equal(fixture_flip_bit(staging, 1503 * (uint64_t)c->f.page_size + 77, 3), 0);
	/* A hole where a staged page was (punched): its bytes are missing. */
	int fd = open(staging, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   1505 * (off_t)c->f.page_size, c->f.page_size),
			 0);
	close(fd);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	for (uint64_t p = 1500; p < 1510; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_store_page(s, p, &pi), 0);
		bool bad = p == 1503 || p == 1505;
		assert_int_equal(pi.staged, !bad);
		assert_int_equal(pi.state, bad ? VSWAP_PAGE_LOST : VSWAP_PAGE_NONE);
	}
	assert_int_equal(vswap_store_read_page(s, 1503, c->buf), -EBADMSG);
	assert_int_equal(vswap_store_close(s), 0);
	/* And it stays lost: the loss was committed. */
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	struct vswap_page_info pi;
	assert_int_equal(vswap_store_page(s, 1503, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	assert_int_equal(vswap_store_close(s), 0);
}

/* The worst level the log reached, and its last message at that level. */
struct level_log {
	enum vswap_log_level worst;
	char msg[512];
	bool unless; /* a message said the guest may hold the pages */
};

static void level_log_fn(void *ctx, enum vswap_log_level level, const char *msg)
{
	struct level_log *l = ctx;
	l->unless |= strstr(msg, "unless guest memory still holds") != NULL;
	if (level <= l->worst) {
		l->worst = level;
		snprintf(l->msg, sizeof(l->msg), "%s", msg);
	}
}

/* A crash after the staging bits' commit, before the checksums': the copy
 * may be incomplete, so it is never trusted.  The guest may still hold
 * those pages (a handler resuming it gives them back), so the open says
 * so, as a warning, not that they are lost. */
static void test_staged_copy_without_checksum_not_trusted(void **state)
{
	struct ctx *c = *state;
	make_store(c);
	struct vswap_store *s;
	struct level_log log = {VSWAP_LOG_DEBUG, "", false};
	struct vswap_store_opts lo = c->f.opts;
	lo.log = level_log_fn;
	lo.log_ctx = &log;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	assert_int_equal(vswap_store_stage_mark(s, 1600, 2), 0);
	assert_int_equal(vswap_store_stage_mark(s, 10, 1), 0); /* present in the file too */
	assert_int_equal(vswap_store_commit(s), 0);
	fixture_pattern(c->buf, c->f.page_size, 1600, 3);
	assert_int_equal(
	    pwrite(vswap_store_staging_fd(s), c->buf, c->f.page_size, 1600 * (off_t)c->f.page_size),
	    c->f.page_size);
	assert_int_equal(vswap_store_close_unclean(s), 0);
	assert_int_equal(vswap_store_open(c->f.path, &lo, &s), 0);
	if (log.worst != VSWAP_LOG_WARN || !log.unless)
		fail_msg("open logged at %s: \"%s\"", vswap_log_level_name(log.worst), log.msg);
	struct vswap_page_info pi;
	for (uint64_t p = 1600; p < 1602; p++) {
		assert_int_equal(vswap_store_page(s, p, &pi), 0);
		assert_false(pi.staged);
		assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	}
	/* The swap file's current copy wins: only the staging mark goes. */
	assert_int_equal(vswap_store_page(s, 10, &pi), 0);
	assert_false(pi.staged);
	assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	/* The staged pages that were summed survive. */
	assert_int_equal(vswap_store_page(s, 1500, &pi), 0);
	assert_true(pi.staged);
	assert_int_equal(vswap_store_close(s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_truncated_index_is_an_error_not_sigbus, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_empty_or_foreign_index_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fifos_refused_without_blocking, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_path_cannot_steer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_only_writes_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_create_over_existing_touches_nothing, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_creates_one_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_removes_only_the_stores_files, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_moved_group_key_not_believed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flipped_state_not_believed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_regions_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flipped_staged_byte_is_lost_not_served, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_staged_copy_without_checksum_not_trusted, setup,
					    teardown),
	};
	return cmocka_run_group_tests_name("store_hostile", tests, NULL, NULL);
}

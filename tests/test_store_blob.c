/* SPDX-License-Identifier: MIT */
/*
 * Blobs (vswap_store_blob_*): named values committed with the pages, each
 * record checked against a checksum over its name and value seeded with the
 * store UUID.
 */
#include <errno.h>
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/store_fixture.h"

static struct vswap_store *open_store(struct store_fixture *f)
{
	struct vswap_store *s;

	assert_int_equal(vswap_store_open(f->path, &f->opts, &s), 0);
	return s;
}

static void expect_blob(struct vswap_store *s, const char *name, const char *want)
{
	void *data;
	size_t len;

	assert_int_equal(vswap_store_blob_get(s, name, &data, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(data, want, len);
	free(data);
}

static void expect_none(struct vswap_store *s, const char *name)
{
	void *data = NULL;
	size_t len;

	assert_int_equal(vswap_store_blob_get(s, name, &data, &len), -ENOENT);
	assert_null(data);
}

static void put_get_commit_reopen(void **state)
{
	(void)state;
	struct store_fixture f;
	struct vswap_store *s;

	assert_int_equal(fixture_init(&f), 0);
	assert_int_equal(vswap_store_create(f.path, &f.opts, &s), 0);
	expect_none(s, "vm.state");
	assert_int_equal(vswap_store_blob_put(s, "vm.state", "abc", 3), 0);
	assert_int_equal(vswap_store_blob_put(s, "vm.empty", NULL, 0), 0);
	expect_blob(s, "vm.state", "abc"); /* pending, seen at once */
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(vswap_store_blob_put(s, "vm.state", "defg", 4), 0);
	expect_blob(s, "vm.state", "defg");
	assert_int_equal(vswap_store_close(s), 0); /* the close commits it */
	s = open_store(&f);
	expect_blob(s, "vm.state", "defg");
	expect_blob(s, "vm.empty", "");
	assert_int_equal(vswap_store_blob_delete(s, "vm.state"), 0);
	expect_none(s, "vm.state");
	assert_int_equal(vswap_store_blob_delete(s, "vm.state"), -ENOENT);
	assert_int_equal(vswap_store_blob_delete(s, "vm.never"), -ENOENT);
	assert_int_equal(vswap_store_close(s), 0);
	s = open_store(&f);
	expect_none(s, "vm.state");
	expect_blob(s, "vm.empty", "");
	assert_int_equal(vswap_store_close(s), 0);
	fixture_cleanup(&f);
}

static void bad_names_and_sizes(void **state)
{
	(void)state;
	struct store_fixture f;
	struct vswap_store *s;
	char longname[VSWAP_BLOB_NAME_MAX + 2];

	assert_int_equal(fixture_init(&f), 0);
	assert_int_equal(vswap_store_create(f.path, &f.opts, &s), 0);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	assert_int_equal(vswap_store_blob_put(s, "", "x", 1), -EINVAL);
	assert_int_equal(vswap_store_blob_put(s, NULL, "x", 1), -EINVAL);
	assert_int_equal(vswap_store_blob_put(s, "a/b", "x", 1), -EINVAL);
	assert_int_equal(vswap_store_blob_put(s, longname, "x", 1), -EINVAL);
	longname[VSWAP_BLOB_NAME_MAX] = 0;
	assert_int_equal(vswap_store_blob_put(s, longname, "x", 1), 0);
	assert_int_equal(vswap_store_blob_put(s, "big", "x", (size_t)VSWAP_BLOB_MAX + 1), -EFBIG);
	assert_int_equal(vswap_store_close(s), 0);
	fixture_cleanup(&f);
}

/* A crash before the commit leaves the previous value. */
static void crash_before_commit_keeps_old(void **state)
{
	(void)state;
	struct store_fixture f;
	struct vswap_store *s;
	int status;

	assert_int_equal(fixture_init(&f), 0);
	assert_int_equal(vswap_store_create(f.path, &f.opts, &s), 0);
	assert_int_equal(vswap_store_blob_put(s, "vm.state", "old", 3), 0);
	assert_int_equal(vswap_store_close(s), 0);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct vswap_store *c;

		if (vswap_store_open(f.path, &f.opts, &c) ||
		    vswap_store_blob_put(c, "vm.state", "new", 3) ||
		    vswap_store_blob_put(c, "vm.other", "x", 1))
			_exit(1);
		_exit(0); /* killed before any commit */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	s = open_store(&f);
	expect_blob(s, "vm.state", "old");
	expect_none(s, "vm.other");
	assert_int_equal(vswap_store_close(s), 0);
	fixture_cleanup(&f);
}

/* Write @val as the raw LMDB record of blob @name (what a damaged or
 * hostile index holds). */
static void raw_put(const struct store_fixture *f, const char *name, const void *val, size_t len)
{
	char idx[400];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	snprintf(idx, sizeof(idx), "%s.idx", f->path);
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 8);
	assert_int_equal(mdb_env_open(env, idx, MDB_NOSUBDIR, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "blobs", 0, &dbi), 0);
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};
	MDB_val d = {.mv_size = len, .mv_data = (void *)val};

	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static int raw_get(const struct store_fixture *f, const char *name, void *buf, size_t cap)
{
	char idx[400];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val d;
	int n = -1;

	snprintf(idx, sizeof(idx), "%s.idx", f->path);
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 8);
	assert_int_equal(mdb_env_open(env, idx, MDB_NOSUBDIR | MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "blobs", 0, &dbi), 0);
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};

	if (mdb_get(txn, dbi, &k, &d) == 0 && d.mv_size <= cap) {
		memcpy(buf, d.mv_data, d.mv_size);
		n = (int)d.mv_size;
	}
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return n;
}

static int count_blob(void *ctx, const char *name, size_t len, int status)
{
	int *c = ctx;

	(void)len;
	if (status == -EBADMSG)
		c[1]++;
	else if (status == 0 && name[0])
		c[0]++;
	return 0;
}

/* Every bit of a record checked; a valid record under another name, or
 * from another store, fails too. */
static void damaged_moved_and_foreign_records_fail(void **state)
{
	(void)state;
	struct store_fixture f, g;
	struct vswap_store *s;
	uint8_t rec[256], other[256];
	int n, m;

	assert_int_equal(fixture_init(&f), 0);
	assert_int_equal(vswap_store_create(f.path, &f.opts, &s), 0);
	assert_int_equal(vswap_store_blob_put(s, "vm.state", "registers", 9), 0);
	assert_int_equal(vswap_store_close(s), 0);
	n = raw_get(&f, "vm.state", rec, sizeof(rec));
	assert_true(n > 9);
	for (int bit = 0; bit < n * 8; bit += 7) {
		uint8_t bad[256];
		void *data = NULL;
		size_t len;

		memcpy(bad, rec, (size_t)n);
		bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		raw_put(&f, "vm.state", bad, (size_t)n);
		s = open_store(&f);
		assert_int_equal(vswap_store_blob_get(s, "vm.state", &data, &len), -EBADMSG);
		assert_null(data);
		assert_int_equal(vswap_store_close(s), 0);
	}
	/* Truncated. */
	raw_put(&f, "vm.state", rec, 10);
	s = open_store(&f);
	{
		void *data = NULL;
		size_t len;

		assert_int_equal(vswap_store_blob_get(s, "vm.state", &data, &len), -EBADMSG);
	}
	assert_int_equal(vswap_store_close(s), 0);
	/* The valid record moved to another name. */
	raw_put(&f, "vm.state", rec, (size_t)n);
	raw_put(&f, "vm.moved", rec, (size_t)n);
	s = open_store(&f);
	expect_blob(s, "vm.state", "registers");
	{
		void *data = NULL;
		size_t len;
		int c[2] = {0, 0};

		assert_int_equal(vswap_store_blob_get(s, "vm.moved", &data, &len), -EBADMSG);
		assert_int_equal(vswap_store_foreach_blob(s, count_blob, c), 0);
		assert_int_equal(c[0], 1);
		assert_int_equal(c[1], 1);
	}
	assert_int_equal(vswap_store_close(s), 0);
	/* The same name and value from another store (another UUID). */
	assert_int_equal(fixture_init(&g), 0);
	assert_int_equal(vswap_store_create(g.path, &g.opts, &s), 0);
	assert_int_equal(vswap_store_blob_put(s, "vm.state", "registers", 9), 0);
	assert_int_equal(vswap_store_close(s), 0);
	m = raw_get(&g, "vm.state", other, sizeof(other));
	assert_int_equal(m, n);
	raw_put(&f, "vm.state", other, (size_t)m);
	s = open_store(&f);
	{
		void *data = NULL;
		size_t len;

		assert_int_equal(vswap_store_blob_get(s, "vm.state", &data, &len), -EBADMSG);
	}
	assert_int_equal(vswap_store_close(s), 0);
	fixture_cleanup(&g);
	fixture_cleanup(&f);
}

/* A read-only open (vswap-dump) reads blobs and cannot change them. */
static void read_only(void **state)
{
	(void)state;
	struct store_fixture f;
	struct vswap_store *s;

	assert_int_equal(fixture_init(&f), 0);
	assert_int_equal(vswap_store_create(f.path, &f.opts, &s), 0);
	assert_int_equal(vswap_store_blob_put(s, "a", "1", 1), 0);
	assert_int_equal(vswap_store_close(s), 0);
	f.opts.read_only = true;
	s = open_store(&f);
	expect_blob(s, "a", "1");
	assert_int_equal(vswap_store_blob_put(s, "a", "2", 1), -EROFS);
	assert_int_equal(vswap_store_blob_delete(s, "a"), -EROFS);
	assert_int_equal(vswap_store_close(s), 0);
	fixture_cleanup(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(put_get_commit_reopen),
	    cmocka_unit_test(bad_names_and_sizes),
	    cmocka_unit_test(crash_before_commit_keeps_old),
	    cmocka_unit_test(damaged_moved_and_foreign_records_fail),
	    cmocka_unit_test(read_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

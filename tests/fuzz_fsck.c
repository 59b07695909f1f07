/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target over what vswap-fsck parses: the superblock and the
 * index's records (page groups, staging records, metadata).  Not a ctest
 * suite (not named test_*.c).  Each input is applied to a fresh copy of a
 * small template store, then the store is audited (-n) and, when the first
 * byte says so, repaired (-y).  Input layout:
 *   byte 0        bit 0: replace the superblock with the next 56 bytes
 *                 bit 1: run a repair after the audit
 *   [56 bytes]    superblock bytes (only with bit 0)
 *   then records: db (1 byte: 0 pages, 1 staging, 2 meta), key length
 *                 (1), key, value length (2, little-endian), value;
 *                 a zero-length value deletes the key.
 * Build and run, bounded (from the top of the tree):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -Iinclude \
 *     tests/fuzz_fsck.c tests/helpers/recovery_fixture.c store/\*.c recovery/\*.c \
 *     -llmdb -lxxhash -luring -o /tmp/fuzz_fsck
 *   /tmp/fuzz_fsck -max_total_time=60 -timeout=10 /tmp/fuzz_fsck_corpus
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vswap/recovery.h>

#include "tests/helpers/recovery_fixture.h"

struct blob {
	uint8_t *data;
	size_t len;
};

static struct rfx_store fx;
static struct blob template_swap, template_idx;

static int read_all(const char *path, struct blob *b)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) != 0)
		return -1;
	b->len = (size_t)st.st_size;
	b->data = malloc(b->len ? b->len : 1);
	if (!b->data || pread(fd, b->data, b->len, 0) != (ssize_t)b->len)
		return -1;
	close(fd);
	return 0;
}

static void write_all(const char *path, const struct blob *b)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0 || pwrite(fd, b->data, b->len, 0) != (ssize_t)b->len)
		abort();
	close(fd);
}

static void cleanup(void)
{
	rfx_cleanup(&fx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const struct rfx_shape shape = {.total_pages = 256,
					.written = 130,
					.stale_first = 5,
					.stale_count = 3,
					.staged_first = 200,
					.staged_count = 4};

	(void)argc;
	(void)argv;
	if (rfx_init(&fx, "fuzz") || rfx_build(&fx, &shape) || read_all(fx.path, &template_swap) ||
	    read_all(fx.index, &template_idx))
		abort();
	atexit(cleanup);
	return 0;
}

/* Apply the record part of the input to the index through liblmdb. */
static void apply_records(const uint8_t *p, size_t n)
{
	static const char *const names[] = {"pages", "staging", "meta"};
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi[3];

	if (mdb_env_create(&env))
		return;
	mdb_env_set_maxdbs(env, 4);
	if (mdb_env_open(env, fx.index, MDB_NOSUBDIR | MDB_NOSYNC, 0600) ||
	    mdb_txn_begin(env, NULL, 0, &txn)) {
		mdb_env_close(env);
		return;
	}
	for (int i = 0; i < 3; i++)
		if (mdb_dbi_open(txn, names[i], 0, &dbi[i]))
			goto abort;
	while (n >= 4) {
		unsigned db = p[0] % 3, klen = p[1];
		size_t vlen;

		if (n < 2 + (size_t)klen + 2 || klen == 0)
			break;
		MDB_val k = {.mv_size = klen, .mv_data = (void *)(p + 2)};
		vlen = (size_t)p[2 + klen] | (size_t)p[3 + klen] << 8;
		p += 4 + klen;
		n -= 4 + klen;
		if (vlen > n)
			vlen = n;
		MDB_val v = {.mv_size = vlen, .mv_data = (void *)p};
		if (vlen == 0)
			mdb_del(txn, dbi[db], &k, NULL);
		else if (mdb_put(txn, dbi[db], &k, &v, 0))
			break;
		p += vlen;
		n -= vlen;
	}
	mdb_txn_commit(txn);
	mdb_env_close(env);
	return;
abort:
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

static void audit(enum vswap_fsck_mode mode)
{
	struct vswap_fsck_opts o = {
	    .mode = mode, .no_orphan_scan = true, .log_level = VSWAP_LOG_ERROR, .log = NULL};
	struct vswap_fsck *f;

	o.log_level = VSWAP_LOG_ERROR;
	if (vswap_fsck_new(fx.path, &o, &f))
		return;
	vswap_fsck_run(f);
	int code = vswap_fsck_exit_code(f);
	if (code & ~(1 | 4 | 8))
		abort(); /* never cancelled, never a usage error */
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++)
		if (!vswap_fsck_problem(f, i)->detail)
			abort();
	vswap_fsck_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 1;

	if (size < 1)
		return 0;
	write_all(fx.path, &template_swap);
	write_all(fx.index, &template_idx);
	if ((data[0] & 1) && size >= 1 + 56) {
		int fd = open(fx.path, O_WRONLY | O_CLOEXEC);

		if (fd < 0 || pwrite(fd, data + 1, 56, 0) != 56)
			abort();
		close(fd);
		off += 56;
	}
	apply_records(data + off, size - off);
	audit(VSWAP_FSCK_CHECK);
	if (data[0] & 2)
		audit(VSWAP_FSCK_REPAIR);
	return 0;
}

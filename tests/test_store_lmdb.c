/* SPDX-License-Identifier: MIT */
/*
 * store/ bounds the index's LMDB pages before LMDB uses them
 * (store/lmdb_check.c).  Each test damages one field inside an LMDB page of
 * a closed store's index, where LMDB would trust it, and checks that every
 * kind of open (writable, read-only, tolerant) ends in -EUCLEAN with a
 * message naming the index, the page and what is wrong, never a signal.
 * The damage is the kind single-byte flips found: a leaf's `lower` that
 * hides records (a handler then served data pages as zeros), a named
 * database's node size that only the first write transaction acts on (it
 * moved the page's other nodes over each other: the page records
 * vanished), an overflow count, a child page number, a free-list entry
 * naming a live page (a writer reuses it).  Keys out of order are refused
 * by a strict open and read on by a tolerant one (vswap-fsck reports the
 * records by what they hold).
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

#include "store/internal.h"
#include "tests/helpers/store_fixture.h"

#define TOTAL 4096
#define WRITTEN 2048
#define BLOB_LEN 20000 /* an overflow run of 5 pages at 4 KiB */

struct ctx {
	struct store_fixture f;
	char idx[400];
	uint8_t *buf;
	uint8_t *map; /* the index, read into memory */
	size_t size;
	uint32_t psize;
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(fixture_init(&c->f), 0);
	snprintf(c->idx, sizeof(c->idx), "%s.idx", c->f.path);
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
	free(c->map);
	free(c);
	return 0;
}

/* A closed store: WRITTEN pages present (a pages database of several
 * leaves under a branch), a blob on an overflow run, and enough commits
 * that LMDB's free list holds pages. */
static void make_store(struct ctx *c)
{
	struct vswap_store *s;
	uint64_t regions[] = {TOTAL};
	uint8_t *blob = malloc(BLOB_LEN);
	assert_non_null(blob);
	memset(blob, 0x5a, BLOB_LEN);
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &s), 0);
	assert_int_equal(vswap_store_set_regions(s, regions, 1), 0);
	for (uint64_t p = 0; p < WRITTEN; p += 64) {
		for (unsigned i = 0; i < 64; i++)
			fixture_pattern(c->buf + (size_t)i * c->f.page_size, c->f.page_size, p + i,
					1);
		assert_int_equal(vswap_store_write(s, p, 64, c->buf), 0);
		assert_int_equal(vswap_store_commit(s), 0);
	}
	assert_int_equal(vswap_store_blob_put(s, "big", blob, BLOB_LEN), 0);
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(vswap_store_close(s), 0);
	free(blob);
}

/* ---- reading the index as LMDB lays it out ------------------------------ */

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void load(struct ctx *c)
{
	struct stat st;
	int fd = open(c->idx, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	free(c->map);
	c->size = (size_t)st.st_size;
	c->map = malloc(c->size);
	assert_non_null(c->map);
	assert_int_equal(pread(fd, c->map, c->size, 0), (ssize_t)c->size);
	close(fd);
	memcpy(&c->psize, c->map + 16 + 24, 4);
}

/* Write @len bytes at @off of the index back from the copy in memory. */
static void store_bytes(struct ctx *c, size_t off, size_t len)
{
	int fd = open(c->idx, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, c->map + off, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static uint8_t *page(struct ctx *c, uint64_t pgno)
{
	assert_true((pgno + 1) * c->psize <= c->size);
	return c->map + pgno * c->psize;
}

/* The meta page LMDB uses: the one of the larger txnid. */
static const uint8_t *meta(struct ctx *c)
{
	const uint8_t *m0 = c->map + 16, *m1 = c->map + c->psize + 16;
	return get64(m0 + 128) < get64(m1 + 128) ? m1 : m0;
}

static unsigned nkeys(const uint8_t *pg)
{
	return (get16(pg + 12) - 16u) / 2;
}

static uint8_t *node(uint8_t *pg, unsigned i)
{
	return pg + get16(pg + 16 + 2 * i);
}

/* The node of the named database @name in the main DB (a one-leaf tree
 * in these stores), and its root page. */
static uint8_t *named_node(struct ctx *c, const char *name, uint64_t *root)
{
	uint8_t *pg = page(c, get64(meta(c) + 24 + 48 + 40));
	assert_int_equal(get16(pg + 10), 0x02); /* a leaf */
	for (unsigned i = 0; i < nkeys(pg); i++) {
		uint8_t *n = node(pg, i);
		if (get16(n + 6) == strlen(name) && !memcmp(n + 8, name, strlen(name))) {
			*root = get64(n + 8 + get16(n + 6) + 40);
			return n;
		}
	}
	fail_msg("no database %s in the index", name);
	return NULL;
}

/* ---- opens in a child ------------------------------------------------------ */

enum open_kind { OPEN_WRITABLE, OPEN_READ_ONLY, OPEN_TOLERANT, OPEN_LAZY, OPEN_KINDS };

/* A lazy open (a resume's) may find the damage after it returned, while
 * it loads: then the pages whose records the damage covers are lost. */
#define LAZY_POISONED 200 /* the damage found by the load, no page served wrong */
#define LAZY_WRONG 201	  /* a written page read back wrong, or as no data */

/* The lazy child's log: the first message naming an LMDB page, else the
 * last one. */
struct lazy_log {
	char msg[512];
	bool named;
};

static void lazy_log_fn(void *ctx, enum vswap_log_level level, const char *msg)
{
	struct lazy_log *l = ctx;
	(void)level;
	if (l->named)
		return;
	snprintf(l->msg, sizeof(l->msg), "%s", msg);
	l->named = strstr(msg, "LMDB page") != NULL;
}

/*
 * In a child: a lazy open, the first group read before the load gets to it
 * (a look-up of its own), then every written page read back: each either
 * with its own bytes or lost, never wrong and never without data; the load
 * waited for, then a commit and a close.
 */
static int lazy_open_child(struct ctx *c, struct lazy_log *log)
{
	struct vswap_store_opts o = c->f.opts;
	o.lazy_index = true;
	o.log = lazy_log_fn;
	o.log_ctx = log;
	struct vswap_store *s;
	int ret = vswap_store_open(c->f.path, &o, &s);
	if (ret)
		return -ret;
	uint8_t *want = malloc(c->f.page_size), *got = malloc(c->f.page_size);
	uint64_t lost = 0, wrong = 0;
	for (uint64_t p = 0; p < WRITTEN; p++) {
		struct vswap_page_info pi;
		fixture_pattern(want, c->f.page_size, p, 1);
		if (vswap_store_page(s, p, &pi) == 0 && pi.state == VSWAP_PAGE_LOST) {
			lost++;
			continue;
		}
		int r = vswap_store_read_page(s, p, got);
		if (r == -EBADMSG || r == -EIO)
			lost++;
		else if (r || memcmp(got, want, c->f.page_size))
			wrong++;
	}
	struct vswap_store_load ld = {0};
	vswap_store_load_wait(s);
	vswap_store_load_status(s, &ld);
	/* A page of the first group written again: a commit that would put
	 * its record into a damaged leaf is refused. */
	fixture_pattern(want, c->f.page_size, 0, 2);
	int w = vswap_store_write(s, 0, 1, want);
	int committed = w ? w : vswap_store_commit(s);
	vswap_store_close(s);
	free(want);
	free(got);
	if (wrong || (lost && committed == 0) || (committed && committed != -EUCLEAN))
		return LAZY_WRONG;
	return lost || ld.bad_records ? LAZY_POISONED : 0;
}

/* The open's result (or 1000 + the signal it died of) and its last
 * message. */
static int open_in_child(struct ctx *c, enum open_kind kind, char *msg, size_t msglen)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(10);
		if (kind == OPEN_LAZY) {
			struct lazy_log log = {{0}, false};
			int r = lazy_open_child(c, &log);
			if (write(p[1], log.msg, strlen(log.msg) + 1) < 0)
				_exit(100);
			_exit(r);
		}
		struct vswap_store_opts o = c->f.opts;
		o.read_only = kind == OPEN_READ_ONLY;
		o.tolerant = kind == OPEN_TOLERANT;
		struct vswap_store *s;
		c->f.last_log[0] = 0;
		int ret = vswap_store_open(c->f.path, &o, &s);
		if (!ret) {
			/* A commit is where a writer acts on what it read. */
			if (kind != OPEN_READ_ONLY)
				vswap_store_commit(s);
			vswap_store_close(s);
		}
		if (write(p[1], c->f.last_log, strlen(c->f.last_log) + 1) < 0)
			_exit(100);
		_exit(ret < 0 ? -ret : 0);
	}
	close(p[1]);
	ssize_t k = read(p[0], msg, msglen - 1);
	msg[k > 0 ? k : 0] = 0;
	close(p[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		return 1000 + WTERMSIG(status);
	if (kind == OPEN_LAZY && WEXITSTATUS(status) >= LAZY_POISONED)
		return WEXITSTATUS(status);
	return -WEXITSTATUS(status);
}

/* Every kind of open refuses the index by name, naming page @pgno and
 * containing @what; a lazy open refuses it so or finds it while loading
 * (its pages lost, none served wrong), in the same words. */
static void expect_refused(struct ctx *c, uint64_t pgno, const char *what)
{
	char want[64];
	snprintf(want, sizeof(want), "LMDB page %llu ", (unsigned long long)pgno);
	for (int k = 0; k < OPEN_KINDS; k++) {
		char msg[512];
		int ret = open_in_child(c, (enum open_kind)k, msg, sizeof(msg));
		bool ok = ret == -EUCLEAN || (k == OPEN_LAZY && ret == LAZY_POISONED);
		if (!ok || !strstr(msg, c->idx) || !strstr(msg, "bad index") ||
		    !strstr(msg, want) || !strstr(msg, what))
			fail_msg("open kind %d: %d, \"%s\" (want -EUCLEAN, page %llu, \"%s\")", k,
				 ret, msg, (unsigned long long)pgno, what);
	}
}

/* ---- the damage ---------------------------------------------------------------- */

/* The pages database's first leaf one key short (its `lower` two bytes
 * less): LMDB then skips the leaf's last record without a word, and the
 * pages of that group read as absent (zeros) from a strict open. */
static void hide_records(struct ctx *c, uint16_t (*damage)(uint16_t lower), const char *what)
{
	uint64_t root;
	make_store(c);
	load(c);
	named_node(c, "pages", &root);
	uint8_t *pg = page(c, root);
	while (get16(pg + 10) == 0x01) /* down the first branch */
		pg = page(c, get16(node(pg, 0)) | (uint64_t)get16(node(pg, 0) + 2) << 16);
	uint64_t leaf = get64(pg);
	assert_true(nkeys(pg) >= 2);
	uint16_t lower = damage(get16(pg + 12));
	memcpy(pg + 12, &lower, 2);
	store_bytes(c, (size_t)(pg - c->map) + 12, 2);
	expect_refused(c, leaf, what);
}

static uint16_t one_key_less(uint16_t lower)
{
	return lower - 2;
}

/* The flip a random run found (seed 1796138474 of the flips test): 20 ^ 5
 * = 17 in a leaf of two records, which LMDB reads as none. */
static uint16_t flip_05(uint16_t lower)
{
	return lower ^ 0x05;
}

static void test_hidden_record_refused(void **state)
{
	hide_records(*state, one_key_less, "nodes take");
}

static void test_odd_lower_refused(void **state)
{
	hide_records(*state, flip_05, "not a page's layout");
}

/* The first leaf of `pages` one key short (its `lower` two bytes less);
 * the damaged leaf's page number. */
static uint64_t damage_first_leaf(struct ctx *c)
{
	uint64_t root;
	make_store(c);
	load(c);
	named_node(c, "pages", &root);
	uint8_t *pg = page(c, root);
	while (get16(pg + 10) == 0x01)
		pg = page(c, get16(node(pg, 0)) | (uint64_t)get16(node(pg, 0) + 2) << 16);
	uint16_t lower = get16(pg + 12) - 2;
	memcpy(pg + 12, &lower, 2);
	store_bytes(c, (size_t)(pg - c->map) + 12, 2);
	return get64(pg);
}

/* A call that loads a group itself, before the load's walk got there,
 * checks the leaf its look-up reads: the group of the damaged leaf is
 * lost, a group of another leaf is served, and the walk, once let go,
 * agrees. */
static void test_lazy_demand_load_checks_its_leaf(void **state)
{
	struct ctx *c = *state;
	damage_first_leaf(c);
	struct vswap_store_opts o = c->f.opts;
	o.lazy_index = true;
	struct vswap_store *s;
	assert_int_equal(
	    store_open_flags(c->f.path, &o, STORE_OPEN_LOCK | STORE_OPEN_LOAD_HELD, &s), 0);
	struct vswap_page_info pi;
	uint64_t last = WRITTEN - 1;
	assert_int_equal(vswap_store_page(s, last, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	assert_int_equal(vswap_store_page(s, 0, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	assert_non_null(strstr(c->f.last_log, "LMDB page"));
	struct vswap_store_load ld;
	assert_int_equal(vswap_store_load_status(s, &ld), 0);
	assert_false(ld.done);
	assert_true(ld.on_demand >= 1);
	loader_release(s);
	assert_int_equal(vswap_store_load_wait(s), 0);
	assert_int_equal(vswap_store_page(s, 0, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	assert_int_equal(vswap_store_page(s, last, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	uint8_t *buf = malloc(c->f.page_size), *want = malloc(c->f.page_size);
	fixture_pattern(want, c->f.page_size, last, 1);
	assert_int_equal(vswap_store_read_page(s, last, buf), 0);
	assert_memory_equal(buf, want, c->f.page_size);
	free(buf);
	free(want);
	vswap_store_close(s);
}

/* A lazy open that found a damaged leaf refuses to commit page groups, so
 * a change to one (a page of a sound leaf freed) fails the close.  The
 * store is then recorded unclean on disk all the same: the lazy open left
 * that record to the first commit, and none landed. */
static void test_lazy_failed_close_leaves_the_store_unclean(void **state)
{
	struct ctx *c = *state;
	damage_first_leaf(c);
	struct vswap_store_opts o = c->f.opts;
	o.lazy_index = true;
	struct vswap_store *s;
	assert_int_equal(store_open_flags(c->f.path, &o, STORE_OPEN_LOCK, &s), 0);
	assert_int_equal(vswap_store_load_wait(s), 0);
	assert_true(vswap_store_free(s, WRITTEN - 1, 1) >= 0);
	assert_int_equal(vswap_store_close(s), -EUCLEAN);
	assert_int_equal(store_open_flags(c->f.path, &o, STORE_OPEN_LOCK, &s), 0);
	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(s, &info), 0);
	assert_false(info.was_clean);
	vswap_store_close(s);
}

/* A lazy open checks a leaf of the page-group records only when it loads
 * it: the open returns, and the load finds the damage and loses that
 * leaf's groups (an open that walked every leaf first refused). */
static void test_lazy_open_finds_leaf_damage_while_loading(void **state)
{
	struct ctx *c = *state;
	damage_first_leaf(c);
	char msg[512];
	int ret = open_in_child(c, OPEN_LAZY, msg, sizeof(msg));
	if (ret != LAZY_POISONED || !strstr(msg, "nodes take"))
		fail_msg("lazy open: %d, \"%s\" (want the load to find it)", ret, msg);
}

/* The "meta" database's node in the main DB claims a data size past its
 * page (a read takes the 48 bytes it needs and is fine; a commit's
 * rewrite of that node deleted it by the size it claims). */
static void test_named_database_node_size_refused(void **state)
{
	struct ctx *c = *state;
	uint64_t root;
	make_store(c);
	load(c);
	uint8_t *n = named_node(c, "meta", &root);
	n[2] ^= 0x0f; /* the data size's high half */
	store_bytes(c, (size_t)(n - c->map) + 2, 1);
	expect_refused(c, get64(meta(c) + 24 + 48 + 40), "nodes take");
}

/* The blob's overflow run claims a page count that runs past the file. */
static void test_overflow_count_refused(void **state)
{
	struct ctx *c = *state;
	uint64_t root;
	make_store(c);
	load(c);
	named_node(c, "blobs", &root);
	uint8_t *pg = page(c, root);
	assert_int_equal(get16(pg + 10), 0x02);
	uint8_t *n = node(pg, 0);
	assert_true(get16(n + 4) & 0x01); /* F_BIGDATA */
	uint64_t ov = get64(n + 8 + get16(n + 6));
	uint8_t *op = page(c, ov);
	op[15] = 0x40; /* the u32 page count's top byte */
	store_bytes(c, (size_t)(op - c->map) + 15, 1);
	expect_refused(c, root, "outside the file's pages");
}

/* A branch of the pages database names a child past the last page. */
static void test_child_out_of_range_refused(void **state)
{
	struct ctx *c = *state;
	uint64_t root;
	make_store(c);
	load(c);
	named_node(c, "pages", &root);
	uint8_t *pg = page(c, root);
	assert_int_equal(get16(pg + 10), 0x01); /* a branch */
	uint8_t *n = node(pg, 1);
	n[3] ^= 0x10; /* the child's page number, bit 28 */
	store_bytes(c, (size_t)(n - c->map) + 3, 1);
	expect_refused(c, root, "outside the file's pages");
}

/* A free-list record names a page of the pages database: the first write
 * transaction would reuse it while it is live. */
static void test_free_page_in_use_refused(void **state)
{
	struct ctx *c = *state;
	uint64_t root;
	make_store(c);
	load(c);
	named_node(c, "pages", &root);
	uint64_t froot = get64(meta(c) + 24 + 40);
	assert_true(froot != UINT64_MAX);
	uint8_t *fp = page(c, froot);
	assert_int_equal(get16(fp + 10), 0x02);
	for (unsigned i = 0; i < nkeys(fp); i++) {
		uint8_t *n = node(fp, i);
		uint8_t *idl = n + 8 + get16(n + 6);
		if (get16(n + 4) || get64(idl) == 0)
			continue;
		/* Replace the list's smallest page by the pages database's
		 * root, keeping the list descending. */
		uint64_t cnt = get64(idl), v[64];
		assert_true(cnt <= 64);
		for (uint64_t k = 0; k < cnt - 1; k++)
			v[k] = get64(idl + 8 * (k + 1));
		v[cnt - 1] = root;
		for (uint64_t a = 0; a < cnt; a++)
			for (uint64_t b = a + 1; b < cnt; b++)
				if (v[b] > v[a]) {
					uint64_t t = v[a];
					v[a] = v[b];
					v[b] = t;
				}
		memcpy(idl + 8, v, 8 * cnt);
		store_bytes(c, (size_t)(idl - c->map) + 8, 8 * cnt);
		expect_refused(c, froot, "which is in use");
		return;
	}
	fail_msg("no free-list record in the index");
}

/* A branch key of the pages database out of order: a strict open refuses
 * (keyed look-ups would miss records, a put would add a second record of a
 * key); a tolerant open reads every record in page order. */
static void test_keys_out_of_order(void **state)
{
	struct ctx *c = *state;
	uint64_t root;
	make_store(c);
	load(c);
	named_node(c, "pages", &root);
	uint8_t *pg = page(c, root);
	assert_int_equal(get16(pg + 10), 0x01);
	assert_true(nkeys(pg) >= 3);
	uint8_t *n = node(pg, 1);
	assert_int_equal(get16(n + 6), 8);
	n[8] ^= 0x80; /* the first separator now sorts after every group */
	store_bytes(c, (size_t)(n - c->map) + 8, 1);
	char msg[512];
	for (int k = OPEN_WRITABLE; k < OPEN_KINDS; k++) {
		if (k == OPEN_TOLERANT)
			continue;
		int ret = open_in_child(c, (enum open_kind)k, msg, sizeof(msg));
		if (ret != -EUCLEAN || !strstr(msg, "out of order"))
			fail_msg("open kind %d: %d, \"%s\"", k, ret, msg);
	}
	struct vswap_store_opts o = c->f.opts;
	o.tolerant = true;
	o.read_only = true;
	struct vswap_store *s;
	assert_int_equal(vswap_store_open(c->f.path, &o, &s), 0);
	struct vswap_page_info pi;
	for (uint64_t p = 0; p < WRITTEN; p += 63) {
		assert_int_equal(vswap_store_page(s, p, &pi), 0);
		assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	}
	vswap_store_close(s);
}

/* An undamaged index passes, however many commits made it. */
static void test_intact_index_opens(void **state)
{
	struct ctx *c = *state;
	char msg[512];
	make_store(c);
	for (int k = 0; k < OPEN_KINDS; k++)
		assert_int_equal(open_in_child(c, (enum open_kind)k, msg, sizeof(msg)), 0);
}

/* ---- the walk with the leaves of `pages` left for later ------------------ */

/* A handle for the internal walk: the index path, nothing else (its
 * errors go to stderr, which run_walk() captures). */
static struct vswap_store *walk_handle(struct ctx *c)
{
	struct vswap_store *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->index_path = c->idx;
	return s;
}

/* stderr into a file while @fd_saved holds the real one. */
static int capture_begin(char *path, size_t len, int *fd_saved)
{
	snprintf(path, len, "/tmp/vswap-lmdbcheck-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	*fd_saved = dup(2);
	assert_true(dup2(fd, 2) == 2);
	close(fd);
	return 0;
}

/* Restore stderr; what was written meanwhile in @msg. */
static void capture_end(const char *path, int fd_saved, char *msg, size_t len)
{
	fflush(stderr);
	dup2(fd_saved, 2);
	close(fd_saved);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ssize_t k = read(fd, msg, len - 1);
	msg[k > 0 ? k : 0] = 0;
	close(fd);
	unlink(path);
}

static int deferred(struct ctx *c, struct vswap_store *s, struct lmdb_deferred **d, char *msg)
{
	struct stat st;
	char path[64];
	int saved, fd = open(c->idx, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	capture_begin(path, sizeof(path), &saved);
	int ret = index_lmdb_check_deferred(s, fd, (uint64_t)st.st_size, d);
	capture_end(path, saved, msg, 512);
	close(fd);
	return ret;
}

static int check_group(struct lmdb_deferred *d, uint64_t group, char *msg)
{
	uint64_t key = __builtin_bswap64(group);
	char path[64];
	int saved;
	capture_begin(path, sizeof(path), &saved);
	int ret = index_lmdb_check_key(d, &key, 8);
	capture_end(path, saved, msg, 512);
	return ret;
}

/* An intact index: every key's leaf and the rest check out. */
static void test_deferred_intact(void **state)
{
	struct ctx *c = *state;
	char msg[512] = "";
	make_store(c);
	struct vswap_store *s = walk_handle(c);
	struct lmdb_deferred *d;
	assert_int_equal(deferred(c, s, &d, msg), 0);
	for (uint64_t g = 0; g < TOTAL / 64; g += 3)
		assert_int_equal(check_group(d, g, msg), 0);
	assert_int_equal(index_lmdb_check_rest(d), 0);
	index_lmdb_deferred_free(d);
	free(s);
}

/* The first leaf damaged: the deferred walk passes (it reads no leaf), a
 * key of that leaf fails, a key of another leaf passes, the rest fails. */
static void test_deferred_damaged_leaf(void **state)
{
	struct ctx *c = *state;
	char msg[512] = "";
	uint64_t root;
	make_store(c);
	load(c);
	named_node(c, "pages", &root);
	uint8_t *pg = page(c, root);
	while (get16(pg + 10) == 0x01)
		pg = page(c, get16(node(pg, 0)) | (uint64_t)get16(node(pg, 0) + 2) << 16);
	uint64_t leaf = get64(pg);
	uint16_t lower = get16(pg + 12) - 2;
	memcpy(pg + 12, &lower, 2);
	store_bytes(c, (size_t)(pg - c->map) + 12, 2);
	struct vswap_store *s = walk_handle(c);
	struct lmdb_deferred *d;
	assert_int_equal(deferred(c, s, &d, msg), 0);
	assert_int_equal(check_group(d, WRITTEN / 64 - 1, msg), 0);
	assert_int_equal(check_group(d, 0, msg), -EUCLEAN);
	char want[64];
	snprintf(want, sizeof(want), "LMDB page %llu (pages database)", (unsigned long long)leaf);
	assert_non_null(strstr(msg, want));
	assert_int_equal(index_lmdb_check_rest(d), -EUCLEAN);
	index_lmdb_deferred_free(d);
	free(s);
}

/* The free list is checked at once, against every live page, leaves of
 * `pages` included (claimed from the branch pages unread). */
static void test_deferred_free_page_is_a_leaf(void **state)
{
	struct ctx *c = *state;
	char msg[512] = "";
	uint64_t root;
	make_store(c);
	load(c);
	named_node(c, "pages", &root);
	uint8_t *br = page(c, root);
	assert_int_equal(get16(br + 10), 0x01);
	uint64_t leaf = get16(node(br, 0)) | (uint64_t)get16(node(br, 0) + 2) << 16;
	uint8_t *fp = page(c, get64(meta(c) + 24 + 40));
	for (unsigned i = 0; i < nkeys(fp); i++) {
		uint8_t *n = node(fp, i);
		uint8_t *idl = n + 8 + get16(n + 6);
		if (get16(n + 4) || get64(idl) != 1)
			continue;
		memcpy(idl + 8, &leaf, 8); /* a one-page list: any page is in order */
		store_bytes(c, (size_t)(idl - c->map) + 8, 8);
		struct vswap_store *s = walk_handle(c);
		struct lmdb_deferred *d = NULL;
		assert_int_equal(deferred(c, s, &d, msg), -EUCLEAN);
		assert_non_null(strstr(msg, "which is in use"));
		free(s);
		return;
	}
	skip(); /* no one-page free list in this index */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_intact_index_opens, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hidden_record_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_odd_lower_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lazy_failed_close_leaves_the_store_unclean, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_lazy_open_finds_leaf_damage_while_loading, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_lazy_demand_load_checks_its_leaf, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_named_database_node_size_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_overflow_count_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_child_out_of_range_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_page_in_use_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keys_out_of_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deferred_intact, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deferred_damaged_leaf, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deferred_free_page_is_a_leaf, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * The command-line tools as an operator runs them: the programs of the
 * build tree, started as child processes, their exit codes and output
 * checked.
 * The whole suite skips (77) when the tools are not built (VSWAP_TOOLS=OFF);
 * the tests that run the demo skip without userfaultfd (not root).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <vswap/handler.h>
#include <vswap/store.h>
#include <vswap/version.h>

#include "tests/helpers/handler_fixture.h"
#include "tests/helpers/store_fixture.h"

static const char *const tools[] = {"vswap-fsck",  "vswap-dump",       "vswap-demo",
				    "vswap-bench", "vswap-faultbench", "vswap-rm",
				    "vswap-vm",	   "vswap-upgrade",    "vswapd"};

/* ---- running a tool ------------------------------------------------------- */

struct run {
	int status;	 /* exit code, or 128 + signal */
	char out[65536]; /* stdout, NUL-terminated (truncated) */
	char err[16384]; /* stderr */
};

/* How the child starts, beyond its arguments. */
struct run_opts {
	rlim_t as_limit;   /* RLIMIT_AS, 0 = unchanged */
	bool term_pending; /* SIGTERM blocked and pending at exec */
};

static const char *build_dir(void)
{
	const char *d = getenv("VSWAP_BUILD_DIR");
	return d ? d : VSWAP_BUILD_DIR;
}

static void tool_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", build_dir(), name);
}

static void slurp(int fd, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t k;
	char sink[4096];
	while ((k = read(fd, n + 1 < len ? buf + n : sink,
			 n + 1 < len ? len - 1 - n : sizeof(sink))) > 0)
		if (n + 1 < len)
			n += (size_t)k;
	buf[n] = '\0';
}

/* Run build/@argv[0] with @argv; NULL-terminated. */
static void run_tool(struct run *r, const struct run_opts *o, char *const argv[])
{
	char path[PATH_MAX];
	int out[2], err[2];

	tool_path(argv[0], path, sizeof(path));
	assert_int_equal(pipe(out), 0);
	assert_int_equal(pipe(err), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]);
		close(err[0]);
		if (o && o->as_limit) {
			struct rlimit rl = {o->as_limit, o->as_limit};
			setrlimit(RLIMIT_AS, &rl);
		}
		if (o && o->term_pending) {
			sigset_t s;
			sigemptyset(&s);
			sigaddset(&s, SIGTERM);
			sigprocmask(SIG_BLOCK, &s, NULL);
			raise(SIGTERM); /* pending across exec */
		}
		execv(path, argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	/* stderr is small: read it after stdout (no deadlock for our tools'
	 * output sizes; stdout is drained first). */
	slurp(out[0], r->out, sizeof(r->out));
	slurp(err[0], r->err, sizeof(r->err));
	close(out[0]);
	close(err[0]);
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

#define RUN(r, o, ...) run_tool((r), (o), (char *const[]){__VA_ARGS__, NULL})

static struct run *new_run(void)
{
	struct run *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	return r;
}

static void skip_without_uffd(void)
{
	const char *why = hfx_unavailable();
	if (why) {
		fprintf(stderr, "skipped: %s\n", why);
		skip();
	}
}

/* A small closed store at @f->path with @n pages written. */
static void make_store(struct store_fixture *f, unsigned n)
{
	struct vswap_store *s;
	uint64_t pages = 64;
	void *buf = aligned_alloc(f->page_size, (size_t)f->page_size * n);

	assert_non_null(buf);
	assert_int_equal(vswap_store_create(f->path, &f->opts, &s), 0);
	assert_int_equal(vswap_store_set_regions(s, &pages, 1), 0);
	for (unsigned i = 0; i < n; i++)
		fixture_pattern((char *)buf + (size_t)i * f->page_size, f->page_size, i, 1);
	assert_int_equal(vswap_store_write(s, 0, n, buf), 0);
	assert_int_equal(vswap_store_close(s), 0);
	free(buf);
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static int setup(void **state)
{
	struct store_fixture *f = calloc(1, sizeof(*f));
	if (!f || fixture_init(f))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_cleanup(*state);
	free(*state);
	return 0;
}

/* ---- every tool ------------------------------------------------------------ */

static void test_version_help_usage(void **state)
{
	(void)state;
	struct run *r = new_run();
	char want[128];

	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		char *name = (char *)tools[i];
		int usage = strcmp(name, "vswap-fsck") ? 2 : 16;

		RUN(r, NULL, name, "--version");
		snprintf(want, sizeof(want), "%s %s\n", name, VSWAP_VERSION);
		assert_int_equal(r->status, 0);
		assert_string_equal(r->out, want);

		RUN(r, NULL, name, "--help");
		assert_int_equal(r->status, 0);
		assert_non_null(strstr(r->out, "Usage: "));
		assert_non_null(strstr(r->out, "--version"));
		assert_string_equal(r->err, "");

		RUN(r, NULL, name, "--no-such-option");
		assert_int_equal(r->status, usage);
		assert_string_equal(r->out, "");
		assert_non_null(strstr(r->err, "--help' for more information"));
	}
	free(r);
}

/* ---- vswap-fsck ------------------------------------------------------------ */

/* An aged staging file of a store that no longer exists, in the staging
 * directory of the store under test. */
static void make_orphan(const struct store_fixture *f, char *path, size_t len)
{
	snprintf(path, len, "%s/vswap-01234567-89ab-4def-8123-456789abcdef.staging", f->dir);
	int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
	assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
}

/* A clean store is clean whatever another, deleted store left in the
 * shared staging directory; --orphans reports those files apart, with its
 * own exit status, and -p is reported as its own mode. */
static void test_fsck_orphans_apart(void **state)
{
	struct store_fixture *f = *state;
	struct run *r = new_run();
	char orphan[PATH_MAX];

	make_store(f, 4);
	make_orphan(f, orphan, sizeof(orphan));

	RUN(r, NULL, "vswap-fsck", "-n", f->path);
	assert_int_equal(r->status, 0);
	RUN(r, NULL, "vswap-fsck", "-n", "--json", f->path);
	assert_int_equal(r->status, 0);
	assert_non_null(strstr(r->out, "\"schema_version\":1,"));
	assert_non_null(strstr(r->out, "\"problems\":[]"));
	assert_non_null(strstr(r->out, "\"orphans\":null"));

	RUN(r, NULL, "vswap-fsck", "-n", "--orphans", f->path);
	assert_int_equal(r->status, 4);
	assert_non_null(strstr(r->out, "orphan_staging_file"));
	RUN(r, NULL, "vswap-fsck", "-p", "--orphans", "--json", f->path);
	assert_int_equal(r->status, 4); /* it holds bytes: only -y removes it */
	assert_non_null(strstr(r->out, "\"mode\":\"preen\""));
	assert_non_null(strstr(r->out, "\"problems\":[]"));
	assert_non_null(strstr(r->out, "\"orphans\":[{\"kind\":\"orphan_staging_file\""));
	assert_true(exists(orphan));
	RUN(r, NULL, "vswap-fsck", "-y", "--json", f->path);
	assert_int_equal(r->status, 0);
	assert_non_null(strstr(r->out, "\"mode\":\"repair\""));
	assert_true(exists(orphan)); /* not looked for without --orphans */
	free(r);
}

/* An operational error the library does not log (a read buffer it cannot
 * allocate) is still named on stderr. */
static void test_fsck_names_allocation_failure(void **state)
{
	struct store_fixture *f = *state;
	struct run_opts o = {.as_limit = 512u << 20};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* A sanitizer's shadow memory does not fit under the limit. */
	fprintf(stderr, "skipped: address-space limit under a sanitizer\n");
	skip();
#endif
	struct run *r = new_run();

	make_store(f, 4);
	RUN(r, &o, "vswap-fsck", "-n", "--read-size", "256M", f->path);
	assert_int_equal(r->status, 8);
	assert_non_null(strstr(r->err, "Cannot allocate memory"));
	free(r);
}

/* A path is any bytes; the JSON report stays valid UTF-8. */
static void test_fsck_json_escapes_invalid_utf8(void **state)
{
	struct store_fixture *f = *state;
	struct run *r = new_run();
	char *path = f->path;

	snprintf(f->path, sizeof(f->path), "%s/bad-\xff\xfe-\xc3\xa9", f->dir);
	make_store(f, 2);
	RUN(r, NULL, "vswap-fsck", "-n", "--json", path);
	assert_int_equal(r->status, 0);
	assert_null(strchr(r->out, '\xff'));
	assert_null(strchr(r->out, '\xfe'));
	assert_non_null(strstr(r->out, "bad-\\ufffd\\ufffd-\xc3\xa9\""));
	RUN(r, NULL, "vswap-dump", "--json", path);
	assert_int_equal(r->status, 0);
	assert_null(strchr(r->out, '\xff'));
	free(r);
}

/* ---- vswap-dump ------------------------------------------------------------ */

/* One spelling of a state: the library's. */
static void test_dump_state_names(void **state)
{
	struct store_fixture *f = *state;
	struct run *r = new_run();
	char want[64];

	make_store(f, 2);
	RUN(r, NULL, "vswap-dump", "--json", "--meta", f->path);
	assert_int_equal(r->status, 0);
	snprintf(want, sizeof(want), "\"state\":\"%s\"", vswap_state_name(VSWAP_STATE_READY));
	assert_non_null(strstr(r->out, want));
	assert_non_null(strstr(r->out, "{\"schema_version\":1,"));
	free(r);
}

/* ---- vswap-bench ----------------------------------------------------------- */

static void test_bench_unknown_group(void **state)
{
	(void)state;
	struct run *r = new_run();

	RUN(r, NULL, "vswap-bench", "--only", "bogus");
	assert_int_equal(r->status, 2);
	assert_non_null(strstr(r->err, "unknown group 'bogus'"));
	RUN(r, NULL, "vswap-bench", "--only", "hash,store-wrte");
	assert_int_equal(r->status, 2);
	assert_non_null(strstr(r->err, "unknown group 'store-wrte'"));
	free(r);
}

/* ---- vswap-rm -------------------------------------------------------------- */

static void test_rm_removes_a_store_and_only_a_store(void **state)
{
	struct store_fixture *f = *state;
	struct run *r = new_run();
	char idx[PATH_MAX], lock[PATH_MAX], staging[PATH_MAX], other[PATH_MAX];
	struct vswap_store *s;

	make_store(f, 3);
	f->opts.read_only = true;
	assert_int_equal(vswap_store_open(f->path, &f->opts, &s), 0);
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(s));
	assert_int_equal(vswap_store_close(s), 0);
	f->opts.read_only = false;
	snprintf(idx, sizeof(idx), "%s.idx", f->path);
	snprintf(lock, sizeof(lock), "%s.idx-lock", f->path);
	assert_true(exists(staging));

	/* Not a store: left alone. */
	snprintf(other, sizeof(other), "%s/not-a-store", f->dir);
	int fd = open(other, O_CREAT | O_EXCL | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hello", 5), 5);
	close(fd);
	RUN(r, NULL, "vswap-rm", other);
	assert_int_equal(r->status, 1);
	assert_true(exists(other));

	/* In use: left alone. */
	assert_int_equal(vswap_store_open(f->path, &f->opts, &s), 0);
	RUN(r, NULL, "vswap-rm", f->path);
	assert_int_equal(r->status, 1);
	assert_non_null(strstr(r->err, "in use"));
	assert_true(exists(f->path) && exists(idx) && exists(staging));
	assert_int_equal(vswap_store_close(s), 0);

	RUN(r, NULL, "vswap-rm", f->path);
	assert_int_equal(r->status, 0);
	assert_false(exists(f->path));
	assert_false(exists(idx));
	assert_false(exists(lock));
	assert_false(exists(staging));
	free(r);
}

/* ---- vswap-demo ------------------------------------------------------------ */

/* --store over a path that exists: the create fails and the demo removes
 * nothing, neither a plain file nor another store (the loser of two demos
 * started on one path finds the winner's store there). */
static void test_demo_removes_only_its_own(void **state)
{
	struct store_fixture *f = *state;
	struct run *r = new_run();
	char other[PATH_MAX], idx[PATH_MAX], staging[PATH_MAX];
	struct vswap_store *s;

	snprintf(other, sizeof(other), "%s/plain", f->dir);
	int fd = open(other, O_CREAT | O_EXCL | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	RUN(r, NULL, "vswap-demo", "--size", "4M", "--cycles", "1", "--store", other);
	assert_int_equal(r->status, 1);
	assert_true(exists(other));

	make_store(f, 3); /* the winner's store, f->path */
	f->opts.read_only = true;
	assert_int_equal(vswap_store_open(f->path, &f->opts, &s), 0);
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(s));
	assert_int_equal(vswap_store_close(s), 0);
	snprintf(idx, sizeof(idx), "%s.idx", f->path);
	RUN(r, NULL, "vswap-demo", "--size", "4M", "--cycles", "1", "--store", f->path);
	assert_int_equal(r->status, 1);
	assert_non_null(strstr(r->err, "exists"));
	assert_true(exists(f->path) && exists(idx) && exists(staging));
	free(r);
}

/* The audit runs while the store holds the guest's pages: it verifies
 * them (after the disable there would be none). */
static void test_demo_audits_a_store_holding_pages(void **state)
{
	struct store_fixture *f = *state;
	skip_without_uffd();
	struct run *r = new_run();

	RUN(r, NULL, "vswap-demo", "--size", "8M", "--cycles", "1", "--json", "--store", f->path);
	assert_int_equal(r->status, 0);
	const char *a = strstr(r->out, "\"fsck_in_use\":{\"exit_code\":0,");
	assert_non_null(a);
	const char *pc = strstr(a, "\"pages_checked\":");
	assert_non_null(pc);
	assert_true(strtoull(pc + strlen("\"pages_checked\":"), NULL, 10) > 0);
	assert_false(exists(f->path)); /* created by the demo, so removed */
	free(r);
}

/*
 * SIGTERM or SIGHUP, once the demo runs (it has said so on stdout, after it
 * blocked them), stops it at its next check: it cleans up and exits 130,
 * as its man page says, not 128 + the signal.
 */
static void demo_signalled(struct store_fixture *f, int sig)
{
	char path[PATH_MAX], buf[4096];
	int out[2];
	size_t n = 0;
	ssize_t k;

	tool_path("vswap-demo", path, sizeof(path));
	assert_int_equal(pipe(out), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		execl(path, path, "--size", "64M", "--cycles", "3", "--store", f->path,
		      (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	bool sent = false;
	while ((k = read(out[0], buf + n, sizeof(buf) - 1 - n)) > 0) {
		n += (size_t)k;
		buf[n] = '\0';
		if (!sent && strstr(buf, "guest threads")) {
			assert_int_equal(kill(pid, sig), 0);
			sent = true;
		}
		if (n > sizeof(buf) / 2) { /* keep the tail only */
			memmove(buf, buf + n - 64, 64);
			n = 64;
		}
	}
	close(out[0]);
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(sent);
	assert_true(WIFEXITED(ws));
	assert_int_equal(WEXITSTATUS(ws), 130);
	assert_false(exists(f->path)); /* created by it, so removed */
}

static void test_demo_signal_exit_code(void **state)
{
	skip_without_uffd();
	demo_signalled(*state, SIGTERM);
	demo_signalled(*state, SIGHUP);
}

/* A swap-out that fails (ENOSPC on a 4 MiB file system) leaves the handler
 * Failed: the demo stops waiting at once (not after 600 s, beyond this
 * suite's timeout) and fails naming the error. */
static void test_demo_stops_waiting_on_failed(void **state)
{
	struct store_fixture *f = *state;
	char mnt[PATH_MAX], store[PATH_MAX + 16];
	skip_without_uffd();

	snprintf(mnt, sizeof(mnt), "%s/small", f->dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
		fprintf(stderr, "skipped: cannot mount a tmpfs: %s\n", strerror(errno));
		rmdir(mnt);
		skip();
	}
	struct run *r = new_run();
	snprintf(store, sizeof(store), "%s/g.swap", mnt);
	RUN(r, NULL, "vswap-demo", "--size", "32M", "--cycles", "1", "--store", store);
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
	assert_int_equal(r->status, 1);
	/* The handler's own error, not the end of a 600 s wait. */
	assert_non_null(
	    strstr(r->err, "waiting for Active: No space left on device (state Failed"));
	free(r);
}

int main(void)
{
	char path[PATH_MAX];
	tool_path("vswap-fsck", path, sizeof(path));
	if (access(path, X_OK) != 0) {
		fprintf(stderr, "tools: skipped: %s not built (VSWAP_TOOLS=OFF?)\n", path);
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_version_help_usage),
	    cmocka_unit_test_setup_teardown(test_fsck_orphans_apart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fsck_names_allocation_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fsck_json_escapes_invalid_utf8, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dump_state_names, setup, teardown),
	    cmocka_unit_test(test_bench_unknown_group),
	    cmocka_unit_test_setup_teardown(test_rm_removes_a_store_and_only_a_store, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_demo_removes_only_its_own, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_demo_audits_a_store_holding_pages, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_demo_signal_exit_code, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_demo_stops_waiting_on_failed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

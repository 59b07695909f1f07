/* SPDX-License-Identifier: MIT */
/*
 * The one logging rule (include/vswap/store.h, util/log.h), the same for
 * every handle: L is emitted when L <= log_level; with a callback it goes
 * there at exactly that level; without one it goes to stderr as
 * "vswap PART: LEVEL: MSG", warnings always included.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/store_fixture.h"
#include "util/log.h"

/* stderr into a temporary file while a test step runs. */
struct capture {
	int saved, fd;
	char text[16384];
};

static void capture_start(struct capture *c)
{
	char path[] = "/var/tmp/vswap-log-XXXXXX";
	fflush(stderr);
	c->fd = mkstemp(path);
	assert_true(c->fd >= 0);
	unlink(path);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_int_equal(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
}

static const char *capture_end(struct capture *c)
{
	fflush(stderr);
	assert_int_equal(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
	close(c->saved);
	ssize_t n = pread(c->fd, c->text, sizeof(c->text) - 1, 0);
	close(c->fd);
	c->text[n > 0 ? n : 0] = '\0';
	return c->text;
}

struct seen {
	unsigned n[4];
	char last[256];
};

static void count_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	struct seen *s = ctx;
	s->n[lvl]++;
	snprintf(s->last, sizeof(s->last), "%s", msg);
}

static void emit_all(const struct logger *l)
{
	logger_printf(l, VSWAP_LOG_ERROR, "e %d", 1);
	logger_printf(l, VSWAP_LOG_WARN, "w %d", 2);
	logger_printf(l, VSWAP_LOG_INFO, "i %d", 3);
	logger_printf(l, VSWAP_LOG_DEBUG, "d %d", 4);
}

/* With a callback, the level is exactly the one given (zero: errors). */
static void test_callback_gets_levels_up_to_log_level(void **state)
{
	(void)state;
	struct seen s = {0};
	struct logger l = logger_make("store", count_log, &s, VSWAP_LOG_ERROR);
	emit_all(&l);
	assert_int_equal(s.n[VSWAP_LOG_ERROR], 1);
	assert_int_equal(s.n[VSWAP_LOG_WARN] + s.n[VSWAP_LOG_INFO] + s.n[VSWAP_LOG_DEBUG], 0);
	assert_string_equal(s.last, "e 1");
	memset(&s, 0, sizeof(s));
	l = logger_make("handler", count_log, &s, VSWAP_LOG_INFO);
	emit_all(&l);
	assert_int_equal(s.n[VSWAP_LOG_ERROR], 1);
	assert_int_equal(s.n[VSWAP_LOG_WARN], 1);
	assert_int_equal(s.n[VSWAP_LOG_INFO], 1);
	assert_int_equal(s.n[VSWAP_LOG_DEBUG], 0);
}

/* The level words of the stderr lines, public for embedders' own logs. */
static void test_level_names(void **state)
{
	(void)state;
	assert_string_equal(vswap_log_level_name(VSWAP_LOG_ERROR), "error");
	assert_string_equal(vswap_log_level_name(VSWAP_LOG_WARN), "warning");
	assert_string_equal(vswap_log_level_name(VSWAP_LOG_INFO), "info");
	assert_string_equal(vswap_log_level_name(VSWAP_LOG_DEBUG), "debug");
	assert_string_equal(vswap_log_level_name((enum vswap_log_level)7), "unknown");
}

/* Without one: stderr, one line each, warnings even at level zero. */
static void test_stderr_lines_and_warnings_kept(void **state)
{
	(void)state;
	struct capture c;
	struct logger l = logger_make("fsck", NULL, NULL, VSWAP_LOG_ERROR);
	capture_start(&c);
	emit_all(&l);
	const char *out = capture_end(&c);
	assert_string_equal(out, "vswap fsck: error: e 1\nvswap fsck: warning: w 2\n");
	l = logger_make("client", NULL, NULL, VSWAP_LOG_DEBUG);
	capture_start(&c);
	emit_all(&l);
	out = capture_end(&c);
	assert_string_equal(out, "vswap client: error: e 1\nvswap client: warning: w 2\n"
				 "vswap client: info: i 3\nvswap client: debug: d 4\n");
}

/*
 * Through a real store: without a callback, a store asked for info logs
 * its info messages (the old store logger capped stderr at warnings,
 * whatever log_level said), and a warning reaches stderr at level zero.
 */
static void test_store_follows_the_rule(void **state)
{
	(void)state;
	struct store_fixture f;
	struct capture c;
	struct vswap_store *s, *ro;
	assert_int_equal(fixture_init(&f), 0);
	f.opts.log = NULL;
	f.opts.log_ctx = NULL;
	f.opts.log_level = VSWAP_LOG_INFO;
	f.opts.map_size = 64 << 10; /* grows at the first large commit */
	const unsigned pages = 8192;
	uint8_t *buf = aligned_alloc(f.page_size, (size_t)pages * f.page_size);
	assert_non_null(buf);
	memset(buf, 0x5a, (size_t)pages * f.page_size);
	assert_int_equal(vswap_store_create(f.path, &f.opts, &s), 0);
	uint64_t region = pages;
	assert_int_equal(vswap_store_set_regions(s, &region, 1), 0);
	assert_int_equal(vswap_store_write(s, 0, pages, buf), 0);
	capture_start(&c);
	int rc = vswap_store_commit(s);
	const char *out = capture_end(&c);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "vswap store: info: index map grown to "));

	/* A read-only open beside the writer warns, even at level zero. */
	struct vswap_store_opts ro_opts = f.opts;
	ro_opts.read_only = true;
	ro_opts.log_level = VSWAP_LOG_ERROR;
	ro_opts.map_size = 0;
	capture_start(&c);
	rc = vswap_store_open(f.path, &ro_opts, &ro);
	out = capture_end(&c);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "vswap store: warning: "));
	assert_non_null(strstr(out, "open for writing elsewhere"));
	assert_int_equal(vswap_store_close(ro), 0);
	assert_int_equal(vswap_store_close(s), 0);
	free(buf);
	fixture_cleanup(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_callback_gets_levels_up_to_log_level),
	    cmocka_unit_test(test_level_names),
	    cmocka_unit_test(test_stderr_lines_and_warnings_kept),
	    cmocka_unit_test(test_store_follows_the_rule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

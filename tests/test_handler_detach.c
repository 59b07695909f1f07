/* SPDX-License-Identifier: MIT */
/*
 * vswap_handler_detach(): the handler leaves without swapping in, and the
 * store, closed and reopened, holds every page where detach left it
 * (present slots whose checksums verify, staged pages in the staging file),
 * recorded in the index as a clean close with the resting state.  Then a
 * new handler over the reopened store brings the guest back byte for byte
 * (the hibernate path).
 *
 * A resume (vswapd's restart) over a detached store finds a page resident in
 * guest memory that is staged too: the guest's copy stands and the staged
 * one is dropped unread, so a damaged staged copy of it is neither read nor
 * reported lost.  The other staged copies are checked ahead of their use
 * (not by the first fault or job to reach each, under the handler's lock):
 * with no guest access at all, every copy ends checked and a damaged one
 * lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "store/internal.h"
#include "tests/helpers/handler_fixture.h"

#define PAGES 96u
/* Pages the guest never wrote: holes, not in the store. */
#define HOLE_FROM 80u

static uint8_t byte_of(uint64_t p)
{
	return (uint8_t)(p * 7 + 3) | 1; /* never 0: zero pages are trimmed */
}

static void fill_guest(struct hfx *f)
{
	for (uint64_t p = 0; p < HOLE_FROM; p++)
		assert_int_equal(hfx_fill(f, 0, p, byte_of(p)), 0);
}

static void log_quiet(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)ctx, (void)lvl, (void)msg;
}

/* Close the store and reopen it: what a new process would see. */
static void reopen(struct hfx *f)
{
	assert_int_equal(vswap_store_close(f->store), 0);
	f->store = NULL;
	struct vswap_store_opts so = {.staging_dir = "/dev/shm", .log = log_quiet};
	assert_int_equal(vswap_store_open(f->path, &so, &f->store), 0);
	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(f->store, &info), 0);
	assert_true(info.was_clean);
}

/* Where page @p rests in the reopened store: 'p' present (bytes verified),
 * 's' staged (staging bytes checked), 'n' neither. */
static char page_place(struct hfx *f, const uint8_t *staging, uint64_t p)
{
	struct vswap_page_info pi;
	assert_int_equal(vswap_store_page(f->store, p, &pi), 0);
	assert_int_not_equal(pi.state, VSWAP_PAGE_LOST);
	if (pi.staged) {
		/* The staged copy is the current one; a slot, if any, is older. */
		assert_int_not_equal(pi.state, VSWAP_PAGE_PRESENT);
		for (size_t i = 0; i < f->page_size; i++)
			if (staging[p * f->page_size + i] != byte_of(p))
				fail_msg("staged page %llu byte %zu: %#x", (unsigned long long)p, i,
					 staging[p * f->page_size + i]);
		return 's';
	}
	if (pi.state != VSWAP_PAGE_PRESENT)
		return 'n';
	uint8_t *buf = aligned_alloc(f->page_size, f->page_size);
	assert_non_null(buf);
	assert_int_equal(vswap_store_read_page(f->store, p, buf), 0); /* checksum verified */
	for (size_t i = 0; i < f->page_size; i++)
		if (buf[i] != byte_of(p))
			fail_msg("present page %llu byte %zu: %#x", (unsigned long long)p, i,
				 buf[i]);
	free(buf);
	return 'p';
}

static uint8_t *staging_map(struct hfx *f)
{
	void *m = mmap(NULL, PAGES * f->page_size, PROT_READ, MAP_SHARED,
		       vswap_store_staging_fd(f->store), 0);
	assert_true(m != MAP_FAILED);
	return m;
}

/* A new handler over the reopened store serves every page from where it
 * rests; then a disable brings all in and the guest reads it intact. */
static void resume_and_check(struct hfx *f)
{
	assert_int_equal(hfx_start(f, NULL), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	for (uint64_t p = 0; p < PAGES; p += 5)
		assert_int_equal(hfx_page_byte(f, 0, p), p < HOLE_FROM ? byte_of(p) : 0);
	assert_int_equal(vswap_handler_disable(f->h, false), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < PAGES; p++)
		assert_int_equal(hfx_page_byte(f, 0, p), p < HOLE_FROM ? byte_of(p) : 0);
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	assert_int_equal(st.metrics.checksum_failures, 0);
	assert_int_equal(hfx_teardown(f), 0);
}

static void detach_after_enable(void **state)
{
	(void)state;
	struct hfx f;
	static const size_t pages[] = {PAGES};
	assert_int_equal(hfx_setup(&f, pages, 1, &hfx_copy), 0);
	fill_guest(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), byte_of(1)); /* back in the guest */
	assert_int_equal(vswap_handler_detach(f.h), 0);
	f.h = NULL;
	reopen(&f);
	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(f.store, &info), 0);
	assert_int_equal(info.state, VSWAP_STATE_PENDING);
	uint8_t *stg = staging_map(&f);
	for (uint64_t p = 0; p < PAGES; p++) {
		char want = p == 1 || p >= HOLE_FROM ? 'n' : 's';
		if (page_place(&f, stg, p) != want)
			fail_msg("page %llu not %c", (unsigned long long)p, want);
	}
	munmap(stg, PAGES * f.page_size);
	resume_and_check(&f);
}

static void detach_after_swap_out(void **state)
{
	(void)state;
	struct hfx f;
	static const size_t pages[] = {PAGES};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	fill_guest(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	/* Two faults from the file: those pages are the guest's again. */
	assert_int_equal(hfx_page_byte(&f, 0, 4), byte_of(4));
	assert_int_equal(hfx_page_byte(&f, 0, 40), byte_of(40));
	assert_int_equal(vswap_handler_detach(f.h), 0);
	f.h = NULL;
	reopen(&f);
	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(f.store, &info), 0);
	assert_int_equal(info.state, VSWAP_STATE_ACTIVE);
	struct vswap_store_stats ss;
	assert_int_equal(vswap_store_stats(f.store, &ss), 0);
	assert_int_equal(ss.pages_present, HOLE_FROM - 2);
	assert_int_equal(ss.pages_staged, 0);
	uint8_t *stg = staging_map(&f);
	for (uint64_t p = 0; p < PAGES; p++) {
		char want = p == 4 || p == 40 || p >= HOLE_FROM ? 'n' : 'p';
		if (page_place(&f, stg, p) != want)
			fail_msg("page %llu not %c", (unsigned long long)p, want);
	}
	munmap(stg, PAGES * f.page_size);
	resume_and_check(&f);
}

/*
 * Detach while a swap-out runs, a chunk of 4 pages at a time: wherever it
 * is cut, every page the guest wrote rests exactly once, staged or present,
 * with the right bytes.
 */
static void detach_during_swap_out(void **state)
{
	(void)state;
	struct hfx f;
	static const size_t pages[] = {PAGES};
	struct vswap_handler_opts o = {.chunk_pages = 4, .enable_mode = VSWAP_ENABLE_COPY};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	fill_guest(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(vswap_handler_detach(f.h), 0);
	f.h = NULL;
	reopen(&f);
	uint8_t *stg = staging_map(&f);
	unsigned staged = 0, present = 0;
	for (uint64_t p = 0; p < PAGES; p++) {
		char at = page_place(&f, stg, p);
		if (p >= HOLE_FROM)
			assert_int_equal(at, 'n');
		else if (at == 'n')
			fail_msg("page %llu rests nowhere", (unsigned long long)p);
		staged += at == 's';
		present += at == 'p';
	}
	assert_int_equal(staged + present, HOLE_FROM);
	print_message("detach cut the swap-out at %u staged, %u present\n", staged, present);
	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(f.store, &info), 0);
	assert_int_equal(info.state, staged ? VSWAP_STATE_PENDING : VSWAP_STATE_ACTIVE);
	munmap(stg, PAGES * f.page_size);
	resume_and_check(&f);
}

/*
 * Detach while a swap-in runs, 4 pages a chunk: the swap-in is aborted
 * where it is, and every page the guest wrote is either back in its memory
 * or still present in the store (never lost, never both missing).
 */
static void detach_during_swap_in(void **state)
{
	(void)state;
	struct hfx f;
	static const size_t pages[] = {PAGES};
	struct vswap_handler_opts o = {.chunk_pages = 4};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	fill_guest(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(vswap_handler_detach(f.h), 0);
	f.h = NULL;
	reopen(&f);
	uint8_t *stg = staging_map(&f);
	uint8_t *buf = malloc(f.page_size);
	assert_non_null(buf);
	unsigned in_store = 0, in_guest = 0;
	for (uint64_t p = 0; p < HOLE_FROM; p++) {
		char at = page_place(&f, stg, p);
		assert_true(at == 'p' || at == 'n');
		if (at == 'p') {
			in_store++;
			continue;
		}
		/* Read through the memfd: a hole reads zeros without filling. */
		assert_int_equal(pread(f.memfd, buf, f.page_size, (off_t)(p * f.page_size)),
				 (ssize_t)f.page_size);
		for (size_t i = 0; i < f.page_size; i++)
			if (buf[i] != byte_of(p))
				fail_msg("page %llu is neither in the store nor in the guest",
					 (unsigned long long)p);
		in_guest++;
	}
	print_message("detach cut the swap-in at %u in the guest, %u in the store\n", in_guest,
		      in_store);
	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(f.store, &info), 0);
	assert_int_equal(info.state, in_store ? VSWAP_STATE_ACTIVE : VSWAP_STATE_READY);
	free(buf);
	munmap(stg, PAGES * f.page_size);
	resume_and_check(&f);
}

/* From Ready: nothing moved, nothing registered; the store records Ready. */
static void detach_ready(void **state)
{
	(void)state;
	struct hfx f;
	static const size_t pages[] = {PAGES};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	fill_guest(&f);
	assert_int_equal(vswap_handler_detach(f.h), 0);
	f.h = NULL;
	for (uint64_t p = 0; p < HOLE_FROM; p += 9) /* untouched, no handler */
		assert_int_equal(hfx_addr(&f, 0, p)[0], byte_of(p));
	reopen(&f);
	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(f.store, &info), 0);
	assert_int_equal(info.state, VSWAP_STATE_READY);
	assert_int_equal(vswap_handler_detach(NULL), -EINVAL);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void count_errors(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)msg;
	if (lvl == VSWAP_LOG_ERROR)
		(*(unsigned *)ctx)++;
}

/* A detached copy-mode guest (every written page staged, none resident),
 * the staged copy of @damaged damaged and, with @resident, that page back
 * in guest memory (the dead handler had copied it in, its index not caught
 * up); the store reopened (its errors counted in *@errors) and a new
 * handler resumed over it. */
static void resume_staged(struct hfx *f, uint64_t damaged, bool resident, unsigned *errors)
{
	static const size_t pages[] = {PAGES};
	assert_int_equal(hfx_setup(f, pages, 1, &hfx_copy), 0);
	fill_guest(f);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_detach(f->h), 0);
	f->h = NULL;
	if (resident) {
		uint8_t *buf = malloc(f->page_size);
		assert_non_null(buf);
		memset(buf, 0x5a, f->page_size);
		assert_int_equal(
		    pwrite(f->memfd, buf, f->page_size, (off_t)(damaged * f->page_size)),
		    (ssize_t)f->page_size);
		free(buf);
	}
	assert_int_equal(
	    pwrite(vswap_store_staging_fd(f->store), "x", 1, (off_t)(damaged * f->page_size + 9)),
	    1);
	assert_int_equal(vswap_store_close(f->store), 0);
	struct vswap_store_opts so = {
	    .staging_dir = "/dev/shm", .log = count_errors, .log_ctx = errors};
	assert_int_equal(vswap_store_open(f->path, &so, &f->store), 0);
	assert_int_equal(hfx_start(f, &hfx_copy), 0);
	assert_int_equal(vswap_handler_resume(f->h), 0);
}

static bool all_checked(void *arg)
{
	struct hfx *f = arg;
	pthread_mutex_lock(&f->h->lock);
	uint64_t n = f->store->n_unverified;
	pthread_mutex_unlock(&f->h->lock);
	return n == 0;
}

static void resume_drops_resident_staged_unread(void **state)
{
	(void)state;
	struct hfx f;
	const uint64_t back = 2;
	unsigned errors = 0;
	resume_staged(&f, back, true, &errors);
	assert_true(hfx_wait_for(all_checked, &f)); /* the others, checked ahead */
	/* Before, the resume checked the copy it dropped: "lost", twice. */
	assert_int_equal(errors, 0);
	uint64_t lost = 1;
	assert_int_equal(vswap_handler_lost_pages(f.h, NULL, 0, &lost), 0);
	assert_int_equal(lost, 0);
	for (uint64_t p = 0; p < PAGES; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), p == back	  ? 0x5a
							  : p < HOLE_FROM ? byte_of(p)
									  : 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void resume_checks_staged_ahead(void **state)
{
	(void)state;
	struct hfx f;
	const uint64_t damaged = 7;
	unsigned errors = 0;
	resume_staged(&f, damaged, false, &errors);
	if (!(f.h->features & UFFD_FEATURE_POISON)) {
		hfx_teardown(&f);
		skip();
	}
	/* No guest access: before, every copy waited for its first use. */
	assert_true(hfx_wait_for(all_checked, &f));
	uint64_t lost = 0;
	assert_int_equal(vswap_handler_lost_pages(f.h, NULL, 0, &lost), 0);
	assert_int_equal(lost, 1);
	assert_true(errors > 0); /* the damaged copy, named */
	for (uint64_t p = 0; p < PAGES; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), p == damaged	  ? -3
							  : p < HOLE_FROM ? byte_of(p)
									  : 0);
	assert_int_equal(hfx_teardown(&f), -EBADMSG);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_detach");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(detach_after_enable),
	    cmocka_unit_test(detach_after_swap_out),
	    cmocka_unit_test(detach_during_swap_out),
	    cmocka_unit_test(detach_during_swap_in),
	    cmocka_unit_test(detach_ready),
	    cmocka_unit_test(resume_drops_resident_staged_unread),
	    cmocka_unit_test(resume_checks_staged_ahead),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

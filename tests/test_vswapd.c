/* SPDX-License-Identifier: MIT */
/*
 * vswapd end to end: a VMM side in this process (guest memory, its uffd, the
 * client) and the daemon as a child process.  Everything the in-process
 * handler does, through the daemon: faults from staging and from the swap
 * file at this process's addresses (the daemon maps the memfd elsewhere),
 * remove events, trim, swap-out, swap-in, another process's uffd at other
 * addresses, the status.  Then the restart (daemon killed with faults
 * waiting, a new one resumes the guest), a VMM that dies (the daemon frees
 * its guest; fsck repairs the store), socket activation and the socket's
 * permissions.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/handler_fixture.h"
#include "tests/helpers/kill_workload.h"
#include "tests/helpers/vswapd_fixture.h"

#define WAIT_MS 20000

static const size_t two_regions[] = {48, 80};

/* Write version @v of every page in [first, first + n). */
static void write_pages(const struct vdx *x, uint64_t first, uint64_t n, uint32_t v)
{
	uint8_t *buf = malloc(x->page_size);
	assert_non_null(buf);
	for (uint64_t p = first; p < first + n; p++) {
		kw_page_fill(buf, (uint32_t)x->page_size, p, v);
		assert_int_equal(hfx_write(vdx_page(x, p), buf, x->page_size, WAIT_MS), 0);
	}
	free(buf);
}

/* Every page in [first, first + n) holds version @v (0: zeros). */
static void check_pages(const struct vdx *x, uint64_t first, uint64_t n, uint32_t v)
{
	uint8_t *buf = malloc(x->page_size);
	assert_non_null(buf);
	for (uint64_t p = first; p < first + n; p++) {
		assert_int_equal(hfx_read(buf, vdx_page(x, p), x->page_size, WAIT_MS, NULL), 0);
		int64_t got = kw_page_version(buf, (uint32_t)x->page_size, p);
		if (got != v)
			fail_msg("page %llu: version %lld, expected %u", (unsigned long long)p,
				 (long long)got, v);
	}
	free(buf);
}

static void setup_attached(struct vdx *x, const size_t *pages, unsigned n)
{
	assert_int_equal(vdx_init(x, pages, n), 0);
	assert_int_equal(vdx_daemon_start(x), 0);
	assert_int_equal(vdx_attach(x, NULL), 0);
}

static void status(struct vdx *x, struct vswap_status *st)
{
	assert_int_equal(vswap_client_status(x->c, st), 0);
}

/* The main job through the daemon, every byte checked, in either enable
 * mode. */
static void cycle(enum vswap_enable_mode mode)
{
	struct vdx x;
	assert_int_equal(vdx_init(&x, two_regions, 2), 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	struct vswap_client_opts o = {.store_path = x.store,
				      .staging_dir = x.dir,
				      .durability = VSWAP_DURABILITY_NONE,
				      .enable_mode = mode};
	assert_int_equal(vdx_attach(&x, &o), 0);
	write_pages(&x, 0, x.total_pages, 1);
	struct vswap_status st;
	status(&x, &st);
	assert_int_equal(st.state, VSWAP_STATE_READY);
	assert_int_equal(st.uffds, 2); /* the daemon's own and the VMM's */
	assert_int_equal(st.enable_mode, mode);

	assert_int_equal(vswap_client_enable(x.c), 0);
	status(&x, &st);
	assert_int_equal(st.state, VSWAP_STATE_PENDING);
	/* Copy: faults from staging at this process's addresses.  Protect:
	 * the pages stay, write-protected; a write un-protects its page. */
	assert_int_equal(st.metrics.staging_pages, mode == VSWAP_ENABLE_COPY ? x.total_pages : 0);
	check_pages(&x, 0, 16, 1);
	status(&x, &st);
	assert_int_equal(st.metrics.copied_from_staging_pages, mode == VSWAP_ENABLE_COPY ? 16 : 0);
	/* Every metric comes through (protocol version 2): the protect
	 * mode's two as well. */
	assert_int_equal(st.metrics.protected_pages,
			 mode == VSWAP_ENABLE_PROTECT ? x.total_pages : 0);
	if (mode == VSWAP_ENABLE_PROTECT) {
		write_pages(&x, 0, 16, 1); /* write-protect faults, through the daemon */
		status(&x, &st);
		assert_int_equal(st.metrics.dirtied_pages, 16);
		assert_int_equal(st.metrics.protected_pages, x.total_pages - 16);
	}

	assert_int_equal(vswap_client_trim(x.c), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_PENDING, WAIT_MS), 0);
	assert_int_equal(vswap_client_swap_out(x.c), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_ACTIVE, WAIT_MS), 0);
	status(&x, &st);
	assert_int_equal(st.metrics.swap_pages, x.total_pages - 16); /* 16 faulted in or written */
	/* Faults from the swap file, both regions. */
	check_pages(&x, 16, 40, 1);
	status(&x, &st);
	assert_int_equal(st.metrics.copied_from_file_pages, 40);
	/* A remove event at this process's addresses, in the second region:
	 * the range reads zeros (it is not brought back from the file). */
	uint64_t rm = x.first[1] + 20;
	assert_int_equal(madvise(vdx_page(&x, rm), 4 * x.page_size, MADV_REMOVE), 0);
	write_pages(&x, 60, 4, 2); /* a write fault: a new version */

	assert_int_equal(vswap_client_disable(x.c, false), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_READY, WAIT_MS), 0);
	status(&x, &st);
	assert_int_equal(st.metrics.resident_pages, x.total_pages - 4);
	check_pages(&x, 0, 60, 1);
	check_pages(&x, 60, 4, 2);
	check_pages(&x, 64, rm - 64, 1);
	check_pages(&x, rm, 4, 0);
	check_pages(&x, rm + 4, x.total_pages - rm - 4, 1);
	status(&x, &st);
	char json[1024];
	assert_true(vswap_status_to_json(&st, json, sizeof(json)) > 0);
	assert_non_null(strstr(json, "\"state\":\"Ready\""));

	/* Commands a state cannot take are refused as in-process. */
	assert_int_equal(vswap_client_trim(x.c), -EINVAL);
	assert_int_equal(vswap_client_disable(x.c, false), -EALREADY);
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	vdx_fini(&x);
}

static void test_cycle_copy(void **state)
{
	(void)state;
	cycle(VSWAP_ENABLE_COPY);
}

static void test_cycle_protect(void **state)
{
	(void)state;
	cycle(VSWAP_ENABLE_PROTECT);
}

/* A device process maps the guest at other addresses than the VMM's: its
 * uffd is handed over with its own region addresses and its faults are
 * served there. */
/*
 * Several guests per daemon: two guests (each its memfd, uffd, store and
 * client; two VMMs, here in one process) served by one vswapd at the same
 * time.  Both swapped out at once, faulted back from their swap files and
 * swapped in: every page holds its own guest's bytes (the two write
 * different versions of the same page numbers), and each status counts
 * its own guest's pages alone.
 */
static void test_two_guests_one_daemon(void **state)
{
	(void)state;
	static const size_t one_region[] = {96};
	struct vdx x, y;
	struct vswap_status sx, sy;
	setup_attached(&x, two_regions, 2);
	assert_int_equal(vdx_init(&y, one_region, 1), 0);
	snprintf(y.sock, sizeof(y.sock), "%s", x.sock); /* x's daemon; y starts none */
	assert_int_equal(vdx_attach(&y, NULL), 0);
	write_pages(&x, 0, x.total_pages, 1);
	write_pages(&y, 0, y.total_pages, 2);

	assert_int_equal(vswap_client_enable(x.c), 0);
	assert_int_equal(vswap_client_enable(y.c), 0);
	assert_int_equal(vswap_client_swap_out(x.c), 0);
	assert_int_equal(vswap_client_swap_out(y.c), 0); /* while x's may run */
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_ACTIVE, WAIT_MS), 0);
	assert_int_equal(vswap_client_wait_state(y.c, VSWAP_STATE_ACTIVE, WAIT_MS), 0);
	status(&x, &sx);
	status(&y, &sy);
	assert_int_equal(sx.metrics.swap_pages, x.total_pages);
	assert_int_equal(sy.metrics.swap_pages, y.total_pages);

	/* Faults from both swap files, interleaved page by page. */
	for (uint64_t p = 0; p < y.total_pages; p++) {
		check_pages(&x, p, 1, 1);
		check_pages(&y, p, 1, 2);
	}
	check_pages(&x, y.total_pages, x.total_pages - y.total_pages, 1);
	status(&x, &sx);
	status(&y, &sy);
	assert_int_equal(sx.metrics.copied_from_file_pages, x.total_pages);
	assert_int_equal(sy.metrics.copied_from_file_pages, y.total_pages);

	/* Swapped out again and in again, both at once. */
	write_pages(&x, 0, 8, 3);
	assert_int_equal(vswap_client_disable(x.c, false), 0);
	assert_int_equal(vswap_client_disable(y.c, false), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_READY, WAIT_MS), 0);
	assert_int_equal(vswap_client_wait_state(y.c, VSWAP_STATE_READY, WAIT_MS), 0);
	check_pages(&x, 0, 8, 3);
	check_pages(&x, 8, x.total_pages - 8, 1);
	check_pages(&y, 0, y.total_pages, 2);

	assert_int_equal(vswap_client_detach(y.c), 0);
	y.c = NULL;
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	assert_int_equal(vdx_fsck(&y, "-n"), 0);
	vdx_fini(&y);
	vdx_fini(&x);
}

static int device_child(struct vdx *x, int sock)
{
	/* Map the regions again, at new addresses, before creating the uffd. */
	void *bases[VDX_MAX_REGIONS];
	for (unsigned i = 0; i < x->n; i++) {
		bases[i] = mmap(NULL, x->regions[i].len, PROT_READ | PROT_WRITE, MAP_SHARED,
				x->memfd, x->regions[i].offset);
		if (bases[i] == MAP_FAILED || bases[i] == x->regions[i].addr)
			return 10;
	}
	int u;
	if (vswap_uffd_create(&u) < 0)
		return 11;
	char ok = 'u';
	struct iovec iov[2] = {{&ok, 1}, {bases, sizeof(bases)}};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	memset(&cm, 0, sizeof(cm));
	struct msghdr mh = {
	    .msg_iov = iov, .msg_iovlen = 2, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &u, sizeof(int));
	if (sendmsg(sock, &mh, 0) < 0)
		return 12;
	if (read(sock, &ok, 1) != 1) /* go: swap is enabled */
		return 13;
	uint8_t *buf = malloc(x->page_size);
	for (uint64_t p = 0; p < x->total_pages; p++) {
		unsigned r = p < x->first[1] ? 0 : 1;
		memcpy(buf, (uint8_t *)bases[r] + (p - x->first[r]) * x->page_size, x->page_size);
		if (kw_page_version(buf, (uint32_t)x->page_size, p) != 3)
			return 14;
	}
	return 0;
}

static void test_device_process(void **state)
{
	(void)state;
	struct vdx x;
	setup_attached(&x, two_regions, 2);
	write_pages(&x, 0, x.total_pages, 3);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(device_child(&x, sv[1]));
	}
	close(sv[1]);
	char ok;
	void *bases[VDX_MAX_REGIONS];
	struct iovec iov[2] = {{&ok, 1}, {bases, sizeof(bases)}};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr mh = {
	    .msg_iov = iov, .msg_iovlen = 2, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
	assert_true(recvmsg(sv[0], &mh, MSG_WAITALL) > 0);
	int u;
	memcpy(&u, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
	assert_int_equal(vswap_client_add_uffd(x.c, u, bases), 0);
	close(u); /* the client and the daemon keep their own */
	assert_int_equal(vswap_client_enable(x.c), 0);
	assert_int_equal(vswap_client_swap_out(x.c), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_ACTIVE, WAIT_MS), 0);
	assert_int_equal(write(sv[0], "g", 1), 1);
	int wst;
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
	struct vswap_status st;
	status(&x, &st);
	assert_int_equal(st.metrics.copied_from_file_pages, x.total_pages);
	assert_int_equal(st.uffds, 3);
	/* The guest sees what the device process faulted in. */
	check_pages(&x, 0, x.total_pages, 3);
	assert_int_equal(vswap_client_disable(x.c, false), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_READY, WAIT_MS), 0);
	close(sv[0]);
	vdx_fini(&x);
}

/* The daemon killed while the guest faults: the faults wait in the kernel,
 * the client reconnects to a new daemon, which resumes the guest; every
 * byte is there. */
struct reader {
	const struct vdx *x;
	uint64_t first, n;
	uint32_t v;
	int bad;
	pthread_t t;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t *buf = malloc(r->x->page_size);
	for (uint64_t p = r->first; p < r->first + r->n; p++) {
		/* The guest's own access: no time limit of its own, the test
		 * joins it with one. */
		memcpy(buf, vdx_page(r->x, p), r->x->page_size);
		if (kw_page_version(buf, (uint32_t)r->x->page_size, p) != r->v)
			r->bad++;
	}
	free(buf);
	return NULL;
}

static void test_restart(void **state)
{
	(void)state;
	struct vdx x;
	setup_attached(&x, two_regions, 2);
	write_pages(&x, 0, x.total_pages, 5);
	assert_int_equal(vswap_client_enable(x.c), 0);
	/* Half staged, half in the swap file: swap out, then stage again. */
	assert_int_equal(vswap_client_swap_out(x.c), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_ACTIVE, WAIT_MS), 0);
	check_pages(&x, 0, 10, 5); /* resident again: reconcile keeps them */

	assert_int_equal(vdx_daemon_kill(&x), 0);
	/* Faults now wait in the kernel: nobody serves them. */
	struct reader r = {.x = &x, .first = 10, .n = x.total_pages - 10, .v = 5};
	assert_int_equal(pthread_create(&r.t, NULL, reader_main, &r), 0);
	for (int i = 0; i < 2000 && !hfx_task_waiting_in("userfault"); i++)
		usleep(1000);
	assert_true(hfx_task_waiting_in("userfault") != 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	/* The client's watcher reconnects; the reader's faults are served. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	assert_int_equal(pthread_timedjoin_np(r.t, NULL, &ts), 0);
	assert_int_equal(r.bad, 0);
	/* The guest is served from the new daemon's resume on, before the
	 * client has read the attach's reply and counted the reconnect:
	 * wait for that, bounded. */
	struct vswap_client_info info;
	for (int i = 0; i < WAIT_MS; i++) {
		assert_int_equal(vswap_client_info(x.c, &info), 0);
		if (info.reconnects)
			break;
		usleep(1000);
	}
	assert_int_equal(info.reconnects, 1);
	assert_true(info.connected);
	struct vswap_status st;
	status(&x, &st);
	assert_int_equal(st.state, VSWAP_STATE_ACTIVE);
	/* Killed again with no fault pending, then a command: it waits for
	 * the next daemon.  Every page is resident by now (the reader faulted
	 * them in; the index may not say so yet): reconciled, the guest comes
	 * back Ready, its ranges unregistered. */
	assert_int_equal(vdx_daemon_kill(&x), 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	status(&x, &st);
	assert_int_equal(st.state, VSWAP_STATE_READY);
	assert_int_equal(vswap_client_disable(x.c, false), -EALREADY);
	check_pages(&x, 0, x.total_pages, 5);
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	vdx_fini(&x);
}

/* vswapd killed during a copy-mode enable, between the commit that marks
 * pages staged and the commit of their checksums (the guest's copies not
 * yet punched): the next open cannot trust those staged copies and marks
 * the pages lost, but they are resident in guest memory, so the resume
 * gives them back to the guest: every byte reads as written, nothing is
 * lost, detach succeeds.  (It failed with -EBADMSG: the pages stayed
 * lost.) */
static void test_resume_unsummed_staged(void **state)
{
	(void)state;
	struct vdx x;
	assert_int_equal(vdx_init(&x, two_regions, 2), 0);
	write_pages(&x, 0, x.total_pages, 3);
	/* The store as the killed daemon left it. */
	struct vswap_store_opts so = {.staging_dir = x.dir, .durability = VSWAP_DURABILITY_NONE};
	struct vswap_store *s;
	assert_int_equal(vswap_store_create(x.store, &so, &s), 0);
	uint64_t pages[2] = {two_regions[0], two_regions[1]};
	assert_int_equal(vswap_store_set_regions(s, pages, 2), 0);
	assert_int_equal(vswap_store_stage_mark(s, 0, x.total_pages), 0);
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(vswap_store_close(s), 0);

	assert_int_equal(vdx_daemon_start(&x), 0);
	struct vswap_client_opts o = {.store_path = x.store,
				      .staging_dir = x.dir,
				      .durability = VSWAP_DURABILITY_NONE,
				      .resume = true,
				      .log_level = VSWAP_LOG_ERROR};
	assert_int_equal(vdx_attach(&x, &o), 0);
	struct vswap_status st;
	status(&x, &st);
	assert_int_equal(st.state, VSWAP_STATE_READY);
	check_pages(&x, 0, x.total_pages, 3);
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	assert_int_equal(
	    vswap_store_open(
		x.store, &(struct vswap_store_opts){.staging_dir = x.dir, .read_only = true}, &s),
	    0);
	struct vswap_store_stats ss;
	assert_int_equal(vswap_store_stats(s, &ss), 0);
	assert_int_equal(ss.pages_lost, 0);
	vswap_store_close(s);
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	vdx_fini(&x);
}

/* The same, with those pages resident in the memfd but not mapped in the
 * VMM's page tables (as after the daemon's own swap-in, which copies through
 * its mapping, not the VMM's): the new daemon, adding the VMM's uffd before
 * its resume, must not poison them there (the kernel's poison refuses only
 * a mapped entry, not a page of the memfd): every byte reads as written.
 * (It read SIGBUS: each such page poisoned in the VMM.) */
static void test_resume_unsummed_unmapped(void **state)
{
	(void)state;
	struct vdx x;
	assert_int_equal(vdx_init(&x, two_regions, 2), 0);
	write_pages(&x, 0, x.total_pages, 4);
	/* The bytes stay in the memfd; this process's page tables drop them. */
	for (unsigned r = 0; r < x.n; r++)
		assert_int_equal(madvise(x.regions[r].addr, x.regions[r].len, MADV_DONTNEED), 0);
	struct vswap_store_opts so = {.staging_dir = x.dir, .durability = VSWAP_DURABILITY_NONE};
	struct vswap_store *s;
	assert_int_equal(vswap_store_create(x.store, &so, &s), 0);
	uint64_t pages[2] = {two_regions[0], two_regions[1]};
	assert_int_equal(vswap_store_set_regions(s, pages, 2), 0);
	assert_int_equal(vswap_store_stage_mark(s, 0, x.total_pages), 0);
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(vswap_store_close(s), 0);

	assert_int_equal(vdx_daemon_start(&x), 0);
	struct vswap_client_opts o = {.store_path = x.store,
				      .staging_dir = x.dir,
				      .durability = VSWAP_DURABILITY_NONE,
				      .resume = true,
				      .log_level = VSWAP_LOG_ERROR};
	assert_int_equal(vdx_attach(&x, &o), 0);
	struct vswap_status st;
	status(&x, &st);
	assert_int_equal(st.state, VSWAP_STATE_READY);
	check_pages(&x, 0, x.total_pages, 4);
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	vdx_fini(&x);
}

/* A discard through the daemon reads zeros at once, and durably: the
 * daemon killed right after it (before any other commit) and restarted,
 * the range still reads zeros after the punch, not the swapped-out bytes.
 * Then a REMOVE of a swapped-out range with no discard first: zeros too
 * while the daemon lives. */
static void test_discard(void **state)
{
	(void)state;
	struct vdx x;
	assert_int_equal(vdx_init(&x, two_regions, 2), 0);
	assert_int_equal(vdx_listen(&x), 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	struct vswap_client_opts o = {.store_path = x.store,
				      .staging_dir = x.dir,
				      .durability = VSWAP_DURABILITY_BATCH,
				      .enable_mode = VSWAP_ENABLE_COPY,
				      .reconnect_timeout_ms = WAIT_MS};
	assert_int_equal(vdx_attach(&x, &o), 0);
	write_pages(&x, 0, x.total_pages, 4);
	assert_int_equal(vswap_client_enable(x.c), 0);
	assert_int_equal(vswap_client_swap_out(x.c), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_ACTIVE, WAIT_MS), 0);
	/* Straddling the two regions: one request each, at this process's
	 * addresses (the regions lie apart here). */
	uint64_t d0 = x.first[1] - 4;
	assert_int_equal(vswap_client_discard(x.c, vdx_page(&x, d0), 4 * x.page_size), 0);
	assert_int_equal(vswap_client_discard(x.c, vdx_page(&x, x.first[1]), 4 * x.page_size), 0);
	assert_int_equal(vdx_daemon_kill(&x), 0);
	/* The VMM frees the memory: a hole punch, which no uffd hears of
	 * (only the committed discard makes it read zeros), and a balloon's
	 * MADV_REMOVE. */
	assert_int_equal(vdx_daemon_start(&x), 0);
	assert_int_equal(fallocate(x.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)(d0 * x.page_size), (off_t)(4 * x.page_size)),
			 0);
	assert_int_equal(madvise(vdx_page(&x, x.first[1]), 4 * x.page_size, MADV_REMOVE), 0);
	check_pages(&x, 0, d0, 4);
	check_pages(&x, d0, 4, 0);
	check_pages(&x, x.first[1], 4, 0);
	check_pages(&x, x.first[1] + 4, x.total_pages - x.first[1] - 4, 4);
	/* Bad ranges. */
	assert_int_equal(vswap_client_discard(x.c, vdx_page(&x, 1) + 1, x.page_size), -EINVAL);
	assert_int_equal(vswap_client_discard(x.c, x.map, x.page_size), -EFAULT);
	assert_int_equal(vswap_client_disable(x.c, false), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_READY, WAIT_MS), 0);
	check_pages(&x, d0, 4, 0);
	check_pages(&x, x.first[1], 4, 0);
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	vdx_fini(&x);
}

struct call {
	struct vdx *x;
	pthread_t t;
	int rc;
	struct vswap_client_info info;
};

static void *status_main(void *arg)
{
	struct call *c = arg;
	struct vswap_status st;
	c->rc = vswap_client_status(c->x->c, &st);
	return NULL;
}

static void *info_main(void *arg)
{
	struct call *c = arg;
	c->rc = vswap_client_info(c->x->c, &c->info);
	return NULL;
}

static int timed_join(pthread_t t, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_timedjoin_np(t, NULL, &ts);
}

/* A daemon alive but silent (stopped here; stuck would be the same): a
 * command gets -ETIMEDOUT after the reply timeout instead of waiting
 * forever, vswap_client_info() answers meanwhile (it never waits for the
 * request in flight), and once the daemon answers again the late reply is
 * skipped and the next command gets its own. */
static void test_silent_daemon(void **state)
{
	(void)state;
	struct vdx x;
	assert_int_equal(vdx_init(&x, two_regions, 2), 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	struct vswap_client_opts o = {.store_path = x.store,
				      .staging_dir = x.dir,
				      .durability = VSWAP_DURABILITY_NONE,
				      /* Room for the attach on a loaded machine
				       * (300 ms was not always), short next to
				       * a stopped daemon's forever. */
				      .reply_timeout_ms = 1500,
				      .log_level = VSWAP_LOG_ERROR};
	assert_int_equal(vdx_attach(&x, &o), 0);
	assert_int_equal(kill(x.pid, SIGSTOP), 0);
	/* Stopped for sure (the signal takes effect as the daemon's threads
	 * next run): its state in /proc says T. */
	char statp[64], line[256];
	snprintf(statp, sizeof(statp), "/proc/%d/stat", (int)x.pid);
	bool stopped = false;
	for (int i = 0; i < WAIT_MS && !stopped; i++) {
		FILE *f = fopen(statp, "re");
		assert_non_null(f);
		char *rp = fgets(line, sizeof(line), f) ? strrchr(line, ')') : NULL;
		stopped = rp && rp[1] == ' ' && rp[2] == 'T';
		fclose(f);
		if (!stopped)
			usleep(1000);
	}
	assert_true(stopped);
	struct call st = {.x = &x, .rc = 1}, in = {.x = &x, .rc = 1};
	assert_int_equal(pthread_create(&st.t, NULL, status_main, &st), 0);
	/* The status request is in flight (or about to be): info answers. */
	assert_int_equal(pthread_create(&in.t, NULL, info_main, &in), 0);
	assert_int_equal(timed_join(in.t, WAIT_MS), 0);
	assert_int_equal(in.rc, 0);
	assert_true(in.info.connected);
	assert_int_equal(timed_join(st.t, WAIT_MS), 0);
	assert_int_equal(st.rc, -ETIMEDOUT);
	assert_int_equal(kill(x.pid, SIGCONT), 0);
	/* The next status gets its own reply (the late one skipped); on a
	 * busy machine the woken daemon may take a while. */
	struct vswap_status s;
	int rc = -ETIMEDOUT;
	for (int i = 0; i < 60 && rc == -ETIMEDOUT; i++)
		rc = vswap_client_status(x.c, &s);
	assert_int_equal(rc, 0);
	assert_int_equal(s.state, VSWAP_STATE_READY);
	assert_int_equal(vswap_client_enable(x.c), 0);
	status(&x, &s);
	assert_int_equal(s.state, VSWAP_STATE_PENDING);
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	vdx_fini(&x);
}

/* A VMM killed with its guest swapped out: the daemon sees its end of file,
 * detaches the guest (every page stays in the store) and frees it: its
 * descriptors go, its store lock is released, and vswap-fsck -y leaves the
 * store clean. */
/* Whether process @pid maps a guest memfd of the fixture's. */
static bool maps_guest(pid_t pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "memfd:vswapd-guest") != NULL;
	fclose(f);
	return found;
}

static void vmm_child(const struct vdx *parent, int done_fd)
{
	struct vdx cx;
	if (vdx_init(&cx, two_regions, 2) < 0)
		_exit(10);
	rmdir(cx.dir);
	memcpy(cx.dir, parent->dir, sizeof(cx.dir));
	memcpy(cx.sock, parent->sock, sizeof(cx.sock));
	memcpy(cx.store, parent->store, sizeof(cx.store));
	if (vdx_attach(&cx, NULL) < 0)
		_exit(11);
	write_pages(&cx, 0, cx.total_pages, 7);
	if (vswap_client_enable(cx.c) || vswap_client_swap_out(cx.c) ||
	    vswap_client_wait_state(cx.c, VSWAP_STATE_ACTIVE, WAIT_MS))
		_exit(12);
	check_pages(&cx, 0, 20, 7); /* some faults, some changes not committed */
	if (write(done_fd, "d", 1) != 1)
		_exit(13);
	for (;;)
		pause();
}

static void test_vmm_dies(void **state)
{
	(void)state;
	struct vdx x;
	assert_int_equal(vdx_init(&x, two_regions, 2), 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	int base = vdx_fd_count(x.pid);
	assert_true(base > 0);
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t vmm = fork();
	assert_true(vmm >= 0);
	if (vmm == 0) {
		close(p[0]);
		vmm_child(&x, p[1]);
	}
	close(p[1]);
	char b;
	struct pollfd pf = {.fd = p[0], .events = POLLIN};
	assert_int_equal(poll(&pf, 1, WAIT_MS), 1);
	assert_int_equal(read(p[0], &b, 1), 1);
	close(p[0]);
	assert_true(vdx_fd_count(x.pid) > base);
	assert_int_equal(kill(vmm, SIGKILL), 0);
	assert_int_equal(waitpid(vmm, NULL, 0), vmm);
	/* The daemon frees the guest on its own: wait for it, bounded. */
	int n = -1;
	for (int i = 0; i < WAIT_MS && (n = vdx_fd_count(x.pid)) > base; i++)
		usleep(1000);
	assert_true(n >= 0 && n <= base);
	/* Nor does it map the dead guest's memory any more. */
	assert_false(maps_guest(x.pid));
	int rc = vdx_fsck(&x, "-y");
	assert_true(rc == 0 || rc == 1);
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	/* The store holds the dead guest's pages that were out. */
	struct vswap_store *s;
	assert_int_equal(
	    vswap_store_open(
		x.store, &(struct vswap_store_opts){.staging_dir = x.dir, .read_only = true}, &s),
	    0);
	struct vswap_store_stats ss;
	assert_int_equal(vswap_store_stats(s, &ss), 0);
	/* Less the 20 the VMM had faulted in: they died with it. */
	assert_int_equal(ss.pages_present + ss.pages_staged, x.total_pages - 20);
	vswap_store_close(s);
	/* The daemon goes on serving others, and let go of the store: a
	 * new VMM resumes it (the store's lock is free). */
	assert_int_equal(kill(x.pid, 0), 0);
	struct vswap_client_opts o = {.store_path = x.store,
				      .staging_dir = x.dir,
				      .durability = VSWAP_DURABILITY_NONE,
				      .resume = true};
	assert_int_equal(vdx_attach(&x, &o), 0);
	assert_true(maps_guest(x.pid));
	assert_int_equal(vswap_client_exit(x.c), 0);
	x.c = NULL;
	vdx_fini(&x);
}

/* Protect mode, vswapd killed after the enable: the swap-out set was in the
 * dead daemon's memory alone (nothing staged, nothing out yet).  The new
 * daemon protects the resident pages again: the guest comes back Pending and
 * its swap-out swaps every page out.  (It came back Ready: the swap-out was
 * refused, nothing swapped.) */
static void test_restart_protect_pending(void **state)
{
	(void)state;
	struct vdx x;
	assert_int_equal(vdx_init(&x, two_regions, 2), 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	struct vswap_client_opts o = {.store_path = x.store,
				      .staging_dir = x.dir,
				      .durability = VSWAP_DURABILITY_NONE,
				      .enable_mode = VSWAP_ENABLE_PROTECT,
				      .reconnect_timeout_ms = WAIT_MS};
	assert_int_equal(vdx_attach(&x, &o), 0);
	write_pages(&x, 0, x.total_pages, 8);
	assert_int_equal(vswap_client_enable(x.c), 0);
	assert_int_equal(vdx_daemon_kill(&x), 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	struct vswap_status st;
	status(&x, &st);
	assert_int_equal(st.state, VSWAP_STATE_PENDING);
	assert_int_equal(st.metrics.protected_pages, x.total_pages);
	write_pages(&x, 0, 4, 9); /* written: out of the set again */
	assert_int_equal(vswap_client_swap_out(x.c), 0);
	assert_int_equal(vswap_client_wait_state(x.c, VSWAP_STATE_ACTIVE, WAIT_MS), 0);
	status(&x, &st);
	assert_int_equal(st.metrics.swap_pages, x.total_pages - 4);
	check_pages(&x, 0, 4, 9);
	check_pages(&x, 4, x.total_pages - 4, 8);
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	vdx_fini(&x);
}

/* The process that connected and attached is not the one whose memory the
 * uffd serves (a launcher, a helper); it swaps the guest out and exits
 * without a detach.  The memory's owner lives on: the closed connection is
 * not a detach, so the daemon keeps serving its faults from the swap file
 * (it used to detach: the ranges unregistered, each fault mapped a zero
 * page, and the pages swapped out read zeros).  Then the owner attaches the
 * store itself: the new connection takes the guest over (resumed), and the
 * rest of its pages are served there. */
static void test_connection_closed_is_not_detach(void **state)
{
	(void)state;
	struct vdx x;
	assert_int_equal(vdx_init(&x, two_regions, 2), 0);
	assert_int_equal(vdx_daemon_start(&x), 0);
	write_pages(&x, 0, x.total_pages, 6);
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t helper = fork();
	assert_true(helper >= 0);
	if (helper == 0) {
		close(p[0]);
		/* This process's uffd is the parent's (inherited): the daemon
		 * registers the parent's memory through it. */
		if (vdx_attach(&x, NULL) < 0 || vswap_client_enable(x.c) ||
		    vswap_client_swap_out(x.c) ||
		    vswap_client_wait_state(x.c, VSWAP_STATE_ACTIVE, WAIT_MS))
			_exit(12);
		_exit(write(p[1], "d", 1) == 1 ? 0 : 13);
	}
	close(p[1]);
	char b;
	struct pollfd pf = {.fd = p[0], .events = POLLIN};
	assert_int_equal(poll(&pf, 1, WAIT_MS), 1);
	assert_int_equal(read(p[0], &b, 1), 1);
	close(p[0]);
	int ws;
	assert_int_equal(waitpid(helper, &ws, 0), helper);
	assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	/* Swapped out and the connection gone: the first half faults in. */
	uint64_t half = x.total_pages / 2;
	check_pages(&x, 0, half, 6);
	struct vswap_client_opts o = {.store_path = x.store,
				      .staging_dir = x.dir,
				      .durability = VSWAP_DURABILITY_NONE,
				      .resume = true,
				      .reconnect_timeout_ms = WAIT_MS};
	assert_int_equal(vdx_attach(&x, &o), 0);
	struct vswap_status st;
	status(&x, &st);
	assert_int_equal(st.state, VSWAP_STATE_ACTIVE);
	check_pages(&x, half, x.total_pages - half, 6);
	assert_int_equal(vswap_client_detach(x.c), 0);
	x.c = NULL;
	assert_int_equal(vdx_fsck(&x, "-n"), 0);
	vdx_fini(&x);
}

int main(void)
{
	hfx_skip_if_unavailable("vswapd");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cycle_copy),
	    cmocka_unit_test(test_cycle_protect),
	    cmocka_unit_test(test_two_guests_one_daemon),
	    cmocka_unit_test(test_device_process),
	    cmocka_unit_test(test_restart),
	    cmocka_unit_test(test_restart_protect_pending),
	    cmocka_unit_test(test_vmm_dies),
	    cmocka_unit_test(test_connection_closed_is_not_detach),
	    cmocka_unit_test(test_silent_daemon),
	    cmocka_unit_test(test_resume_unsummed_staged),
	    cmocka_unit_test(test_resume_unsummed_unmapped),
	    cmocka_unit_test(test_discard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

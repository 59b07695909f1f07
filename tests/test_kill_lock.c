/* SPDX-License-Identifier: MIT */
/*
 * Minimal repro of a bug the kill test found (store/, not fixed here):
 * a store's flock outlives a SIGKILLed owner that had io_uring reads in
 * flight.
 *
 * The store takes its flock on s->fd, the descriptor its io_uring reads go
 * through (store/store.c lock_store(), store/read.c vswap_io_run(s->fd)).
 * A request in flight holds a reference to that open file description; when
 * the process is killed, the ring is torn down by deferred kernel work after
 * the process is already reaped, and the flock goes only with the last
 * reference.  So for a few milliseconds after waitpid() the dead process
 * still "holds" the store: vswap_store_open() gets -EBUSY and vswap-fsck -y
 * exits 8 naming a PID that no longer exists (seen in the kill test: kills
 * during the disable phase's swap-in).  A restarted monitor or fsck run
 * right after a crash would fail.
 *
 * A child opens a store and reads it in a loop through vswap_store_read_run
 * (several reads in flight, from the device: the page cache is dropped
 * before each pass, as after the store's O_DIRECT writes); the parent kills it, reaps it, and at
 * once tries to open the store writable.  Any -EBUSY is the bug.
 *
 * The store takes its flock on a descriptor of its own that no I/O uses, so
 * in-flight requests of a dead process cannot keep the lock alive.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <vswap/recovery.h>

#include "tests/helpers/recovery_fixture.h"

#define KL_PAGES 1024
#define KL_KILLS 100

static int busy_seen; /* kills after which the store stayed locked */

/* The victim: read the whole store over and over, io_uring reads in flight. */
static void reader(const struct rfx_store *fx, int ready_fd)
{
	struct vswap_store *s;
	uint8_t *buf = malloc((size_t)KL_PAGES * fx->page_size);
	char c = 'y';

	if (!buf || rfx_open(fx, false, &s) != 0)
		_exit(1);
	if (write(ready_fd, &c, 1) != 1)
		_exit(1);
	/* Dropped from the page cache first, so the reads go to the device
	 * and stay in flight (cached ones complete inline). */
	for (;;) {
		posix_fadvise(vswap_store_swap_fd(s), 0, 0, POSIX_FADV_DONTNEED);
		vswap_store_read_run(s, 0, KL_PAGES, buf, NULL);
	}
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Block until the lock is free (the dead holder's deferred release), to
 * tell how long it lingered.  Bounded by alarm(): no busy wait. */
static double wait_release(const char *path, const struct timespec *t0)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	alarm(10);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	alarm(0);
	close(fd);
	return ms_since(t0);
}

/* One kill; true when the dead child's lock was still held after waitpid. */
static bool kill_once(const struct rfx_store *fx, unsigned n)
{
	struct vswap_store *s;
	struct timespec t0;
	int fds[2], status, err;
	pid_t pid, holder = 0;
	char c;

	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		reader(fx, fds[1]);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	close(fds[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	err = rfx_open(fx, false, &s);
	if (err == 0) {
		vswap_store_close(s);
		return false;
	}
	assert_int_equal(err, -EBUSY);
	vswap_lock_holder(fx->path, &holder);
	printf("kill_lock: kill %u: store open after waitpid: %s; /proc/locks holder %d "
	       "(the reaped child was %d); released after %.2f ms\n",
	       n, vswap_strerror(err), (int)holder, (int)pid, wait_release(fx->path, &t0));
	return true;
}

static void lock_released_at_death(void **state)
{
	struct rfx_store fx;
	struct rfx_shape sh = {
	    .total_pages = KL_PAGES, .written = KL_PAGES, .durability = VSWAP_DURABILITY_NONE};

	(void)state;
	assert_int_equal(rfx_init(&fx, "kill-lock"), 0);
	assert_int_equal(rfx_build(&fx, &sh), 0);
	for (unsigned n = 1; n <= KL_KILLS; n++)
		busy_seen += kill_once(&fx, n);
	rfx_cleanup(&fx);
	printf("kill_lock: %d of %d kills left the store locked by the dead process\n", busy_seen,
	       KL_KILLS);
	assert_int_equal(busy_seen, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lock_released_at_death),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * The userfaultfd wrapper (errors mapped as the handler needs them, POISON,
 * REMOVE events and EAGAIN while one is pending) and the uffd list (static
 * vs dynamic, static count set once, dead detection, GC re-keying epoll).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/uffd.h"
#include "handler/uffd_list.h"
#include "tests/helpers/handler_fixture.h"

struct mem {
	int memfd, uffd;
	uint8_t *p;
	size_t ps, len;
};

static void mem_setup(struct mem *m, size_t pages)
{
	m->ps = (size_t)sysconf(_SC_PAGESIZE);
	m->len = pages * m->ps;
	m->memfd = memfd_create("uffd-test", MFD_CLOEXEC);
	assert_true(m->memfd >= 0);
	assert_int_equal(ftruncate(m->memfd, (off_t)m->len), 0);
	m->p = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, m->memfd, 0);
	assert_true(m->p != MAP_FAILED);
	uint64_t features = 0;
	assert_int_equal(uffd_open(&m->uffd, &features), 0);
	assert_int_equal(features & UFFD_WANTED_FEATURES, UFFD_WANTED_FEATURES);
	assert_true(features & UFFD_FEATURE_POISON); /* kernel >= 6.6 */
	assert_int_equal(uffd_register(m->uffd, (uintptr_t)m->p, m->len), 0);
}

static void mem_teardown(struct mem *m)
{
	uffd_unregister(m->uffd, (uintptr_t)m->p, m->len);
	close(m->uffd);
	munmap(m->p, m->len);
	close(m->memfd);
}

static void ioctls_and_errors(void **state)
{
	(void)state;
	struct mem m;
	mem_setup(&m, 4);
	uint8_t *src = aligned_alloc(m.ps, 2 * m.ps);
	memset(src, 0x7e, 2 * m.ps);
	struct uffd_msg msg[4];
	assert_int_equal(uffd_read_events(m.uffd, msg, 4), 0); /* none queued */
	size_t done = 0;
	assert_int_equal(uffd_copy(m.uffd, (uintptr_t)m.p, src, 2 * m.ps, false, &done), 0);
	assert_int_equal(done, 2 * m.ps);
	assert_int_equal(m.p[m.ps + 5], 0x7e); /* present now: no fault */
	assert_int_equal(uffd_copy(m.uffd, (uintptr_t)m.p, src, m.ps, true, NULL), -EEXIST);
	assert_int_equal(uffd_zeropage(m.uffd, (uintptr_t)m.p, m.ps, true), -EEXIST);
	assert_int_equal(uffd_zeropage(m.uffd, (uintptr_t)m.p + 2 * m.ps, m.ps, true), 0);
	assert_int_equal(m.p[2 * m.ps], 0);
	assert_int_equal(uffd_wake(m.uffd, (uintptr_t)m.p, m.ps), 0);
	/* POISON: an access gets SIGBUS, never bytes. */
	assert_int_equal(uffd_poison(m.uffd, (uintptr_t)m.p + 3 * m.ps, m.ps, true), 0);
	uint8_t b = 0x11;
	size_t at = 1;
	assert_int_equal(hfx_read(&b, m.p + 3 * m.ps, 1, 0, &at), -EFAULT);
	assert_int_equal(b, 0x11);
	free(src);
	mem_teardown(&m);
}

struct remover {
	void *addr;
	size_t len;
	int rc;
};

static void *do_remove(void *arg)
{
	struct remover *r = arg;
	r->rc = madvise(r->addr, r->len, MADV_REMOVE);
	return NULL;
}

/* A REMOVE event blocks the remover until read; meanwhile every ioctl
 * fails with EAGAIN (Firecracker's note), and works again after. */
static void remove_event_and_eagain(void **state)
{
	(void)state;
	struct mem m;
	mem_setup(&m, 4);
	uint8_t *one = malloc(m.ps);
	memset(one, 1, m.ps); /* the page exists, as a guest's would */
	assert_int_equal(pwrite(m.memfd, one, m.ps, 0), (ssize_t)m.ps);
	free(one);
	struct remover r = {m.p, m.ps, -1};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, do_remove, &r), 0);
	struct pollfd pf = {.fd = m.uffd, .events = POLLIN};
	assert_int_equal(poll(&pf, 1, 5000), 1);
	assert_int_equal(uffd_zeropage(m.uffd, (uintptr_t)m.p + m.ps, m.ps, true), -EAGAIN);
	struct uffd_msg msg[4];
	assert_int_equal(uffd_read_events(m.uffd, msg, 4), 1);
	assert_int_equal(msg[0].event, UFFD_EVENT_REMOVE);
	assert_int_equal(msg[0].arg.remove.start, (uintptr_t)m.p);
	assert_int_equal(msg[0].arg.remove.end, (uintptr_t)m.p + m.ps);
	pthread_join(t, NULL);
	assert_int_equal(r.rc, 0);
	assert_int_equal(uffd_zeropage(m.uffd, (uintptr_t)m.p + m.ps, m.ps, true), 0);
	mem_teardown(&m);
}

/* ---- the uffd list --------------------------------------------------------- */

/* A child process that creates a uffd, hands it over and lives until told
 * to exit (a byte on its socket), touching the checker page first if asked. */
struct kid {
	pid_t pid;
	int sock;
};

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = {&byte, 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
	return fd;
}

static int kid_start(struct kid *k, const volatile uint8_t *touch)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	k->pid = fork();
	assert_true(k->pid >= 0);
	if (k->pid == 0) {
		int fd;
		char c = 'u';
		if (uffd_open(&fd, NULL) < 0)
			_exit(1);
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} u;
		memset(&u, 0, sizeof(u));
		struct iovec iov = {&c, 1};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = u.buf,
				     .msg_controllen = sizeof(u.buf)};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		if (sendmsg(sv[1], &msg, 0) != 1)
			_exit(2);
		while (read(sv[1], &c, 1) == 1) {
			if (c == 'x')
				_exit(0);
			if (c == 't' && touch)
				(void)*touch; /* faults on the checker page */
		}
		_exit(0);
	}
	close(sv[1]);
	k->sock = sv[0];
	return recv_fd(k->sock);
}

static void kid_exit(struct kid *k)
{
	assert_int_equal(write(k->sock, "x", 1), 1);
	int st;
	waitpid(k->pid, &st, 0);
	close(k->sock);
}

static void list_static_dynamic_gc(void **state)
{
	(void)state;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct uffd_list l;
	assert_int_equal(uffd_list_init(&l, ep, (size_t)sysconf(_SC_PAGESIZE)), 0);
	int fd;
	unsigned idx;
	assert_int_equal(uffd_open(&fd, NULL), 0);
	assert_int_equal(uffd_list_add(&l, fd, &idx), 0);
	assert_int_equal(idx, 0);
	struct kid k[6];
	/* Before the static count is known nothing is dynamic. */
	fd = kid_start(&k[0], NULL);
	assert_int_equal(uffd_list_add(&l, fd, &idx), 0);
	assert_false(l.v[1].dynamic);
	assert_int_equal(uffd_list_set_static(&l, 1), 0);
	assert_int_equal(uffd_list_set_static(&l, 2), -EALREADY);
	for (int i = 1; i < 6; i++) {
		fd = kid_start(&k[i], (const volatile uint8_t *)l.dummy);
		assert_int_equal(uffd_list_add(&l, fd, &idx), 0);
		assert_int_equal(idx, (unsigned)i + 1);
		assert_true(l.v[idx].dynamic);
	}
	int fd_last = l.v[6].fd; /* kid 5: survives and moves down */
	/* Kid 0 (static) and kids 1, 2, 4 die; kid 5 is readable (a fault
	 * queued on its uffd) when the GC re-keys it. */
	kid_exit(&k[0]);
	kid_exit(&k[1]);
	kid_exit(&k[2]);
	kid_exit(&k[4]);
	assert_int_equal(write(k[5].sock, "t", 1), 1);
	struct pollfd pf = {.fd = fd_last, .events = POLLIN};
	assert_int_equal(poll(&pf, 1, 5000), 1);
	assert_true(uffd_list_is_dead(&l, 2));
	assert_false(uffd_list_is_dead(&l, 4));
	assert_int_equal(uffd_list_gc(&l), 3);
	assert_int_equal(l.n, 4); /* main, dead static kid 0, kids 3 and 5 */
	assert_false(l.v[1].dynamic);
	int i5 = -1;
	for (unsigned i = 0; i < l.n; i++)
		if (l.v[i].fd == fd_last)
			i5 = (int)i;
	assert_true(i5 >= 2);
	struct epoll_event ev;
	assert_int_equal(epoll_wait(ep, &ev, 1, 5000), 1);
	assert_int_equal(uffd_list_index(&l, ev.data.u64), i5);
	/* Release kid 5's fault, then let the kids go. */
	struct uffd_msg msg;
	assert_int_equal(uffd_read_events(fd_last, &msg, 1), 1);
	int zrc = uffd_zeropage(fd_last, l.dummy, l.page_size, true);
	assert_true(zrc == 0 || zrc == -EEXIST);
	uffd_wake(fd_last, l.dummy, l.page_size);
	kid_exit(&k[3]);
	kid_exit(&k[5]);
	assert_int_equal(uffd_list_gc(&l), 2);
	assert_int_equal(l.n, 2);
	uffd_list_fini(&l);
	close(ep);
}

int main(void)
{
	hfx_skip_if_unavailable("uffd");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ioctls_and_errors),
	    cmocka_unit_test(remove_event_and_eagain),
	    cmocka_unit_test(list_static_dynamic_gc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * vswapd against malformed and hostile requests, sent raw on its socket:
 * zero-length and truncated packets, wrong magic and version, lengths and
 * descriptor counts that disagree, too many descriptors, counts past their
 * limits, descriptors of the wrong kind, a memfd shorter than its region or
 * not sealed, commands out of place.  Each gets an error reply naming it and
 * the daemon goes on serving (a proper guest attaches afterwards on the same
 * connection and on a new one).  Also: the socket is 0600, another user is
 * refused, socket activation (LISTEN_FDS) is honoured, a version-1 peer is
 * answered in version 1, and the client names a version-1 daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/wire.h"
#include "tests/helpers/handler_fixture.h"
#include "tests/helpers/vswapd_fixture.h"

static int dial(const struct vdx *x)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, x->sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Send @len raw bytes with @nfds descriptors. */
static void send_raw(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	struct iovec iov = {(void *)buf, len};
	union {
		char b[CMSG_SPACE(sizeof(int) * 128)];
		struct cmsghdr h;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		mh.msg_control = u.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	assert_int_equal(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

/* The reply's result (its seq checked), within a time limit; its version
 * in *@version (NULL: it must be WIRE_VERSION), its layout that version's. */
static int reply_result_v(int sock, uint64_t seq, uint16_t *version)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	assert_int_equal(poll(&p, 1, VDX_TIMEOUT_MS), 1);
	uint8_t buf[sizeof(struct wire_hdr) + sizeof(struct wire_reply) + 16];
	ssize_t n = recv(sock, buf, sizeof(buf), 0);
	struct wire_hdr h;
	assert_true(n >= (ssize_t)sizeof(h));
	memcpy(&h, buf, sizeof(h));
	assert_int_equal(h.magic, WIRE_MAGIC);
	assert_int_equal(h.type, WIRE_REPLY);
	assert_int_equal(h.seq, seq);
	assert_int_equal(h.len, n);
	if (version)
		*version = h.version;
	else
		assert_int_equal(h.version, WIRE_VERSION);
	int32_t result;
	if (h.version == 1) {
		assert_int_equal(n, sizeof(struct wire_hdr) + sizeof(struct wire_reply_v1));
	} else {
		assert_int_equal(h.version, 2);
		assert_int_equal(n, sizeof(struct wire_hdr) + sizeof(struct wire_reply));
	}
	memcpy(&result, buf + sizeof(h), sizeof(result));
	return result;
}

static int reply_result(int sock, uint64_t seq)
{
	return reply_result_v(sock, seq, NULL);
}

/* A message of @type with @payload, header filled in as the protocol says
 * unless the caller breaks it afterwards. */
static size_t build(uint8_t *buf, uint16_t type, uint64_t seq, const void *payload, size_t len,
		    unsigned nfds)
{
	struct wire_hdr h = {.magic = WIRE_MAGIC,
			     .version = WIRE_VERSION,
			     .type = type,
			     .len = (uint32_t)(sizeof(h) + len),
			     .nfds = nfds,
			     .seq = seq};
	memcpy(buf, &h, sizeof(h));
	if (len)
		memcpy(buf + sizeof(h), payload, len);
	return sizeof(h) + len;
}

static int command(int sock, uint64_t seq, uint32_t cmd)
{
	uint8_t buf[128];
	struct wire_command c = {.cmd = cmd};
	size_t n = build(buf, WIRE_COMMAND, seq, &c, sizeof(c), 0);
	send_raw(sock, buf, n, NULL, 0);
	return reply_result(sock, seq);
}

static void start(struct vdx *x)
{
	static const size_t pages[] = {16};
	assert_int_equal(vdx_init(x, pages, 1), 0);
	assert_int_equal(vdx_daemon_start(x), 0);
}

/* Is the daemon still alive and serving?  A full attach proves it. */
static void still_serving(struct vdx *x)
{
	assert_int_equal(kill(x->pid, 0), 0);
	assert_int_equal(vdx_attach(x, NULL), 0);
	assert_int_equal(vswap_client_enable(x->c), 0);
	assert_int_equal(vswap_client_disable(x->c, false), 0);
	assert_int_equal(vswap_client_wait_state(x->c, VSWAP_STATE_READY, VDX_TIMEOUT_MS), 0);
}

static void test_framing(void **state)
{
	(void)state;
	struct vdx x;
	start(&x);
	int s = dial(&x);
	uint8_t buf[WIRE_MAX_MSG + 64];
	memset(buf, 0, sizeof(buf));

	/* No header to read a version from: answered in version 1. */
	uint16_t v = 0;
	send_raw(s, buf, 0, NULL, 0); /* zero-length packet */
	assert_int_equal(reply_result_v(s, 0, &v), -ENODATA);
	assert_int_equal(v, 1);
	send_raw(s, "VSW", 3, NULL, 0); /* shorter than a header */
	assert_int_equal(reply_result_v(s, 0, &v), -EBADMSG);
	assert_int_equal(v, 1);

	size_t n = build(buf, WIRE_COMMAND, 7, NULL, 0, 0);
	((struct wire_hdr *)buf)->magic = 0x12345678;
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result(s, 7), -EPROTO);

	/* A version the daemon does not know: refused in version 1's reply,
	 * which every peer reads. */
	n = build(buf, WIRE_COMMAND, 8, NULL, 0, 0);
	((struct wire_hdr *)buf)->version = 99;
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result_v(s, 8, &v), -EPROTONOSUPPORT);
	assert_int_equal(v, 1);
	n = build(buf, WIRE_COMMAND, 8, NULL, 0, 0);
	((struct wire_hdr *)buf)->version = 0;
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result_v(s, 8, &v), -EPROTONOSUPPORT);

	/* The header says more than was sent: a truncated message. */
	struct wire_command c = {.cmd = WIRE_CMD_STATUS};
	n = build(buf, WIRE_COMMAND, 9, &c, sizeof(c), 0);
	send_raw(s, buf, n - 4, NULL, 0);
	assert_int_equal(reply_result(s, 9), -EBADMSG);

	/* A descriptor the header does not announce. */
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	n = build(buf, WIRE_COMMAND, 10, &c, sizeof(c), 0);
	send_raw(s, buf, n, &fd, 1);
	assert_int_equal(reply_result(s, 10), -EBADF);
	/* More descriptors than any message takes. */
	int many[100];
	for (int i = 0; i < 100; i++)
		many[i] = fd;
	n = build(buf, WIRE_COMMAND, 11, &c, sizeof(c), 100);
	send_raw(s, buf, n, many, 100);
	assert_int_equal(reply_result(s, 11), -ETOOMANYREFS);
	close(fd);

	/* Longer than the largest message. */
	uint8_t *big = calloc(1, WIRE_MAX_MSG);
	assert_non_null(big);
	n = build(buf, WIRE_COMMAND, 12, big, WIRE_MAX_MSG, 0);
	free(big);
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result(s, 12), -EMSGSIZE);

	/* An unknown type, an unknown command, commands before attach, a
	 * command of the wrong length. */
	n = build(buf, 42, 13, NULL, 0, 0);
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result(s, 13), -EOPNOTSUPP);
	assert_int_equal(command(s, 14, WIRE_CMD_ENABLE), -ENOTCONN);
	n = build(buf, WIRE_COMMAND, 15, &c, sizeof(c) - 1, 0);
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result(s, 15), -EBADMSG);
	close(s);
	still_serving(&x);
	vdx_fini(&x);
}

/* An ATTACH payload for @x's one region, the VMM's uffd and a path. */
static size_t attach_msg(uint8_t *buf, uint64_t seq, const struct vdx *x, struct wire_attach a,
			 struct wire_region r, const char *path)
{
	uint8_t p[1024];
	size_t n = 0;
	memcpy(p, &a, sizeof(a));
	n += sizeof(a);
	memcpy(p + n, &r, sizeof(r));
	n += sizeof(r);
	uint64_t base = (uint64_t)(uintptr_t)x->regions[0].addr;
	memcpy(p + n, &base, sizeof(base));
	n += sizeof(base);
	memcpy(p + n, path, strlen(path));
	n += strlen(path);
	return build(buf, WIRE_ATTACH, seq, p, n, a.nregions + a.nuffds);
}

static void test_attach_checks(void **state)
{
	(void)state;
	struct vdx x;
	start(&x);
	int s = dial(&x);
	uint8_t buf[2048];
	size_t ps = x.page_size;
	const struct wire_attach good = {
	    .nregions = 1, .nuffds = 1, .path_len = (uint32_t)strlen(x.store)};
	const struct wire_region reg = {16 * ps, 0};
	int fds[2] = {x.memfd, x.uffd};
	struct wire_attach a;
	struct wire_region r;

	/* Counts past their limits, and a count the descriptors contradict. */
	a = good;
	a.nregions = 1000;
	size_t n = attach_msg(buf, 1, &x, a, reg, x.store);
	((struct wire_hdr *)buf)->nfds = 2;
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 1), -E2BIG);
	a = good;
	a.nuffds = 0;
	n = attach_msg(buf, 2, &x, a, reg, x.store);
	((struct wire_hdr *)buf)->nfds = 2;
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 2), -EINVAL);
	n = attach_msg(buf, 3, &x, good, reg, x.store);
	((struct wire_hdr *)buf)->nfds = 1;
	send_raw(s, buf, n, fds, 1);
	assert_int_equal(reply_result(s, 3), -EBADF);
	/* The payload shorter than its counts say. */
	n = attach_msg(buf, 4, &x, good, reg, x.store);
	((struct wire_hdr *)buf)->len -= 3;
	send_raw(s, buf, n - 3, fds, 2);
	assert_int_equal(reply_result(s, 4), -EBADMSG);
	/* A path with a NUL in it, an empty path. */
	a = good;
	n = attach_msg(buf, 5, &x, a, reg, x.store);
	buf[n - 2] = 0;
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 5), -EINVAL);

	/* A region longer than its memfd (the daemon's own access would
	 * fault), unaligned, at a wrapping offset. */
	r = reg;
	r.len = 32 * ps;
	n = attach_msg(buf, 6, &x, good, r, x.store);
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 6), -ERANGE);
	r = reg;
	r.offset = 100;
	n = attach_msg(buf, 7, &x, good, r, x.store);
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 7), -EINVAL);
	r = reg;
	r.offset = UINT64_MAX & ~(uint64_t)(ps - 1);
	n = attach_msg(buf, 8, &x, good, r, x.store);
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 8), -EOVERFLOW);
	/* Not sealed against shrinking: the VMM could cut it under us. */
	n = attach_msg(buf, 9, &x, good, reg, x.store);
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 9), -EPERM);
	assert_int_equal(fcntl(x.memfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	/* A descriptor of the wrong kind: a FIFO as memfd, a file as uffd. */
	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	int bad[2] = {pfd[0], x.uffd};
	n = attach_msg(buf, 10, &x, good, reg, x.store);
	send_raw(s, buf, n, bad, 2);
	assert_int_equal(reply_result(s, 10), -EBADF);
	int bad2[2] = {x.memfd, x.memfd};
	n = attach_msg(buf, 11, &x, good, reg, x.store);
	send_raw(s, buf, n, bad2, 2);
	assert_int_equal(reply_result(s, 11), -EBADF);
	close(pfd[0]);
	close(pfd[1]);
	/* Resume of a store that does not exist; unknown flags. */
	a = good;
	a.flags = WIRE_ATTACH_RESUME;
	n = attach_msg(buf, 12, &x, a, reg, x.store);
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 12), -ENOENT);
	a.flags = 0x80;
	n = attach_msg(buf, 13, &x, a, reg, x.store);
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 13), -EINVAL);

	/* The same connection still takes a proper attach. */
	n = attach_msg(buf, 14, &x, good, reg, x.store);
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 14), 0);
	n = attach_msg(buf, 15, &x, good, reg, x.store);
	send_raw(s, buf, n, fds, 2);
	assert_int_equal(reply_result(s, 15), -EISCONN);
	/* An ADD_UFFD without its descriptor, and with a count that does
	 * not match the guest's regions. */
	struct {
		struct wire_add_uffd a;
		uint64_t base[2];
	} au = {{.nregions = 1}, {(uint64_t)(uintptr_t)x.regions[0].addr, 0}};
	n = build(buf, WIRE_ADD_UFFD, 16, &au, sizeof(au.a) + 8, 0);
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result(s, 16), -EBADF);
	au.a.nregions = 2;
	n = build(buf, WIRE_ADD_UFFD, 17, &au, sizeof(au), 1);
	send_raw(s, buf, n, &x.uffd, 1);
	assert_int_equal(reply_result(s, 17), -EINVAL);
	assert_int_equal(command(s, 18, WIRE_CMD_DETACH), 0);
	close(s);
	/* A raw attach names no staging directory: the daemon used its
	 * default (it runs without --staging-dir), and the store's staging
	 * file is there, not in x.dir (destroying with x.dir left it in
	 * /dev/shm). */
	assert_int_equal(vswap_store_destroy(x.store, &(struct vswap_store_opts){0}), 0);
	still_serving(&x);
	vdx_fini(&x);
}

static void test_socket_mode_and_peer(void **state)
{
	(void)state;
	struct vdx x;
	start(&x);
	struct stat st;
	assert_int_equal(stat(x.sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Another user: refused by the file mode, and by the credentials
	 * check when the mode is opened up. */
	assert_int_equal(chmod(x.sock, 0666), 0);
	assert_int_equal(chmod(x.dir, 0755), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(10);
		int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		strcpy(sa.sun_path, x.sock);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(11);
		struct wire_hdr h = {.magic = WIRE_MAGIC,
				     .version = WIRE_VERSION,
				     .type = WIRE_COMMAND,
				     .len = sizeof(h),
				     .seq = 1};
		if (send(fd, &h, sizeof(h), MSG_NOSIGNAL) < 0)
			_exit(0); /* closed already */
		char b[256];
		/* The daemon closes without a reply (end of file or reset). */
		_exit(recv(fd, b, sizeof(b), 0) > 0 ? 12 : 0);
	}
	int wst;
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
	still_serving(&x);
	vdx_fini(&x);
}

/* Socket activation: the socket is fd 3, LISTEN_PID the daemon's pid. */
static void test_socket_activation(void **state)
{
	(void)state;
	struct vdx x;
	static const size_t pages[] = {16};
	assert_int_equal(vdx_init(&x, pages, 1), 0);
	int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, x.sock);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 8), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(l, 3) != 3)
			_exit(126);
		char v[32];
		snprintf(v, sizeof(v), "%d", (int)getpid());
		setenv("LISTEN_PID", v, 1);
		setenv("LISTEN_FDS", "1", 1);
		execl(vdx_daemon_path(), "vswapd", "--log-level", "error", (char *)NULL);
		_exit(127);
	}
	close(l);
	x.pid = pid;
	/* Connecting works at once: the socket listens before the daemon
	 * accepts; the attach is answered once it does. */
	still_serving(&x);
	vdx_fini(&x);
}

/* Version 1 still works: its requests are answered in its own reply
 * (twelve metrics), and what it does not have (DISCARD) is an unknown
 * type.  Version 2's DISCARD is checked like every request. */
static void test_versions(void **state)
{
	(void)state;
	struct vdx x;
	start(&x);
	int s = dial(&x);
	uint8_t buf[256];
	uint16_t v = 0;
	struct wire_command c = {.cmd = WIRE_CMD_STATUS};
	size_t n = build(buf, WIRE_COMMAND, 1, &c, sizeof(c), 0);
	((struct wire_hdr *)buf)->version = 1;
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result_v(s, 1, &v), -ENOTCONN);
	assert_int_equal(v, 1);
	struct wire_discard d = {0, 1};
	n = build(buf, WIRE_DISCARD, 2, &d, sizeof(d), 0);
	((struct wire_hdr *)buf)->version = 1;
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result_v(s, 2, &v), -EOPNOTSUPP);
	assert_int_equal(v, 1);
	n = build(buf, WIRE_DISCARD, 3, &d, sizeof(d), 0);
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result(s, 3), -ENOTCONN);
	n = build(buf, WIRE_DISCARD, 4, &d, sizeof(d) - 8, 0);
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result(s, 4), -EBADMSG);
	close(s);
	/* A version-1 peer attached: version 1's reply, its twelve metrics
	 * those of the guest. */
	s = dial(&x);
	assert_int_equal(fcntl(x.memfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	const struct wire_attach a = {
	    .nregions = 1, .nuffds = 1, .path_len = (uint32_t)strlen(x.store)};
	const struct wire_region reg = {16 * x.page_size, 0};
	int fds[2] = {x.memfd, x.uffd};
	uint8_t big[2048];
	n = attach_msg(big, 5, &x, a, reg, x.store);
	((struct wire_hdr *)big)->version = 1;
	send_raw(s, big, n, fds, 2);
	assert_int_equal(reply_result_v(s, 5, &v), 0);
	assert_int_equal(v, 1);
	n = build(buf, WIRE_COMMAND, 6, &c, sizeof(c), 0);
	((struct wire_hdr *)buf)->version = 1;
	send_raw(s, buf, n, NULL, 0);
	struct pollfd p = {.fd = s, .events = POLLIN};
	assert_int_equal(poll(&p, 1, VDX_TIMEOUT_MS), 1);
	ssize_t got = recv(s, big, sizeof(big), 0);
	assert_int_equal(got, sizeof(struct wire_hdr) + sizeof(struct wire_reply_v1));
	struct wire_reply_v1 r1;
	memcpy(&r1, big + sizeof(struct wire_hdr), sizeof(r1));
	assert_int_equal(r1.result, 0);
	assert_int_equal(r1.has_status, 1);
	assert_int_equal(r1.status.state, VSWAP_STATE_READY);
	assert_int_equal(r1.status.uffds, 2); /* the daemon's own and the VMM's */
	c.cmd = WIRE_CMD_DETACH;
	n = build(buf, WIRE_COMMAND, 7, &c, sizeof(c), 0);
	((struct wire_hdr *)buf)->version = 1;
	send_raw(s, buf, n, NULL, 0);
	assert_int_equal(reply_result_v(s, 7, &v), 0);
	close(s);
	/* A raw attach names no staging directory: the daemon used its
	 * default (it runs without --staging-dir), and the store's staging
	 * file is there, not in x.dir (destroying with x.dir left it in
	 * /dev/shm). */
	assert_int_equal(vswap_store_destroy(x.store, &(struct vswap_store_opts){0}), 0);
	still_serving(&x);
	vdx_fini(&x);
}

struct old_daemon {
	int lfd;
	pthread_t t;
};

/* What a version-1 vswapd answers a version-2 request: -EPROTONOSUPPORT
 * in a version-1 reply. */
static void *old_daemon_main(void *arg)
{
	struct old_daemon *o = arg;
	int fd = accept4(o->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	uint8_t buf[WIRE_MAX_MSG];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, VDX_TIMEOUT_MS) == 1) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0); /* descriptors dropped */
		struct wire_hdr h;
		if (n >= (ssize_t)sizeof(h)) {
			memcpy(&h, buf, sizeof(h));
			struct wire_reply_v1 r = {.result = -EPROTONOSUPPORT};
			struct wire_hdr rh = {.magic = WIRE_MAGIC,
					      .version = 1,
					      .type = WIRE_REPLY,
					      .len = sizeof(rh) + sizeof(r),
					      .seq = h.seq};
			memcpy(buf, &rh, sizeof(rh));
			memcpy(buf + sizeof(rh), &r, sizeof(r));
			if (send(fd, buf, rh.len, MSG_NOSIGNAL) < 0)
				fprintf(stderr, "old daemon: send: %s\n", strerror(errno));
		}
	}
	close(fd);
	return NULL;
}

static void capture_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	if (lvl == VSWAP_LOG_ERROR && strlen(msg) < 512)
		strcpy(ctx, msg);
}

/* The client against a version-1 vswapd: refused by name, not taken for a
 * daemon that went away (no reconnect loop), nothing hangs. */
static void test_old_daemon(void **state)
{
	(void)state;
	struct vdx x;
	static const size_t pages[] = {16};
	assert_int_equal(vdx_init(&x, pages, 1), 0);
	assert_int_equal(vdx_listen(&x), 0);
	struct old_daemon o = {.lfd = x.listen_fd};
	assert_int_equal(pthread_create(&o.t, NULL, old_daemon_main, &o), 0);
	char msg[512] = "";
	struct vswap_client_opts co = {.store_path = x.store,
				       .staging_dir = x.dir,
				       .log = capture_log,
				       .log_ctx = msg,
				       .log_level = VSWAP_LOG_ERROR};
	assert_int_equal(vswap_client_connect(x.sock, &co, &x.c), 0);
	assert_int_equal(vswap_client_attach(x.c, x.regions, x.n, x.uffd), -EPROTONOSUPPORT);
	assert_int_equal(pthread_join(o.t, NULL), 0);
	assert_non_null(strstr(msg, "speaks protocol version 1; this client needs 2"));
	vswap_client_detach(x.c);
	x.c = NULL;
	vdx_fini(&x);
}

int main(void)
{
	hfx_skip_if_unavailable("vswapd_proto");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_framing),
	    cmocka_unit_test(test_attach_checks),
	    cmocka_unit_test(test_socket_mode_and_peer),
	    cmocka_unit_test(test_socket_activation),
	    cmocka_unit_test(test_versions),
	    cmocka_unit_test(test_old_daemon),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

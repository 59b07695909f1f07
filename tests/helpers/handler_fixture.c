/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/helpers/handler_fixture.h"

const struct vswap_handler_opts hfx_copy = {.enable_mode = VSWAP_ENABLE_COPY};

const char *hfx_unavailable(void)
{
	if (geteuid() != 0)
		return "not root";
	int fd;
	int rc = vswap_uffd_create(&fd);
	if (rc == -EPERM)
		return "userfaultfd not permitted (/dev/userfaultfd or "
		       "vm.unprivileged_userfaultfd)";
	if (rc < 0)
		return "userfaultfd unavailable";
	close(fd);
	return NULL;
}

void hfx_skip_if_unavailable(const char *suite)
{
	const char *why = hfx_unavailable();
	if (why) {
		fprintf(stderr, "%s: skipped: %s\n", suite, why);
		exit(77);
	}
}

static void quiet_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)ctx;
	if (lvl <= VSWAP_LOG_ERROR && getenv("VSWAP_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

int hfx_setup_memory(struct hfx *f, const size_t *pages, unsigned n)
{
	memset(f, 0, sizeof(*f));
	f->memfd = -1;
	f->page_size = (size_t)sysconf(_SC_PAGESIZE);
	snprintf(f->dir, sizeof(f->dir), "/var/tmp/vswap-handler-XXXXXX");
	if (!mkdtemp(f->dir))
		return -errno;
	snprintf(f->path, sizeof(f->path), "%s/swap", f->dir);
	struct vswap_store_opts so = {.staging_dir = "/dev/shm", .log = quiet_log};
	int rc = vswap_store_create(f->path, &so, &f->store);
	if (rc < 0)
		return rc;
	size_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += pages[i];
	f->memfd = memfd_create("vswap-test-guest", MFD_CLOEXEC);
	if (f->memfd < 0 || ftruncate(f->memfd, (off_t)(total * f->page_size)) < 0)
		return -errno;
	f->reserve_len = (total + n + 1) * f->page_size;
	f->reserve = mmap(NULL, f->reserve_len, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (f->reserve == MAP_FAILED)
		return -errno;
	uint8_t *at = (uint8_t *)f->reserve + f->page_size;
	off_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		size_t len = pages[i] * f->page_size;
		void *p =
		    mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f->memfd, off);
		if (p == MAP_FAILED)
			return -errno;
		f->regions[i] = (struct vswap_region){p, len, f->memfd, off};
		f->first[i] = (uint64_t)off / f->page_size;
		off += (off_t)len;
		at += len + f->page_size;
	}
	f->n = n;
	return 0;
}

int hfx_start(struct hfx *f, const struct vswap_handler_opts *opts)
{
	struct vswap_handler_opts o = {0};
	if (opts)
		o = *opts;
	o.store = f->store;
	/* VSWAP_TEST_ENABLE_MODE=copy|protect runs a suite's tests that leave
	 * the mode to the default in that mode instead. */
	const char *mode = getenv("VSWAP_TEST_ENABLE_MODE");
	if (o.enable_mode == VSWAP_ENABLE_AUTO && mode && mode[0] &&
	    vswap_enable_mode_parse(mode, &o.enable_mode) < 0)
		return -EINVAL;
	if (!o.log)
		o.log = quiet_log;
	return vswap_handler_create(f->regions, f->n, &o, &f->h);
}

int hfx_setup(struct hfx *f, const size_t *pages, unsigned n, const struct vswap_handler_opts *opts)
{
	int rc = hfx_setup_memory(f, pages, n);
	return rc < 0 ? rc : hfx_start(f, opts);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

int hfx_teardown(struct hfx *f)
{
	int rc = 0;
	if (f->h)
		rc = vswap_handler_destroy(f->h);
	f->h = NULL;
	if (f->reserve && f->reserve != MAP_FAILED)
		munmap(f->reserve, f->reserve_len);
	if (f->memfd >= 0)
		close(f->memfd);
	if (f->store) {
		vswap_store_close(f->store);
		struct vswap_store_opts so = {.staging_dir = "/dev/shm", .log = quiet_log};
		vswap_store_destroy(f->path, &so);
	}
	f->store = NULL;
	if (f->dir[0])
		nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return rc;
}

uint8_t *hfx_addr(const struct hfx *f, unsigned r, uint64_t page)
{
	return (uint8_t *)f->regions[r].addr + page * f->page_size;
}

/* ---- guest accesses on another thread ---------------------------------- */

struct access {
	uint8_t *dst;
	const uint8_t *src;
	size_t len;
	size_t at; /* progress, for SIGBUS */
	int result;
	sigjmp_buf jb;
};

/* The access running on this thread, for the SIGBUS handler. */
static __thread struct access *tl_access;

static void on_sigbus(int sig)
{
	struct access *a = tl_access;
	if (!a) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	siglongjmp(a->jb, 1);
}

static void *access_main(void *arg)
{
	struct access *a = arg;
	tl_access = a;
	if (sigsetjmp(a->jb, 1)) {
		a->result = -EFAULT;
		tl_access = NULL;
		return NULL;
	}
	/* A page at a time: a poisoned page faults on its first byte, so
	 * the progress says which page hit SIGBUS and none of it was read. */
	for (size_t i = 0; i < a->len; i += 4096) {
		a->at = i;
		memcpy(a->dst + i, a->src + i, a->len - i < 4096 ? a->len - i : 4096);
	}
	a->at = a->len;
	a->result = 0;
	tl_access = NULL;
	return NULL;
}

static int access_run(void *dst, const void *src, size_t len, int timeout_ms, size_t *bus_at)
{
	static const struct sigaction sa_template = {.sa_handler = on_sigbus};
	struct sigaction sa = sa_template;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	struct access *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->dst = dst;
	a->src = src;
	a->len = len;
	pthread_t t;
	if (pthread_create(&t, NULL, access_main, a)) {
		free(a);
		return -EAGAIN;
	}
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	int ms = timeout_ms > 0 ? timeout_ms : HFX_TIMEOUT_MS;
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	if (pthread_timedjoin_np(t, NULL, &until)) {
		/* Still blocked in a fault: leave it (and @a) behind; the
		 * handler's destruction unregisters and releases it. */
		pthread_detach(t);
		return -ETIMEDOUT;
	}
	int rc = a->result;
	if (bus_at)
		*bus_at = a->at;
	free(a);
	return rc;
}

int hfx_read(void *dst, const void *guest, size_t len, int timeout_ms, size_t *bus_at)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	int rc = access_run(dst, guest, len, timeout_ms, bus_at);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (getenv("HFX_TIMING"))
		fprintf(stderr, "read %zu: %.1f ms\n", len,
			(b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
	return rc;
}

int hfx_write(void *guest, const void *src, size_t len, int timeout_ms)
{
	return access_run(guest, src, len, timeout_ms, NULL);
}

int hfx_fill(const struct hfx *f, unsigned r, uint64_t page, uint8_t v)
{
	uint8_t *buf = malloc(f->page_size);
	if (!buf)
		return -ENOMEM;
	memset(buf, v, f->page_size);
	int rc = hfx_write(hfx_addr(f, r, page), buf, f->page_size, 0);
	free(buf);
	return rc;
}

int hfx_page_byte(const struct hfx *f, unsigned r, uint64_t page)
{
	uint8_t *buf = malloc(f->page_size);
	if (!buf)
		return -ENOMEM;
	int rc = hfx_read(buf, hfx_addr(f, r, page), f->page_size, 0, NULL);
	int v = rc == -ETIMEDOUT ? -2 : rc == -EFAULT ? -3 : buf[0];
	for (size_t i = 1; rc == 0 && i < f->page_size; i++)
		if (buf[i] != buf[0])
			v = -1;
	free(buf);
	return v;
}

uint64_t hfx_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool hfx_wait_for(bool (*cond)(void *), void *arg)
{
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	while (!cond(arg)) {
		if (hfx_now_ms() > until)
			return false;
		sched_yield();
	}
	return true;
}

static void *remover_main(void *arg)
{
	struct hfx_remover *m = arg;
	atomic_store(&m->tid, (int)syscall(SYS_gettid));
	m->rc = madvise(m->addr, m->len, MADV_REMOVE) ? -errno : 0;
	atomic_store(&m->done, true);
	return NULL;
}

int hfx_remover_start(struct hfx_remover *m, void *addr, size_t len)
{
	*m = (struct hfx_remover){.addr = addr, .len = len};
	atomic_init(&m->tid, 0);
	atomic_init(&m->done, false);
	return -pthread_create(&m->t, NULL, remover_main, m);
}

bool hfx_remover_blocked(void *arg)
{
	struct hfx_remover *m = arg;
	int tid = atomic_load(&m->tid);
	return tid && hfx_in_userfault(0, tid);
}

bool hfx_remover_done(void *arg)
{
	return atomic_load(&((struct hfx_remover *)arg)->done);
}

int hfx_wait(const struct hfx *f, enum vswap_state st)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	int rc = vswap_handler_wait_state(f->h, st, 20000);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (getenv("HFX_TIMING"))
		fprintf(stderr, "wait %s: %.1f ms\n", vswap_state_name(st),
			(b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
	return rc;
}

/* ---- forked device processes --------------------------------------------- */

static int send_fd(int sock, int fd)
{
	char byte = 'u';
	struct iovec iov = {&byte, 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -errno;
}

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
		return -EPIPE;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -EPROTO;
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

int hfx_child_start(struct hfx *f, int (*fn)(const struct hfx *f, void *arg), void *arg,
		    struct hfx_child *c)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(sv[0]);
		int fd;
		char go;
		if (vswap_uffd_create(&fd) < 0 || send_fd(sv[1], fd) < 0)
			_exit(100);
		close(fd); /* the parent holds it now */
		if (read(sv[1], &go, 1) != 1)
			_exit(101);
		_exit(fn(f, arg));
	}
	close(sv[1]);
	c->pid = pid;
	c->sock = sv[0];
	c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int fd = recv_fd(c->sock);
	if (fd < 0)
		return fd;
	int rc = vswap_handler_add_uffd(f->h, fd);
	if (rc < 0)
		close(fd);
	return rc;
}

int hfx_child_go(struct hfx_child *c)
{
	return write(c->sock, "g", 1) == 1 ? 0 : -errno;
}

int hfx_child_wait(struct hfx_child *c, int timeout_ms)
{
	struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
	int ready = poll(&p, 1, timeout_ms > 0 ? timeout_ms : HFX_TIMEOUT_MS);
	if (ready != 1)
		kill(c->pid, SIGKILL);
	int status = 0;
	waitpid(c->pid, &status, 0);
	close(c->pidfd);
	close(c->sock);
	if (ready != 1)
		return -ETIMEDOUT;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool hfx_in_userfault(int pid, int tid)
{
	char path[96], buf[128];
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/wchan", pid, tid);
	else
		snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
	FILE *fp = fopen(path, "re");
	if (!fp)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = 0;
	return strstr(buf, "userfault") != NULL;
}

int hfx_corrupt_slot(const struct hfx *f, unsigned r, uint64_t page)
{
	struct vswap_page_info pi;
	int ret = vswap_handler_page_info(f->h, f->first[r] + page, &pi);
	if (ret)
		return ret;
	if (pi.state != VSWAP_PAGE_PRESENT)
		return -EINVAL;
	int fd = open(f->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	off_t off = (off_t)((pi.slot + 1) * f->page_size + 777);
	uint8_t b;
	ret = -EIO;
	if (pread(fd, &b, 1, off) == 1) {
		b ^= 0x10;
		if (pwrite(fd, &b, 1, off) == 1)
			ret = 0;
	}
	close(fd);
	return ret;
}

int hfx_task_waiting_in(const char *what)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return 0;
	int found = 0;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		char path[300], buf[128];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/wchan", e->d_name);
		FILE *fp = fopen(path, "re");
		if (!fp)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
		buf[n] = 0;
		if (strstr(buf, what))
			found = atoi(e->d_name);
	}
	closedir(d);
	return found;
}

static void *reader_main(void *arg)
{
	struct hfx_reader *r = arg;
	r->rc = hfx_read(r->buf, hfx_addr(r->f, 0, r->page), r->f->page_size, r->timeout_ms,
			 &r->bus_at);
	atomic_store(&r->done, true);
	return NULL;
}

int hfx_reader_start(struct hfx_reader *r, const struct hfx *f, uint64_t page, int timeout_ms)
{
	*r = (struct hfx_reader){.f = f, .page = page, .timeout_ms = timeout_ms};
	atomic_init(&r->done, false);
	r->buf = malloc(f->page_size);
	if (!r->buf)
		return -ENOMEM;
	memset(r->buf, 0xaa, f->page_size);
	int ret = pthread_create(&r->t, NULL, reader_main, r);
	return -ret;
}

void hfx_reader_join(struct hfx_reader *r)
{
	pthread_join(r->t, NULL);
}

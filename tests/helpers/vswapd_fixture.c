/* SPDX-License-Identifier: MIT */
/* The vswapd fixture: see vswapd_fixture.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vswap/handler.h>
#include <vswap/recovery.h>

#include "tests/helpers/vswapd_fixture.h"
#include "tools/common/spawn.h"

const char *vdx_daemon_path(void)
{
	static const char path[] = VSWAP_BUILD_DIR "/vswapd";
	return path;
}

int vdx_init(struct vdx *x, const size_t *pages, unsigned n)
{
	memset(x, 0, sizeof(*x));
	x->memfd = x->uffd = x->listen_fd = x->log_fd = -1;
	x->page_size = (size_t)sysconf(_SC_PAGESIZE);
	if (n == 0 || n > VDX_MAX_REGIONS)
		return -EINVAL;
	snprintf(x->dir, sizeof(x->dir), "/var/tmp/vswapd-test-XXXXXX");
	if (!mkdtemp(x->dir))
		return -errno;
	snprintf(x->sock, sizeof(x->sock), "%s/sock", x->dir);
	snprintf(x->store, sizeof(x->store), "%s/swap", x->dir);
	x->n = n;
	size_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		x->pages[i] = pages[i];
		x->first[i] = total;
		total += pages[i];
	}
	x->total_pages = total;
	x->memfd = memfd_create("vswapd-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (x->memfd < 0 || ftruncate(x->memfd, (off_t)(total * x->page_size)) < 0)
		return -errno;
	/* Each region mapped apart, a guard page between, so the regions are
	 * contiguous in the memfd but not in this process. */
	x->map_len = (total + n + 1) * x->page_size;
	x->map = mmap(NULL, x->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (x->map == MAP_FAILED)
		return -errno;
	uint8_t *at = (uint8_t *)x->map + x->page_size;
	for (unsigned i = 0; i < n; i++) {
		size_t len = pages[i] * x->page_size;
		void *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, x->memfd,
			       (off_t)(x->first[i] * x->page_size));
		if (p == MAP_FAILED)
			return -errno;
		x->regions[i] =
		    (struct vswap_region){p, len, x->memfd, (off_t)(x->first[i] * x->page_size)};
		at += len + x->page_size;
	}
	return vswap_uffd_create(&x->uffd);
}

int vdx_daemon_start(struct vdx *x)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	/* Everything the child needs, prepared here: it is a vfork child
	 * (no copy of this process's page tables, which a restart figure
	 * would count as the daemon's start; systemd starts vswapd from a
	 * small process), so it only makes system calls and fills buffers.
	 * The ready pipe goes to fd 4, an inherited socket to fd 3. */
	const char *lvl = getenv("VSWAPD_LOG_LEVEL")	 ? getenv("VSWAPD_LOG_LEVEL")
			  : x->log_level		 ? x->log_level
			  : getenv("VSWAP_TEST_VERBOSE") ? "info"
							 : "error";
	char listen_pid[32] = "LISTEN_PID=";
	char *const argv_sock[] = {"vswapd", "--socket",    x->sock,	 "--ready-fd",
				   "4",	     "--log-level", (char *)lvl, NULL};
	char *const argv_inh[] = {"vswapd", "--ready-fd", "4", "--log-level", (char *)lvl, NULL};
	extern char **environ;
	char **const envp = spawn_listen_env(listen_pid);
	if (!envp) {
		close(p[0]);
		close(p[1]);
		return -ENOMEM;
	}
	const char *path = vdx_daemon_path();
	int lfd = x->listen_fd, w = p[1];
	/* Bound by the daemon itself: no LISTEN_* (and no fd 3 to take). */
	pid_t pid = lfd >= 0 ? spawn_daemon(path, argv_inh, envp, lfd, w, x->log_fd, listen_pid)
			     : spawn_daemon(path, argv_sock, environ, -1, w, x->log_fd, listen_pid);
	if (pid < 0) {
		int rc = -errno;
		free(envp);
		close(p[0]);
		close(p[1]);
		return rc;
	}
	free(envp);
	close(p[1]);
	struct pollfd pf = {.fd = p[0], .events = POLLIN};
	char b = 0;
	int rc = poll(&pf, 1, VDX_TIMEOUT_MS) == 1 && read(p[0], &b, 1) == 1 && b == 'R'
		     ? 0
		     : -ETIMEDOUT;
	close(p[0]);
	x->pid = pid;
	if (rc < 0)
		vdx_daemon_kill(x);
	return rc;
}

int vdx_listen(struct vdx *x)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(x->sock) >= sizeof(sa.sun_path)) {
		close(fd);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, x->sock, strlen(x->sock) + 1);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	x->listen_fd = fd;
	return 0;
}

int vdx_daemon_kill(struct vdx *x)
{
	if (x->pid <= 0)
		return 0;
	kill(x->pid, SIGKILL);
	int st;
	pid_t r;
	do
		r = waitpid(x->pid, &st, 0);
	while (r < 0 && errno == EINTR);
	x->pid = 0;
	return r < 0 ? -errno : 0;
}

static void quiet(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)ctx;
	if (getenv("VSWAP_TEST_VERBOSE") || lvl == VSWAP_LOG_ERROR)
		fprintf(stderr, "client: %s\n", msg);
}

int vdx_attach(struct vdx *x, const struct vswap_client_opts *opts)
{
	struct vswap_client_opts o = {.store_path = x->store,
				      .staging_dir = x->dir,
				      .durability = VSWAP_DURABILITY_NONE,
				      .log = quiet,
				      .log_level = VSWAP_LOG_INFO,
				      .reconnect_timeout_ms = VDX_TIMEOUT_MS};
	if (opts)
		o = *opts;
	int rc = vswap_client_connect(x->sock, &o, &x->c);
	if (rc < 0)
		return rc;
	rc = vswap_client_attach(x->c, x->regions, x->n, x->uffd);
	if (rc < 0) {
		vswap_client_detach(x->c);
		x->c = NULL;
	}
	return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void vdx_fini(struct vdx *x)
{
	if (x->c)
		vswap_client_detach(x->c);
	x->c = NULL;
	vdx_daemon_kill(x);
	if (x->listen_fd >= 0)
		close(x->listen_fd);
	if (x->store[0])
		vswap_store_destroy(x->store, &(struct vswap_store_opts){.staging_dir = x->dir});
	if (x->map && x->map != MAP_FAILED)
		munmap(x->map, x->map_len);
	if (x->memfd >= 0)
		close(x->memfd);
	if (x->uffd >= 0)
		close(x->uffd);
	if (x->dir[0])
		nftw(x->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	memset(x, 0, sizeof(*x));
}

uint8_t *vdx_addr(const struct vdx *x, unsigned r, uint64_t page)
{
	return (uint8_t *)x->regions[r].addr + page * x->page_size;
}

uint8_t *vdx_page(const struct vdx *x, uint64_t page)
{
	for (unsigned r = 0; r < x->n; r++)
		if (page < x->first[r] + x->pages[r])
			return vdx_addr(x, r, page - x->first[r]);
	return NULL;
}

/* Through the library, as vswap-fsck runs it (the verdict about this store
 * alone): the suites run in the TSan build too, where the tools are not
 * built. */
int vdx_fsck(const struct vdx *x, const char *args)
{
	struct vswap_fsck_opts o = {
	    .mode = strcmp(args, "-y") == 0   ? VSWAP_FSCK_REPAIR
		    : strcmp(args, "-p") == 0 ? VSWAP_FSCK_PREEN
					      : VSWAP_FSCK_CHECK,
	    .staging_dir = x->dir,
	    .no_orphan_scan = true,
	};
	struct vswap_fsck *f;
	if (vswap_fsck_new(x->store, &o, &f) < 0)
		return VSWAP_FSCK_EXIT_OPERATIONAL;
	int rc = vswap_fsck_run(f);
	int code = vswap_fsck_exit_code(f);
	if (rc < 0)
		code |= VSWAP_FSCK_EXIT_OPERATIONAL;
	vswap_fsck_free(f);
	return code;
}

int vdx_fd_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

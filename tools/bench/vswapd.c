/* SPDX-License-Identifier: MIT */
/*
 * vswap-bench group "vswapd": the page handler as its own process against
 * the in-process handler, in the same run, on the same guest bytes (the
 * figures are listed in vswapd.h).
 *
 * Rounds alternate which handler goes first.  The daemon gets its socket
 * the way systemd's vswapd.socket gives it (inherited, LISTEN_FDS), so a
 * client connects while no daemon runs.  vswapd is looked up beside this
 * program (the build directory, or the installed bin/), else $VSWAPD.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vswap/client.h>
#include <vswap/handler.h>
#include <vswap/store.h>

#include "tools/bench/common.h"
#include "tools/bench/kswap.h"
#include "tools/bench/vswapd.h"
#include "tools/common/spawn.h"

/* Rounds of fault figures at most (vswap-bench caps --runs alike). */
#define VD_MAX_RUNS 64

static void note(const struct vswapd_bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(const struct vswapd_bench *b, const char *fmt, ...)
{
	va_list ap;
	if (!b->verbose)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* The median first-touch latency of every page of @mem (each missing), the
 * way the faults group measures its handler. */
struct vd_row {
	double p50_us;
};

static void vd_touch_all(volatile uint8_t *mem, size_t pages, size_t ps, struct vd_row *row)
{
	double *lat = malloc(pages * sizeof(*lat));
	if (!lat)
		return;
	for (size_t i = 0; i < pages; i++) {
		uint64_t t0 = bench_now_ns();
		(void)mem[i * ps];
		lat[i] = (double)(bench_now_ns() - t0) / 1e3;
	}
	row->p50_us = bench_median(lat, (unsigned)pages);
	free(lat);
}

struct vd_daemon {
	char bin[PATH_MAX];
	char sock[PATH_MAX];
	int lfd;
	pid_t pid;
	double ready_s; /* start -> listening of the last start */
};

static int vd_find(struct vd_daemon *d)
{
	const char *env = getenv("VSWAPD");
	if (env) {
		snprintf(d->bin, sizeof(d->bin), "%s", env);
		return access(d->bin, X_OK) == 0 ? 0 : -ENOENT;
	}
	char self[PATH_MAX - 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -ENOENT;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	*slash = 0;
	snprintf(d->bin, sizeof(d->bin), "%s/vswapd", self);
	return access(d->bin, X_OK) == 0 ? 0 : -ENOENT;
}

static int vd_listen(struct vd_daemon *d, const char *dir)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(d->sock, sizeof(d->sock), "%s/vswap-bench.%d.vswapd.sock", dir, (int)getpid());
	if (strlen(d->sock) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, d->sock, strlen(d->sock) + 1);
	unlink(d->sock);
	d->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (d->lfd < 0)
		return -errno;
	if (bind(d->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(d->lfd, 16) < 0)
		return -errno;
	return 0;
}

/* Start a daemon on the inherited socket; 0 once it listens.
 *
 * vfork, not fork: fork copies this process's page tables (a benchmark
 * guest of a GiB and the other rows' buffers: tens to hundreds of
 * milliseconds on a busy machine) and the child tears them down again at
 * exec, which the restart figure would count as the daemon's start.
 * systemd starts vswapd from a small process; vfork shares this one's
 * memory until the exec.  The child therefore only makes system calls and
 * writes buffers prepared here (its pid into LISTEN_PID's). */
static int vd_start(struct vd_daemon *d)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	/* The ready pipe's write end at fd 4, the socket at 3 (below). */
	char lvl[16];
	const char *env_lvl = getenv("VSWAPD_LOG_LEVEL");
	snprintf(lvl, sizeof(lvl), "%s", env_lvl ? env_lvl : "error");
	char listen_pid[32] = "LISTEN_PID=";
	char *const argv[] = {"vswapd", "--ready-fd", "4", "--log-level", lvl, NULL};
	char **const envp = spawn_listen_env(listen_pid);
	if (!envp) {
		close(p[0]);
		close(p[1]);
		return -ENOMEM;
	}
	int lfd = d->lfd, w = p[1];
	double t0 = bench_now();
	pid_t pid = spawn_daemon(d->bin, argv, envp, lfd, w, -1, listen_pid);
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
	char c = 0;
	int ok = poll(&pf, 1, 30000) == 1 && read(p[0], &c, 1) == 1 && c == 'R';
	close(p[0]);
	d->pid = pid;
	d->ready_s = bench_now() - t0;
	return ok ? 0 : -ETIMEDOUT;
}

static void vd_kill(struct vd_daemon *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		while (waitpid(d->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	d->pid = 0;
}

/* A guest in a sealed memfd, mapped here, with this process's uffd. */
struct vd_guest {
	int memfd, uffd;
	uint8_t *mem;
	size_t pages, ps;
	char path[PATH_MAX];
};

static int vd_guest_open(struct vd_guest *g, struct vswapd_bench *b, size_t pages, const char *what)
{
	*g = (struct vd_guest){.memfd = -1, .uffd = -1, .pages = pages, .ps = b->page_size};
	snprintf(g->path, sizeof(g->path), "%s/vswap-bench.%d.vswapd.%u.%s", b->dir, (int)getpid(),
		 b->guests++, what);
	g->memfd = memfd_create("vswap-bench-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (g->memfd < 0 || ftruncate(g->memfd, (off_t)(pages * g->ps)) < 0)
		return -errno;
	g->mem = mmap(NULL, pages * g->ps, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	if (g->mem == MAP_FAILED) {
		g->mem = NULL;
		return -errno;
	}
	for (size_t i = 0; i < pages; i++)
		memcpy(g->mem + i * g->ps, (const char *)b->src + (uint64_t)i * g->ps % b->src_len,
		       g->ps);
	return vswap_uffd_create(&g->uffd);
}

static void vd_guest_close(struct vd_guest *g)
{
	if (g->mem)
		munmap(g->mem, g->pages * g->ps);
	if (g->memfd >= 0)
		close(g->memfd);
	if (g->uffd >= 0)
		close(g->uffd);
	vswap_store_destroy(g->path, &(struct vswap_store_opts){.staging_dir = "/dev/shm"});
}

static int vd_attach(struct vd_daemon *d, struct vd_guest *g, struct vswap_client **c)
{
	/* Copy mode, as the in-process baseline: its faults come from staging. */
	struct vswap_client_opts o = {.store_path = g->path,
				      .staging_dir = "/dev/shm",
				      .enable_mode = VSWAP_ENABLE_COPY,
				      .reconnect_timeout_ms = 60000};
	int rc = vswap_client_connect(d->sock, &o, c);
	if (rc < 0)
		return rc;
	struct vswap_region r = {g->mem, g->pages * g->ps, g->memfd, 0};
	rc = vswap_client_attach(*c, &r, 1, g->uffd);
	if (rc < 0) {
		vswap_client_detach(*c);
		*c = NULL;
	}
	return rc;
}

/* One round through vswapd: staging faults, then swap-file faults. */
static int vd_fault_round(struct vswapd_bench *b, struct vd_daemon *d, size_t pages,
			  struct vd_row *staging, struct vd_row *file)
{
	struct vd_guest g;
	struct vswap_client *c = NULL;
	int rc = vd_guest_open(&g, b, pages, "vswapd-faults");
	if (rc == 0)
		rc = vd_attach(d, &g, &c);
	if (rc == 0)
		rc = vswap_client_enable(c);
	if (rc == 0)
		vd_touch_all(g.mem, pages, g.ps, staging);
	if (rc == 0)
		rc = vswap_client_enable(c);
	if (rc == 0)
		rc = vswap_client_swap_out(c);
	if (rc == 0)
		rc = vswap_client_wait_state(c, VSWAP_STATE_ACTIVE, 60000);
	if (rc == 0)
		vd_touch_all(g.mem, pages, g.ps, file);
	if (c)
		vswap_client_exit(c);
	vd_guest_close(&g);
	return rc;
}

/* The same round with the handler in this process. */
static int vd_inproc_round(struct vswapd_bench *b, size_t pages, struct vd_row *staging,
			   struct vd_row *file)
{
	struct vd_guest g;
	struct vswap_store *s = NULL;
	struct vswap_handler *h = NULL;
	int rc = vd_guest_open(&g, b, pages, "inproc-faults");
	if (rc == 0)
		rc = vswap_store_create(g.path,
					&(struct vswap_store_opts){.staging_dir = "/dev/shm"}, &s);
	struct vswap_region r = {g.mem, pages * g.ps, g.memfd, 0};
	if (rc == 0)
		rc = vswap_handler_create(
		    &r, 1,
		    &(struct vswap_handler_opts){.store = s, .enable_mode = VSWAP_ENABLE_COPY}, &h);
	if (rc == 0)
		rc = vswap_handler_enable(h);
	if (rc == 0)
		vd_touch_all(g.mem, pages, g.ps, staging);
	if (rc == 0)
		rc = vswap_handler_enable(h);
	if (rc == 0)
		rc = vswap_handler_swap_out(h);
	if (rc == 0)
		rc = vswap_handler_wait_state(h, VSWAP_STATE_ACTIVE, 60000);
	if (rc == 0)
		vd_touch_all(g.mem, pages, g.ps, file);
	if (h)
		vswap_handler_destroy(h);
	if (s)
		vswap_store_close(s);
	vd_guest_close(&g);
	return rc;
}

/* Restart to serving: a guest of b->size swapped out (or, @staged, moved
 * to staging and left Pending: the open checks every staged copy, the
 * resume finds none resident), the daemon killed and started @n times.
 * Milliseconds into @start, @kill, @listen. */
static int vd_restarts(struct vswapd_bench *b, struct vd_daemon *d, unsigned n, bool staged,
		       double *start, double *killed, double *listening)
{
	struct vd_guest g;
	struct vswap_client *c = NULL;
	size_t pages = b->size / b->page_size;
	int rc = vd_guest_open(&g, b, pages, "vswapd-restart");
	if (rc == 0)
		rc = vd_attach(d, &g, &c);
	if (rc == 0)
		rc = vswap_client_enable(c);
	if (rc == 0 && !staged)
		rc = vswap_client_swap_out(c);
	if (rc == 0)
		rc = vswap_client_wait_state(c, staged ? VSWAP_STATE_PENDING : VSWAP_STATE_ACTIVE,
					     60000);
	for (unsigned i = 0; i < n && rc == 0; i++) {
		struct vswap_client_info before, in;
		vswap_client_info(c, &before);
		double tk = bench_now();
		vd_kill(d);
		double ts = bench_now();
		rc = vd_start(d);
		for (;;) { /* the watcher resumes the guest: wait for it, bounded */
			vswap_client_info(c, &in);
			if (rc < 0 || in.reconnects > before.reconnects)
				break;
			if (bench_now() - ts > 60) {
				rc = -ETIMEDOUT;
				break;
			}
			usleep(100);
		}
		if (rc < 0)
			break;
		/* last_resumed_mono_us is CLOCK_MONOTONIC, like bench_now(). */
		double resumed = (double)in.last_resumed_mono_us * 1e-6;
		start[i] = (resumed - ts) * 1e3;
		killed[i] = (resumed - tk) * 1e3;
		listening[i] = d->ready_s * 1e3;
		(void)g.mem[(size_t)i * g.ps % (pages * g.ps)]; /* served again */
		note(b, "  vswapd restart %u%s: start->resumed %.2f ms (listening %.2f ms)\n",
		     i + 1, staged ? " (staged)" : "", start[i], listening[i]);
	}
	if (c)
		vswap_client_exit(c);
	vd_guest_close(&g);
	return rc;
}

static double vd_max(const double *v, unsigned n)
{
	double m = 0;
	for (unsigned i = 0; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

int vswapd_bench_run(struct vswapd_bench *b, struct bench_results *res)
{
	struct vd_daemon d = {.lfd = -1};
	if (vd_find(&d) < 0) {
		fprintf(stderr,
			"vswap-bench: vswapd: no vswapd beside this program (set VSWAPD)\n");
		return 0;
	}
	int rc = vd_listen(&d, b->dir);
	if (rc == 0)
		rc = vd_start(&d);
	size_t pages = b->quick ? 4096 : 16384;
	double ds[VD_MAX_RUNS], df[VD_MAX_RUNS], is[VD_MAX_RUNS], ifl[VD_MAX_RUNS];
	unsigned runs = b->runs < VD_MAX_RUNS ? b->runs : VD_MAX_RUNS;
	for (unsigned r = 0; r < runs && rc == 0; r++) {
		struct vd_row s1 = {0}, f1 = {0}, s2 = {0}, f2 = {0};
		if (kswap_interrupted(b->stop)) {
			rc = -EINTR;
			break;
		}
		if (r % 2 == 0) {
			rc = vd_inproc_round(b, pages, &s1, &f1);
			if (rc == 0)
				rc = vd_fault_round(b, &d, pages, &s2, &f2);
		} else {
			rc = vd_fault_round(b, &d, pages, &s2, &f2);
			if (rc == 0)
				rc = vd_inproc_round(b, pages, &s1, &f1);
		}
		is[r] = s1.p50_us;
		ifl[r] = f1.p50_us;
		ds[r] = s2.p50_us;
		df[r] = f2.p50_us;
		note(b, "  vswapd run %u: staging %.1f vs %.1f us, file %.1f vs %.1f us (p50)\n",
		     r + 1, ds[r], is[r], df[r], ifl[r]);
	}
	if (rc == 0) {
		bench_add(res, "vswapd_fault_staging_p50_us", bench_median(ds, runs), "us",
			  "inproc_fault_staging_p50_us", bench_median(is, runs));
		bench_add(res, "vswapd_fault_file_cached_p50_us", bench_median(df, runs), "us",
			  "inproc_fault_file_cached_p50_us", bench_median(ifl, runs));
	}
	unsigned n = b->quick ? 5 : 11;
	double st[16], kl[16], ls[16];
	if (rc == 0)
		rc = vd_restarts(b, &d, n, false, st, kl, ls);
	if (rc == 0) {
		char name[48];
		snprintf(name, sizeof(name), "vswapd_restart_%llumib_p50_ms",
			 (unsigned long long)(b->size >> 20));
		bench_add(res, name, bench_median(st, n), "ms", "vswapd_start_to_listening_p50_ms",
			  bench_median(ls, n));
		snprintf(name, sizeof(name), "vswapd_restart_%llumib_max_ms",
			 (unsigned long long)(b->size >> 20));
		bench_add(res, name, vd_max(st, n), "ms", "vswapd_start_to_listening_max_ms",
			  vd_max(ls, n));
		snprintf(name, sizeof(name), "vswapd_kill_to_serving_%llumib_p50_ms",
			 (unsigned long long)(b->size >> 20));
		bench_add(res, name, bench_median(kl, n), "ms", NULL, NAN);
	}
	/* The same guest left Pending in staging: what the open's check of
	 * the staged copies and the resume cost beside the restart above. */
	double sst[16], skl[16], sls[16];
	if (rc == 0)
		rc = vd_restarts(b, &d, n, true, sst, skl, sls);
	if (rc == 0) {
		char name[48], base[48];
		snprintf(name, sizeof(name), "vswapd_restart_staged_%llumib_p50_ms",
			 (unsigned long long)(b->size >> 20));
		snprintf(base, sizeof(base), "vswapd_restart_%llumib_p50_ms",
			 (unsigned long long)(b->size >> 20));
		bench_add(res, name, bench_median(sst, n), "ms", base, bench_median(st, n));
		snprintf(name, sizeof(name), "vswapd_restart_staged_%llumib_max_ms",
			 (unsigned long long)(b->size >> 20));
		snprintf(base, sizeof(base), "vswapd_restart_%llumib_max_ms",
			 (unsigned long long)(b->size >> 20));
		bench_add(res, name, vd_max(sst, n), "ms", base, vd_max(st, n));
	}
	vd_kill(&d);
	if (d.lfd >= 0)
		close(d.lfd);
	unlink(d.sock);
	return rc;
}

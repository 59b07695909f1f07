/* SPDX-License-Identifier: MIT */
/*
 * vswapd killed at random instants while its guest runs.  This process is
 * the VMM: guest threads run verify/rewrite passes over their own blocks of
 * guest memory (every page a versioned pattern, kw_page_fill()), and a
 * driver thread cycles the commands: enable (guest paused), trim, swap-out,
 * faults while Active, balloon removes, disable (swap-in), and now and then
 * detach and attach again (switching between the copy and protect enable
 * modes).  A killer thread SIGKILLs the daemon, aiming at
 * each state in turn, restarts it at once, and the client resumes the guest.
 *
 * Judged: every byte the guest reads is the version it last wrote (a
 * removed page reads zeros, or, when the kill took the remove event with it
 * before its commit, an earlier version of that very page: see
 * handler/resume.c; counted apart), no guest access or
 * command waits past a limit (a hang fails the test), the store is clean
 * for vswap-fsck after the final detach (one repair pass allowed for what
 * kills leak), and no page is lost.  Printed: kills per state, and restart
 * to serving (kill -> guest resumed, daemon start -> resumed): p50, max.
 *
 * CI runs 50 kills (VSWAPD_KILLS sets another number); VSWAP_LONG=1 runs
 * 1000.  VSWAPD_KILL_TRACE=1 prints where each kill landed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/handler_fixture.h"
#include "tests/helpers/kill_workload.h"
#include "tests/helpers/restart_figures.h"
#include "tests/helpers/vswapd_fixture.h"

#define GUESTS 3
#define REGION0 1536
#define REGION1 2560
#define PAGES (REGION0 + REGION1)
#define BLOCK (PAGES / GUESTS)
/* No guest access or command may take longer (a hang otherwise). */
#define HANG_MS 20000
/* The watchdog's limit for any one wait of any thread: past the client's
 * own bounds (reconnect, reply: HANG_MS each), so that what it reports is a
 * wait nothing else bounds. */
#define WATCHDOG_MS (3 * HANG_MS)
/* The longest stretch into a phase a kill is aimed at. */
#define AIM_MAX_US 2000000u

enum phase {
	PH_READY,  /* swap disabled, guest writing */
	PH_ENABLE, /* move to staging, guest paused */
	PH_TRIM,
	PH_SWAP_OUT,
	PH_FAULTS,  /* Active: guest faulting pages back */
	PH_REMOVES, /* balloon: MADV_REMOVE of guest ranges */
	PH_SWAP_IN, /* disable */
	PH_DETACH,  /* detach and attach again, guest paused */
	PH_COUNT,
};

static const char *const phase_names[PH_COUNT] = {
    "ready", "enable", "trim", "swap-out", "faults", "removes", "swap-in", "detach",
};

/* Who waits, for the watchdog: the driver, the killer (the main thread),
 * each guest thread. */
enum actor { A_DRIVER, A_KILLER, A_GUEST0, A_COUNT = A_GUEST0 + GUESTS };

struct wait_slot {
	_Atomic(const char *) what; /* what the thread waits for */
	atomic_uint_fast64_t since; /* when it began, or 0: not waiting */
	atomic_uint_fast64_t arg;   /* a page, a kill number */
};

struct page_exp {
	uint32_t v;   /* the version last written */
	bool removed; /* removed since: zeros, or a version <= v (the remove undone) */
};

struct run {
	struct vdx x;
	/* Which client x.c is: bumped at each attach (a new client may
	 * reuse a freed one's address). */
	atomic_uint_fast64_t client_gen;
	struct wait_slot waits[A_COUNT];
	atomic_bool watch_stop;
	/* Guards x.c, which the driver replaces (detach, attach again). */
	pthread_mutex_t cl_lock;
	pthread_rwlock_t pause; /* guest threads hold it shared per access */
	atomic_int phase;
	pthread_mutex_t phase_mx; /* phase_cv: a phase began (the killer waits on it) */
	pthread_cond_t phase_cv;
	atomic_int armed;			  /* the phase the killer waits for, or -1 */
	atomic_bool awake;			  /* the killer saw it begin */
	atomic_uint_fast64_t phase_t0;		  /* when the phase began */
	atomic_uint_fast64_t phase_dur[PH_COUNT]; /* how long it lasted last time */
	atomic_bool stop;
	atomic_int failed;
	char why[512];
	pthread_mutex_t why_lock;
	struct page_exp exp[PAGES]; /* each written by its owner (or by the driver, guest paused) */
	atomic_uint_fast64_t progress[GUESTS];
	uint64_t kills[PH_COUNT];
	uint64_t undone_removes, zero_removes, verified;
	uint64_t cycles;
	enum vswap_enable_mode mode; /* copy and protect, in turn at each detach */
	uint64_t mode_cycles[3];
	/* restart latencies, microseconds */
	uint64_t *kill_us, *start_us;
	/* the same split: daemon start -> listening, listening -> resumed */
	uint64_t *listen_us, *serve_us;
	/* per restart, in order (the arrays above are sorted for their
	 * medians): when the kill was sent, the dead daemon reaped, the guest
	 * resumed (CLOCK_MONOTONIC, as the daemons' figures), and the new
	 * daemon, whose log gives the rest */
	uint64_t *killed_at, *spawned_at, *resumed_at;
	char (*blocked)[96]; /* its tasks in uninterruptible sleep at the kill */
	enum vswap_enable_mode *modes;
	pid_t *pids;
	unsigned nlat, nkills;
	char log_path[400];		  /* every daemon's log (level info) */
	uint64_t mode_kills[3][PH_COUNT]; /* per enable mode */
	enum vswap_enable_mode kill_mode; /* the killer's copy of mode */
};

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void wait_begin(struct run *r, enum actor a, const char *what, uint64_t arg)
{
	atomic_store(&r->waits[a].what, what);
	atomic_store(&r->waits[a].arg, arg);
	atomic_store(&r->waits[a].since, mono_us());
}

static void wait_end(struct run *r, enum actor a)
{
	atomic_store(&r->waits[a].since, 0);
}

static void failf(struct run *r, const char *fmt, ...)
{
	pthread_mutex_lock(&r->why_lock);
	if (!atomic_load(&r->failed)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->why, sizeof(r->why), fmt, ap);
		va_end(ap);
	}
	atomic_store(&r->failed, 1);
	atomic_store(&r->stop, true);
	pthread_mutex_unlock(&r->why_lock);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Check page @p's bytes against what its owner expects. */
static void judge(struct run *r, uint64_t p, const uint8_t *buf, uint64_t *undone, uint64_t *zero)
{
	int64_t got = kw_page_version(buf, (uint32_t)r->x.page_size, p);
	struct page_exp *e = &r->exp[p];
	if (got == e->v && !(e->removed && got != 0))
		return;
	if (e->removed && got >= 0 && got <= e->v) {
		(*(got == 0 ? zero : undone))++;
		return;
	}
	failf(r, "page %llu: read version %lld, expected %u%s (phase %s)", (unsigned long long)p,
	      (long long)got, e->v, e->removed ? " or zeros" : "",
	      phase_names[atomic_load(&r->phase)]);
}

struct guest_arg {
	struct run *r;
	unsigned id;
};

static void *guest_main(void *arg)
{
	struct guest_arg *g = arg;
	struct run *r = g->r;
	setpriority(PRIO_PROCESS, (id_t)gettid(), 5);
	size_t ps = r->x.page_size;
	uint8_t *buf = malloc(ps);
	uint64_t seed = 0x9e3779b97f4a7c15ull * (g->id + 1), undone = 0, zero = 0;
	uint64_t first = (uint64_t)g->id * BLOCK;
	enum actor me = (enum actor)(A_GUEST0 + g->id);
	while (!atomic_load(&r->stop)) {
		wait_begin(r, me, "the pause lock (the driver pauses the guest)", 0);
		pthread_rwlock_rdlock(&r->pause);
		uint64_t p = first + rnd(&seed) % BLOCK;
		wait_begin(r, me, "an access to a guest page (a fault vswapd serves)", p);
		uint8_t *at = vdx_page(&r->x, p);
		struct page_exp *e = &r->exp[p];
		if (rnd(&seed) % 4 == 0) { /* rewrite: a new version */
			kw_page_fill(buf, (uint32_t)ps, p, e->v + 1);
			memcpy(at, buf, ps);
			e->v++;
			e->removed = false;
		} else { /* verify */
			memcpy(buf, at, ps);
			judge(r, p, buf, &undone, &zero);
		}
		wait_end(r, me);
		pthread_rwlock_unlock(&r->pause);
		atomic_fetch_add(&r->progress[g->id], 1);
	}
	pthread_mutex_lock(&r->why_lock);
	r->undone_removes += undone;
	r->zero_removes += zero;
	pthread_mutex_unlock(&r->why_lock);
	free(buf);
	return NULL;
}

static void client_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)ctx;
	if (getenv("VSWAP_TEST_VERBOSE") || lvl == VSWAP_LOG_ERROR)
		fprintf(stderr, "client: %s\n", msg);
}

static int attach(struct run *r, bool resume)
{
	struct vswap_client_opts o = {.store_path = r->x.store,
				      .staging_dir = r->x.dir,
				      .durability = VSWAP_DURABILITY_BATCH,
				      .resume = resume,
				      .enable_mode = r->mode,
				      .reconnect_timeout_ms = HANG_MS,
				      .reply_timeout_ms = HANG_MS,
				      .log = client_log,
				      .log_level = VSWAP_LOG_WARN};
	int rc = vdx_attach(&r->x, &o);
	atomic_fetch_add(&r->client_gen, 1);
	return rc;
}

/* A command's result: what a restart may answer instead is fine (the
 * resumed state decides), a timeout is a hang. */
static bool cmd_ok(struct run *r, const char *what, int rc)
{
	if (rc == 0 || rc == -EALREADY || rc == -EINVAL || rc == -EBUSY)
		return true;
	failf(r, "%s: %s (phase %s)", what, vswap_strerror(rc),
	      phase_names[atomic_load(&r->phase)]);
	return false;
}

/* The driver's call @call, its wait labelled @what for the watchdog. */
#define DRIVER_WAITS(r, what, call)                                                                \
	({                                                                                         \
		wait_begin((r), A_DRIVER, (what), 0);                                              \
		int rc_ = (call);                                                                  \
		wait_end((r), A_DRIVER);                                                           \
		rc_;                                                                               \
	})

static int state_of(struct run *r)
{
	struct vswap_status st;
	int rc = DRIVER_WAITS(r, "vswap_client_status()", vswap_client_status(r->x.c, &st));
	if (rc < 0) {
		cmd_ok(r, "status", rc);
		return -1;
	}
	return (int)st.state;
}

/* Wait for @st; a restart may move the state elsewhere (-ETIMEDOUT of the
 * wait itself is a hang only if the state is not a resting one). */
static void wait_for(struct run *r, enum vswap_state st)
{
	uint64_t t0 = mono_us();
	while (!atomic_load(&r->stop)) {
		int rc = DRIVER_WAITS(r, "vswap_client_wait_state()",
				      vswap_client_wait_state(r->x.c, st, 200));
		if (rc == 0)
			return;
		if (rc != -ETIMEDOUT) {
			cmd_ok(r, "wait", rc);
			return;
		}
		int now = state_of(r);
		/* Resumed as Pending / Active / Ready instead: fine. */
		if (now == VSWAP_STATE_PENDING || now == VSWAP_STATE_ACTIVE ||
		    now == VSWAP_STATE_READY || now == VSWAP_STATE_FAILED)
			if (st != VSWAP_STATE_READY || now == VSWAP_STATE_READY)
				return;
		if (mono_us() - t0 > (uint64_t)HANG_MS * 1000u) {
			failf(r, "state %d never reached %s (now %d)", now, vswap_state_name(st),
			      now);
			return;
		}
	}
}

/* Balloon: remove a few runs of guest pages, guest paused meanwhile (the
 * expectations change with the bytes). */
static void removes(struct run *r, uint64_t *seed)
{
	wait_begin(r, A_DRIVER, "the pause lock, then MADV_REMOVE", 0);
	pthread_rwlock_wrlock(&r->pause);
	for (int i = 0; i < 3; i++) {
		uint64_t p = rnd(seed) % PAGES, n = 1 + rnd(seed) % 8;
		unsigned reg = p < REGION0 ? 0 : 1;
		uint64_t end = reg == 0 ? REGION0 : PAGES;
		if (p + n > end)
			n = end - p;
		if (madvise(vdx_page(&r->x, p), n * r->x.page_size, MADV_REMOVE) < 0) {
			failf(r, "madvise: %s", strerror(errno));
			break;
		}
		for (uint64_t q = p; q < p + n; q++)
			r->exp[q].removed = true;
	}
	pthread_rwlock_unlock(&r->pause);
	wait_end(r, A_DRIVER);
}

/* Every page checked, guest paused, by @who.  Plain reads: a hang here is
 * reported by the watchdog. */
static void verify_all(struct run *r, enum actor who)
{
	uint8_t *buf = malloc(r->x.page_size);
	uint64_t undone = 0, zero = 0;
	wait_begin(r, who, "the pause lock, to verify every page", 0);
	pthread_rwlock_wrlock(&r->pause);
	for (uint64_t p = 0; p < PAGES && !atomic_load(&r->stop); p++) {
		wait_begin(r, who, "a guest page read by the full verify (a fault vswapd serves)",
			   p);
		memcpy(buf, vdx_page(&r->x, p), r->x.page_size);
		judge(r, p, buf, &undone, &zero);
	}
	wait_end(r, who);
	r->verified++;
	pthread_rwlock_unlock(&r->pause);
	r->undone_removes += undone;
	r->zero_removes += zero;
	free(buf);
}

static void phase_set(struct run *r, enum phase p)
{
	uint64_t now = mono_us();
	int was = atomic_load(&r->phase);
	atomic_store(&r->phase_dur[was], now - atomic_load(&r->phase_t0));
	atomic_store(&r->phase_t0, now);
	pthread_mutex_lock(&r->phase_mx);
	atomic_store(&r->phase, p);
	pthread_cond_broadcast(&r->phase_cv);
	pthread_mutex_unlock(&r->phase_mx);
	/* A short phase would be over before a busy machine runs the
	 * killer: the phase's work starts once the killer is awake (the
	 * instant within it stays random). */
	if (atomic_load(&r->armed) == (int)p)
		while (!atomic_load(&r->awake) && mono_us() - now < 100000)
			sched_yield();
}

/* Wait until phase @target begins (at most 3 s), then until a random
 * instant within the time it lasted last. */
static void aim(struct run *r, int target, uint64_t *seed)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 3;
	pthread_mutex_lock(&r->phase_mx);
	atomic_store(&r->awake, false);
	atomic_store(&r->armed, target);
	while (atomic_load(&r->phase) != target && !atomic_load(&r->stop))
		if (pthread_cond_timedwait(&r->phase_cv, &r->phase_mx, &dl) == ETIMEDOUT)
			break;
	atomic_store(&r->armed, -1);
	atomic_store(&r->awake, true);
	pthread_mutex_unlock(&r->phase_mx);
	/* The phase's last length, bounded: a kill is never put off for
	 * long, whatever a phase once took. */
	uint64_t span = atomic_load(&r->phase_dur[target]);
	if (span > AIM_MAX_US)
		span = AIM_MAX_US;
	uint64_t at = atomic_load(&r->phase_t0) + rnd(seed) % (span > 100 ? span : 100);
	uint64_t now = mono_us();
	if (at > now) {
		struct timespec d = {(time_t)((at - now) / 1000000u),
				     (long)((at - now) % 1000000u) * 1000};
		nanosleep(&d, NULL);
	}
}

static void cycle(struct run *r, uint64_t *seed)
{
	phase_set(r, PH_ENABLE);
	wait_begin(r, A_DRIVER, "the pause lock, to enable", 0);
	pthread_rwlock_wrlock(&r->pause);
	int rc = DRIVER_WAITS(r, "vswap_client_enable()", vswap_client_enable(r->x.c));
	pthread_rwlock_unlock(&r->pause);
	if (!cmd_ok(r, "enable", rc))
		return;
	if (rnd(seed) % 3) {
		phase_set(r, PH_TRIM);
		if (!cmd_ok(r, "trim",
			    DRIVER_WAITS(r, "vswap_client_trim()", vswap_client_trim(r->x.c))))
			return;
		wait_for(r, VSWAP_STATE_PENDING);
	}
	phase_set(r, PH_SWAP_OUT);
	if (!cmd_ok(r, "swap-out",
		    DRIVER_WAITS(r, "vswap_client_swap_out()", vswap_client_swap_out(r->x.c))))
		return;
	wait_for(r, VSWAP_STATE_ACTIVE);
	phase_set(r, PH_FAULTS);
	uint64_t until = mono_us() + 2000 + rnd(seed) % 8000;
	while (mono_us() < until && !atomic_load(&r->stop))
		sched_yield();
	phase_set(r, PH_REMOVES);
	removes(r, seed);
	if (rnd(seed) % 3 == 0) {
		phase_set(r, PH_DETACH);
		wait_begin(r, A_DRIVER, "the pause lock and the client lock, to detach", 0);
		pthread_rwlock_wrlock(&r->pause);
		pthread_mutex_lock(&r->cl_lock);
		rc = DRIVER_WAITS(r, "vswap_client_detach()", vswap_client_detach(r->x.c));
		r->x.c = NULL;
		r->mode = r->mode == VSWAP_ENABLE_COPY ? VSWAP_ENABLE_PROTECT : VSWAP_ENABLE_COPY;
		if (cmd_ok(r, "detach", rc))
			rc = DRIVER_WAITS(r, "vswap_client_connect() and _attach()",
					  attach(r, true));
		pthread_mutex_unlock(&r->cl_lock);
		pthread_rwlock_unlock(&r->pause);
		if (rc < 0) {
			failf(r, "attach after detach: %s", vswap_strerror(rc));
			return;
		}
	}
	phase_set(r, PH_SWAP_IN);
	if (!cmd_ok(r, "disable",
		    DRIVER_WAITS(r, "vswap_client_disable()", vswap_client_disable(r->x.c, false))))
		return;
	wait_for(r, VSWAP_STATE_READY);
	phase_set(r, PH_READY);
	verify_all(r, A_DRIVER);
	r->cycles++;
	r->mode_cycles[r->mode]++;
}

static void *driver_main(void *arg)
{
	struct run *r = arg;
	uint64_t seed = 0x1234567;
	while (!atomic_load(&r->stop))
		cycle(r, &seed);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Where each thread of process @pid (0: this one) waits: for a hang's report. */
static void dump_tasks(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), pid ? "/proc/%d/task" : "/proc/self/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char f[384], w[64] = "", comm[32] = "", stack[512] = "";
		snprintf(f, sizeof(f), "%s/%s/wchan", path, e->d_name);
		FILE *fp = fopen(f, "re");
		if (fp) {
			if (!fgets(w, sizeof(w), fp))
				w[0] = 0;
			fclose(fp);
		}
		snprintf(f, sizeof(f), "%s/%s/comm", path, e->d_name);
		if ((fp = fopen(f, "re"))) {
			if (fgets(comm, sizeof(comm), fp))
				comm[strcspn(comm, "\n")] = 0;
			fclose(fp);
		}
		/* The kernel stack (root only): its first frames say more. */
		snprintf(f, sizeof(f), "%s/%s/stack", path, e->d_name);
		if ((fp = fopen(f, "re"))) {
			size_t n = fread(stack, 1, sizeof(stack) - 1, fp);
			stack[n] = 0;
			for (char *q = stack; *q; q++)
				if (*q == '\n')
					*q = ' ';
			fclose(fp);
		}
		fprintf(stderr, "  %s task %s (%s) waits in %s %s\n", pid ? "daemon" : "test",
			e->d_name, comm, w, stack);
	}
	closedir(d);
}

/* The daemon's tasks in uninterruptible sleep just before its kill, by
 * kernel function ("" if none): a SIGKILL waits for them (a sync, a read
 * in flight), so they bound its teardown. */
static void blocked_tasks(pid_t pid, char *out, size_t len)
{
	out[0] = 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	size_t used = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char f[384], st[256] = "", w[64] = "";
		snprintf(f, sizeof(f), "%s/%s/stat", path, e->d_name);
		FILE *fp = fopen(f, "re");
		if (fp) {
			if (!fgets(st, sizeof(st), fp))
				st[0] = 0;
			fclose(fp);
		}
		const char *q = strrchr(st, ')');
		if (!q || q[1] != ' ' || q[2] != 'D')
			continue;
		snprintf(f, sizeof(f), "%s/%s/wchan", path, e->d_name);
		if ((fp = fopen(f, "re"))) {
			if (!fgets(w, sizeof(w), fp))
				w[0] = 0;
			fclose(fp);
		}
		int n = snprintf(out + used, len - used, "%s%s", used ? " " : "", w[0] ? w : "?");
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	closedir(d);
}

/* The client's last resume (0 if none), which client it is (its
 * generation) and, in @in, its counters. */
static uint64_t resumed_at(struct run *r, uint64_t *gen, struct vswap_client_info *in)
{
	*in = (struct vswap_client_info){0};
	wait_begin(r, A_KILLER, "the client lock (the driver replaces the client)", 0);
	pthread_mutex_lock(&r->cl_lock);
	*gen = atomic_load(&r->client_gen);
	if (r->x.c)
		vswap_client_info(r->x.c, in);
	r->kill_mode = r->mode; /* the driver changes it under the lock */
	pthread_mutex_unlock(&r->cl_lock);
	wait_end(r, A_KILLER);
	return in->last_resumed_mono_us;
}

/* Kill the daemon @kills times, each aimed at the next phase in turn (at a
 * random instant within the time it lasted last); the guest must be served
 * again after each within HANG_MS. */
static void killer(struct run *r, unsigned kills)
{
	uint64_t seed = 0xabcdef;
	for (unsigned k = 0; k < kills && !atomic_load(&r->stop); k++) {
		wait_begin(r, A_KILLER, "the phase a kill is aimed at", k);
		aim(r, (int)(k % PH_COUNT), &seed);
		uint64_t g0, g1;
		struct vswap_client_info in;
		resumed_at(r, &g0, &in);
		int ph = atomic_load(&r->phase);
		uint64_t tk = mono_us();
		if (getenv("VSWAPD_KILL_TRACE"))
			fprintf(stderr, "kill %u: aimed at %s, in %s %llu us after its start\n", k,
				phase_names[k % PH_COUNT], phase_names[ph],
				(unsigned long long)(tk - atomic_load(&r->phase_t0)));
		wait_begin(r, A_KILLER, "the daemon's kill and restart", k);
		char blocked[sizeof(r->blocked[0])];
		blocked_tasks(r->x.pid, blocked, sizeof(blocked));
		vdx_daemon_kill(&r->x);
		r->kills[ph]++;
		r->mode_kills[r->kill_mode][ph]++;
		uint64_t ts = mono_us();
		if (vdx_daemon_start(&r->x) < 0) {
			failf(r, "daemon restart failed");
			return;
		}
		uint64_t tl = mono_us(); /* listening (its ready byte read) */
		wait_end(r, A_KILLER);
		/* Served again: the client resumed the guest (a command in
		 * flight or the watcher); or, when the driver replaced the
		 * client meanwhile (detach, attach: a client of another
		 * generation), every guest thread moved. */
		uint64_t prog[GUESTS];
		for (int g = 0; g < GUESTS; g++)
			prog[g] = atomic_load(&r->progress[g]);
		uint64_t resumed = 0;
		for (;;) {
			bool moved = true;
			for (int g = 0; g < GUESTS; g++)
				moved &= atomic_load(&r->progress[g]) != prog[g];
			uint64_t at = resumed_at(r, &g1, &in);
			if (g1 == g0 && at >= ts) {
				resumed = at;
				break;
			}
			if (g1 != g0 && moved)
				break;
			if (atomic_load(&r->stop))
				return;
			if (mono_us() - tk > (uint64_t)HANG_MS * 1000u) {
				fprintf(stderr,
					"  hang: client generation %llu (was %llu) connected %d "
					"reconnects %llu, last resumed %lld us after the restart "
					"began; guest threads moved: %s\n",
					(unsigned long long)g1, (unsigned long long)g0,
					in.connected, (unsigned long long)in.reconnects,
					in.last_resumed_mono_us
					    ? (long long)(in.last_resumed_mono_us - ts)
					    : -1ll,
					moved ? "all" : "not all");
				dump_tasks(0);
				dump_tasks(r->x.pid);
				failf(r, "kill %u (%s): guest not served again within %d ms", k,
				      phase_names[ph], HANG_MS);
				return;
			}
			usleep(200);
		}
		r->nkills++;
		if (resumed) {
			r->killed_at[r->nlat] = tk;
			memcpy(r->blocked[r->nlat], blocked, sizeof(blocked));
			r->modes[r->nlat] = r->kill_mode;
			r->spawned_at[r->nlat] = ts;
			r->resumed_at[r->nlat] = resumed;
			r->pids[r->nlat] = r->x.pid;
			r->kill_us[r->nlat] = resumed - tk;
			r->listen_us[r->nlat] = tl - ts;
			/* The attach may be served before this thread reads the
			 * ready byte. */
			r->serve_us[r->nlat] = resumed > tl ? resumed - tl : 0;
			r->start_us[r->nlat++] = resumed - ts;
		}
	}
}

static const char *actor_name(enum actor a, char *buf, size_t len)
{
	if (a == A_DRIVER)
		return "driver";
	if (a == A_KILLER)
		return "killer";
	snprintf(buf, len, "guest %d", (int)(a - A_GUEST0));
	return buf;
}

/* What every thread waits for, and where every task sleeps. */
static void print_waits(struct run *r, int stuck)
{
	uint64_t now = mono_us();
	for (int a = 0; a < A_COUNT; a++) {
		char nb[16];
		uint64_t since = atomic_load(&r->waits[a].since);
		if (since)
			fprintf(stderr, "  %s waits for %s (%llu) since %llu ms%s\n",
				actor_name((enum actor)a, nb, sizeof(nb)),
				atomic_load(&r->waits[a].what),
				(unsigned long long)atomic_load(&r->waits[a].arg),
				(unsigned long long)(now > since ? (now - since) / 1000 : 0),
				a == stuck ? "  <- past the limit" : "");
		else
			fprintf(stderr, "  %s is not waiting\n",
				actor_name((enum actor)a, nb, sizeof(nb)));
	}
	dump_tasks(0);
	if (r->x.pid > 0)
		dump_tasks(r->x.pid);
}

/* Every thread's every wait is bounded: one that lasts WATCHDOG_MS is a
 * hang, reported with what each thread waits for and where every task of
 * this process and of the daemon sleeps; the test then ends (a thread stuck
 * in the kernel cannot be joined). */
static void *watchdog_main(void *arg)
{
	struct run *r = arg;
	while (!atomic_load(&r->watch_stop)) {
		struct timespec tick = {0, 100 * 1000 * 1000};
		nanosleep(&tick, NULL);
		uint64_t now = mono_us();
		int stuck = -1;
		for (int a = 0; a < A_COUNT; a++) {
			uint64_t since = atomic_load(&r->waits[a].since);
			if (since && since < now && now - since > (uint64_t)WATCHDOG_MS * 1000u)
				stuck = a;
		}
		if (stuck < 0)
			continue;
		fprintf(stderr, "vswapd kill test: HANG (phase %s, %u kills done):\n",
			phase_names[atomic_load(&r->phase)], r->nkills);
		print_waits(r, stuck);
		fprintf(stderr, "  the store is left in %s\n", r->x.dir);
		fflush(stderr);
		if (r->x.pid > 0)
			kill(r->x.pid, SIGKILL);
		_exit(1);
	}
	return NULL;
}

/* One restart's steps, microseconds, in the order they happen (wall, then
 * the CPU time or run-queue wait it holds). */
enum step {
	S_REAP,	  /* kill -> reaped: the dead daemon's teardown */
	S_LISTEN, /* exec -> listening */
	S_LISTEN_CPU,
	S_LISTEN_WAIT,
	S_DIAL,	  /* listening -> the client's connection accepted */
	S_ACCEPT, /* accepted -> the ATTACH read */
	S_OPEN,	  /* the store's open */
	S_OPEN_CPU,
	S_HANDLER,
	S_HANDLER_CPU,
	S_UFFDS,
	S_RESUME,
	S_RESUME_CPU,
	S_RECONCILE,
	S_REGISTER, /* or unregister, every page resident */
	S_WAKE,	    /* or the cleanup of stale copies */
	S_ATTACH,   /* the whole attach (map .. wake) */
	S_ATTACH_CPU,
	S_ATTACH_WAIT,
	S_REPLY, /* the reply sent -> the client resumed */
	S_TOTAL, /* kill -> resumed */
	S_COUNT,
};

static const char *const step_names[S_COUNT] = {
    "kill->reaped",   "exec->listening", "  cpu", "  run-queue wait", "listening->accept",
    "accept->attach", "store open",	 "  cpu", "handler create",   "  cpu",
    "add uffds",      "resume",		 "  cpu", "  reconcile",      "  register",
    "  wake",	      "attach",		 "  cpu", "  run-queue wait", "reply->client",
    "kill->resumed",
};

static uint64_t after(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

static void steps_of(const struct run *r, unsigned i, const struct rf_record *f, uint64_t *v)
{
	v[S_REAP] = r->spawned_at[i] - r->killed_at[i];
	v[S_LISTEN] = after(f->listening_at, r->spawned_at[i]);
	v[S_LISTEN_CPU] = f->start_cpu;
	v[S_LISTEN_WAIT] = f->start_wait;
	v[S_DIAL] = after(f->accepted_at, f->listening_at);
	v[S_ACCEPT] = f->accept_to_attach;
	v[S_OPEN] = f->open;
	v[S_OPEN_CPU] = f->open_cpu;
	v[S_HANDLER] = f->handler;
	v[S_HANDLER_CPU] = f->handler_cpu;
	v[S_UFFDS] = f->uffds;
	v[S_RESUME] = f->resume;
	v[S_RESUME_CPU] = f->resume_cpu;
	v[S_RECONCILE] = f->reconcile;
	v[S_REGISTER] = f->reg;
	v[S_WAKE] = f->wake;
	v[S_ATTACH] = f->attach;
	v[S_ATTACH_CPU] = f->attach_cpu;
	v[S_ATTACH_WAIT] = f->attach_wait;
	v[S_REPLY] = after(r->resumed_at[i], f->replied_at);
	v[S_TOTAL] = r->resumed_at[i] - r->killed_at[i];
}

/*
 * Restart to serving step by step, from the daemons' own figures (their
 * log): each step's p50 and max over the restarts, then the slowest restart
 * whole.  CPU time and run-queue wait beside a step's wall time tell work
 * from a loaded machine from a wait (wall past both is time blocked).
 */
static void report_phases(struct run *r)
{
	struct rf_record *rec;
	int nrec = rf_parse(r->log_path, &rec);
	if (nrec <= 0) {
		fprintf(stderr, "    (no daemon figures: its log level is below info)\n");
		return;
	}
	uint64_t *v[S_COUNT];
	bool ok = true;
	for (int s = 0; s < S_COUNT; s++)
		ok &= (v[s] = calloc(r->nlat, sizeof(uint64_t))) != NULL;
	unsigned n = 0, worst = 0, kinds[3][4] = {{0}};
	uint64_t worst_us = 0, worst_v[S_COUNT] = {0};
	for (unsigned i = 0; i < r->nlat; i++) {
		const struct rf_record *f = rf_find(rec, nrec, (int)r->pids[i]);
		if (!f || !ok)
			continue;
		kinds[r->modes[i]][f->kind]++;
		uint64_t one[S_COUNT];
		steps_of(r, i, f, one);
		for (int s = 0; s < S_COUNT; s++)
			v[s][n] = one[s];
		if (one[S_TOTAL] >= worst_us) {
			worst_us = one[S_TOTAL];
			worst = i;
			memcpy(worst_v, one, sizeof(one));
		}
		n++;
	}
	for (int m = VSWAP_ENABLE_COPY; m <= VSWAP_ENABLE_PROTECT && n; m++)
		fprintf(stderr,
			"    %s mode resumed: %u as its pages say, %u Ready (every page resident), "
			"%u protected again (Pending)\n",
			vswap_enable_mode_name((enum vswap_enable_mode)m), kinds[m][RF_OUT],
			kinds[m][RF_READY], kinds[m][RF_PROTECTED]);
	if (n) {
		fprintf(stderr,
			"    step by step (%u restarts with the daemon's figures), p50 / max ms:\n",
			n);
		for (int s = 0; s < S_COUNT; s++) {
			qsort(v[s], n, sizeof(uint64_t), cmp_u64);
			fprintf(stderr, "      %-22s %8.2f %8.2f\n", step_names[s],
				v[s][n / 2] / 1e3, v[s][n - 1] / 1e3);
		}
		fprintf(stderr, "    the slowest (restart %u, %.2f ms):", worst, worst_us / 1e3);
		for (int s = 0; s < S_COUNT - 1; s++)
			fprintf(stderr, "%s %s %.2f", s ? "," : "", step_names[s],
				worst_v[s] / 1e3);
		fprintf(stderr, "; the dead daemon's tasks in D at its kill: %s\n",
			r->blocked[worst][0] ? r->blocked[worst] : "none");
		/* The teardown: how often a task the kill had to wait for was
		 * there, and how long those teardowns took. */
		unsigned nd = 0;
		uint64_t dmax = 0, omax = 0;
		for (unsigned i = 0; i < r->nlat; i++) {
			uint64_t t = r->spawned_at[i] - r->killed_at[i];
			if (r->blocked[i][0]) {
				nd++;
				dmax = t > dmax ? t : dmax;
			} else {
				omax = t > omax ? t : omax;
			}
		}
		fprintf(
		    stderr,
		    "    kill->reaped max %.2f ms over the %u kills that found a task in D, %.2f "
		    "ms over the %u others\n",
		    dmax / 1e3, nd, omax / 1e3, r->nlat - nd);
	}
	for (int s = 0; s < S_COUNT; s++)
		free(v[s]);
	free(rec);
}

static void report(struct run *r)
{
	fprintf(stderr,
		"vswapd kill test: %u kills, %llu cycles (%llu copy, %llu protect), %llu full "
		"verifies\n",
		r->nkills, (unsigned long long)r->cycles,
		(unsigned long long)r->mode_cycles[VSWAP_ENABLE_COPY],
		(unsigned long long)r->mode_cycles[VSWAP_ENABLE_PROTECT],
		(unsigned long long)r->verified);
	fprintf(stderr, "  kills per state:");
	for (int p = 0; p < PH_COUNT; p++)
		fprintf(stderr, " %s %llu", phase_names[p], (unsigned long long)r->kills[p]);
	for (int m = VSWAP_ENABLE_COPY; m <= VSWAP_ENABLE_PROTECT; m++) {
		fprintf(stderr,
			"\n    %s mode:", vswap_enable_mode_name((enum vswap_enable_mode)m));
		for (int p = 0; p < PH_COUNT; p++)
			fprintf(stderr, " %s %llu", phase_names[p],
				(unsigned long long)r->mode_kills[m][p]);
	}
	fprintf(stderr, "\n  removed pages read back: %llu zeros, %llu undone by a kill\n",
		(unsigned long long)r->zero_removes, (unsigned long long)r->undone_removes);
	if (r->nlat) {
		qsort(r->kill_us, r->nlat, sizeof(uint64_t), cmp_u64);
		qsort(r->start_us, r->nlat, sizeof(uint64_t), cmp_u64);
		qsort(r->listen_us, r->nlat, sizeof(uint64_t), cmp_u64);
		qsort(r->serve_us, r->nlat, sizeof(uint64_t), cmp_u64);
		fprintf(
		    stderr,
		    "  restart to serving (%u-page guest, %u resumes): kill -> resumed p50 %.2f "
		    "ms max %.2f ms; daemon start -> resumed p50 %.2f ms max %.2f ms\n",
		    PAGES, r->nlat, r->kill_us[r->nlat / 2] / 1e3, r->kill_us[r->nlat - 1] / 1e3,
		    r->start_us[r->nlat / 2] / 1e3, r->start_us[r->nlat - 1] / 1e3);
		/* Each part sorted on its own: the max of each is not the same
		 * restart's. */
		fprintf(
		    stderr,
		    "    of which daemon start -> listening p50 %.2f ms max %.2f ms; "
		    "listening -> resumed (reconnect, attach, resume) p50 %.2f ms max %.2f ms\n",
		    r->listen_us[r->nlat / 2] / 1e3, r->listen_us[r->nlat - 1] / 1e3,
		    r->serve_us[r->nlat / 2] / 1e3, r->serve_us[r->nlat - 1] / 1e3);
		report_phases(r);
	}
}

static void test_kills(void **state)
{
	(void)state;
	unsigned kills = getenv("VSWAP_LONG") ? 1000 : 50;
	if (getenv("VSWAPD_KILLS"))
		kills = (unsigned)strtoul(getenv("VSWAPD_KILLS"), NULL, 10);
	struct run *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	r->kill_us = calloc(kills + 1, sizeof(uint64_t));
	r->start_us = calloc(kills + 1, sizeof(uint64_t));
	r->listen_us = calloc(kills + 1, sizeof(uint64_t));
	r->serve_us = calloc(kills + 1, sizeof(uint64_t));
	r->killed_at = calloc(kills + 1, sizeof(uint64_t));
	r->blocked = calloc(kills + 1, sizeof(r->blocked[0]));
	r->modes = calloc(kills + 1, sizeof(r->modes[0]));
	r->resumed_at = calloc(kills + 1, sizeof(uint64_t));
	r->spawned_at = calloc(kills + 1, sizeof(uint64_t));
	r->pids = calloc(kills + 1, sizeof(pid_t));
	assert_true(r->kill_us && r->start_us && r->listen_us && r->serve_us && r->killed_at &&
		    r->blocked && r->resumed_at && r->spawned_at && r->pids);
	/* Writer first: the guest threads take it back to back, and the
	 * default (readers first) would starve the driver's pauses. */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&r->pause, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&r->why_lock, NULL);
	pthread_mutex_init(&r->cl_lock, NULL);
	pthread_mutex_init(&r->phase_mx, NULL);
	pthread_cond_init(&r->phase_cv, NULL);
	atomic_store(&r->armed, -1);
	/* The killer must wake within short phases on a busy machine: it
	 * runs at a higher priority than the guest threads (root: CI). */
	setpriority(PRIO_PROCESS, (id_t)gettid(), -10);
	static const size_t pages[] = {REGION0, REGION1};
	r->mode = VSWAP_ENABLE_COPY;
	atomic_store(&r->phase_t0, mono_us());
	assert_int_equal(vdx_init(&r->x, pages, 2), 0);
	/* Every daemon's log, for its restart figures. */
	snprintf(r->log_path, sizeof(r->log_path), "%s/daemons.log", r->x.dir);
	r->x.log_fd = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(r->x.log_fd >= 0);
	r->x.log_level = "info";
	/* As under systemd: the socket outlives every daemon. */
	assert_int_equal(vdx_listen(&r->x), 0);
	assert_int_equal(vdx_daemon_start(&r->x), 0);
	assert_int_equal(attach(r, false), 0);
	uint8_t *buf = malloc(r->x.page_size);
	for (uint64_t p = 0; p < PAGES; p++) { /* version 1 everywhere */
		kw_page_fill(buf, (uint32_t)r->x.page_size, p, 1);
		memcpy(vdx_page(&r->x, p), buf, r->x.page_size);
		r->exp[p].v = 1;
	}
	free(buf);
	pthread_t guests[GUESTS], driver, watchdog;
	assert_int_equal(pthread_create(&watchdog, NULL, watchdog_main, r), 0);
	struct guest_arg ga[GUESTS];
	for (unsigned g = 0; g < GUESTS; g++) {
		ga[g] = (struct guest_arg){r, g};
		assert_int_equal(pthread_create(&guests[g], NULL, guest_main, &ga[g]), 0);
	}
	assert_int_equal(pthread_create(&driver, NULL, driver_main, r), 0);
	killer(r, kills);
	atomic_store(&r->stop, true);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += HANG_MS / 1000;
	bool joined = pthread_timedjoin_np(driver, NULL, &ts) == 0;
	for (unsigned g = 0; g < GUESTS; g++)
		joined &= pthread_timedjoin_np(guests[g], NULL, &ts) == 0;
	if (!joined) {
		report(r);
		print_waits(r, -1);
		fail_msg("a guest thread or the driver hung at the end");
	}
	report(r);
	if (atomic_load(&r->failed))
		fail_msg("%s", r->why);
	/* The end: swap everything in, check, detach, audit. */
	if (r->x.c) {
		wait_begin(r, A_KILLER, "the final disable", 0);
		int rc = vswap_client_disable(r->x.c, false);
		assert_true(rc == 0 || rc == -EALREADY);
		assert_int_equal(vswap_client_wait_state(r->x.c, VSWAP_STATE_READY, HANG_MS), 0);
		atomic_store(&r->stop, false);
		verify_all(r, A_KILLER);
		assert_int_equal(atomic_load(&r->failed), 0);
		wait_begin(r, A_KILLER, "the final detach", 0);
		assert_int_equal(vswap_client_detach(r->x.c), 0);
		wait_end(r, A_KILLER);
		r->x.c = NULL;
	}
	atomic_store(&r->watch_stop, true);
	pthread_join(watchdog, NULL);
	/* What the kills left, in full when it is more than leaks. */
	if (vdx_fsck(&r->x, "-n") != 0) {
		char cmd[1024];
		snprintf(cmd, sizeof(cmd),
			 "%s/vswap-fsck -n -v --no-progress --staging-dir %s %s >&2",
			 VSWAP_BUILD_DIR, r->x.dir, r->x.store);
		if (system(cmd) < 0)
			fprintf(stderr, "  (vswap-fsck did not run)\n");
	}
	int fy = vdx_fsck(&r->x, "-y");
	fprintf(stderr,
		"  vswap-fsck -y at the end: exit %d (1: leaks of killed swap-outs reclaimed)\n",
		fy);
	assert_true(fy == 0 || fy == 1);
	assert_int_equal(vdx_fsck(&r->x, "-n"), 0);
	struct vswap_store *s;
	assert_int_equal(
	    vswap_store_open(r->x.store,
			     &(struct vswap_store_opts){.staging_dir = r->x.dir, .read_only = true},
			     &s),
	    0);
	struct vswap_store_stats ss;
	assert_int_equal(vswap_store_stats(s, &ss), 0);
	assert_int_equal(ss.pages_lost, 0);
	vswap_store_close(s);
	assert_true(r->nkills >= kills);
	close(r->x.log_fd); /* the log goes with the directory */
	r->x.log_fd = -1;
	vdx_fini(&r->x);
	free(r->killed_at);
	free(r->blocked);
	free(r->modes);
	free(r->resumed_at);
	free(r->spawned_at);
	free(r->pids);
	free(r->kill_us);
	free(r->start_us);
	free(r->listen_us);
	free(r->serve_us);
	free(r);
}

int main(void)
{
	hfx_skip_if_unavailable("vswapd_kill");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kills),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

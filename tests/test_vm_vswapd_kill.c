/* SPDX-License-Identifier: MIT */
/*
 * A real KVM guest served by vswapd, and vswapd SIGKILLed under it.
 *
 * vswap-vm --vswapd runs its cycles (the guest writes every page, enable,
 * trim while the guest reads, swap-out, balloon removes, the guest checks
 * every page over swapped-out memory, disable, the guest checks again) with
 * the daemon, not a handler of its own, serving the vCPUs' faults.  First
 * without kills, in both enable modes.  Then the daemon is killed at random
 * instants, aimed at each stage of a cycle in turn (at a random point within
 * the time that stage last took), and restarted at once on the socket that
 * outlives it (as systemd's socket unit keeps it): vswap-vm's client hands
 * the guest over again and the cycles go on.
 *
 * Judged: vswap-vm's own verdict (every page the guest checked is the
 * version it wrote, or zeros where the balloon removed it: wrong_pages 0; no
 * vCPU failed; every cycle done), no stage taking longer than HANG_MS (a
 * hang, reported with where every task sleeps), and the store at the end:
 * vswap-fsck -n clean, or finding only slots that killed swap-outs leaked
 * (crash invariant 4), clean after one -y pass.  Printed: the kills per
 * stage.
 *
 * CI: 50 kills (half in copy mode, half in protect mode); VSWAP_LONG=1:
 * 1000; VSWAPD_VM_KILLS sets another number.  Skips (77) where KVM cannot
 * run the guest.  VSWAPD_KILL_TRACE=1 prints each kill and vswap-vm's
 * progress.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/vswapd_fixture.h"

extern char **environ;

/* No stage of a 32 MiB guest takes this long, even under load. */
#define HANG_MS 60000
#define GUEST_SIZE "32M"
/* The longest stretch into a stage a kill is aimed at. */
#define AIM_MAX_US 1500000u

/* vswap-vm's stages, in a cycle's order, as its progress lines name them. */
enum stage {
	ST_WRITE,
	ST_ENABLE,
	ST_TRIM,
	ST_SWAP_OUT,
	ST_BALLOON,
	ST_VERIFY_SWAPPED,
	ST_DISABLE,
	ST_VERIFY,
	ST_COUNT
};
static const char *const stage_names[ST_COUNT] = {
    "write", "enable", "trim", "swap-out", "balloon", "verify-swapped", "disable", "verify",
};
/* The state each stage is, for the report. */
static const char *const state_names[ST_COUNT] = {
    "ready (guest writes)",
    "enable",
    "trim",
    "swap-out",
    "removes",
    "faults (guest checks)",
    "swap-in (disable)",
    "ready (guest checks)",
};

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static const char *build_dir(void)
{
	const char *bd = getenv("VSWAP_BUILD_DIR");
	return bd ? bd : VSWAP_BUILD_DIR;
}

static bool kvm_usable(void)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "%s/vswap-vm --check-kvm >/dev/null 2>&1", build_dir());
	int st = system(cmd);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "test_vm_vswapd_kill: skipped: vswap-vm --check-kvm failed\n");
		return false;
	}
	return true;
}

struct vm_run {
	pid_t pid;
	int out, err; /* vswap-vm's stdout (the JSON) and stderr (progress) */
	char json[16384];
	size_t njson;
	char line[1024];
	size_t nline;
};

static int vm_start(struct vm_run *v, const struct vdx *x, const char *mode, unsigned cycles)
{
	char exe[PATH_MAX], ncyc[16];
	snprintf(exe, sizeof(exe), "%s/vswap-vm", build_dir());
	snprintf(ncyc, sizeof(ncyc), "%u", cycles);
	const char *argv[] = {
	    exe,	"--vswapd", x->sock, "--store",	      x->store, "--keep", "--size",
	    GUEST_SIZE, "--cycles", ncyc,    "--enable-mode", mode,	"--json", NULL};
	int o[2], e[2];
	if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC))
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, o[1], 1);
	posix_spawn_file_actions_adddup2(&fa, e[1], 2);
	int rc = posix_spawn(&v->pid, exe, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(o[1]);
	close(e[1]);
	v->out = o[0];
	v->err = e[0];
	v->njson = v->nline = 0;
	return rc ? -rc : 0;
}

/* A progress line's stage (its first word), and its seconds (the number
 * before the word "s"), or -1 if it is not a stage line. */
static int stage_of(const char *line, double *secs)
{
	char name[32];
	if (strncmp(line, "  ", 2) != 0 || sscanf(line, " %31s", name) != 1)
		return -1;
	for (int i = 0; i < ST_COUNT; i++) {
		if (strcmp(name, stage_names[i]) != 0)
			continue;
		const char *p = strstr(line, " s");
		while (p && p[2] && p[2] != ' ')
			p = strstr(p + 1, " s");
		*secs = 0;
		if (p) {
			const char *q = p;
			while (q > line && q[-1] != ' ')
				q--;
			*secs = strtod(q, NULL);
		}
		return i;
	}
	return -1;
}

/* Where every task of @pid sleeps (a hang's report). */
static void dump_tasks(const char *who, pid_t pid)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "for t in /proc/%d/task/*; do echo \"  %s task ${t##*/} $(cat $t/comm) in "
		 "$(cat $t/wchan): $(head -4 $t/stack 2>/dev/null | tr '\\n' ' ')\"; done >&2",
		 (int)pid, who);
	if (system(cmd) < 0)
		fprintf(stderr, "  (cannot list %s's tasks)\n", who);
	/* Its uffds' queues: "pending" faults nobody has read yet, "total"
	 * also those read but not answered (woken).  Which of the two a hang
	 * has says whether the daemon stopped reading or dropped a fault. */
	snprintf(
	    cmd, sizeof(cmd),
	    "for f in /proc/%d/fd/*; do [ \"$(readlink $f)\" = 'anon_inode:[userfaultfd]' ] && "
	    "echo \"  %s uffd ${f##*/}: $(grep -E '^(pending|total)' /proc/%d/fdinfo/${f##*/} | "
	    "tr '\\n\\t' '  ')\"; done >&2",
	    (int)pid, who, (int)pid);
	if (system(cmd) < 0)
		fprintf(stderr, "  (cannot list %s's uffds)\n", who);
	/* CPU time of each task, twice a second apart: a thread spinning
	 * shows in the second sample. */
	snprintf(cmd, sizeof(cmd),
		 "for i in 1 2; do for t in /proc/%d/task/*; do echo \"  %s task ${t##*/} cpu "
		 "$(cut -d' ' -f14,15 $t/stat)\"; done; sleep 1; done >&2",
		 (int)pid, who);
	if (system(cmd) < 0)
		fprintf(stderr, "  (no cpu times of %s)\n", who);
	/* And the user-space stacks, where gdb is installed. */
	snprintf(cmd, sizeof(cmd),
		 "command -v gdb >/dev/null && gdb -p %d -batch -ex 'thread apply all bt' 2>&1 | "
		 "grep -E '^(#|Thread)' >&2",
		 (int)pid);
	if (system(cmd) < 0)
		fprintf(stderr, "  (no stacks of %s)\n", who);
}

struct kills {
	unsigned done;
	uint64_t per_stage[ST_COUNT];
};

/*
 * Run vswap-vm to its end in @mode, killing the daemon @want times.  Each
 * stage line says a stage ended and the next began.  Returns vswap-vm's
 * exit status; its JSON in v->json.
 */
static int run_with_kills(struct vdx *x, struct vm_run *v, const char *mode, unsigned cycles,
			  unsigned want, struct kills *k, uint64_t *seed)
{
	bool trace = getenv("VSWAPD_KILL_TRACE") != NULL;
	assert_int_equal(vm_start(v, x, mode, cycles), 0);
	int cur = -1; /* the stage running now; -1: setting up */
	uint64_t dur_us[ST_COUNT] = {0};
	uint64_t last_line = mono_us(), kill_at = 0, began = 0;
	unsigned mine = 0;
	int target = -1; /* the stage the pending kill is aimed at */
	bool out_open = true, err_open = true;
	while (out_open || err_open) {
		uint64_t now = mono_us();
		if (kill_at && now >= kill_at) {
			int where = cur;
			if (trace)
				fprintf(stderr,
					"kill %u: aimed at %s, in %s %llu us after its start\n",
					k->done, stage_names[target], stage_names[where],
					(unsigned long long)(now - began));
			assert_int_equal(vdx_daemon_kill(x), 0);
			assert_int_equal(vdx_daemon_start(x), 0);
			k->per_stage[where]++;
			k->done++;
			mine++;
			kill_at = 0;
			last_line = mono_us(); /* the stage's bound restarts */
			continue;
		}
		if (now > last_line && now - last_line > (uint64_t)HANG_MS * 1000u) {
			fprintf(
			    stderr,
			    "vswapd kill test (KVM): HANG: no progress from vswap-vm for %d ms, "
			    "in stage %s after %u kills\n",
			    HANG_MS, cur >= 0 ? stage_names[cur] : "(setup)", k->done);
			dump_tasks("vswap-vm", v->pid);
			if (x->pid > 0)
				dump_tasks("vswapd", x->pid);
			kill(v->pid, SIGKILL);
			waitpid(v->pid, NULL, 0);
			fail_msg("vswap-vm made no progress for %d ms (stage %s)", HANG_MS,
				 cur >= 0 ? stage_names[cur] : "(setup)");
		}
		uint64_t until = kill_at ? kill_at : last_line + (uint64_t)HANG_MS * 1000u;
		int tmo = until > now ? (int)((until - now + 999) / 1000) : 0;
		struct pollfd p[2] = {{.fd = out_open ? v->out : -1, .events = POLLIN},
				      {.fd = err_open ? v->err : -1, .events = POLLIN}};
		if (poll(p, 2, tmo > 1000 ? 1000 : tmo) < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		if (p[0].revents) {
			ssize_t n =
			    read(v->out, v->json + v->njson, sizeof(v->json) - 1 - v->njson);
			if (n <= 0)
				out_open = false;
			else
				v->njson += (size_t)n;
			v->json[v->njson] = 0;
		}
		if (!p[1].revents)
			continue;
		char c;
		ssize_t n = read(v->err, &c, 1);
		if (n <= 0) {
			err_open = false;
			continue;
		}
		if (c != '\n') {
			if (v->nline < sizeof(v->line) - 1)
				v->line[v->nline++] = c;
			continue;
		}
		v->line[v->nline] = 0;
		v->nline = 0;
		last_line = mono_us();
		double secs;
		int s = stage_of(v->line, &secs);
		if (trace || (s < 0 && strncmp(v->line, "cycle ", 6) != 0 &&
			      strncmp(v->line, "vswap-vm: status", 16) != 0))
			fprintf(stderr, "  [vswap-vm] %s\n", v->line);
		if (strncmp(v->line, "cycle ", 6) == 0)
			s = ST_VERIFY; /* the write stage begins */
		else if (s >= 0)
			dur_us[s] = (uint64_t)(secs * 1e6);
		else
			continue;
		cur = (s + 1) % ST_COUNT;
		began = last_line;
		/* Every stage in turn, as they come: the one that begins now,
		 * killed within the time it took last (at first, within 20
		 * ms).  At most one kill per stage, so that the guest moves on
		 * between two.  (Waiting instead for a given stage lost a whole
		 * cycle whenever a restart made that stage pass unseen, and a
		 * run fell short of its kills.) */
		if (!kill_at && mine < want) {
			target = cur;
			uint64_t span = dur_us[cur] ? dur_us[cur] : 20000;
			if (span > AIM_MAX_US)
				span = AIM_MAX_US;
			kill_at = began + rnd(seed) % span;
		}
	}
	int st;
	while (waitpid(v->pid, &st, 0) < 0 && errno == EINTR)
		;
	close(v->out);
	close(v->err);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static uint64_t json_u64(const char *json, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(json, k);
	return p ? strtoull(p + strlen(k), NULL, 10) : UINT64_MAX;
}

static double json_f64(const char *json, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(json, k);
	return p ? strtod(p + strlen(k), NULL) : -1;
}

/* vswap-vm's verdict: every page right, no vCPU failed, every cycle run.
 * Its own audit (vswap-fsck -n) must be clean, except, with @kills, for
 * leaked slots alone: a swap-out killed before its commit leaves its
 * written chunks unreferenced (crash invariant 4), which -y reclaims. */
static void check_verdict(const struct vm_run *v, int status, const char *what, unsigned cycles,
			  bool kills)
{
	assert_int_equal(json_u64(v->json, "wrong_pages"), 0);
	assert_int_equal(json_u64(v->json, "failed_vcpus"), 0);
	assert_null(strstr(v->json, "\"sigbus\":true"));
	assert_int_equal(json_u64(v->json, "cycles"), cycles);
	assert_non_null(strstr(v->json, "\"served_by\":\"vswapd\""));
	uint64_t fsck = json_u64(v->json, "fsck_exit");
	if (status == 0 && strstr(v->json, "\"ok\":true") && fsck == 0)
		return;
	if (!kills || status != 1 || fsck != 4)
		fail_msg("%s: vswap-vm exit %d: %s", what, status, v->json);
}

static int fsck_n(const struct vdx *x)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s/vswap-fsck -n --no-progress %s >&2", build_dir(), x->store);
	int st = system(cmd);
	return st < 0 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

/* vswap-fsck -n on the store: its exit; *@leaks_only whether every
 * problem it found is a leaked slot. */
static int fsck_n_kinds(const struct vdx *x, bool *leaks_only)
{
	char cmd[1024], buf[65536];
	snprintf(cmd, sizeof(cmd), "%s/vswap-fsck -n --json --no-progress %s 2>/dev/null",
		 build_dir(), x->store);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	int st = pclose(f);
	unsigned kinds = 0, leaks = 0;
	for (const char *p = buf; (p = strstr(p, "\"kind\":\"")); p++) {
		kinds++;
		leaks += strncmp(p + 8, "leaked_slot\"", 12) == 0;
	}
	*leaks_only = kinds == leaks && n < sizeof(buf) - 1;
	if (!*leaks_only)
		fprintf(stderr, "%s\n", buf);
	return st < 0 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

/* The store at the end: clean, or leaked slots alone which one -y pass
 * reclaims (then clean).  Returns the -y passes needed (0 or 1). */
static unsigned check_store(const struct vdx *x)
{
	bool leaks_only;
	int rc = fsck_n_kinds(x, &leaks_only);
	if (rc == 0)
		return 0;
	if (!leaks_only)
		fail_msg("vswap-fsck -n: exit %d, problems other than leaked slots", rc);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s/vswap-fsck -y --no-progress %s >/dev/null 2>&1", build_dir(),
		 x->store);
	int st = system(cmd);
	assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) <= 1);
	assert_int_equal(fsck_n(x), 0);
	return 1;
}

/* The store vswap-vm kept (its staging file in the default directory),
 * then the fixture. */
static void teardown(struct vdx *x)
{
	struct vswap_store_opts so = {0};
	assert_int_equal(vswap_store_destroy(x->store, &so), 0);
	vdx_fini(x);
}

static void setup_daemon(struct vdx *x)
{
	static const size_t one = 1; /* the fixture's own guest is not used */
	assert_int_equal(vdx_init(x, &one, 1), 0);
	/* As under systemd's socket unit: the socket outlives every daemon. */
	assert_int_equal(vdx_listen(x), 0);
	assert_int_equal(vdx_daemon_start(x), 0);
}

/* The cycles served by vswapd, no kill: every page right, the guest's
 * faults served from staging and from the swap file through the daemon. */
static void test_cycles_served(void **state)
{
	(void)state;
	static const char *const modes[] = {"copy", "protect"};
	for (int i = 0; i < 2; i++) {
		struct vdx x;
		setup_daemon(&x);
		struct vm_run *v = calloc(1, sizeof(*v));
		struct kills k = {0};
		uint64_t seed = 1;
		int st = run_with_kills(&x, v, modes[i], 1, 0, &k, &seed);
		check_verdict(v, st, modes[i], 1, false);
		assert_true(json_u64(v->json, "faults_from_file") > 0);
		assert_true(json_u64(v->json, "pages_removed") > 0);
		assert_int_equal(k.done, 0);
		assert_int_equal(check_store(&x), 0);
		free(v);
		teardown(&x);
	}
}

static void test_kills(void **state)
{
	(void)state;
	unsigned want = getenv("VSWAP_LONG") ? 1000 : 50;
	if (getenv("VSWAPD_VM_KILLS"))
		want = (unsigned)strtoul(getenv("VSWAPD_VM_KILLS"), NULL, 10);
	static const char *const modes[] = {"copy", "protect"};
	struct kills k = {0};
	uint64_t seed = getenv("VSWAP_KILL_SEED") ? strtoull(getenv("VSWAP_KILL_SEED"), NULL, 0)
						  : 0x5eed1234ull;
	uint64_t t0 = mono_us();
	unsigned repairs = 0;
	for (int i = 0; i < 2; i++) {
		unsigned mine = want / 2 + (i == 0 ? want % 2 : 0);
		/* A kill per stage at most, and a restart may skip the next
		 * one: cycles enough for every kill. */
		unsigned cycles = mine / (ST_COUNT / 2) + 2;
		struct vdx x;
		setup_daemon(&x);
		struct vm_run *v = calloc(1, sizeof(*v));
		unsigned before = k.done;
		int st = run_with_kills(&x, v, modes[i], cycles, mine, &k, &seed);
		fprintf(stderr, "  %s mode: %u kills over %u cycles\n", modes[i], k.done - before,
			cycles);
		/* As vswap-vm's client measured each: its end of file seen ->
		 * the guest resumed (the kill, the new daemon's start, the
		 * reconnect, the store's open and the resume). */
		fprintf(stderr,
			"    restart to serving: p50 %.2f ms, max %.2f ms (%llu of %llu "
			"restarts sampled)\n",
			json_f64(v->json, "vswapd_restart_to_serving_p50_ms"),
			json_f64(v->json, "vswapd_restart_to_serving_max_ms"),
			(unsigned long long)json_u64(v->json, "vswapd_restarts_sampled"),
			(unsigned long long)json_u64(v->json, "vswapd_restarts"));
		check_verdict(v, st, modes[i], cycles, true);
		repairs += check_store(&x);
		free(v);
		teardown(&x);
	}
	fprintf(stderr,
		"vswapd kill test (KVM guest, %s): %u kills in %.1f s; per state:", GUEST_SIZE,
		k.done, (double)(mono_us() - t0) / 1e6);
	for (int s = 0; s < ST_COUNT; s++)
		fprintf(stderr, " %s %llu%s", state_names[s], (unsigned long long)k.per_stage[s],
			s + 1 < ST_COUNT ? "," : "\n");
	fprintf(stderr,
		"  0 wrong pages, 0 hangs; fsck clean (%u of 2 stores after one -y pass for "
		"the slots killed swap-outs leaked)\n",
		repairs);
	assert_true(k.done >= want);
}

int main(void)
{
	if (!kvm_usable())
		return 77;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cycles_served),
	    cmocka_unit_test(test_kills),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * vswap-vm end to end on KVM: a real guest on its vCPUs checks every byte
 * of its memory while vswap swaps it.  Skips (77) where KVM cannot run the
 * guest (vswap-vm --check-kvm) or the tool was not built.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/recovery_fixture.h"

/* The unsigned number after "KEY": in a JSON text, or -1. */
static long long json_num(const char *json, const char *key)
{
	char pat[96];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = json ? strstr(json, pat) : NULL;
	if (!p)
		return -1;
	p += strlen(pat);
	if (!strncmp(p, "true", 4))
		return 1;
	if (!strncmp(p, "false", 5))
		return 0;
	return strtoll(p, NULL, 10);
}

static double json_dbl(const char *json, const char *key)
{
	char pat[96];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = json ? strstr(json, pat) : NULL;
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* Run vswap-vm with @args; print its output on failure. */
static int vm_run(const char *const *args, char **out, char **err)
{
	int rc = rfx_run_tool("vswap-vm", args, out, err);

	if (rc != 0)
		fprintf(stderr, "vswap-vm exit %d\n--- stdout\n%s\n--- stderr\n%s\n", rc,
			out && *out ? *out : "", err && *err ? *err : "");
	return rc;
}

static void swap_cycles_two_vcpus(void **state)
{
	(void)state;
	const char *args[] = {"--size", "32M",		 "--vcpus", "2",      "--cycles",
			      "2",	"--enable-mode", "copy",    "--json", NULL};
	char *out = NULL, *err = NULL;

	assert_int_equal(vm_run(args, &out, &err), 0);
	assert_int_equal(json_num(out, "ok"), 1);
	assert_int_equal(json_num(out, "vcpus"), 2);
	assert_int_equal(json_num(out, "cycles"), 2);
	assert_int_equal(json_num(out, "wrong_pages"), 0);
	assert_int_equal(json_num(out, "fsck_exit"), 0);
	/* The guest's verify pass over swapped-out memory faulted from the
	 * file, and its touches during trim from staging. */
	assert_true(json_num(out, "faults_from_file") > 1000);
	assert_true(json_num(out, "faults_from_staging") > 0);
	assert_true(json_num(out, "pages_removed") > 0);
	assert_true(json_dbl(out, "p50") > 0);
	free(out);
	free(err);
}

/* ---- hibernate and resume ------------------------------------------------ */

static void store_new(struct rfx_store *fx, const char *tag)
{
	assert_int_equal(rfx_init(fx, tag), 0);
}

static void store_gone(struct rfx_store *fx)
{
	struct vswap_store_opts so = {0};

	if (!fx->dir[0])
		return;
	vswap_store_destroy(fx->path, &so); /* the staging file in /dev/shm too */
	rfx_cleanup(fx);
	fx->dir[0] = 0;
}

/* Each store test's fixture lives in its state, so that a failed assertion
 * still leaves no store behind (the teardown removes it). */
static int fixture_setup(void **state)
{
	*state = calloc(1, sizeof(struct rfx_store));
	return *state ? 0 : -1;
}

static int fixture_teardown(void **state)
{
	store_gone(*state);
	free(*state);
	return 0;
}

static void hibernate(struct rfx_store *fx, const char *durability)
{
	const char *args[] = {"--hibernate",  "--store",  fx->path, "--size", "32M",
			      "--durability", durability, "--json", NULL};
	char *out = NULL, *err = NULL;

	assert_int_equal(vm_run(args, &out, &err), 0);
	assert_true(json_num(out, "hibernated_pages") > 4000);
	free(out);
	free(err);
}

static int fsck_n(const struct rfx_store *fx)
{
	/* Other stores' staging files in /dev/shm are not this test's business. */
	const char *args[] = {"-n", "--no-progress", "--no-orphan-scan", fx->path, NULL};
	char *out = NULL, *err = NULL;
	int rc = rfx_run_tool("vswap-fsck", args, &out, &err);

	if (rc)
		fprintf(stderr, "vswap-fsck -n exit %d\n%s\n%s\n", rc, out ? out : "",
			err ? err : "");
	free(out);
	free(err);
	return rc;
}

/* Resume (and with @again hibernate once more); returns the JSON. */
static char *resume(const struct rfx_store *fx, bool again, bool prefetch)
{
	const char *args[8] = {"--resume", "--store", fx->path, "--json"};
	int n = 4;
	char *out = NULL, *err = NULL;

	if (again)
		args[n++] = "--hibernate";
	if (!prefetch)
		args[n++] = "--no-prefetch";
	args[n] = NULL;
	assert_int_equal(vm_run(args, &out, &err), 0);
	assert_int_equal(json_num(out, "ok"), 1);
	assert_int_equal(json_num(out, "wrong_pages"), 0);
	assert_int_equal(json_num(out, "sigbus"), 0);
	/* Every page came back from the file (or as a zero page). */
	assert_true(json_num(out, "faults_from_file") + json_num(out, "workset_prefetched") > 4000);
	assert_true(json_dbl(out, "resume_to_first_instruction_ms") > 0);
	free(err);
	return out;
}

static void hibernate_then_resume(void **state)
{
	struct rfx_store *fxp = *state;
	const char *args[] = {"--resume", "--store", NULL, NULL};
	char *out, *err = NULL;

	store_new(fxp, "vm-hibernate");
	hibernate(fxp, "batch");
	assert_int_equal(fsck_n(fxp), 0);
	out = resume(fxp, false, true);
	free(out);
	/* The image is used once: a second resume refuses, saying why. */
	args[2] = fxp->path;
	out = NULL;
	assert_int_equal(rfx_run_tool("vswap-vm", args, &out, &err), 1);
	assert_non_null(strstr(err, "holds no hibernated guest"));
	free(out);
	free(err);
	assert_int_equal(fsck_n(fxp), 0);
	store_gone(fxp);
}

/* Start vswap-vm with @args, read its stdout until a line holding @line,
 * then SIGKILL it.  With @stage, it stops itself right after that stage's
 * line (VSWAP_VM_STOP_AFTER) and is killed only once stopped: exactly
 * there, not wherever it got to by the time the kill came.  Returns 0 if
 * the line came (and, with @stage, it stopped). */
static int kill_at_stage(const char *const *args, const char *line, const char *stage)
{
	char exe[PATH_MAX], buf[8192];
	const char *bd = getenv("VSWAP_BUILD_DIR");
	const char *argv[16];
	posix_spawn_file_actions_t fa;
	int p[2], n = 0, status;
	size_t have = 0;
	pid_t pid;
	bool seen = false;

	snprintf(exe, sizeof(exe), "%s/vswap-vm", bd ? bd : VSWAP_BUILD_DIR);
	argv[n++] = exe;
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe(p))
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	/* The environment, and the stop point for the child alone. */
	size_t nenv = 0;
	while (environ[nenv])
		nenv++;
	char **envp = calloc(nenv + 2, sizeof(*envp)), stop[64];
	assert_non_null(envp);
	memcpy(envp, environ, nenv * sizeof(*envp));
	if (stage) {
		snprintf(stop, sizeof(stop), "VSWAP_VM_STOP_AFTER=%s", stage);
		envp[nenv] = stop;
	}
	int spawned = posix_spawn(&pid, exe, &fa, NULL, (char *const *)argv, envp);
	free(envp);
	posix_spawn_file_actions_destroy(&fa);
	if (spawned)
		return -1;
	close(p[1]);
	while (!seen && have < sizeof(buf) - 1) {
		ssize_t r = read(p[0], buf + have, sizeof(buf) - 1 - have);

		if (r <= 0)
			break;
		have += (size_t)r;
		buf[have] = 0;
		seen = strstr(buf, line) != NULL;
	}
	bool stopped = !stage;
	if (seen && stage)
		stopped = waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status);
	kill(pid, SIGKILL);
	close(p[0]);
	waitpid(pid, &status, 0);
	return seen && stopped ? 0 : -1;
}

/* SIGKILL right after hibernating loses nothing: the audit is clean and the
 * resumed guest verifies every byte. */
static void resume_after_sigkill(void **state)
{
	struct rfx_store *fxp = *state;
	static const char *const modes[] = {"full", "batch"};

	for (unsigned i = 0; i < 2; i++) {
		store_new(fxp, "vm-kill");
		const char *args[] = {"--hibernate", "--store",	     fxp->path, "--size",
				      "32M",	     "--durability", modes[i],	NULL};

		assert_int_equal(kill_at_stage(args, "  hibernated ", "hibernated"), 0);
		assert_int_equal(fsck_n(fxp), 0);
		free(resume(fxp, false, true));
		store_gone(fxp);
	}
}

/* Killed before the image is complete (pages out, no saved state): the
 * resume says there is no hibernated guest, nothing is served. */
static void sigkill_before_the_image(void **state)
{
	struct rfx_store *fxp = *state;
	const char *res[] = {"--resume", "--store", NULL, NULL};
	char *out = NULL, *err = NULL;

	store_new(fxp, "vm-kill-early");
	const char *args[] = {"--hibernate", "--store", fxp->path, "--size", "32M", NULL};

	assert_int_equal(kill_at_stage(args, "  swap-out ", "swap-out"), 0);
	res[2] = fxp->path;
	assert_int_equal(rfx_run_tool("vswap-vm", res, &out, &err), 1);
	assert_non_null(strstr(err, "holds no hibernated guest"));
	free(out);
	free(err);
	store_gone(fxp);
}

/*
 * Killed while hibernating again after a resume, its swap-out over (the
 * zero pages' old slots freed and reused, what is left free not punched
 * before the close): whatever the kill left, vswap-fsck -p makes the store
 * clean and no page is lost: the only findings a kill leaves are an unclean
 * shutdown and bytes in free slots.
 */
static void rehibernate_killed(void **state)
{
	struct rfx_store *fxp = *state;
	struct vswap_store_opts so = {.read_only = true};
	struct vswap_store_stats st;
	struct vswap_store *s;

	store_new(fxp, "vm-rehib-kill");
	hibernate(fxp, "batch");
	const char *args[] = {"--resume", "--hibernate", "--store", fxp->path, NULL};

	assert_int_equal(kill_at_stage(args, "  swap-out ", "swap-out"), 0);
	/* Only what a kill leaves: the unclean record, free slots' bytes. */
	struct vswap_fsck_opts fo = {.mode = VSWAP_FSCK_CHECK, .no_orphan_scan = true};
	struct vswap_fsck *f;

	assert_int_equal(vswap_fsck_new(fxp->path, &fo, &f), 0);
	assert_int_equal(vswap_fsck_run(f), 0);
	assert_int_equal(vswap_fsck_problem_count(f),
			 vswap_fsck_count_kind(f, VSWAP_PROBLEM_UNCLEAN_SHUTDOWN) +
			     vswap_fsck_count_kind(f, VSWAP_PROBLEM_LEAKED_SLOT));
	vswap_fsck_free(f);
	int rc = rfx_fsck(fxp, "-p", NULL, NULL);

	assert_true(rc == 0 || rc == 1);
	assert_int_equal(fsck_n(fxp), 0);
	assert_int_equal(vswap_store_open(fxp->path, &so, &s), 0);
	assert_int_equal(vswap_store_stats(s, &st), 0);
	assert_int_equal(st.pages_lost, 0);
	assert_true(st.pages_present > 4000);
	vswap_store_close(s);
	store_gone(fxp);
}

/* The first present page at or after @from and its slot. */
static uint64_t present_page(const struct rfx_store *fx, uint64_t from, uint64_t *slot)
{
	struct vswap_store_opts so = {.read_only = true};
	struct vswap_store *s;
	struct vswap_page_info pi;
	uint64_t p;

	assert_int_equal(vswap_store_open(fx->path, &so, &s), 0);
	for (p = from; p < vswap_store_total_pages(s); p++)
		if (vswap_store_page(s, p, &pi) == 0 && pi.state == VSWAP_PAGE_PRESENT)
			break;
	assert_true(p < vswap_store_total_pages(s));
	*slot = pi.slot;
	*(uint32_t *)&fx->page_size = vswap_store_page_size(s);
	vswap_store_close(s);
	return p;
}

/* A page corrupted on disk after hibernating: the vCPU touching it gets
 * SIGBUS (the handler poisoned the page), reported by vswap-vm with the
 * page number; no wrong byte reaches the guest and vswap-vm exits 1. */
static void corrupt_page_sigbus_on_vcpu(void **state)
{
	struct rfx_store *fxp = *state;
	uint64_t slot, page;
	char *out = NULL, *err = NULL, want[64];

	store_new(fxp, "vm-corrupt");
	hibernate(fxp, "batch");
	page = present_page(fxp, 1000, &slot);
	assert_int_equal(rfx_flip_bit(fxp->path, (slot + 1) * fxp->page_size + 100, 3), 0);
	const char *args[] = {"--resume", "--store", fxp->path, "--json", NULL};

	assert_int_equal(rfx_run_tool("vswap-vm", args, &out, &err), 1);
	assert_int_equal(json_num(out, "sigbus"), 1);
	assert_int_equal(json_num(out, "failed_vcpus"), 1);
	assert_int_equal(json_num(out, "wrong_pages"), 0);
	snprintf(want, sizeof(want), "SIGBUS on guest page %llu ", (unsigned long long)page);
	if (!strstr(err, want))
		fail_msg("no \"%s\" in:\n%s", want, err);
	free(out);
	free(err);
	store_gone(fxp);
}

/* The working set one resume records is read ahead by the next: the
 * guest's faults until its working set is in drop. */
static void workset_replayed(void **state)
{
	struct rfx_store *fxp = *state;

	store_new(fxp, "vm-workset");
	hibernate(fxp, "batch");
	char *first = resume(fxp, true, true);
	long long f1 = json_num(first, "faults_until_working_set");

	assert_int_equal(json_num(first, "workset_replayed"), 0); /* nothing recorded yet */
	assert_true(json_num(first, "workset_recorded") >= f1);
	assert_true(f1 > 500);
	char *second = resume(fxp, false, true);
	long long f2 = json_num(second, "faults_until_working_set");

	assert_int_equal(json_num(second, "workset_replayed"), json_num(first, "workset_recorded"));
	assert_true(json_num(second, "workset_prefetched") > 0);
	if (f2 * 2 >= f1)
		fail_msg("faults until the working set was in: %lld without, %lld with prefetch",
			 f1, f2);
	free(first);
	free(second);
	store_gone(fxp);
}

/* The same cycles with enable by write protection and the vCPUs running
 * throughout: every page verified, nothing copied to staging. */
static void swap_cycles_protect(void **state)
{
	(void)state;
	const char *args[] = {"--size", "32M",		 "--vcpus", "2",      "--cycles",
			      "2",	"--enable-mode", "protect", "--json", NULL};
	char *out = NULL, *err = NULL;

	assert_int_equal(vm_run(args, &out, &err), 0);
	assert_int_equal(json_num(out, "ok"), 1);
	assert_int_equal(json_num(out, "wrong_pages"), 0);
	assert_int_equal(json_num(out, "fsck_exit"), 0);
	assert_true(json_num(out, "faults_from_file") > 1000);
	assert_int_equal(json_num(out, "faults_from_staging"), 0);
	assert_true(json_num(out, "pages_removed") > 0);
	free(out);
	free(err);
}

/* Where /dev/kvm cannot run a guest, vswap-vm says so and exits 2: here
 * /dev/null stands in for it, in a mount namespace of the test's own. */
static void unusable_kvm_exit_2(void **state)
{
	(void)state;
	const char *bd = getenv("VSWAP_BUILD_DIR");
	char cmd[PATH_MAX + 256], err[] = "/tmp/vswap-test-vm-XXXXXX", buf[512] = "";
	int fd, rc;

	if (system("unshare -m true 2>/dev/null") != 0)
		skip(); /* no mount namespaces here */
	fd = mkstemp(err);
	assert_true(fd >= 0);
	snprintf(
	    cmd, sizeof(cmd),
	    "unshare -m sh -c 'mount --bind /dev/null /dev/kvm && exec %s/vswap-vm --size 16M' "
	    ">/dev/null 2>%s",
	    bd ? bd : VSWAP_BUILD_DIR, err);
	rc = system(cmd);
	assert_true(pread(fd, buf, sizeof(buf) - 1, 0) > 0);
	close(fd);
	unlink(err);
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 2);
	if (!strstr(buf, "KVM is missing or unusable here: /dev/kvm"))
		fail_msg("no reason given: %s", buf);
}

static bool kvm_usable(void)
{
	const char *args[] = {"--check-kvm", NULL};
	char *out = NULL, *err = NULL;
	int rc = rfx_run_tool("vswap-vm", args, &out, &err);

	if (rc != 0)
		fprintf(stderr, "test_vm: skipped: vswap-vm --check-kvm exit %d: %s\n", rc,
			err ? err : "");
	free(out);
	free(err);
	return rc == 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(swap_cycles_two_vcpus),
	    cmocka_unit_test_setup_teardown(hibernate_then_resume, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(resume_after_sigkill, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(sigkill_before_the_image, fixture_setup,
					    fixture_teardown),
	    cmocka_unit_test_setup_teardown(rehibernate_killed, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(corrupt_page_sigbus_on_vcpu, fixture_setup,
					    fixture_teardown),
	    cmocka_unit_test_setup_teardown(workset_replayed, fixture_setup, fixture_teardown),
	    cmocka_unit_test(swap_cycles_protect),
	    cmocka_unit_test(unusable_kvm_exit_2),
	};

	if (!kvm_usable())
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

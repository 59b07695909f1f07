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
#include <sys/stat.h>
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
	const char *args[] = {"--size", "32M", "--vcpus", "2", "--cycles", "2", "--json", NULL};
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
	};

	if (!kvm_usable())
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

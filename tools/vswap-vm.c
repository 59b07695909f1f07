/* SPDX-License-Identifier: MIT */
/*
 * vswap-vm: a minimal KVM virtual machine that embeds vswap (see
 * vswap-vm(1)).  This file is options and output; the VMM is in vm/ and
 * the guest program in guest/.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vswap/handler.h>

#include "tools/bench/common.h"
#include "tools/bench/results.h"
#include "tools/common/cli.h"
#include "tools/common/json.h"
#include "vm/vmm.h"

static const struct cli_tool tool = {
    .name = "vswap-vm",
    .synopsis =
	"[--size BYTES] [--vcpus N] [--cycles N] [--store PATH] [--keep]\n"
	"                [--durability full|batch|none] [--enable-mode auto|copy|protect]\n"
	"                [--vswapd SOCKET] [--json]\n"
	"       vswap-vm --hibernate --store PATH [--size BYTES] [--vcpus N] [--json]\n"
	"       vswap-vm --resume --store PATH [--hibernate [--read-only]] [--no-prefetch]\n"
	"                [--verbose] [--json]\n"
	"       vswap-vm --bench [--sizes LIST] [--runs N] [--dir DIR] [--json]\n"
	"       vswap-vm --check-kvm\n",
    .help = "A minimal KVM virtual machine that embeds vswap; its guest verifies its memory.\n"
	    "\n"
	    "      --size BYTES   guest RAM, K/M/G suffixes, a multiple of 2 MiB (default 256M)\n"
	    "      --vcpus N      vCPUs running the guest program (default 2, at most 8)\n"
	    "      --cycles N     enable..disable cycles (default 2)\n"
	    "      --store PATH   swap file (default: in a fresh directory under /var/tmp)\n"
	    "      --keep         keep the store's files at the end\n"
	    "      --durability   the store's durability mode (default batch)\n"
	    "      --enable-mode  how enable takes guest memory (default auto: protect where\n"
	    "                     the kernel has userfaultfd write protection on shmem)\n"
	    "      --vswapd SOCKET  the guest served by the vswapd listening at SOCKET (which\n"
	    "                     creates the store) instead of a handler in this process;\n"
	    "                     vswapd may be killed and restarted meanwhile (the cycles only)\n"
	    "      --json         print the summary as one JSON object (progress on stderr)\n"
	    "      --hibernate    run the guest, stop it mid-pass, swap every page out to the\n"
	    "                     store, save the vCPUs as blobs, close; with --resume: resume,\n"
	    "                     then hibernate again (with this resume's working set)\n"
	    "      --read-only    --resume --hibernate: the resumed guest only reads (checks\n"
	    "                     7/8 of its memory) before it hibernates again\n"
	    "      --resume       resume the guest hibernated in --store, its pages faulting in\n"
	    "                     lazily; the guest then checks every page\n"
	    "      --no-prefetch  resume without reading the recorded working set ahead\n"
	    "      --verbose      --resume: print each step up to the first guest instruction\n"
	    "                     with its time\n"
	    "      --bench        measure hibernate, resume, working-set prefetch and fault-in,\n"
	    "                     each beside its baseline (see vswap-vm(1))\n"
	    "      --sizes LIST   --bench guest sizes (default 64M,256M,1G,4G); none: the\n"
	    "                     fault-in pairs alone\n"
	    "      --runs N       --bench resume and fault-in pairs (default 1; medians)\n"
	    "      --dir DIR      --bench file system (default /var/tmp)\n"
	    "      --check-kvm    only check that KVM can run the guest here (exit 0 or "
	    "2)\n" CLI_STANDARD_HELP "\n"
	    "Exit status: 0 every page verified, 1 a check failed, 2 usage error or KVM\n"
	    "missing or unusable.\n",
    .usage_exit = CLI_EXIT_USAGE,
};

/* --sizes 64M,1G: 0 or -EINVAL. */
static int parse_sizes(const char *arg, struct vmm_opts *o)
{
	char *list = strdup(arg), *save = NULL, *tok;
	int rc = list ? 0 : -ENOMEM;

	o->nbench_sizes = 0;
	if (strcmp(arg, "none") == 0) { /* the fault-in pairs alone */
		free(list);
		return 0;
	}
	for (tok = list ? strtok_r(list, ",", &save) : NULL; tok && !rc;
	     tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (o->nbench_sizes == 8 || cli_parse_size(tok, &v) || v < (16ull << 20) ||
		    v % (2ull << 20) || v > (8ull << 30))
			rc = -EINVAL;
		else
			o->bench_sizes[o->nbench_sizes++] = v;
	}
	free(list);
	return rc || !o->nbench_sizes ? -EINVAL : 0;
}

static int parse(int argc, char **argv, struct vmm_opts *o)
{
	static const struct option lo[] = {
	    {"size", required_argument, NULL, 's'},
	    {"vcpus", required_argument, NULL, 'v'},
	    {"cycles", required_argument, NULL, 'c'},
	    {"store", required_argument, NULL, 'S'},
	    {"keep", no_argument, NULL, 'k'},
	    {"durability", required_argument, NULL, 'D'},
	    {"json", no_argument, NULL, 'j'},
	    {"hibernate", no_argument, NULL, 'H'},
	    {"resume", no_argument, NULL, 'R'},
	    {"no-prefetch", no_argument, NULL, 'P'},
	    {"read-only", no_argument, NULL, 'O'},
	    {"check-kvm", no_argument, NULL, 'K'},
	    {"enable-mode", required_argument, NULL, 'E'},
	    {"bench", no_argument, NULL, 'B'},
	    {"sizes", required_argument, NULL, 'Z'},
	    {"runs", required_argument, NULL, 'N'},
	    {"dir", required_argument, NULL, 'd'},
	    {"vswapd", required_argument, NULL, 'V'},
	    {"verbose", no_argument, NULL, 'W'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	uint64_t n;
	int c;

	*o = (struct vmm_opts){.size = 256ull << 20,
			       .vcpus = 2,
			       .cycles = 2,
			       .durability = VSWAP_DURABILITY_BATCH,
			       .hot_permille = 100,
			       .bench_dir = "/var/tmp",
			       .bench_sizes = {64ull << 20, 256ull << 20, 1ull << 30, 4ull << 30},
			       .nbench_sizes = 4,
			       .faultin_size = 256ull << 20,
			       .runs = 1};
	while ((c = getopt_long(argc, argv, "s:v:c:S:kD:E:jHRPOKBZ:N:d:V:Wh", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (cli_parse_size(optarg, &o->size) || o->size < (16ull << 20) ||
			    o->size % (2ull << 20) || o->size > (8ull << 30)) {
				cli_usage_error(&tool, "--size: 16M to 8G, a multiple of 2M");
				return -1;
			}
			break;
		case 'v':
			if (cli_opt_range(&tool, "vcpus", optarg, 1, VM_MAX_VCPUS, &n))
				return -1;
			o->vcpus = (unsigned)n;
			break;
		case 'c':
			if (cli_opt_range(&tool, "cycles", optarg, 1, 1000, &n))
				return -1;
			o->cycles = (unsigned)n;
			break;
		case 'S':
			o->store = optarg;
			break;
		case 'k':
			o->keep = true;
			break;
		case 'D':
			if (cli_opt_durability(&tool, optarg, &o->durability))
				return -1;
			break;
		case 'E':
			if (cli_opt_enable_mode(&tool, optarg, &o->enable_mode))
				return -1;
			break;
		case 'j':
			o->json = true;
			break;
		case 'H':
			o->hibernate = true;
			break;
		case 'R':
			o->resume = true;
			break;
		case 'P':
			o->no_prefetch = true;
			break;
		case 'O':
			o->read_only = true;
			break;
		case 'K':
			o->check_kvm = true;
			break;
		case 'B':
			o->bench = true;
			break;
		case 'Z':
			if (parse_sizes(optarg, o)) {
				cli_usage_error(
				    &tool, "--sizes: up to 8 sizes, 16M to 8G, multiples of 2M");
				return -1;
			}
			break;
		case 'N':
			if (cli_opt_range(&tool, "runs", optarg, 1, 32, &n))
				return -1;
			o->runs = (unsigned)n;
			break;
		case 'd':
			o->bench_dir = optarg;
			break;
		case 'V':
			o->vswapd = optarg;
			break;
		case 'W':
			o->verbose = true;
			break;
		default:
			/* 1: --help or --version shown; -1: a usage error. */
			return cli_standard_option(&tool, c);
		}
	}
	if (cli_no_operands(&tool, argc, argv))
		return -1;
	if (o->vswapd && (o->hibernate || o->resume || o->bench || o->check_kvm)) {
		cli_usage_error(&tool, "--vswapd serves the cycles only");
		return -1;
	}
	if (o->read_only && !(o->resume && o->hibernate)) {
		cli_usage_error(&tool, "--read-only goes with --resume --hibernate");
		return -1;
	}
	if ((o->hibernate || o->resume) && !o->store) {
		cli_usage_error(&tool, "--hibernate and --resume need --store PATH");
		return -1;
	}
	return 0;
}

static void print_resume(const struct vmm_opts *o, const struct vmm_result *r, bool ok)
{
	if (o->resume) {
		printf("\nresumed from %s\n", r->path);
		printf("  store opened -> first guest instruction  %.3f ms\n",
		       r->resume_to_first_instruction_ms);
		printf("  store opened -> first page faulted in    %.3f ms\n",
		       r->resume_to_first_fault_ms);
		printf("  RAM memory slots registered              %.3f ms, behind the start "
		       "(%llu accesses waited for theirs)\n",
		       r->ram_slots_ms, (unsigned long long)r->ram_slot_waits);
		printf("  store opened -> whole index loaded       %.3f ms (%llu of %llu groups "
		       "loaded first by a fault)\n",
		       r->resume_index_loaded_ms, (unsigned long long)r->index_on_demand,
		       (unsigned long long)r->index_groups);
		printf("  first instruction -> working set in      %.3f ms (%llu faults from the "
		       "file)\n",
		       r->resume_to_hot_ms, (unsigned long long)r->resume_faults_hot);
		printf("  working set: %llu pages replayed, %llu prefetched; %llu recorded\n",
		       (unsigned long long)r->workset_replayed,
		       (unsigned long long)r->workset_prefetched,
		       (unsigned long long)r->workset_recorded);
		printf("  faults from file         %10llu\n", (unsigned long long)r->from_file);
		printf("  checksum failures        %10llu\n",
		       (unsigned long long)r->status.metrics.checksum_failures);
		printf("  pages that read wrong    %10llu\n", (unsigned long long)r->wrong_pages);
	}
	if (r->failed_vcpus)
		printf("  vCPUs failed             %10u%s%s\n", r->failed_vcpus,
		       r->sigbus ? ": " : "", r->sigbus ? r->sigbus_msg : "");
	if (o->hibernate && r->hibernate_ms > 0)
		printf("hibernated to %s: %llu pages in %.1f ms\n", r->path,
		       (unsigned long long)r->hibernated_pages, r->hibernate_ms);
	printf("%s\n", ok ? (o->resume ? "vswap-vm: OK, every page verified by the guest"
				       : "vswap-vm: OK, hibernated")
			  : "vswap-vm: FAILED");
}

static void print_summary(const struct vmm_opts *o, const struct vmm_result *r, bool ok)
{
	if (o->resume || o->hibernate) {
		print_resume(o, r, ok);
		return;
	}
	printf("\nsummary (%u cycle%s, %llu MiB guest, %u vCPUs, %s durability)\n", r->cycles_done,
	       r->cycles_done == 1 ? "" : "s", (unsigned long long)(o->size >> 20), o->vcpus,
	       vswap_durability_name(o->durability));
	printf("  faults from staging      %10llu\n", (unsigned long long)r->from_staging);
	printf("  faults from file         %10llu\n", (unsigned long long)r->from_file);
	printf("  pages removed (balloon)  %10llu\n", (unsigned long long)r->removed_pages);
	printf("  checksum failures        %10llu\n",
	       (unsigned long long)r->status.metrics.checksum_failures);
	printf("  pages that read wrong    %10llu\n", (unsigned long long)r->wrong_pages);
	printf("  first access from file   p50 %.1f us, p99 %.1f us, max %.1f us (guest TSC)\n",
	       r->lat_p50_us, r->lat_p99_us, r->lat_max_us);
	printf("  guest verify throughput  %.3f GB/s swapped, %.3f GB/s resident\n",
	       r->swapped_gbps, r->resident_gbps);
	printf("  status %s\n", r->status_json[0] ? r->status_json : "null");
	printf("fsck audit of %s: %s (exit %d)\n", r->path, r->fsck_exit ? "NOT CLEAN" : "clean",
	       r->fsck_exit);
	printf("%s\n", ok ? "vswap-vm: OK, every page verified by the guest" : "vswap-vm: FAILED");
}

static void print_json(const struct vmm_opts *o, const struct vmm_result *r, bool ok)
{
	struct json_writer w;

	json_init(&w, stdout);
	json_begin_document(&w);
	json_key(&w, "ok");
	json_bool(&w, ok);
	json_key(&w, "size");
	json_u64(&w, o->size);
	json_key(&w, "vcpus");
	json_u64(&w, o->vcpus);
	json_key(&w, "durability");
	json_string(&w, vswap_durability_name(o->durability));
	json_key(&w, "enable_mode");
	json_string(&w, vswap_enable_mode_name(o->enable_mode));
	json_key(&w, "store");
	json_string(&w, r->path);
	json_key(&w, "served_by");
	json_string(&w, o->vswapd ? "vswapd" : "in-process");
	if (o->vswapd) {
		json_key(&w, "vswapd_restarts");
		json_u64(&w, r->vswapd_restarts);
		json_key(&w, "vswapd_restarts_sampled");
		json_u64(&w, r->restarts_sampled);
		json_key(&w, "vswapd_restart_to_serving_p50_ms");
		json_double(&w, r->restart_p50_ms);
		json_key(&w, "vswapd_restart_to_serving_max_ms");
		json_double(&w, r->restart_max_ms);
	}
	json_key(&w, "cycles");
	json_u64(&w, r->cycles_done);
	json_key(&w, "wrong_pages");
	json_u64(&w, r->wrong_pages);
	json_key(&w, "failed_vcpus");
	json_u64(&w, r->failed_vcpus);
	json_key(&w, "sigbus");
	json_bool(&w, r->sigbus);
	json_key(&w, "faults_from_staging");
	json_u64(&w, r->from_staging);
	json_key(&w, "faults_from_file");
	json_u64(&w, r->from_file);
	json_key(&w, "pages_removed");
	json_u64(&w, r->removed_pages);
	json_key(&w, "fault_latency_us");
	json_begin_object(&w);
	json_key(&w, "p50");
	json_double(&w, r->lat_p50_us);
	json_key(&w, "p99");
	json_double(&w, r->lat_p99_us);
	json_key(&w, "max");
	json_double(&w, r->lat_max_us);
	json_end_object(&w);
	json_key(&w, "guest_gbps_swapped");
	json_double(&w, r->swapped_gbps);
	json_key(&w, "guest_gbps_resident");
	json_double(&w, r->resident_gbps);
	json_key(&w, "stages");
	json_begin_array(&w);
	for (unsigned i = 0; i < r->nstages; i++) {
		json_begin_object(&w);
		json_key(&w, "stage");
		json_string(&w, r->stages[i].name);
		json_key(&w, "seconds");
		json_double(&w, r->stages[i].secs);
		json_key(&w, "pages");
		json_u64(&w, r->stages[i].pages);
		json_end_object(&w);
	}
	json_end_array(&w);
	if (o->resume || o->hibernate) {
		json_key(&w, "hibernated_pages");
		json_u64(&w, r->hibernated_pages);
		json_key(&w, "hibernate_ms");
		json_double(&w, r->hibernate_ms);
	}
	if (o->resume) {
		json_key(&w, "resume_to_first_instruction_ms");
		json_double(&w, r->resume_to_first_instruction_ms);
		json_key(&w, "resume_to_first_fault_ms");
		json_double(&w, r->resume_to_first_fault_ms);
		/* How the first figure came about: each step up to it, on its
		 * thread, with that thread's CPU and run-queue time. */
		json_key(&w, "resume_steps");
		json_begin_array(&w);
		for (unsigned i = 0; i < r->nsteps; i++) {
			const struct vmm_step *st = &r->steps[i];

			json_begin_object(&w);
			json_key(&w, "step");
			json_string(&w, st->name);
			json_key(&w, "thread");
			json_string(&w, st->thread);
			json_key(&w, "at_ms");
			json_double(&w, st->at_ms);
			json_key(&w, "ms");
			json_double(&w, st->ms);
			json_key(&w, "cpu_ms");
			json_double(&w, st->cpu_ms);
			json_key(&w, "runq_ms");
			json_double(&w, st->runq_ms);
			json_end_object(&w);
		}
		json_end_array(&w);
		json_key(&w, "ram_slots_ms");
		json_double(&w, r->ram_slots_ms);
		json_key(&w, "ram_slot_waits");
		json_u64(&w, r->ram_slot_waits);
		json_key(&w, "ram_slot_emulated");
		json_u64(&w, r->ram_slot_emulated);
		json_key(&w, "resume_index_loaded_ms");
		json_double(&w, r->resume_index_loaded_ms);
		json_key(&w, "index_groups_on_demand");
		json_u64(&w, r->index_on_demand);
		json_key(&w, "resume_to_working_set_ms");
		json_double(&w, r->resume_to_hot_ms);
		json_key(&w, "faults_until_working_set");
		json_u64(&w, r->resume_faults_hot);
		json_key(&w, "workset_replayed");
		json_u64(&w, r->workset_replayed);
		json_key(&w, "workset_prefetched");
		json_u64(&w, r->workset_prefetched);
		json_key(&w, "workset_recorded");
		json_u64(&w, r->workset_recorded);
	}
	json_key(&w, "fsck_exit");
	json_i64(&w, r->fsck_exit);
	json_end_object(&w);
	json_finish(&w);
	if (r->status_json[0])
		fprintf(stderr, "vswap-vm: status %s\n", r->status_json);
}

static void bench_row(void *ctx, const char *name, double value, const char *unit,
		      const char *baseline, double baseline_value)
{
	bench_add(ctx, name, value, unit, baseline, baseline_value);
}

int main(int argc, char **argv)
{
	struct vmm_opts o;
	struct vmm_result *r;
	sigset_t block;
	int rc;

	rc = parse(argc, argv, &o);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	bool json = o.json;
	r = calloc(1, sizeof(*r));
	if (!r)
		return 1;
	/* The vCPU threads and the handler's inherit this mask: only the
	 * vCPU threads take SIGBUS and the kick signal (vm/kvm.c). */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	if (o.bench) {
		struct bench_results br = {0};
		char machine[256];

		o.json = true; /* the flows' progress goes to stderr */
		rc = vmm_bench(&o, bench_row, &br);
		free(r);
		if (rc == -ENODEV)
			return VMM_EXIT_UNUSABLE;
		bench_machine(machine, sizeof(machine));
		if (json) {
			struct json_writer w;

			json_init(&w, stdout);
			json_begin_object(&w);
			json_key(&w, "machine");
			json_string(&w, machine);
			json_key(&w, "vcpus");
			json_u64(&w, o.vcpus);
			json_key(&w, "runs");
			json_u64(&w, o.runs);
			bench_json_results(&w, &br);
			json_end_object(&w);
			json_finish(&w);
		} else {
			printf("vswap-vm --bench (%u vCPUs, median of %u runs; %s)\n", o.vcpus,
			       o.runs, machine);
			bench_print_table(stdout, &br);
		}
		bench_results_free(&br);
		return rc ? 1 : 0;
	}
	if (o.check_kvm) {
		free(r);
		return vmm_check_kvm() ? VMM_EXIT_UNUSABLE : 0;
	}
	if (o.resume)
		rc = vmm_resume(&o, r);
	else if (o.hibernate)
		rc = vmm_hibernate(&o, r);
	else
		rc = vmm_cycles(&o, r);
	if (rc == -ENODEV) {
		free(r);
		return VMM_EXIT_UNUSABLE;
	}
	/* The flows name what failed; a bare code only when they could not. */
	if (rc && rc != -EIO && rc != -ENOENT && !(o.resume || o.hibernate))
		fprintf(stderr, "vswap-vm: %s\n", vswap_strerror(rc));
	bool ok = !rc && r->wrong_pages == 0 && r->fsck_exit == 0 && !r->failed_vcpus &&
		  r->status.metrics.checksum_failures == 0 &&
		  (o.resume || o.hibernate || r->cycles_done == o.cycles);

	if (o.json)
		print_json(&o, r, ok);
	else
		print_summary(&o, r, ok);
	free(r);
	return ok ? 0 : 1;
}

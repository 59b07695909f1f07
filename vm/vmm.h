/* SPDX-License-Identifier: MIT */
/*
 * vswap-vm's VMM: guest RAM in a memfd, the machine (vm/vm.h) over it and a
 * vswap handler serving it.  The flows a tool runs: swap cycles under a
 * running guest, hibernate, resume, and the benchmark.  Each fills a
 * struct vmm_result that the tool prints.
 */
#ifndef VSWAP_VM_VMM_H
#define VSWAP_VM_VMM_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <vswap/handler.h>

#include "vm/vm.h"

struct vmm_opts {
	uint64_t size;
	unsigned vcpus;
	unsigned cycles;
	const char *store;  /* NULL: a fresh directory under /var/tmp */
	const char *vswapd; /* served by the vswapd listening there (cycles only) */
	bool keep;
	bool json;
	enum vswap_durability durability;
	bool hibernate; /* alone: run, then hibernate; with resume: resume, run, hibernate again */
	bool resume;
	bool no_prefetch;      /* resume without reading the recorded working set ahead */
	uint32_t hot_permille; /* the hot subset a resumed guest reads first */
	bool check_kvm;
	bool no_verify; /* resume: skip the final check of every page (--bench) */
	/* resume + hibernate: the resumed guest only reads its memory (checks
	 * 7/8 of it) before it hibernates again, where it writes 7/8 of it */
	bool read_only;
	bool verbose; /* resume: each step to the first instruction, timed (stderr) */
	/* --bench */
	bool bench;
	const char *bench_dir;
	uint64_t bench_sizes[8];
	unsigned nbench_sizes;
	uint64_t faultin_size;
	unsigned runs;
	enum vswap_enable_mode enable_mode;
};

#define VMM_MAX_STAGES 64

struct vmm_stage {
	char name[24];
	char what[96];
	double secs;
	uint64_t pages, bytes;
};

/* One step of a resume up to the first guest instruction, timed on the
 * thread that made it: its end (after the store's open began), its wall
 * time, that thread's CPU time and its time runnable but waiting for a CPU
 * (the rest of the wall time the thread was blocked: a disk read, a lock,
 * another thread). */
#define VMM_MAX_STEPS 24
struct vmm_step {
	char name[32];
	char thread[12];
	double at_ms, ms, cpu_ms, runq_ms;
};

struct vmm_result {
	/* what happened */
	struct vmm_stage stages[VMM_MAX_STAGES];
	unsigned nstages;
	unsigned cycles_done;
	uint64_t wrong_pages; /* pages the guest found wrong */
	uint64_t first_wrong; /* + 1 */
	unsigned failed_vcpus;
	bool sigbus; /* a vCPU took a SIGBUS (a poisoned page) */
	char sigbus_msg[256];
	/* the guest's own measures: first access of each page in a verify
	 * pass over swapped-out memory, and its throughput swapped vs resident */
	double lat_p50_us, lat_p99_us, lat_max_us;
	uint64_t lat_samples;
	double swapped_gbps, resident_gbps;
	/* faults */
	uint64_t from_file, from_staging, zero_filled, removed_pages;
	/* --vswapd: the daemon's restarts, and the time each took the client
	 * from its end of file to the guest resumed (p50 and max over the
	 * restarts sampled: two between two looks count once) */
	uint64_t vswapd_restarts, restarts_sampled;
	double restart_p50_ms, restart_max_ms;
	/* hibernate and resume */
	double hibernate_ms;
	uint64_t hibernated_pages;
	uint64_t hibernate_bytes_written; /* by the store handle since its open */
	double resume_to_first_instruction_ms;
	double resume_to_first_fault_ms; /* store opened -> a vCPU wrote a page it faulted in */
	double resume_index_loaded_ms;	 /* store opened -> every index record in memory */
	uint64_t index_groups, index_on_demand; /* page groups; loaded first by a fault */
	double resume_to_hot_ms;    /* first instruction -> every vCPU's hot pass read */
	uint64_t resume_faults_hot; /* faults from the file until then */
	uint64_t workset_recorded, workset_prefetched, workset_replayed;
	struct vmm_step steps[VMM_MAX_STEPS]; /* in the order they ended */
	unsigned nsteps;
	/* guest accesses to RAM before their memory slot was in (vm/kvm.c) */
	uint64_t ram_slot_waits, ram_slot_emulated;
	double ram_slots_ms; /* the RAM's slots: first registered -> last */
	/* the handler's final status and the store */
	struct vswap_status status;
	char status_json[1024];
	char path[PATH_MAX];
	int fsck_exit;
};

/* Exit codes of the tool: 0 ok, 1 a check failed, 2 KVM or usage. */
#define VMM_EXIT_UNUSABLE 2

/* Whether KVM can run the guest here: 0, or -ENODEV with the reason
 * printed. */
int vmm_check_kvm(void);
/* Run --cycles swap cycles; returns 0, or a negative errno; -ENODEV with a
 * message printed when KVM is missing or unusable. */
int vmm_cycles(const struct vmm_opts *o, struct vmm_result *r);
int vmm_hibernate(const struct vmm_opts *o, struct vmm_result *r);
int vmm_resume(const struct vmm_opts *o, struct vmm_result *r);

/* One figure of --bench beside its baseline (NULL: none). */
typedef void (*vmm_bench_fn)(void *ctx, const char *name, double value, const char *unit,
			     const char *baseline, double baseline_value);
int vmm_bench(const struct vmm_opts *o, vmm_bench_fn add, void *ctx);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The swap cycles: a guest runs on its vCPUs while vswap enables, trims,
 * swaps out, serves faults, takes balloon removes and swaps back in; the
 * guest checks every byte.  Shared setup for the other flows lives here too
 * (vm/vmm_internal.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vswap/handler.h>
#include <vswap/recovery.h>

#include "vm/vmm_internal.h"

#define BALLOON_RANGES 4
#define BALLOON_PAGES 256 /* 1 MiB each */

double vmm_secs(uint64_t t0_ns)
{
	return (double)(vm_now_ns() - t0_ns) / 1e9;
}

void vmm_stage(struct vmm *m, const char *name, double secs, uint64_t pages, uint64_t bytes,
	       const char *fmt, ...)
{
	struct vmm_result *r = m->r;
	FILE *f = m->o->json ? stderr : stdout;
	struct vmm_stage *s;
	va_list ap;

	/* Many cycles: keep the last VMM_MAX_STAGES for the JSON. */
	if (r->nstages == VMM_MAX_STAGES) {
		memmove(r->stages, r->stages + 1, sizeof(r->stages[0]) * (VMM_MAX_STAGES - 1));
		r->nstages--;
	}
	s = &r->stages[r->nstages++];
	snprintf(s->name, sizeof(s->name), "%s", name);
	va_start(ap, fmt);
	vsnprintf(s->what, sizeof(s->what), fmt, ap);
	va_end(ap);
	s->secs = secs;
	s->pages = pages;
	s->bytes = bytes;
	fprintf(f, "  %-15s %-56s %8.3f s", s->name, s->what, secs);
	if (bytes && secs > 0)
		fprintf(f, "  %6.2f GB/s", (double)bytes / secs / 1e9);
	fputc('\n', f);
	fflush(f);
	/* A crash test's exact point: stopped right after this stage's line,
	 * before anything that follows it, until the test kills it. */
	const char *stop = getenv("VSWAP_VM_STOP_AFTER");
	if (stop && !strcmp(stop, name))
		raise(SIGSTOP);
}

/* Collect what the guest found and say whether a vCPU failed. */
static void collect_guest(struct vmm *m)
{
	struct vmm_result *r = m->r;

	r->wrong_pages = 0;
	for (unsigned i = 0; i < m->vm.nvcpus; i++) {
		volatile struct vm_area *a = m->vm.vcpus[i].area;

		r->wrong_pages += a->bad_pages;
		if (a->first_bad && !r->first_wrong)
			r->first_wrong = a->first_bad;
		if (m->vm.vcpus[i].sigbus && !r->sigbus) {
			r->sigbus = true;
			snprintf(r->sigbus_msg, sizeof(r->sigbus_msg), "%s", m->vm.vcpus[i].error);
		}
	}
}

/* Run @cmd on every vCPU to its end.  A failed vCPU is reported. */
int vmm_guest(struct vmm *m, enum vm_cmd cmd, uint64_t pause_after)
{
	int rc = vm_command(&m->vm, cmd, pause_after);

	if (rc)
		return rc;
	rc = vm_wait(&m->vm);
	collect_guest(m);
	if (rc == -EIO)
		m->r->failed_vcpus = vm_report_failures(&m->vm, "vswap-vm");
	return rc;
}

int vmm_guest_wait(struct vmm *m)
{
	int rc = vm_wait(&m->vm);

	collect_guest(m);
	if (rc == -EIO)
		m->r->failed_vcpus = vm_report_failures(&m->vm, "vswap-vm");
	return rc;
}

static void vmm_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};

	(void)ctx;
	fprintf(stderr, "vswap-vm: %s: %s\n", names[lvl <= VSWAP_LOG_DEBUG ? lvl : 0], msg);
}

int vmm_memory(struct vmm *m)
{
	m->ram_size = m->o->size - m->o->size % (2ull << 20);
	m->pages = m->ram_size / VM_PAGE;
	/* Sealable: vswapd seals it against shrinking (it maps it). */
	m->memfd = memfd_create("vswap-vm-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (m->memfd < 0 || ftruncate(m->memfd, (off_t)m->ram_size))
		return -errno;
	m->ram = mmap(NULL, m->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		      m->memfd, 0);
	if (m->ram == MAP_FAILED) {
		m->ram = NULL;
		return -errno;
	}
	return 0;
}

static int machine_failed(const char *why)
{
	fprintf(stderr, "vswap-vm: KVM is missing or unusable here: %s\n", why);
	return -ENODEV;
}

int vmm_machine_open(struct vmm *m)
{
	char why[256];
	int rc = vm_open(&m->vm, why, sizeof(why));

	m->vm_made = true;
	return rc ? machine_failed(why) : 0;
}

int vmm_machine_vcpus(struct vmm *m, unsigned n)
{
	char why[256];
	int rc = vm_make_vcpus(&m->vm, n, why, sizeof(why));

	return rc ? machine_failed(why) : 0;
}

int vmm_machine_build(struct vmm *m)
{
	char why[256];
	int rc = vm_build(&m->vm, m->ram, m->ram_size, m->o->vcpus, why, sizeof(why));

	return rc ? machine_failed(why) : 0;
}

int vmm_machine(struct vmm *m)
{
	int rc = vmm_machine_open(m);

	return rc ? rc : vmm_machine_build(m);
}

int vmm_store_path(struct vmm *m)
{
	if (m->o->store) {
		snprintf(m->r->path, sizeof(m->r->path), "%s", m->o->store);
		return 0;
	}
	snprintf(m->tmpdir, sizeof(m->tmpdir), "/var/tmp/vswap-vm.XXXXXX");
	if (!mkdtemp(m->tmpdir))
		return -errno;
	snprintf(m->r->path, sizeof(m->r->path), "%s/guest.swap", m->tmpdir);
	return 0;
}

int vmm_handler(struct vmm *m)
{
	struct vswap_region reg = {.addr = m->ram, .len = m->ram_size, .memfd = m->memfd};
	struct vswap_handler_opts ho = {.store = m->store,
					.log = vmm_log,
					.log_level = VSWAP_LOG_WARN,
					.enable_mode = m->o->enable_mode,
					/* A hibernation runs no trim: its
					 * swap-out drops the zero pages. */
					.skip_zero_pages = m->o->hibernate};
	int rc = vswap_handler_create(&reg, 1, &ho, &m->h);

	if (rc) {
		fprintf(stderr, "vswap-vm: create handler: %s\n", vswap_strerror(rc));
		m->h = NULL;
	}
	return rc;
}

int vmm_store_new(struct vmm *m)
{
	struct vswap_store_opts so;

	vmm_store_opts(m, &so);
	int rc = vswap_store_create(m->r->path, &so, &m->store);

	if (rc) {
		fprintf(stderr, "vswap-vm: create store %s: %s\n", m->r->path, vswap_strerror(rc));
		m->store = NULL;
		return rc;
	}
	return vmm_handler(m);
}

int vmm_boot(struct vmm *m)
{
	int rc = vm_start(&m->vm);

	return rc ? rc : vmm_guest_wait(m);
}

int vmm_enable_stage(struct vmm *m, const char *what)
{
	uint64_t t0 = vm_now_ns();
	int rc = vmm_enable(m);

	if (rc) {
		fprintf(stderr, "vswap-vm: %s: %s\n", what, vswap_strerror(rc));
		return rc;
	}
	vmm_status(m);
	uint64_t n = m->r->status.transition.pages;

	/* No rate: protect mode takes the pages without moving a byte. */
	vmm_stage(m, "enable", vmm_secs(t0), n, 0, "%llu pages taken", (unsigned long long)n);
	return 0;
}

int vmm_trim_stage(struct vmm *m, const char *what, bool touch)
{
	uint64_t t0 = vm_now_ns();
	int rc = vmm_trim(m);

	if (!rc && touch)
		rc = vm_command(&m->vm, VM_CMD_TOUCH, 0);
	if (!rc && touch)
		rc = vmm_guest_wait(m);
	if (!rc)
		rc = vmm_wait_state(m, VSWAP_STATE_PENDING, what);
	if (rc)
		return rc;
	const struct vswap_status *st = &m->r->status;

	if (touch)
		vmm_stage(m, "trim", vmm_secs(t0), st->transition.pages, 0,
			  "%llu pages trimmed, guest read %u.%u%% (%llu from staging)",
			  (unsigned long long)st->transition.pages,
			  m->vm.shared->touch_permille / 10, m->vm.shared->touch_permille % 10,
			  (unsigned long long)st->metrics.copied_from_staging_pages);
	else
		vmm_stage(m, "trim", vmm_secs(t0), st->transition.pages, 0,
			  "%llu zero or unchanged pages dropped",
			  (unsigned long long)st->transition.pages);
	return 0;
}

int vmm_swap_out_stage(struct vmm *m, const char *what)
{
	uint64_t t0 = vm_now_ns();
	int rc = vmm_swap_out(m);

	if (!rc)
		rc = vmm_wait_state(m, VSWAP_STATE_ACTIVE, what);
	if (rc)
		return rc;
	uint64_t n = m->r->status.transition.pages;

	vmm_stage(m, "swap-out", vmm_secs(t0), n, n * VM_PAGE, "%llu pages written to the store",
		  (unsigned long long)n);
	return 0;
}

void vmm_store_opts(const struct vmm *m, struct vswap_store_opts *so)
{
	memset(so, 0, sizeof(*so));
	so->durability = m->o->durability;
	so->log = vmm_log;
	so->log_level = VSWAP_LOG_WARN;
}

int vmm_audit(struct vmm *m)
{
	struct vswap_fsck_opts o = {.mode = VSWAP_FSCK_CHECK, .no_orphan_scan = true};
	struct vswap_fsck *f;
	int rc = vswap_fsck_new(m->r->path, &o, &f);

	if (rc)
		return rc;
	rc = vswap_fsck_run(f);
	m->r->fsck_exit = vswap_fsck_exit_code(f);
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++) {
		const struct vswap_problem *p = vswap_fsck_problem(f, i);

		fprintf(stderr, "vswap-vm: fsck: %s: %s\n", vswap_problem_kind_name(p->kind),
			p->detail ? p->detail : "");
	}
	vswap_fsck_free(f);
	return rc;
}

void vmm_teardown(struct vmm *m, bool remove_store)
{
	if (m->vm_made)
		vm_destroy(&m->vm);
	m->vm_made = false;
	vmm_unserve(m);
	if (m->store)
		vswap_store_close(m->store);
	m->store = NULL;
	if (remove_store && m->r->path[0]) {
		struct vswap_store_opts so = {0};
		int rc = vswap_store_destroy(m->r->path, &so);

		if (rc && rc != -ENOENT)
			fprintf(stderr, "vswap-vm: remove %s: %s\n", m->r->path,
				vswap_strerror(rc));
	}
	if (remove_store && m->tmpdir[0])
		rmdir(m->tmpdir);
	if (m->ram)
		munmap(m->ram, m->ram_size);
	m->ram = NULL;
	if (m->memfd >= 0)
		close(m->memfd);
	m->memfd = -1;
}

/* ---- the cycles ------------------------------------------------------------ */

static uint64_t faults_file(struct vmm *m)
{
	vmm_status(m);
	return m->r->status.metrics.copied_from_file_pages;
}

static int balloon(struct vmm *m, unsigned cycle)
{
	volatile struct vm_shared *s = m->vm.shared;
	uint64_t seed = 0x62616c6cull ^ cycle, span = BALLOON_PAGES;

	s->nremoved = 0;
	if (m->pages < span * BALLOON_RANGES * 2)
		return 0;
	for (unsigned i = 0; i < BALLOON_RANGES; i++) {
		seed = vm_mix(seed + i);
		uint64_t first = seed % (m->pages / span) * span;

		int rc = vmm_discard(m, m->ram + first * VM_PAGE, span * VM_PAGE);

		if (rc)
			return rc;
		if (madvise(m->ram + first * VM_PAGE, span * VM_PAGE, MADV_REMOVE))
			return -errno;
		s->removed[i][0] = first;
		s->removed[i][1] = span;
		s->nremoved = i + 1;
		m->r->removed_pages += span;
	}
	return 0;
}

static int one_cycle(struct vmm *m, unsigned c)
{
	volatile struct vm_shared *s = m->vm.shared;
	struct vmm_result *r = m->r;
	uint64_t t0, f0, bytes = m->ram_size;
	int rc;

	vmm_cycle_begins(m);
	/* The guest writes all its memory (one page in eight zero). */
	s->version = 2 * c - 1;
	s->touch_permille = 0;
	s->nremoved = 0;
	t0 = vm_now_ns();
	if ((rc = vmm_guest(m, VM_CMD_WRITE, 0)))
		return rc;
	vmm_stage(m, "write", vmm_secs(t0), m->pages, bytes, "guest wrote %llu pages, version %u",
		  (unsigned long long)m->pages, s->version);

	/* Enable while every vCPU is idle (halted: the guest is paused). */
	if ((rc = vmm_enable_stage(m, "enable")))
		return rc;

	/* Trim with the guest running: it reads 2% (faults from staging). */
	s->touch_permille = 20;
	if ((rc = vmm_trim_stage(m, "trim", true)))
		return rc;
	r->from_staging += r->status.metrics.copied_from_staging_pages;
	/* That touch rewrote version + 1 into half of what it read. */

	/* Swap out (the guest idle: its next touches fault from the file). */
	if ((rc = vmm_swap_out_stage(m, "swap-out")))
		return rc;

	/* Balloon: four 1 MiB ranges go back to the host. */
	t0 = vm_now_ns();
	if ((rc = balloon(m, c))) {
		fprintf(stderr, "vswap-vm: MADV_REMOVE: %s\n", strerror(-rc));
		return rc;
	}
	vmm_stage(m, "balloon", vmm_secs(t0), s->nremoved * (uint64_t)BALLOON_PAGES, 0,
		  "%u ranges removed (the guest reads them as zero)", s->nremoved);

	/* Every page checked over swapped-out memory: faults from the file. */
	vm_latency_reset(&m->vm);
	f0 = faults_file(m);
	t0 = vm_now_ns();
	if ((rc = vmm_guest(m, VM_CMD_VERIFY, 0)))
		return rc;
	double secs = vmm_secs(t0);
	uint64_t ff = faults_file(m) - f0;

	r->from_file += ff;
	r->zero_filled += r->status.metrics.zeroed_pages;
	r->swapped_gbps = (double)bytes / secs / 1e9;
	r->lat_p50_us = vm_latency_us(&m->vm, 0.50);
	r->lat_p99_us = vm_latency_us(&m->vm, 0.99);
	r->lat_max_us = vm_latency_max_us(&m->vm);
	r->lat_samples = m->pages;
	vmm_stage(m, "verify-swapped", secs, m->pages, bytes,
		  "%llu from file; first access p50 %.1f us p99 %.1f us", (unsigned long long)ff,
		  r->lat_p50_us, r->lat_p99_us);

	/* Disable: the rest comes back in (nothing much is left). */
	t0 = vm_now_ns();
	rc = vmm_disable(m);
	if (!rc)
		rc = vmm_wait_state(m, VSWAP_STATE_READY, "disable");
	if (rc)
		return rc;
	vmm_stage(m, "disable", vmm_secs(t0), r->status.transition.pages,
		  r->status.transition.pages * VM_PAGE, "%llu pages swapped in",
		  (unsigned long long)r->status.transition.pages);

	/* And once more resident, for the guest's throughput without swap. */
	t0 = vm_now_ns();
	if ((rc = vmm_guest(m, VM_CMD_VERIFY, 0)))
		return rc;
	secs = vmm_secs(t0);
	r->resident_gbps = (double)bytes / secs / 1e9;
	vmm_stage(m, "verify", secs, m->pages, bytes, "%llu pages checked, %llu wrong so far",
		  (unsigned long long)m->pages, (unsigned long long)r->wrong_pages);
	return 0;
}

int vmm_check_kvm(void)
{
	struct vmm_opts o = {.size = 2ull << 20, .vcpus = 1};
	struct vmm_result r = {0};
	struct vmm m = {.o = &o, .r = &r, .memfd = -1};
	int rc = vmm_memory(&m);

	if (!rc)
		rc = vmm_machine(&m);
	/* The guest's first instructions: it halts idle at once. */
	if (!rc && !(rc = vm_start(&m.vm)) && vmm_guest_wait(&m))
		rc = -ENODEV;
	vmm_teardown(&m, false);
	return rc;
}

int vmm_cycles(const struct vmm_opts *o, struct vmm_result *r)
{
	struct vmm m = {.o = o, .r = r, .memfd = -1};
	FILE *f = o->json ? stderr : stdout;
	int rc;

	if ((rc = vmm_memory(&m)))
		goto out;
	if ((rc = vmm_machine(&m)))
		goto out;
	if ((rc = vmm_store_path(&m)))
		goto out;
	if (o->vswapd) {
		/* vswapd creates the store and serves the guest. */
		if ((rc = vmm_serve_vswapd(&m)))
			goto out;
	} else if ((rc = vmm_store_new(&m))) {
		goto out;
	}
	fprintf(f, "vswap-vm: %llu MiB guest, %u vCPUs, store %s (%s)%s%s\n",
		(unsigned long long)(m.ram_size >> 20), o->vcpus, r->path,
		vswap_durability_name(o->durability), o->vswapd ? ", served by vswapd at " : "",
		o->vswapd ? o->vswapd : "");
	if ((rc = vmm_boot(&m)))
		goto out;
	for (unsigned c = 1; c <= o->cycles; c++) {
		fprintf(f, "cycle %u/%u\n", c, o->cycles);
		rc = one_cycle(&m, c);
		if (rc)
			break;
		r->cycles_done = c;
	}
	vmm_status(&m);
out:
	if (m.vm_made)
		vm_destroy(&m.vm);
	m.vm_made = false;
	bool served = m.h || m.c;
	if (served) {
		/* Everything swapped in; through vswapd the daemon then closes
		 * the store. */
		int drc = vmm_unserve(&m);

		if (drc && !rc)
			rc = drc;
	}
	if (m.store) {
		int crc = vswap_store_close(m.store);

		m.store = NULL;
		if (crc && !rc)
			rc = crc;
		if (!rc)
			rc = vmm_audit(&m);
	} else if (served && !rc) {
		rc = vmm_audit(&m);
	}
	vmm_teardown(&m, !o->keep);
	return rc;
}

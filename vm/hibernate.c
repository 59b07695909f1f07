/* SPDX-License-Identifier: MIT */
/*
 * Hibernate and resume.  Hibernate: the guest is stopped at a pause point in
 * the middle of a pass, every page goes to the store (enable, swap out,
 * which leaves the zero pages out), the handler detaches, and the VMM's
 * own state is saved as blobs:
 *   vm.state    a header, every vCPU's registers, and the mutable part of
 *               low memory (the guest's control blocks and stacks)
 *   vm.workset  the pages the last resumed guest needed first, in order
 * committed with the final state when the store closes.
 *
 * Resume, in a new process: open the store, read the blobs, make fresh
 * guest memory and a fresh VM, put the saved state back and let the vCPUs
 * run at once; pages fault in lazily from the store, every one verified,
 * while the recorded working set is read ahead.  The image is used once: the
 * resume deletes vm.state with the store's first commit (the handler's commit
 * thread makes it right after the guest starts), because from then on the
 * index records what the guest changed and no longer holds the picture the
 * saved vCPUs belong to.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vswap/handler.h>

#include "vm/vmm_internal.h"

#define STATE_BLOB "vm.state"
#define WORKSET_BLOB "vm.workset"
#define STATE_MAGIC 0x3174617473766d76ull /* "vmvstat1" */

struct saved_header {
	uint64_t magic;
	uint32_t version;
	uint32_t vcpus;
	uint64_t ram_size;
	uint64_t image_sum;
	uint32_t regs_size, sregs_size;
	uint64_t state_bytes;
};

static uint64_t state_bytes(unsigned nvcpus)
{
	return VM_STATE_END(nvcpus) - VM_STATE_BASE;
}

/* Whether every vCPU stopped at a pause point. */
static bool all_paused(struct vmm *m)
{
	bool ok = true;

	pthread_mutex_lock(&m->vm.lock);
	for (unsigned i = 0; i < m->vm.nvcpus; i++)
		ok &= m->vm.vcpus[i].state == VCPU_PAUSED;
	pthread_mutex_unlock(&m->vm.lock);
	return ok;
}

/* The vm.state blob of the paused machine (malloc()ed). */
static int state_build(struct vmm *m, uint8_t **out, size_t *len)
{
	unsigned n = m->vm.nvcpus;
	size_t sz = sizeof(struct saved_header) + n * sizeof(struct vm_saved_vcpu) + state_bytes(n);
	uint8_t *b = calloc(1, sz);

	if (!b)
		return -ENOMEM;
	struct saved_header hdr = {
	    .magic = STATE_MAGIC,
	    .version = 1,
	    .vcpus = n,
	    .ram_size = m->ram_size,
	    .image_sum = m->vm.image_sum,
	    .regs_size = sizeof(struct kvm_regs),
	    .sregs_size = sizeof(struct kvm_sregs),
	    .state_bytes = state_bytes(n),
	};
	uint8_t *p = b + sizeof(hdr);

	memcpy(b, &hdr, sizeof(hdr));
	for (unsigned i = 0; i < n; i++, p += sizeof(struct vm_saved_vcpu)) {
		struct vm_saved_vcpu sv;
		int rc = vm_save_vcpu(&m->vm, i, &sv);

		if (rc) {
			free(b);
			return rc;
		}
		memcpy(p, &sv, sizeof(sv));
	}
	memcpy(p, m->vm.low + VM_STATE_BASE, state_bytes(n));
	*out = b;
	*len = sz;
	return 0;
}

/* Check a vm.state blob against this build; fills @hdr. */
static int state_check(const uint8_t *b, size_t len, struct saved_header *hdr)
{
	if (len < sizeof(*hdr))
		return -EBADMSG;
	memcpy(hdr, b, sizeof(*hdr));
	if (hdr->magic != STATE_MAGIC || hdr->version != 1 || hdr->vcpus < 1 ||
	    hdr->vcpus > VM_MAX_VCPUS || hdr->regs_size != sizeof(struct kvm_regs) ||
	    hdr->sregs_size != sizeof(struct kvm_sregs) ||
	    hdr->state_bytes != state_bytes(hdr->vcpus) ||
	    len != sizeof(*hdr) + hdr->vcpus * sizeof(struct vm_saved_vcpu) + hdr->state_bytes ||
	    hdr->ram_size % (2ull << 20) || !hdr->ram_size)
		return -EBADMSG;
	return 0;
}

/*
 * The vCPUs are paused: put every page in the store, detach, save the
 * state and close.  Leaves m->h and m->store NULL.
 */
static int hibernate_now(struct vmm *m, const uint64_t *workset, size_t nworkset)
{
	struct vmm_result *r = m->r;
	uint64_t t0 = vm_now_ns();
	uint8_t *state = NULL;
	size_t slen;
	int rc;

	if (!all_paused(m)) {
		fprintf(stderr, "vswap-vm: hibernate: a vCPU did not reach its pause point\n");
		return -EPROTO;
	}
	if ((rc = state_build(m, &state, &slen)))
		return rc;
	/* Every page to the store; the guest stays paused throughout.  No
	 * trim first: the swap-out drops the zero pages itself, reading them
	 * in place, and keeps the pages equal to their stale copy (after a
	 * resume, those the guest only read) without a write. */
	if ((rc = vmm_enable_stage(m, "hibernate: enable")))
		goto out;
	if ((rc = vmm_swap_out_stage(m, "hibernate: swap-out")))
		goto out;
	r->hibernated_pages = r->status.transition.pages;
	r->hibernate_bytes_written = r->status.metrics.bytes_written;
	rc = vswap_handler_detach(m->h);
	m->h = NULL;
	if (rc) {
		fprintf(stderr, "vswap-vm: hibernate: detach: %s\n", vswap_strerror(rc));
		goto out;
	}
	/* The VMM's state, committed with the final state by the close. */
	rc = vswap_store_blob_put(m->store, STATE_BLOB, state, slen);
	if (!rc && nworkset)
		rc = vswap_store_blob_put(m->store, WORKSET_BLOB, workset,
					  nworkset * sizeof(*workset));
	if (rc) {
		fprintf(stderr, "vswap-vm: hibernate: save state: %s\n", vswap_strerror(rc));
		goto out;
	}
	rc = vswap_store_close(m->store);
	m->store = NULL;
	if (rc) {
		fprintf(stderr, "vswap-vm: hibernate: close store: %s\n", vswap_strerror(rc));
		goto out;
	}
	r->hibernate_ms = (double)(vm_now_ns() - t0) / 1e6;
	vmm_stage(m, "hibernated", vmm_secs(t0), r->hibernated_pages, 0,
		  "%u vCPUs and %llu KiB of state saved, store closed", m->vm.nvcpus,
		  (unsigned long long)(slen >> 10));
out:
	free(state);
	return rc;
}

/* The guest reads its memory, checking every page, and stops at 7/8 of it:
 * it writes nothing, so the pages it read equal their copies in the store. */
static int read_until_paused(struct vmm *m)
{
	uint64_t share = m->pages / m->vm.nvcpus, t0 = vm_now_ns();
	int rc = vmm_guest(m, VM_CMD_VERIFY, share - share / 8);

	if (rc != -EINTR) {
		if (!rc)
			fprintf(stderr, "vswap-vm: the guest did not pause\n");
		return rc ? rc : -EPROTO;
	}
	vmm_stage(m, "run", vmm_secs(t0), share - share / 8, 0,
		  "guest paused at 7/8 of reading version %u", m->vm.shared->version);
	return 0;
}

/* The guest writes version @v over its memory and stops at 7/8 of it. */
static int run_until_paused(struct vmm *m, uint32_t v)
{
	uint64_t share = m->pages / m->vm.nvcpus, t0 = vm_now_ns();
	int rc;

	m->vm.shared->version = v;
	m->vm.shared->touch_permille = 0;
	m->vm.shared->nremoved = 0;
	rc = vmm_guest(m, VM_CMD_WRITE, share - share / 8);
	if (rc != -EINTR) {
		if (!rc)
			fprintf(stderr, "vswap-vm: the guest did not pause\n");
		return rc ? rc : -EPROTO;
	}
	vmm_stage(m, "run", vmm_secs(t0), share - share / 8, 0,
		  "guest paused at 7/8 of writing version %u", v);
	return 0;
}

int vmm_hibernate(const struct vmm_opts *o, struct vmm_result *r)
{
	struct vmm m = {.o = o, .r = r, .memfd = -1};
	FILE *f = o->json ? stderr : stdout;
	uint64_t t0;
	int rc;

	if ((rc = vmm_memory(&m)) || (rc = vmm_machine(&m)) || (rc = vmm_store_path(&m)) ||
	    (rc = vmm_store_new(&m)))
		goto out;
	fprintf(f, "vswap-vm: hibernate: %llu MiB guest, %u vCPUs, store %s (%s)\n",
		(unsigned long long)(m.ram_size >> 20), o->vcpus, r->path,
		vswap_durability_name(o->durability));
	m.vm.shared->hot_permille = o->hot_permille;
	if ((rc = vmm_boot(&m)))
		goto out;
	m.vm.shared->version = 1;
	t0 = vm_now_ns();
	if ((rc = vmm_guest(&m, VM_CMD_WRITE, 0)))
		goto out;
	vmm_stage(&m, "write", vmm_secs(t0), m.pages, m.ram_size, "guest wrote version 1");
	if ((rc = run_until_paused(&m, 3)) || (rc = hibernate_now(&m, NULL, 0)))
		goto out;
out:
	vmm_teardown(&m, false);
	return rc;
}

/* ---- resume --------------------------------------------------------------- */

static int load_state(struct vmm *m, uint8_t **state, size_t *slen, struct saved_header *hdr)
{
	int rc = vswap_store_blob_get(m->store, STATE_BLOB, (void **)state, slen);

	if (rc == -ENOENT) {
		fprintf(stderr, "vswap-vm: %s holds no hibernated guest (no %s blob)\n", m->r->path,
			STATE_BLOB);
		return -ENOENT;
	}
	if (rc) {
		fprintf(stderr, "vswap-vm: %s: %s: %s\n", m->r->path, STATE_BLOB,
			vswap_strerror(rc));
		return rc;
	}
	rc = state_check(*state, *slen, hdr);
	if (rc)
		fprintf(stderr, "vswap-vm: %s: the saved state is not one this build wrote\n",
			m->r->path);
	return rc;
}

static void load_workset(struct vmm *m, uint64_t **ws, size_t *n)
{
	size_t len = 0;
	void *data = NULL;

	*ws = NULL;
	*n = 0;
	if (vswap_store_blob_get(m->store, WORKSET_BLOB, &data, &len) || len % sizeof(uint64_t)) {
		free(data);
		return;
	}
	*ws = data;
	*n = len / sizeof(uint64_t);
}

/* The fresh machine takes the saved one's place. */
static int restore(struct vmm *m, const uint8_t *state, const struct saved_header *hdr)
{
	const uint8_t *p = state + sizeof(*hdr);

	if (hdr->image_sum != m->vm.image_sum) {
		fprintf(stderr, "vswap-vm: the hibernated guest ran another guest program (another "
				"build of vswap-vm)\n");
		return -ENOEXEC;
	}
	for (unsigned i = 0; i < hdr->vcpus; i++, p += sizeof(struct vm_saved_vcpu)) {
		struct vm_saved_vcpu sv;
		int rc;

		memcpy(&sv, p, sizeof(sv));
		if ((rc = vm_restore_vcpu(&m->vm, i, &sv))) {
			fprintf(stderr, "vswap-vm: restore vCPU %u: %s\n", i, strerror(-rc));
			return rc;
		}
	}
	memcpy(m->vm.low + VM_STATE_BASE, p, hdr->state_bytes);
	return 0;
}

/*
 * The steps of a resume up to the first guest instruction, each timed on
 * its thread (vm/clock.h) into r->steps; --verbose prints them as they end.
 * The main thread and the machine thread both record: @mu orders them.
 */
struct step_log {
	struct vmm_result *r;
	pthread_mutex_t mu;
	uint64_t t0; /* the store's open began */
	bool print;
};

struct step_timer {
	struct step_log *log;
	const char *thread;
	struct vm_clock last;
	int fd; /* the thread's schedstat (vm_clock_read()) */
};

static void step_add(struct step_log *l, const char *thread, const char *name,
		     const struct vm_clock *a, const struct vm_clock *b)
{
	struct vmm_result *r = l->r;

	pthread_mutex_lock(&l->mu);
	if (r->nsteps < VMM_MAX_STEPS) {
		struct vmm_step *s = &r->steps[r->nsteps++];

		snprintf(s->name, sizeof(s->name), "%s", name);
		snprintf(s->thread, sizeof(s->thread), "%s", thread);
		s->at_ms = (double)(int64_t)(b->wall_ns - l->t0) / 1e6;
		s->ms = vm_clock_wall_ms(a, b);
		s->cpu_ms = vm_clock_cpu_ms(a, b);
		s->runq_ms = vm_clock_runq_ms(a, b);
		if (l->print)
			fprintf(stderr,
				"vswap-vm: resume step %-8s %-26s %8.3f ms, cpu %7.3f, runq %7.3f "
				"(at %8.3f ms)\n",
				s->thread, s->name, s->ms, s->cpu_ms, s->runq_ms, s->at_ms);
	}
	pthread_mutex_unlock(&l->mu);
}

/* The calling thread's first step starts now. */
static void step_start(struct step_timer *t, struct step_log *l, const char *thread)
{
	t->log = l;
	t->thread = thread;
	t->fd = -1;
	vm_clock_read(&t->last, &t->fd);
}

static void step(struct step_timer *t, const char *name)
{
	struct vm_clock now;

	vm_clock_read(&now, &t->fd);
	step_add(t->log, t->thread, name, &t->last, &now);
	t->last = now;
}

/* The steps in the order they ended. */
static void steps_sort(struct vmm_result *r)
{
	for (unsigned i = 1; i < r->nsteps; i++)
		for (unsigned j = i; j > 0 && r->steps[j].at_ms < r->steps[j - 1].at_ms; j--) {
			struct vmm_step t = r->steps[j];

			r->steps[j] = r->steps[j - 1];
			r->steps[j - 1] = t;
		}
}

/*
 * The VM is made on a thread of its own while the store opens and the
 * handler is set up: a resume waits for the longer of the two, not for
 * both.  The thread opens the VM at once (nothing of the guest needed),
 * then waits for the saved state (the guest's size and vCPUs), or for
 * word that the resume gave up.  The RAM's memory slots are registered
 * behind the build, while the guest already runs (vm/kvm.c, "RAM in
 * pieces").
 */
struct machine_job {
	struct vmm *m;
	struct step_log *log;
	unsigned expect_vcpus; /* made before the state is read */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int go; /* 0: wait; 1: build and restore from state/hdr; -1: give up */
	const uint8_t *state;
	const struct saved_header *hdr;
	bool done; /* rc is final: the machine is restored (or failed) */
	int rc;
};

static void *machine_main(void *arg)
{
	struct machine_job *j = arg;
	struct step_timer st;

	step_start(&st, j->log, "machine");
	int rc = vmm_machine_open(j->m), go;

	step(&st, "VM opened");
	/* The vCPUs the resume expects, made while the store opens: nothing
	 * of the guest is in them yet (vm_build() lays it, restore() puts the
	 * saved registers).  A saved guest with more gets the rest made by
	 * vm_build(); one with fewer leaves the extra ones never run. */
	if (!rc)
		rc = vmm_machine_vcpus(j->m, j->expect_vcpus);
	step(&st, "vCPUs made ahead");
	/* Their threads too: the start then wakes them. */
	if (!rc)
		rc = vm_spawn_vcpus(&j->m->vm);
	step(&st, "vCPU threads ahead");
	pthread_mutex_lock(&j->mu);
	while (!(go = j->go))
		pthread_cond_wait(&j->cv, &j->mu);
	pthread_mutex_unlock(&j->mu);
	step(&st, "waited for the state");
	j->m->vm.ram_slots.lazy = true;
	if (!rc && go > 0)
		rc = vmm_machine_build(j->m);
	step(&st, "VM laid out");
	if (!rc && go > 0)
		rc = restore(j->m, j->state, j->hdr);
	step(&st, "vCPUs restored");
	vm_clock_done(&st.fd);
	/* Said before the thread ends: the resume goes on at once, without
	 * waiting for the thread's exit (it is joined later). */
	pthread_mutex_lock(&j->mu);
	j->rc = rc;
	j->done = true;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* The machine's build and restore are over: its result. */
static int machine_wait(struct machine_job *j)
{
	pthread_mutex_lock(&j->mu);
	while (!j->done)
		pthread_cond_wait(&j->cv, &j->mu);
	int rc = j->rc;
	pthread_mutex_unlock(&j->mu);
	return rc;
}

/* The machine thread builds from @state (NULL: it gives up). */
static void machine_go(struct machine_job *j, const uint8_t *state, const struct saved_header *hdr)
{
	pthread_mutex_lock(&j->mu);
	j->state = state;
	j->hdr = hdr;
	j->go = state ? 1 : -1;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

/* The RAM slots' thread, as steps: once its clocks are final (joined, or
 * every piece in). */
static void ram_slot_steps(struct vmm *m, struct step_log *l)
{
	struct vm_ram_slots *rs = &m->vm.ram_slots;

	pthread_mutex_lock(&m->vm.lock);
	bool ended = rs->ended;
	struct vm_clock start = rs->t_start, first = rs->t_first, end = rs->t_end;

	m->r->ram_slot_waits = rs->waits;
	m->r->ram_slot_emulated = rs->emulated;
	pthread_mutex_unlock(&m->vm.lock);
	if (!ended || !end.wall_ns)
		return;
	if (first.wall_ns)
		step_add(l, "ram-slots", "first RAM piece in", &start, &first);
	step_add(l, "ram-slots", "every RAM piece in", &start, &end);
	m->r->ram_slots_ms = vm_clock_wall_ms(&start, &end);
}

/*
 * When the first page a resumed vCPU touched was served: the guest goes on
 * with the pass it was saved in, writing page after page, and moves its
 * progress counter once a page is written, that is once the fault that
 * brought the page in from the store was served.  Spins (yielding) until a
 * counter moves or no vCPU runs; 0 then.
 */
static uint64_t first_page_served(struct vmm *m)
{
	uint64_t start[VM_MAX_VCPUS];

	for (unsigned i = 0; i < m->vm.nvcpus; i++)
		start[i] = m->vm.vcpus[i].area->progress;
	for (;;) {
		bool running = false;

		for (unsigned i = 0; i < m->vm.nvcpus; i++)
			if (m->vm.vcpus[i].area->progress != start[i])
				return vm_now_ns();
		pthread_mutex_lock(&m->vm.lock);
		for (unsigned i = 0; i < m->vm.nvcpus; i++)
			running |= m->vm.vcpus[i].state == VCPU_RUNNING;
		pthread_mutex_unlock(&m->vm.lock);
		if (!running)
			return 0;
		sched_yield();
	}
}

static uint64_t file_faults(struct vmm *m)
{
	vmm_status(m);
	return m->r->status.metrics.copied_from_file_pages;
}

int vmm_resume(const struct vmm_opts *o, struct vmm_result *r)
{
	struct vmm_opts mo = *o;
	struct vmm m = {.o = &mo, .r = r, .memfd = -1};
	struct vswap_store_opts so;
	struct saved_header hdr;
	FILE *f = o->json ? stderr : stdout;
	uint8_t *state = NULL;
	uint64_t *ws = NULL, *rec = NULL;
	size_t slen, nws = 0, nrec = 0;
	uint64_t t_open, t0;
	bool machine = false; /* its thread not joined yet */
	int rc;

	snprintf(r->path, sizeof(r->path), "%s", o->store);
	vmm_store_opts(&m, &so);
	/* The guest runs before the whole index is read: its groups load
	 * behind the open, each one first when a fault needs it. */
	so.lazy_index = true;
	struct step_log log = {.r = r, .mu = PTHREAD_MUTEX_INITIALIZER, .print = o->verbose};
	struct step_timer st;

	step_start(&st, &log, "main");
	t_open = log.t0 = st.last.wall_ns;
	struct machine_job mj = {.m = &m,
				 .log = &log,
				 .expect_vcpus =
				     o->vcpus && o->vcpus <= VM_MAX_VCPUS ? o->vcpus : 2,
				 .mu = PTHREAD_MUTEX_INITIALIZER,
				 .cv = PTHREAD_COND_INITIALIZER};
	pthread_t mt;

	if ((rc = -pthread_create(&mt, NULL, machine_main, &mj)))
		goto out;
	machine = true;
	rc = vswap_store_open(r->path, &so, &m.store);
	if (rc) {
		fprintf(stderr, "vswap-vm: open store %s: %s\n", r->path, vswap_strerror(rc));
		m.store = NULL;
		goto out;
	}
	step(&st, "store open");
	if ((rc = load_state(&m, &state, &slen, &hdr)))
		goto out;
	load_workset(&m, &ws, &nws);
	step(&st, "state and workset read");
	mo.size = hdr.ram_size;
	mo.vcpus = hdr.vcpus;
	if ((rc = vmm_memory(&m)))
		goto out;
	step(&st, "guest memory");
	machine_go(&mj, state, &hdr);
	/* Used once: deleted by the store's first commit, which the enable
	 * (it takes no page of this empty memory) leaves to the handler's
	 * commit thread, so the guest runs without waiting for a sync.  Until
	 * a commit, the store is the image still (what the guest changes is
	 * in its memory only): a kill then leaves it to resume again.  Every
	 * commit takes the pending blobs with it, so none that records a page
	 * the guest changed can leave the image behind. */
	rc = vswap_store_blob_delete(m.store, STATE_BLOB);
	if (!rc)
		rc = vmm_handler(&m);
	step(&st, "handler created");
	if (!rc)
		rc = vswap_handler_enable(m.h);
	step(&st, "handler enabled");
	if (!rc)
		rc = vswap_handler_workset_record(m.h, m.pages);
	step(&st, "working set recorded");
	if (rc && m.h)
		fprintf(stderr, "vswap-vm: resume: %s\n", vswap_strerror(rc));
	int mrc = machine_wait(&mj);

	step(&st, "VM made");
	if (!rc)
		rc = mrc;
	if (rc)
		goto out;
	/* The vCPUs' first instruction is timed from here: the threads
	 * vm_start() makes may run it before vm_start() returns. */
	struct vm_clock started = st.last;

	if ((rc = vm_start(&m.vm)))
		goto out;
	step(&st, "vCPUs started");

	/* The read-ahead of the working set starts once the guest runs: its
	 * reads and checks would take the cores the VM's build needs. */
	if (nws && !o->no_prefetch && (rc = vswap_handler_prefetch(m.h, ws, nws)))
		fprintf(stderr, "vswap-vm: resume: prefetch: %s\n", vswap_strerror(rc));
	step(&st, "prefetch started");
	vm_clock_done(&st.fd);
	pthread_join(mt, NULL);
	machine = false;
	if (rc)
		goto out;
	uint64_t served = first_page_served(&m);

	if (served)
		r->resume_to_first_fault_ms = (double)(served - t_open) / 1e6;
	/* The guest finishes the pass it was in, then reads its hot set. */
	rc = vmm_guest_wait(&m);
	uint64_t first = UINT64_MAX;

	for (unsigned i = 0; i < m.vm.nvcpus; i++)
		if (m.vm.vcpus[i].resumed_ns && m.vm.vcpus[i].resumed_ns < first)
			first = m.vm.vcpus[i].resumed_ns;
	if (first != UINT64_MAX) {
		struct vm_clock at = {
		    .wall_ns = first, .cpu_ns = started.cpu_ns, .runq_ns = started.runq_ns};

		r->resume_to_first_instruction_ms = (double)(first - t_open) / 1e6;
		step_add(&log, "vcpu", "first guest instruction", &started, &at);
	}
	if (!rc)
		rc = vm_ram_wait(&m.vm);
	ram_slot_steps(&m, &log);
	steps_sort(r);
	fprintf(f,
		"vswap-vm: resume: %llu MiB guest, %u vCPUs, store %s: first guest "
		"instruction %.3f ms after the store was opened%s\n",
		(unsigned long long)(m.ram_size >> 20), m.vm.nvcpus, r->path,
		r->resume_to_first_instruction_ms,
		nws && !o->no_prefetch ? ", working set read ahead" : "");
	if (rc)
		goto out;
	rc = vmm_guest(&m, VM_CMD_HOT, 0);
	if (rc)
		goto out;
	r->resume_to_hot_ms = (double)(vm_now_ns() - first) / 1e6;
	r->resume_faults_hot = file_faults(&m);
	if ((rc = vswap_handler_workset_take(m.h, &rec, &nrec)))
		goto out;
	vmm_stage(&m, "resume-hot", r->resume_to_hot_ms / 1e3, nrec, 0,
		  "working set in: %llu faults from the file, %llu pages recorded",
		  (unsigned long long)r->resume_faults_hot, (unsigned long long)nrec);
	r->workset_recorded = nrec;
	/* The index load behind the open: over by now, or waited for. */
	struct vswap_store_load ld;

	if (vswap_store_load_wait(m.store) == 0 && vswap_store_load_status(m.store, &ld) == 0) {
		r->resume_index_loaded_ms = (double)ld.load_ns / 1e6;
		r->index_groups = ld.groups;
		r->index_on_demand = ld.on_demand;
	}
	/* Every byte of the guest, checked by the guest. */
	t0 = vm_now_ns();
	if (!o->no_verify && (rc = vmm_guest(&m, VM_CMD_VERIFY, 0)))
		goto out;
	struct vswap_workset_stats wst;

	vswap_handler_workset_stats(m.h, &wst);
	r->workset_prefetched = wst.prefetched;
	r->workset_replayed = wst.prefetch_pages;
	r->from_file = file_faults(&m);
	vmm_stage(&m, "resume-verify", vmm_secs(t0), m.pages, m.ram_size,
		  "%llu pages checked, %llu wrong; %llu from file in all, %llu prefetched",
		  (unsigned long long)m.pages, (unsigned long long)r->wrong_pages,
		  (unsigned long long)r->from_file, (unsigned long long)wst.prefetched);
	if (o->hibernate) {
		/* And hibernate again, with this resume's working set. */
		rc = o->read_only ? read_until_paused(&m)
				  : run_until_paused(&m, m.vm.shared->version + 2);
		if (rc)
			goto out;
		rc = hibernate_now(&m, rec, nrec);
		goto out;
	}
	vm_destroy(&m.vm);
	m.vm_made = false;
	rc = vswap_handler_destroy(m.h);
	m.h = NULL;
	if (!rc && nrec)
		rc = vswap_store_blob_put(m.store, WORKSET_BLOB, rec, nrec * sizeof(*rec));
out:
	if (machine) {
		machine_go(&mj, NULL, NULL);
		pthread_join(mt, NULL);
	}
	if (m.h) {
		vmm_status(&m);
		r->from_file = r->status.metrics.copied_from_file_pages;
	}
	if (m.h) {
		vswap_handler_destroy(m.h);
		m.h = NULL;
	}
	if (m.store) {
		int crc = vswap_store_close(m.store);

		m.store = NULL;
		if (!rc)
			rc = crc;
	}
	vmm_teardown(&m, false);
	free(state);
	free(ws);
	free(rec);
	return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * vswap-vm --bench: the figures of hibernate and resume, each beside a
 * baseline measured in the same run on the same bytes (medians of --runs):
 *
 *   hibernate_gbps          the guest's RAM over the time to hibernate it
 *                           (enable, swap out, detach, save, close),
 *                           beside an O_DIRECT write of as many bytes to a
 *                           fresh file in the same directory (2 MiB writes,
 *                           one sync)
 *   hibernate_swap_out_gbps the bytes the hibernation's swap-out wrote over
 *                           its own time, beside the same O_DIRECT write: what
 *                           of hibernate_gbps is the write itself (the rest is
 *                           enable and the close; the swap-out's own time
 *                           includes its pass that finds the zero pages)
 *   rehibernate_gbps        as hibernate_gbps, for the hibernations that follow
 *                           each resume into the same store (the realistic
 *                           cycle: every page has a stale slot by then), beside
 *                           the same O_DIRECT write
 *   rehibernate_read_gbps   as rehibernate_gbps, after a resume whose guest
 *                           only read (checked 7/8 of its memory, after the
 *                           write pass it was saved in ended): the pages it
 *                           read equal their stale copies, compared and not
 *                           written; beside the same O_DIRECT write
 *   rehibernate_read_written_mib  the MiB that hibernation's swap-out wrote,
 *                           beside the guest's RAM (what it wrote before)
 *   resume_first_insn_ms    store opened -> first guest instruction, beside
 *                           reading the whole swap file first (page cache
 *                           dropped), what an eager resume would wait for
 *   resume_first_fault_ms   store opened -> the first page a vCPU touched
 *                           was served from the store (and written)
 *   resume_ram_slots_ms     the registration of the guest RAM's memory slots
 *                           (in pieces, behind the guest's start: not in
 *                           resume_first_insn_ms), beside one bare
 *                           KVM_SET_USER_MEMORY_REGION of as much memory in a
 *                           fresh VM: KVM's own cost of the RAM
 *   resume_index_ms         store opened -> every index record in memory
 *                           (the lazy load behind the open), beside the
 *                           same whole-image read
 *   resume_ws_faults        faults from the file until the guest has read
 *                           its working set, with prefetch beside without
 *   resume_ws_ms            the time until then, with prefetch beside without
 *   faultin_pages_per_s     a verify pass over swapped-out memory: every page
 *                           faults through KVM into the handler and comes from
 *                           the swap file, beside a bare userfaultfd handler
 *                           (vm/bare.c) serving the same guest the same bytes
 *                           from a flat file (both page caches dropped)
 *   faultin_server_cpu_us   CPU time of the threads that serve those faults
 *                           per page (vswap's monitor and any io_uring worker
 *                           of the process), beside the bare handler's thread:
 *                           what the handler itself costs per fault, a figure
 *                           other load on the machine changes little
 *
 * Resumes alternate without and with prefetch; each hibernates again (the
 * guest's pages that came in go back out) so the next run has an image.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vswap/handler.h>

#include "vm/bare.h"
#include "vm/vmm_internal.h"

#define CHUNK (2u << 20)

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/* Seconds to write @bytes with O_DIRECT into a fresh file in @dir. */
static double odirect_write(const char *dir, uint64_t bytes)
{
	char path[PATH_MAX];
	void *buf;
	double secs = -1;

	snprintf(path, sizeof(path), "%.3900s/odirect.baseline", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);

	if (fd < 0 || posix_memalign(&buf, 4096, CHUNK)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (size_t i = 0; i < CHUNK / 8; i++)
		((uint64_t *)buf)[i] = vm_mix(i + 1); /* not zeros */
	uint64_t t0 = vm_now_ns(), done = 0;

	while (done < bytes) {
		size_t n = bytes - done < CHUNK ? (size_t)(bytes - done) : CHUNK;

		n = (n + 4095) & ~(size_t)4095;
		if (pwrite(fd, buf, n, (off_t)done) != (ssize_t)n)
			break;
		done += n;
	}
	if (done >= bytes && fdatasync(fd) == 0)
		secs = vmm_secs(t0);
	close(fd);
	unlink(path);
	free(buf);
	return secs;
}

/* Seconds to read all of @path after dropping its page cache. */
static double read_whole(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	void *buf;
	double secs = -1;

	if (fd < 0 || posix_memalign(&buf, 4096, CHUNK)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	uint64_t t0 = vm_now_ns();
	off_t off = 0;
	ssize_t r;

	while ((r = pread(fd, buf, CHUNK, off)) > 0)
		off += r;
	if (r == 0)
		secs = vmm_secs(t0);
	close(fd);
	free(buf);
	return secs;
}

struct resume_runs {
	double first_ms[2][64], ws_ms[2][64], ws_faults[2][64], fault_ms[2][64], index_ms[2][64];
	double slots_ms[2][64];
	unsigned n[2];
	double rehib_gbps[128]; /* the hibernation after each resume */
	unsigned nrehib;
	/* the hibernation after a resume whose guest only read: its rate, and
	 * the MiB its swap-out wrote */
	double ro_gbps[64], ro_mib[64];
	unsigned nro;
};

/* The seconds of stage @name in @r (the last one of that name), or 0. */
static double stage_secs(const struct vmm_result *r, const char *name)
{
	for (unsigned i = r->nstages; i-- > 0;)
		if (!strcmp(r->stages[i].name, name))
			return r->stages[i].secs;
	return 0;
}

static int one_resume(const struct vmm_opts *base, const char *path, bool prefetch, bool read_only,
		      struct resume_runs *rr)
{
	struct vmm_opts o = *base;
	struct vmm_result *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	o.store = path;
	o.resume = true;
	o.hibernate = true;
	o.no_verify = true;
	o.no_prefetch = !prefetch;
	o.read_only = read_only;
	drop_cache(path);
	rc = vmm_resume(&o, r);
	if (!rc && r->wrong_pages)
		rc = -EPROTO;
	if (!rc && read_only && rr->nro < 64 && r->hibernate_ms > 0) {
		rr->ro_gbps[rr->nro] = (double)base->size / (r->hibernate_ms / 1e3) / 1e9;
		rr->ro_mib[rr->nro++] = (double)r->hibernate_bytes_written / (1 << 20);
	}
	if (!rc && !read_only && rr->n[prefetch] < 64) {
		unsigned i = rr->n[prefetch]++;

		rr->first_ms[prefetch][i] = r->resume_to_first_instruction_ms;
		rr->fault_ms[prefetch][i] = r->resume_to_first_fault_ms;
		rr->index_ms[prefetch][i] = r->resume_index_loaded_ms;
		rr->ws_ms[prefetch][i] = r->resume_to_hot_ms;
		rr->ws_faults[prefetch][i] = (double)r->resume_faults_hot;
		rr->slots_ms[prefetch][i] = r->ram_slots_ms;
	}
	/* How each first-instruction figure came about, step by step. */
	fprintf(stderr, "vswap-vm: bench resume steps (ms at end / wall / cpu / runq):");
	for (unsigned i = 0; i < r->nsteps; i++)
		fprintf(stderr, "%s %s.%s %.3f/%.3f/%.3f/%.3f", i ? ";" : "", r->steps[i].thread,
			r->steps[i].name, r->steps[i].at_ms, r->steps[i].ms, r->steps[i].cpu_ms,
			r->steps[i].runq_ms);
	fprintf(stderr, "\n");
	if (!rc && !read_only && r->hibernate_ms > 0 && rr->nrehib < 128)
		rr->rehib_gbps[rr->nrehib++] = (double)base->size / (r->hibernate_ms / 1e3) / 1e9;
	free(r);
	return rc;
}

static void size_name(uint64_t size, char *buf, size_t len)
{
	if (size >= (1ull << 30) && size % (1ull << 30) == 0)
		snprintf(buf, len, "%lluG", (unsigned long long)(size >> 30));
	else
		snprintf(buf, len, "%lluM", (unsigned long long)(size >> 20));
}

static int bench_size(const struct vmm_opts *base, const char *dir, uint64_t size, vmm_bench_fn add,
		      void *ctx)
{
	struct vmm_opts o = *base;
	struct vmm_result *r = calloc(1, sizeof(*r));
	struct resume_runs *rr = calloc(1, sizeof(*rr));
	char path[PATH_MAX], name[64], sz[16];
	double whole[64], bare_slot[64];
	unsigned nwhole = 0, nbare = 0;
	int rc = -ENOMEM;

	if (!r || !rr)
		goto out;
	size_name(size, sz, sizeof(sz));
	snprintf(path, sizeof(path), "%.3900s/bench-%s.swap", dir, sz);
	o.size = size;
	o.store = path;
	o.hibernate = true;
	rc = vmm_hibernate(&o, r);
	if (rc)
		goto out;
	/* The guest's RAM over the whole hibernation (the swap-out drops its
	 * zero pages, so fewer bytes reach the disk), beside writing that
	 * much. */
	double hib_s = r->hibernate_ms / 1e3, bytes = (double)size;
	double od = odirect_write(dir, size);

	double od_gbps = od > 0 ? bytes / od / 1e9 : 0, so_s = stage_secs(r, "swap-out");

	snprintf(name, sizeof(name), "hibernate_gbps_%s", sz);
	add(ctx, name, bytes / hib_s / 1e9, "GB/s", "odirect_write_gbps", od_gbps);
	snprintf(name, sizeof(name), "hibernate_swap_out_gbps_%s", sz);
	add(ctx, name, so_s > 0 ? (double)r->hibernated_pages * VM_PAGE / so_s / 1e9 : 0, "GB/s",
	    "odirect_write_gbps", od_gbps);
	for (unsigned run = 0; run < base->runs && !rc; run++) {
		double w = read_whole(path);

		if (w > 0 && nwhole < 64)
			whole[nwhole++] = w * 1e3;
		double bs;

		if (vm_bare_slot(size, &bs) == 0 && nbare < 64)
			bare_slot[nbare++] = bs;
		/* The first resume has no working set yet: it records one. */
		rc = one_resume(&o, path, false, false, rr);
		if (!rc)
			rc = one_resume(&o, path, true, false, rr);
		/* And one whose guest only reads before it hibernates again. */
		if (!rc)
			rc = one_resume(&o, path, true, true, rr);
	}
	if (rc)
		goto out;
	double all_first[128], all_fault[128], all_index[128], all_slots[128];
	unsigned nf = 0;

	for (unsigned p = 0; p < 2; p++)
		for (unsigned i = 0; i < rr->n[p]; i++) {
			all_first[nf] = rr->first_ms[p][i];
			all_fault[nf] = rr->fault_ms[p][i];
			all_slots[nf] = rr->slots_ms[p][i];
			all_index[nf++] = rr->index_ms[p][i];
		}
	double whole_ms = median(whole, nwhole);

	snprintf(name, sizeof(name), "rehibernate_gbps_%s", sz);
	add(ctx, name, median(rr->rehib_gbps, rr->nrehib), "GB/s", "odirect_write_gbps", od_gbps);
	snprintf(name, sizeof(name), "rehibernate_read_gbps_%s", sz);
	add(ctx, name, median(rr->ro_gbps, rr->nro), "GB/s", "odirect_write_gbps", od_gbps);
	snprintf(name, sizeof(name), "rehibernate_read_written_mib_%s", sz);
	add(ctx, name, median(rr->ro_mib, rr->nro), "MiB", "guest_ram_mib",
	    (double)size / (1 << 20));
	snprintf(name, sizeof(name), "resume_first_insn_ms_%s", sz);
	add(ctx, name, median(all_first, nf), "ms", "read_whole_image_ms", whole_ms);
	snprintf(name, sizeof(name), "resume_first_fault_ms_%s", sz);
	add(ctx, name, median(all_fault, nf), "ms", "read_whole_image_ms", whole_ms);
	snprintf(name, sizeof(name), "resume_ram_slots_ms_%s", sz);
	add(ctx, name, median(all_slots, nf), "ms", "bare_slot_ms", median(bare_slot, nbare));
	snprintf(name, sizeof(name), "resume_index_ms_%s", sz);
	add(ctx, name, median(all_index, nf), "ms", "read_whole_image_ms", whole_ms);
	snprintf(name, sizeof(name), "resume_ws_faults_%s", sz);
	add(ctx, name, median(rr->ws_faults[1], rr->n[1]), "faults", "no_prefetch_faults",
	    median(rr->ws_faults[0], rr->n[0]));
	snprintf(name, sizeof(name), "resume_ws_ms_%s", sz);
	add(ctx, name, median(rr->ws_ms[1], rr->n[1]), "ms", "no_prefetch_ms",
	    median(rr->ws_ms[0], rr->n[0]));
out : {
	struct vswap_store_opts so = {0};

	vswap_store_destroy(path, &so);
}
	free(r);
	free(rr);
	return rc;
}

/* ---- fault-in: vswap against a bare userfaultfd handler ---------------------- */

/* The CPU time of each of this process's threads whose name begins with one
 * of a list: /proc's schedstat, per thread id, so that a thread that starts
 * during a pass (an io_uring worker) counts from zero and none is subtracted
 * from another.  A thread that exits during the pass takes its time with it
 * (io-wq workers exit after seconds idle, not while a pass feeds them): the
 * figure can only fall short, never wrap. */
struct threads_cpu {
	unsigned n;
	struct {
		long tid;
		uint64_t ns;
	} t[256];
};

static void threads_cpu_read(const char *const *names, struct threads_cpu *out)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	out->n = 0;
	if (!d)
		return;
	while ((e = readdir(d)) && out->n < sizeof(out->t) / sizeof(out->t[0])) {
		char path[320], comm[32] = "";
		unsigned long long ns = 0;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		if (!(f = fopen(path, "re")))
			continue;
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
		bool match = false;
		for (const char *const *n = names; *n && !match; n++)
			match = strncmp(comm, *n, strlen(*n)) == 0;
		if (!match)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
		if (!(f = fopen(path, "re")))
			continue;
		if (fscanf(f, "%llu", &ns) == 1) {
			out->t[out->n].tid = strtol(e->d_name, NULL, 10);
			out->t[out->n++].ns = ns;
		}
		fclose(f);
	}
	closedir(d);
}

/* Nanoseconds the threads of @end ran since @start. */
static uint64_t threads_cpu_since(const struct threads_cpu *start, const struct threads_cpu *end)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < end->n; i++) {
		uint64_t was = 0;
		for (unsigned j = 0; j < start->n; j++)
			if (start->t[j].tid == end->t[i].tid)
				was = start->t[j].ns;
		if (end->t[i].ns > was)
			sum += end->t[i].ns - was;
	}
	return sum;
}

/* The guest's verify pass over RAM it does not have: pages per second, and
 * the CPU time per page of the threads named @servers. */
static int verify_pass(struct vmm *m, const char *const *servers, double *pps, double *p50,
		       double *cpu_us)
{
	vm_latency_reset(&m->vm);
	struct threads_cpu *c = malloc(2 * sizeof(*c)); /* before, after */

	if (!c)
		return -ENOMEM;
	threads_cpu_read(servers, &c[0]);
	uint64_t t0 = vm_now_ns();
	int rc = vmm_guest(m, VM_CMD_VERIFY, 0);

	if (rc == 0 && m->r->wrong_pages)
		rc = -EPROTO;
	if (rc == 0) {
		*pps = (double)m->pages / vmm_secs(t0);
		*p50 = vm_latency_us(&m->vm, 0.5);
		threads_cpu_read(servers, &c[1]);
		*cpu_us = (double)threads_cpu_since(&c[0], &c[1]) / 1e3 / (double)m->pages;
	}
	free(c);
	return rc;
}

static int faultin_vswap(const struct vmm_opts *base, const char *dir, double *pps, double *p50,
			 double *cpu_us)
{
	static const char *const servers[] = {"vswap-monitor", "iou-wrk", NULL};
	struct vmm_result *r = calloc(1, sizeof(*r));
	struct vmm m = {.o = base, .r = r, .memfd = -1};
	int rc;

	if (!r)
		return -ENOMEM;
	snprintf(r->path, sizeof(r->path), "%.3900s/faultin.swap", dir);
	if ((rc = vmm_memory(&m)) || (rc = vmm_machine(&m)) || (rc = vmm_store_new(&m)) ||
	    (rc = vmm_boot(&m)))
		goto out;
	m.vm.shared->version = 1;
	if ((rc = vmm_guest(&m, VM_CMD_WRITE, 0)))
		goto out;
	/* No trim: every page, zero or not, comes from the file, as for the
	 * bare handler. */
	rc = vswap_handler_enable(m.h);
	if (!rc)
		rc = vswap_handler_swap_out(m.h);
	if (!rc)
		rc = vmm_wait_state(&m, VSWAP_STATE_ACTIVE, "bench: swap-out");
	if (rc)
		goto out;
	drop_cache(r->path);
	rc = verify_pass(&m, servers, pps, p50, cpu_us);
out:
	vmm_teardown(&m, true);
	free(r);
	return rc;
}

static int faultin_bare(const struct vmm_opts *base, const char *dir, double *pps, double *p50,
			double *cpu_us)
{
	static const char *const servers[] = {BARE_THREAD_NAME, NULL};
	struct vmm_result *r = calloc(1, sizeof(*r));
	struct vmm m = {.o = base, .r = r, .memfd = -1};
	struct bare_uffd b = {.uffd = -1, .stop_fd = -1};
	char path[PATH_MAX];
	uint64_t *page = NULL;
	int rc, fd = -1;

	if (!r)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%.3900s/faultin.flat", dir);
	if ((rc = vmm_memory(&m)) || (rc = vmm_machine(&m)))
		goto out;
	/* The bytes the guest will expect: version 1 of every page. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || posix_memalign((void **)&page, 4096, VM_PAGE)) {
		rc = -errno;
		goto out;
	}
	for (uint64_t p = 0; p < m.pages; p++) {
		int zero = vm_zero_page(p, 1);

		for (uint64_t i = 0; i < VM_PAGE / 8; i++)
			page[i] = zero ? 0 : vm_word(p, 1, i);
		if (pwrite(fd, page, VM_PAGE, (off_t)(p * VM_PAGE)) != (ssize_t)VM_PAGE) {
			rc = -EIO;
			goto out;
		}
	}
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if ((rc = bare_start(&b, m.ram, m.ram_size, fd)) || (rc = vmm_boot(&m)))
		goto out;
	m.vm.shared->version = 1;
	rc = verify_pass(&m, servers, pps, p50, cpu_us);
out:
	if (m.vm_made)
		vm_destroy(&m.vm);
	m.vm_made = false;
	bare_stop(&b);
	vmm_teardown(&m, false);
	if (fd >= 0)
		close(fd);
	unlink(path);
	free(page);
	free(r);
	return rc;
}

static int bench_faultin(const struct vmm_opts *base, const char *dir, vmm_bench_fn add, void *ctx)
{
	struct vmm_opts o = *base;
	double v[64], bv[64], vl[64], bl[64], vc[64], bc[64];
	unsigned n = 0;
	int rc = 0;

	o.size = base->faultin_size;
	for (unsigned run = 0; run < base->runs && run < 64 && !rc; run++) {
		/* Alternate which goes first. */
		if (run % 2)
			rc = faultin_bare(&o, dir, &bv[n], &bl[n], &bc[n]);
		if (!rc)
			rc = faultin_vswap(&o, dir, &v[n], &vl[n], &vc[n]);
		if (!rc && !(run % 2))
			rc = faultin_bare(&o, dir, &bv[n], &bl[n], &bc[n]);
		if (!rc)
			n++;
	}
	if (rc)
		return rc;
	add(ctx, "faultin_pages_per_s", median(v, n), "pages/s", "bare_uffd_pages_per_s",
	    median(bv, n));
	add(ctx, "faultin_p50_us", median(vl, n), "us", "bare_uffd_p50_us", median(bl, n));
	add(ctx, "faultin_server_cpu_us", median(vc, n), "us", "bare_uffd_cpu_us", median(bc, n));
	return 0;
}

int vmm_bench(const struct vmm_opts *o, vmm_bench_fn add, void *ctx)
{
	char dir[PATH_MAX];
	int rc = 0;

	snprintf(dir, sizeof(dir), "%.3900s/vswap-vm-bench.XXXXXX", o->bench_dir);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "vswap-vm: bench directory under %s: %s\n", o->bench_dir,
			strerror(errno));
		return -errno;
	}
	for (unsigned i = 0; i < o->nbench_sizes && !rc; i++)
		rc = bench_size(o, dir, o->bench_sizes[i], add, ctx);
	if (!rc)
		rc = bench_faultin(o, dir, add, ctx);
	if (rc)
		fprintf(stderr, "vswap-vm: bench: %s\n", vswap_strerror(rc));
	rmdir(dir);
	return rc;
}

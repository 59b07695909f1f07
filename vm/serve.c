/* SPDX-License-Identifier: MIT */
/*
 * Who serves the guest's faults: a handler inside this process, or vswapd
 * (--vswapd SOCKET), reached through the client.  The flows call these and
 * never the handler or the client directly, so the cycles run the same
 * either way.
 *
 * Served by vswapd, the daemon may die and restart at any instant (the
 * client hands the guest over again; the vCPUs' faults wait in the kernel
 * meanwhile).  A command the restart interrupted is sent again by the
 * client and may then be answered as the resumed state requires: enable
 * after the enable happened is -EALREADY or -EINVAL, a swap-out the resume
 * already finished likewise.  Such an answer, after a restart seen during
 * the command, is the command done, and a wait for a state takes the state
 * the resumed guest rests in (a guest whose pages were all resident comes
 * back Ready).  Every such case is logged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vswap/client.h>

#include "util/array.h"
#include "vm/vmm_internal.h"

#define WAIT_STATE_MS 600000

/* The daemon's restarts so far; a new one's time to serving is kept. */
static uint64_t restarts(struct vmm *m)
{
	struct vswap_client_info in = {0};
	if (m->c)
		vswap_client_info(m->c, &in);
	if (in.reconnects > m->restarts_seen) {
		m->restarts_seen = in.reconnects;
		if (ARRAY_RESERVE(m->restart_us, m->cap_restart_us, m->nrestart_us + 1, 64))
			return in.reconnects; /* a sample less */
		m->restart_us[m->nrestart_us++] = in.last_reconnect_us;
	}
	return in.reconnects;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The restarts' figures into the result, the samples freed. */
static void restarts_report(struct vmm *m)
{
	restarts(m);
	struct vmm_result *r = m->r;
	r->vswapd_restarts = m->restarts_seen;
	r->restarts_sampled = m->nrestart_us;
	if (m->nrestart_us) {
		qsort(m->restart_us, m->nrestart_us, sizeof(uint64_t), cmp_u64);
		r->restart_p50_ms = (double)m->restart_us[m->nrestart_us / 2] / 1e3;
		r->restart_max_ms = (double)m->restart_us[m->nrestart_us - 1] / 1e3;
	}
	free(m->restart_us);
	m->restart_us = NULL;
	m->nrestart_us = m->cap_restart_us = 0;
}

/* @rc of command @what: a refusal is the resumed state's answer when the
 * daemon restarted since the cycle began (a restart that resumed the guest
 * Ready makes the rest of the cycle's commands refused, and the cycle goes
 * on with the guest resident). */
static int after_restart(struct vmm *m, const char *what, int rc)
{
	if (!m->c || !rc)
		return rc;
	if ((rc == -EALREADY || rc == -EINVAL || rc == -EBUSY) &&
	    restarts(m) > m->restarts_at_cycle) {
		fprintf(stderr,
			"vswap-vm: %s: vswapd restarted meanwhile; the resumed guest says %s\n",
			what, vswap_strerror(rc));
		return 0;
	}
	return rc;
}

static void client_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	(void)ctx;
	fprintf(stderr, "vswap-vm: vswapd client: %s: %s\n",
		names[lvl <= VSWAP_LOG_DEBUG ? lvl : 0], msg);
}

int vmm_serve_vswapd(struct vmm *m)
{
	struct vswap_client_opts co = {.store_path = m->r->path,
				       .durability = m->o->durability,
				       .enable_mode = m->o->enable_mode,
				       .log = client_log,
				       .log_level = VSWAP_LOG_WARN};
	int rc = vswap_uffd_create(&m->uffd);
	if (rc) {
		fprintf(stderr, "vswap-vm: userfaultfd: %s\n", vswap_strerror(rc));
		return rc;
	}
	m->have_uffd = true;
	rc = vswap_client_connect(m->o->vswapd, &co, &m->c);
	if (rc) {
		fprintf(stderr, "vswap-vm: connect to vswapd at %s: %s\n", m->o->vswapd,
			vswap_strerror(rc));
		m->c = NULL;
		return rc;
	}
	struct vswap_region reg = {.addr = m->ram, .len = m->ram_size, .memfd = m->memfd};
	rc = vswap_client_attach(m->c, &reg, 1, m->uffd);
	if (rc) {
		fprintf(stderr, "vswap-vm: hand the guest to vswapd: %s\n", vswap_strerror(rc));
		vswap_client_detach(m->c);
		m->c = NULL;
	}
	return rc;
}

int vmm_unserve(struct vmm *m)
{
	int rc = 0;
	if (m->h)
		rc = vswap_handler_destroy(m->h);
	m->h = NULL;
	if (m->c) {
		restarts_report(m);
		rc = vswap_client_exit(m->c);
		if (rc)
			fprintf(stderr, "vswap-vm: vswapd exit: %s\n", vswap_strerror(rc));
	}
	m->c = NULL;
	if (m->have_uffd)
		close(m->uffd);
	m->have_uffd = false;
	return rc;
}

int vmm_enable(struct vmm *m)
{
	if (!m->c)
		return vswap_handler_enable(m->h);
	return after_restart(m, "enable", vswap_client_enable(m->c));
}

int vmm_trim(struct vmm *m)
{
	if (!m->c)
		return vswap_handler_trim(m->h);
	return after_restart(m, "trim", vswap_client_trim(m->c));
}

int vmm_swap_out(struct vmm *m)
{
	if (!m->c)
		return vswap_handler_swap_out(m->h);
	return after_restart(m, "swap-out", vswap_client_swap_out(m->c));
}

int vmm_disable(struct vmm *m)
{
	if (!m->c)
		return vswap_handler_disable(m->h, false);
	return after_restart(m, "disable", vswap_client_disable(m->c, false));
}

int vmm_discard(struct vmm *m, void *addr, size_t len)
{
	/* In process, the REMOVE event is enough (the handler dies with this
	 * process).  Through vswapd it is not: a daemon killed after reading
	 * the event and before committing it would serve the old bytes. */
	if (!m->c)
		return 0;
	int rc = vswap_client_discard(m->c, addr, len);
	if (rc)
		fprintf(stderr, "vswap-vm: vswapd discard: %s\n", vswap_strerror(rc));
	return rc;
}

int vmm_status(struct vmm *m)
{
	int rc = m->c ? vswap_client_status(m->c, &m->r->status)
		      : vswap_handler_status(m->h, &m->r->status);
	if (m->c)
		restarts(m); /* a look at the restarts too */

	if (!rc &&
	    vswap_status_to_json(&m->r->status, m->r->status_json, sizeof(m->r->status_json)) < 0)
		snprintf(m->r->status_json, sizeof(m->r->status_json), "null");
	return rc;
}

static bool resting(enum vswap_state st)
{
	return st == VSWAP_STATE_READY || st == VSWAP_STATE_PENDING || st == VSWAP_STATE_ACTIVE;
}

/* Through vswapd: waits of at most a minute each (the protocol's bound),
 * a restart's resting state taken for the one waited for. */
static int wait_vswapd(struct vmm *m, enum vswap_state st, uint64_t since)
{
	uint64_t t0 = vm_now_ns();
	for (;;) {
		int rc = vswap_client_wait_state(m->c, st, 1000);
		if (rc != -ETIMEDOUT)
			return rc;
		if (vmm_status(m) == 0 && resting(m->r->status.state) && restarts(m) > since &&
		    (st != VSWAP_STATE_READY || m->r->status.state == VSWAP_STATE_READY)) {
			fprintf(stderr,
				"vswap-vm: waiting for %s: vswapd restarted meanwhile; the "
				"resumed guest rests %s\n",
				vswap_state_name(st), vswap_state_name(m->r->status.state));
			return 0;
		}
		if (vmm_secs(t0) * 1000 > WAIT_STATE_MS)
			return -ETIMEDOUT;
	}
}

int vmm_wait_state(struct vmm *m, enum vswap_state st, const char *what)
{
	int rc = m->c ? wait_vswapd(m, st, m->restarts_at_cycle)
		      : vswap_handler_wait_state(m->h, st, WAIT_STATE_MS);

	vmm_status(m);
	if (rc || (m->r->status.state != st && !m->c)) {
		fprintf(stderr, "vswap-vm: %s: waiting for %s: %s (state %s, last error %s)\n",
			what, vswap_state_name(st), vswap_strerror(rc ? rc : -EPROTO),
			vswap_state_name(m->r->status.state),
			vswap_strerror(m->r->status.last_error));
		return rc ? rc : -EPROTO;
	}
	return 0;
}

void vmm_cycle_begins(struct vmm *m)
{
	m->restarts_at_cycle = restarts(m);
}

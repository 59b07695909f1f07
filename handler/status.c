/* SPDX-License-Identifier: MIT */
/* Status, metrics, waiting for a state, and the JSON form. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "handler/internal.h"

const char *vswap_state_name(enum vswap_state st)
{
	switch (st) {
	case VSWAP_STATE_READY:
		return "Ready";
	case VSWAP_STATE_FAILED:
		return "Failed";
	case VSWAP_STATE_PENDING:
		return "Pending";
	case VSWAP_STATE_TRIM_IN_PROGRESS:
		return "TrimInProgress";
	case VSWAP_STATE_SWAP_OUT_IN_PROGRESS:
		return "SwapOutInProgress";
	case VSWAP_STATE_ACTIVE:
		return "Active";
	case VSWAP_STATE_SWAP_IN_IN_PROGRESS:
		return "SwapInInProgress";
	}
	return "Unknown";
}

int vswap_handler_status(struct vswap_handler *h, struct vswap_status *out)
{
	if (!h || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	struct vswap_metrics *mt = &out->metrics;
	mt->resident_pages = regions_resident_pages(h);
	struct vswap_store_stats st;
	pthread_mutex_lock(&h->lock);
	int rc = vswap_store_stats(h->store, &st);
	struct counters c = h->c;
	uint64_t nclean = h->wp.nclean, dirtied = h->wp.dirtied;
	pthread_mutex_lock(&h->slock);
	out->state = h->state;
	out->transition = h->trans;
	out->last_error = h->last_error;
	pthread_mutex_unlock(&h->slock);
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		return rc;
	out->uffds = atomic_load(&h->nuffds);
	out->enable_mode = h->wp.on ? VSWAP_ENABLE_PROTECT : VSWAP_ENABLE_COPY;
	mt->checksum_failures = st.checksum_failures;
	mt->poisoned_pages = c.poisoned;
	mt->bytes_written = st.bytes_written;
	mt->bytes_read = st.bytes_read;
	mt->commits = st.commits;
	if (out->state == VSWAP_STATE_READY)
		return 0;
	mt->copied_from_file_pages = c.from_file;
	mt->copied_from_staging_pages = c.from_staging;
	mt->zeroed_pages = c.zeroed;
	mt->redundant_pages = c.redundant;
	mt->staging_pages = st.pages_staged;
	mt->swap_pages = st.pages_present;
	mt->protected_pages = nclean;
	mt->dirtied_pages = dirtied;
	return 0;
}

int vswap_handler_wait_state(struct vswap_handler *h, enum vswap_state want, int timeout_ms)
{
	if (!h)
		return -EINVAL;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	int rc = 0;
	pthread_mutex_lock(&h->slock);
	while (h->state != want && rc == 0) {
		if (timeout_ms < 0)
			pthread_cond_wait(&h->scond, &h->slock);
		else
			rc = pthread_cond_timedwait(&h->scond, &h->slock, &until);
	}
	bool ok = h->state == want;
	pthread_mutex_unlock(&h->slock);
	return ok ? 0 : -ETIMEDOUT;
}

int vswap_handler_page_info(struct vswap_handler *h, uint64_t page, struct vswap_page_info *out)
{
	if (!h || !out)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	int rc = vswap_store_page(h->store, page, out);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int vswap_status_to_json(const struct vswap_status *s, char *buf, size_t len)
{
	if (!s || (!buf && len))
		return -EINVAL;
	const struct vswap_metrics *m = &s->metrics;
	return snprintf(
	    buf, len,
	    "{\"state\":\"%s\",\"metrics\":{\"resident_pages\":%llu,"
	    "\"copied_from_file_pages\":%llu,\"copied_from_staging_pages\":%llu,"
	    "\"zeroed_pages\":%llu,\"redundant_pages\":%llu,\"staging_pages\":%llu,"
	    "\"swap_pages\":%llu,\"checksum_failures\":%llu,\"poisoned_pages\":%llu,"
	    "\"bytes_written\":%llu,\"bytes_read\":%llu,\"commits\":%llu,"
	    "\"protected_pages\":%llu,\"dirtied_pages\":%llu},"
	    "\"state_transition\":{\"pages\":%llu,\"time_ms\":%llu},"
	    "\"last_error\":%d,\"uffds\":%u,\"enable_mode\":\"%s\"}",
	    vswap_state_name(s->state), (unsigned long long)m->resident_pages,
	    (unsigned long long)m->copied_from_file_pages,
	    (unsigned long long)m->copied_from_staging_pages, (unsigned long long)m->zeroed_pages,
	    (unsigned long long)m->redundant_pages, (unsigned long long)m->staging_pages,
	    (unsigned long long)m->swap_pages, (unsigned long long)m->checksum_failures,
	    (unsigned long long)m->poisoned_pages, (unsigned long long)m->bytes_written,
	    (unsigned long long)m->bytes_read, (unsigned long long)m->commits,
	    (unsigned long long)m->protected_pages, (unsigned long long)m->dirtied_pages,
	    (unsigned long long)s->transition.pages, (unsigned long long)s->transition.time_ms,
	    s->last_error, s->uffds, vswap_enable_mode_name(s->enable_mode));
}

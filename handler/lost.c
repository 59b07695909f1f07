/* SPDX-License-Identifier: MIT */
/*
 * Lost pages (their bytes failed verification or are gone): never served,
 * never missed.  While the regions are registered a fault on one is
 * poisoned; after a swap-in every live uffd carries a poison marker for it
 * (swap_in.c), and a uffd added later gets them too (here).  The embedding
 * VMM can list them, sees them in the status JSON, and destroy and detach
 * return -EBADMSG while any exist.  Also here: the discard a VMM makes when
 * it frees guest memory by punching its memfd, which the kernel reports to
 * no uffd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handler/internal.h"

int vswap_handler_lost_pages(struct vswap_handler *h, uint64_t *pages, size_t cap, uint64_t *count)
{
	if (!h || !count || (cap && !pages))
		return -EINVAL;
	uint64_t n = 0;
	pthread_mutex_lock(&h->lock);
	struct vswap_store_stats st;
	int rc = vswap_store_stats(h->store, &st);
	for (uint64_t p = 0; rc == 0 && n < st.pages_lost && p < h->total_pages; p++) {
		struct vswap_page_info pi;
		if (vswap_store_page(h->store, p, &pi) != 0 || pi.state != VSWAP_PAGE_LOST)
			continue;
		if (n < cap)
			pages[n] = p;
		n++;
	}
	pthread_mutex_unlock(&h->lock);
	*count = n;
	return rc;
}

uint64_t lost_count(struct vswap_handler *h)
{
	struct vswap_store_stats st;
	pthread_mutex_lock(&h->lock);
	int rc = vswap_store_stats(h->store, &st);
	pthread_mutex_unlock(&h->lock);
	return rc == 0 ? st.pages_lost : 0;
}

/* Whether page @p of region @r has its bytes in the memfd. */
static bool page_resident(const struct vswap_handler *h, const struct hregion *r, uint64_t p)
{
	off_t off = r->offset + (off_t)((p - r->first) << h->page_shift);
	return lseek(r->memfd, off, SEEK_DATA) == off;
}

/*
 * A uffd added while the regions are not registered: its process maps the
 * guest's memory too, and there a lost page that is a hole of the memfd
 * reads as zeros.  Poison those holes through it (a poison marker outlives
 * the registration), on the monitor.  Two things it must not do:
 *   - poison a lost page resident in the memfd: those bytes are the
 *     guest's own (a resume gives the page back), and the kernel's poison
 *     refuses only a mapped page-table entry, not a page of the memfd that
 *     process has not mapped yet: it would hide them behind SIGBUS;
 *   - unregister a range that was registered on this very uffd before (a
 *     dead handler's, vswapd restarting; the resume follows): until the
 *     resume registered it again, that process's next fault on a
 *     swapped-out page would map a zero page.
 * So the range (at @bases, that process's region addresses; NULL: the
 * handler's own) is registered only if a poison finds it unregistered
 * (-ENOENT), and unregistered again only then.
 */
int lost_poison_uffd(struct vswap_handler *h, int fd, const uintptr_t *bases)
{
	if (!lost_count(h))
		return 0;
	bool registered_here = false;
	uint64_t poisoned = 0;
	int rc = 0;
	pthread_mutex_lock(&h->lock);
	for (uint64_t p = 0; p < h->total_pages && rc >= 0; p++) {
		struct vswap_page_info pi;
		if (vswap_store_page(h->store, p, &pi) != 0 || pi.state != VSWAP_PAGE_LOST)
			continue;
		const struct hregion *r = region_of_page(h, p);
		if (page_resident(h, r, p))
			continue;
		uintptr_t start = bases ? bases[r - h->regions] : r->start; /* in @fd's process */
		uintptr_t addr = start + ((p - r->first) << h->page_shift);
		rc = uffd_poison(fd, addr, h->page_size, false);
		if (rc == -ENOENT && !registered_here) {
			rc = regions_register(h, fd, bases);
			registered_here = rc == 0;
			if (rc == 0)
				rc = uffd_poison(fd, addr, h->page_size, false);
		}
		if (rc == 0)
			poisoned++;
		if (rc == -EEXIST || rc == -ENOENT) /* poisoned or filled already; not mapped */
			rc = 0;
	}
	pthread_mutex_unlock(&h->lock);
	int urc = registered_here ? regions_unregister(h, fd, bases) : 0;
	if (rc < 0)
		hlog(h, VSWAP_LOG_ERROR, "poisoning lost pages through an added uffd: %s",
		     vswap_strerror(rc));
	else if (poisoned)
		hlog(h, VSWAP_LOG_WARN, "%llu lost pages poisoned through an added uffd",
		     (unsigned long long)poisoned);
	return rc < 0 ? rc : urc;
}

int lost_discard(struct vswap_handler *h, uintptr_t start, uintptr_t end)
{
	int rc = remove_range(h, start, end);
	if (rc == -EFAULT)
		hlog(h, VSWAP_LOG_WARN, "discard %#lx-%#lx: outside every region",
		     (unsigned long)start, (unsigned long)end);
	return rc < 0 ? rc : 0;
}

int vswap_handler_discard(struct vswap_handler *h, void *addr, size_t len)
{
	if (!h || len == 0)
		return -EINVAL;
	uintptr_t start = (uintptr_t)addr;
	if ((start | len) & (h->page_size - 1) || start + len < start)
		return -EINVAL;
	struct cmd c = {.type = CMD_DISCARD, .start = start, .end = start + len};
	return cmd_submit(h, &c);
}

int vswap_handler_status_json(struct vswap_handler *h, char *buf, size_t len)
{
	enum { LIST_MAX = 64 };
	struct vswap_status st;
	uint64_t lost[LIST_MAX], n = 0;
	int rc;
	if (!h || (!buf && len))
		return -EINVAL;
	if ((rc = vswap_handler_status(h, &st)) < 0 ||
	    (rc = vswap_handler_lost_pages(h, lost, LIST_MAX, &n)) < 0)
		return rc;
	int base = vswap_status_to_json(&st, NULL, 0);
	if (base < 2)
		return base < 0 ? base : -EINVAL;
	char *doc = malloc((size_t)base + 1);
	if (!doc)
		return -ENOMEM;
	vswap_status_to_json(&st, doc, (size_t)base + 1);
	doc[base - 1] = '\0'; /* its closing brace: the lost pages go before it */
	size_t cap = (size_t)base + 64 + 24 * LIST_MAX;
	char *out = malloc(cap);
	if (!out) {
		free(doc);
		return -ENOMEM;
	}
	size_t k = (size_t)snprintf(out, cap, "%s,\"lost_pages\":%llu,\"lost\":[", doc,
				    (unsigned long long)n);
	for (uint64_t i = 0; i < n && i < LIST_MAX; i++)
		k += (size_t)snprintf(out + k, cap - k, "%s%llu", i ? "," : "",
				      (unsigned long long)lost[i]);
	k += (size_t)snprintf(out + k, cap - k, "],\"lost_listed_all\":%s}",
			      n <= LIST_MAX ? "true" : "false");
	int ret = snprintf(buf, len, "%s", out);
	free(out);
	free(doc);
	return ret;
}

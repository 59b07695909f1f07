/* SPDX-License-Identifier: MIT */
/* userfaultfd wrapper: see uffd.h for the error mapping. */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vswap/handler.h>

#include "handler/uffd.h"

/* /dev/userfaultfd first: it works where vm.unprivileged_userfaultfd = 0
 * forbids the syscall to a process without CAP_SYS_PTRACE. */
static int uffd_new_fd(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		int fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		int err = errno;
		close(dev);
		if (fd >= 0)
			return fd;
		errno = err;
	}
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd >= 0 ? fd : -errno;
}

static int uffd_api(int fd, uint64_t want, uint64_t *got)
{
	struct uffdio_api api = {.api = UFFD_API, .features = want};
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	if (got)
		*got = api.features;
	return 0;
}

int uffd_open(int *out_fd, uint64_t *features)
{
	/* UFFDIO_API may be called once per uffd, so a first uffd only asks
	 * what the kernel supports; the second one requests it. */
	int probe = uffd_new_fd();
	if (probe < 0)
		return probe;
	uint64_t supported = 0;
	int rc = uffd_api(probe, 0, &supported);
	close(probe);
	if (rc < 0)
		return rc;
	if ((supported & UFFD_WANTED_FEATURES) != UFFD_WANTED_FEATURES)
		return -EOPNOTSUPP;
	uint64_t want = UFFD_WANTED_FEATURES | (supported & UFFD_OPTIONAL_FEATURES);
	int fd = uffd_new_fd();
	if (fd < 0)
		return fd;
	rc = uffd_api(fd, want, NULL);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	if (features)
		*features = want;
	*out_fd = fd;
	return 0;
}

int vswap_uffd_create(int *out_fd)
{
	return uffd_open(out_fd, NULL);
}

int uffd_register_mode(int fd, uintptr_t addr, size_t len, bool wp)
{
	struct uffdio_register reg = {
	    .range = {.start = addr, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0),
	};
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		return errno == ENOMEM ? -ESRCH : -errno;
	/* A mapping that cannot be served by COPY/ZEROPAGE is a caller bug. */
	uint64_t need =
	    (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE) | (1ULL << _UFFDIO_WAKE);
	if (wp)
		need |= 1ULL << _UFFDIO_WRITEPROTECT;
	if ((reg.ioctls & need) != need) {
		uffd_unregister(fd, addr, len);
		return -EOPNOTSUPP;
	}
	return 0;
}

int uffd_register(int fd, uintptr_t addr, size_t len)
{
	return uffd_register_mode(fd, addr, len, false);
}

int uffd_writeprotect(int fd, uintptr_t addr, size_t len, bool protect, bool wake)
{
	struct uffdio_writeprotect w = {
	    .range = {.start = addr, .len = len},
	    /* The kernel refuses DONTWAKE with WP: protecting never wakes. */
	    .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP
			    : (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
	};
	/* ESRCH: the process is gone; ENOMEM here is a page-table allocation. */
	return ioctl(fd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

int uffd_unregister(int fd, uintptr_t addr, size_t len)
{
	struct uffdio_range r = {.start = addr, .len = len};
	if (ioctl(fd, UFFDIO_UNREGISTER, &r) < 0)
		return errno == ENOMEM ? -ESRCH : -errno;
	return 0;
}

int uffd_copy(int fd, uintptr_t dst, const void *src, size_t len, bool wake, size_t *done)
{
	size_t off = 0;
	int rc = 0;
	while (off < len) {
		struct uffdio_copy c = {
		    .dst = dst + off,
		    .src = (uintptr_t)src + off,
		    .len = len - off,
		    .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE,
		};
		if (ioctl(fd, UFFDIO_COPY, &c) == 0) {
			off = len;
			break;
		}
		rc = -errno;
		/* A partial copy reports the bytes done; continue after them. */
		if (c.copy > 0) {
			off += (size_t)c.copy;
			rc = 0;
			continue;
		}
		break;
	}
	if (done)
		*done = off;
	return rc;
}

int uffd_zeropage(int fd, uintptr_t dst, size_t len, bool wake)
{
	struct uffdio_zeropage z = {
	    .range = {.start = dst, .len = len},
	    .mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE,
	};
	return ioctl(fd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
}

int uffd_poison(int fd, uintptr_t dst, size_t len, bool wake)
{
	struct uffdio_poison p = {
	    .range = {.start = dst, .len = len},
	    .mode = wake ? 0 : UFFDIO_POISON_MODE_DONTWAKE,
	};
	if (ioctl(fd, UFFDIO_POISON, &p) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	/* A write-protected range keeps a uffd-wp marker where a page was
	 * removed, and POISON (unlike COPY) refuses any entry but an empty
	 * one.  The page has no copy in memory (it is being poisoned because
	 * none can be served), so un-protecting only drops the marker; an
	 * entry that is really there keeps failing with EEXIST. */
	if (uffd_writeprotect(fd, dst, len, false, false) < 0)
		return -EEXIST;
	p.updated = 0;
	return ioctl(fd, UFFDIO_POISON, &p) < 0 ? -errno : 0;
}

int uffd_wake(int fd, uintptr_t addr, size_t len)
{
	struct uffdio_range r = {.start = addr, .len = len};
	return ioctl(fd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

int uffd_read_events(int fd, struct uffd_msg *msgs, int max)
{
	ssize_t n = read(fd, msgs, sizeof(*msgs) * (size_t)max);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	return (int)(n / (ssize_t)sizeof(*msgs));
}

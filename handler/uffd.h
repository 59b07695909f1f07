/* SPDX-License-Identifier: MIT */
/*
 * Thin userfaultfd wrapper: creation, registration and the resolving ioctls,
 * with the kernel's errors mapped to what the handler acts on.
 *   -ESRCH   the uffd's process is gone ("closed"): skip it, never fatal
 *   -EEXIST  the page is already there (another thread, process or the
 *            background swap-in filled it): wake the waiters
 *   -EAGAIN  a REMOVE event is queued but unread: read events, then retry
 */
#ifndef VSWAP_HANDLER_UFFD_H
#define VSWAP_HANDLER_UFFD_H

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Debian 12's headers are Linux 6.1; UFFDIO_POISON came with 6.6. */
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif
/* Write protection on shmem came with 5.19; guarded for older headers. */
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

/* Features the handler asks for; POISON and write protection on shmem
 * (the protect enable mode) only when the kernel has them. */
#define UFFD_WANTED_FEATURES (UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_EVENT_REMOVE)
#define UFFD_OPTIONAL_FEATURES (UFFD_FEATURE_POISON | UFFD_FEATURE_WP_HUGETLBFS_SHMEM)

/*
 * Create a non-blocking, close-on-exec uffd (through /dev/userfaultfd, else
 * the syscall) with the wanted features plus the optional ones the kernel
 * offers (UFFDIO_API at run time, not the headers' view).  The
 * features granted go to *features (may be NULL).
 */
int uffd_open(int *out_fd, uint64_t *features);

/* Register for MISSING faults (the dead-uffd checker page, copy mode). */
int uffd_register(int fd, uintptr_t addr, size_t len);
/* Register for MISSING and, with @wp, write-protect faults (protect mode);
 * -EOPNOTSUPP if the range cannot be write-protected. */
int uffd_register_mode(int fd, uintptr_t addr, size_t len, bool wp);
/* Write-protect (@protect) or un-protect [addr, addr+len) in the uffd's
 * page tables.  Un-protecting wakes the writers waiting there unless
 * @wake is false; protecting never wakes. */
int uffd_writeprotect(int fd, uintptr_t addr, size_t len, bool protect, bool wake);
int uffd_unregister(int fd, uintptr_t addr, size_t len);

/* Copy @len bytes from @src to @dst, retrying partial copies.  *done gets
 * the bytes copied before an error (may be NULL). */
int uffd_copy(int fd, uintptr_t dst, const void *src, size_t len, bool wake, size_t *done);
int uffd_zeropage(int fd, uintptr_t dst, size_t len, bool wake);
int uffd_poison(int fd, uintptr_t dst, size_t len, bool wake);
int uffd_wake(int fd, uintptr_t addr, size_t len);

/* Read up to @max events: the count, 0 when none is queued, or -errno. */
int uffd_read_events(int fd, struct uffd_msg *msgs, int max);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The baseline of vswap-vm --bench's fault-in figure: the barest
 * userfaultfd handler that can serve a guest from a file.  One thread reads
 * each fault, preads the page from a flat image file (page p at byte
 * p * 4096) and answers with one UFFDIO_COPY: no index, no checksum, no
 * staging, no state machine.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vm/bare.h"

static void *bare_main(void *arg)
{
	struct bare_uffd *b = arg;
	struct pollfd pf[2] = {{.fd = b->uffd, .events = POLLIN},
			       {.fd = b->stop_fd, .events = POLLIN}};

	/* Named so vswap-vm --bench finds its CPU time (vm/bench.c). */
	pthread_setname_np(pthread_self(), BARE_THREAD_NAME);

	for (;;) {
		struct uffd_msg msg;

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		if (read(b->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t addr = msg.arg.pagefault.address & ~(uint64_t)(BARE_PAGE - 1);
		uint64_t off = addr - (uint64_t)(uintptr_t)b->ram;

		if (pread(b->file_fd, b->buf, BARE_PAGE, (off_t)off) != BARE_PAGE)
			memset(b->buf, 0, BARE_PAGE);
		struct uffdio_copy c = {
		    .dst = addr, .src = (uint64_t)(uintptr_t)b->buf, .len = BARE_PAGE};

		if (ioctl(b->uffd, UFFDIO_COPY, &c) == 0)
			b->served++;
	}
	return NULL;
}

int bare_start(struct bare_uffd *b, void *ram, uint64_t len, int file_fd)
{
	struct uffdio_api api = {.api = UFFD_API};
	int rc;

	memset(b, 0, sizeof(*b));
	b->ram = ram;
	b->len = len;
	b->file_fd = file_fd;
	b->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	b->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (b->uffd < 0 || b->stop_fd < 0 || ioctl(b->uffd, UFFDIO_API, &api) < 0)
		goto fail;
	struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)ram, .len = len},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};

	if (ioctl(b->uffd, UFFDIO_REGISTER, &reg) < 0 ||
	    posix_memalign(&b->buf, BARE_PAGE, BARE_PAGE))
		goto fail;
	rc = pthread_create(&b->thread, NULL, bare_main, b);
	if (rc) {
		errno = rc;
		goto fail;
	}
	b->running = true;
	return 0;
fail:
	rc = -errno;
	bare_stop(b);
	return rc;
}

void bare_stop(struct bare_uffd *b)
{
	if (b->running) {
		uint64_t one = 1;

		if (write(b->stop_fd, &one, sizeof(one)) == sizeof(one))
			pthread_join(b->thread, NULL);
		b->running = false;
	}
	if (b->uffd >= 0)
		close(b->uffd);
	if (b->stop_fd >= 0)
		close(b->stop_fd);
	b->uffd = b->stop_fd = -1;
	free(b->buf);
	b->buf = NULL;
}

/* SPDX-License-Identifier: MIT */
/*
 * Who holds a store's flock: /proc/locks lists every lock as
 *   "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
 * with the owner's PID and the file's major:minor:inode.  Matching the
 * inode tells vswap-fsck which process to name when it refuses a repair,
 * without taking (even briefly) the lock a handler may be about to take.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "recovery/internal.h"

/* Parse one /proc/locks line; 1 if it is a flock on (maj, min, ino). */
static int lock_line_matches(const char *line, unsigned maj, unsigned min, unsigned long ino,
			     pid_t *pid)
{
	char type[16], mode[16], rw[16];
	unsigned lmaj, lmin;
	unsigned long lino;
	int lpid;
	const char *p = strchr(line, ':');

	if (!p)
		return 0;
	p++;
	while (*p == ' ')
		p++;
	if (!strncmp(p, "->", 2)) /* a waiter, not the holder */
		return 0;
	if (sscanf(p, "%15s %15s %15s %d %x:%x:%lu", type, mode, rw, &lpid, &lmaj, &lmin, &lino) !=
	    7)
		return 0;
	if (strcmp(type, "FLOCK") || lmaj != maj || lmin != min || lino != ino)
		return 0;
	*pid = lpid > 0 ? (pid_t)lpid : 0;
	return 1;
}

int vswap_lock_holder(const char *path, pid_t *pid)
{
	struct stat st;
	char line[512];
	FILE *fp;
	int found = 0;

	if (stat(path, &st) != 0)
		return -errno;
	fp = fopen("/proc/locks", "re");
	if (!fp)
		return -errno;
	while (!found && fgets(line, sizeof(line), fp))
		found = lock_line_matches(line, major(st.st_dev), minor(st.st_dev),
					  (unsigned long)st.st_ino, pid);
	fclose(fp);
	return found;
}

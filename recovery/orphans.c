/* SPDX-License-Identifier: MIT */
/*
 * Staging files that no store refers to.  The staging directory is shared
 * (/dev/shm), so this pass is careful about what it touches: only names of
 * the form vswap-<uuid>.staging (the store's naming), only regular files
 * owned by us (never through a symlink), never our own store's file, never
 * a file that any process has open or mapped (a live handler), and never a
 * file modified in the last ORPHAN_MIN_AGE_S seconds (a store being created
 * or closed).  An orphan that holds no bytes loses nothing when removed
 * (-p); one that holds bytes is removed only by -y, and only when its
 * store is proven gone (see judge_owner()).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "recovery/internal.h"

#define ORPHAN_MIN_AGE_S 60

/* Does /proc/PID/maps map (dev, ino)? */
static bool maps_mention(const char *pid, dev_t dev, ino_t ino)
{
	char path[300], line[512];
	FILE *fp;
	bool found = false;

	snprintf(path, sizeof(path), "/proc/%s/maps", pid);
	fp = fopen(path, "re");
	if (!fp)
		return false;
	while (!found && fgets(line, sizeof(line), fp)) {
		unsigned maj, min;
		unsigned long long lino;

		if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &lino) == 3)
			found = lino == (unsigned long long)ino && makedev(maj, min) == dev;
	}
	fclose(fp);
	return found;
}

/* Does any fd of /proc/PID refer to (dev, ino)? */
static bool fds_mention(const char *pid, dev_t dev, ino_t ino)
{
	char path[300];
	struct dirent *d;
	DIR *dir;
	bool found = false;

	snprintf(path, sizeof(path), "/proc/%s/fd", pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (d = readdir(dir))) {
		struct stat st;

		if (d->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(dir), d->d_name, &st, 0) == 0)
			found = st.st_dev == dev && st.st_ino == ino;
	}
	closedir(dir);
	return found;
}

/* Whether any process (including this one) has the file open or mapped. */
static bool file_in_use(dev_t dev, ino_t ino)
{
	struct dirent *d;
	DIR *proc = opendir("/proc");
	bool found = false;

	if (!proc)
		return true; /* cannot tell: assume the worst */
	while (!found && (d = readdir(proc))) {
		if (!isdigit((unsigned char)d->d_name[0]))
			continue;
		found = fds_mention(d->d_name, dev, ino) || maps_mention(d->d_name, dev, ino);
	}
	closedir(proc);
	return found;
}

static bool holds_bytes(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	bool data;

	if (fd < 0)
		return true;
	data = lseek(fd, 0, SEEK_DATA) >= 0;
	close(fd);
	return data;
}

enum owner_verdict {
	OWNER_UNKNOWN,	  /* no owner link: cannot prove the file is unwanted */
	OWNER_UNVERIFIED, /* the named swap file exists but its superblock cannot
			   * be read or verified: a damaged store, not an orphan */
	OWNER_ALIVE,	  /* the named swap file exists and has this UUID */
	OWNER_GONE,	  /* the named swap file does not exist, or is a valid
			   * store with another UUID */
};

/*
 * The store writes its swap file's path into the staging file's
 * VSWAP_STAGING_OWNER_XATTR.  The owner is alive when that file's superblock
 * carries the UUID in the staging file's name: a closed store's staging
 * file is then never taken for an orphan.  The owner is gone only on proof:
 * the path does not exist (ENOENT), or it holds a valid superblock with
 * another UUID.  Anything else (unreadable, truncated, bad checksum, unknown
 * version) may be a damaged store whose only copy of its staged pages is
 * this file: OWNER_UNVERIFIED, and @why says what failed.
 */
static enum owner_verdict judge_owner(int dirfd, const char *name, char *owner, size_t olen,
				      const char **why)
{
	uint8_t uuid[16];
	char owner_uuid[37], name_uuid[37];
	ssize_t n;
	int fd, sfd, ret;

	*why = NULL;
	owner[0] = '\0';
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return OWNER_UNKNOWN;
	n = fgetxattr(fd, VSWAP_STAGING_OWNER_XATTR, owner, olen - 1);
	close(fd);
	if (n <= 0) {
		owner[0] = '\0';
		return OWNER_UNKNOWN;
	}
	owner[n] = '\0';
	/* The owner path is whatever the xattr says: it may be a FIFO now. */
	sfd = fsck_open_regular(owner, AT_FDCWD, why);
	if (sfd < 0) {
		if (sfd == -ENOENT)
			return OWNER_GONE;
		if (!*why)
			*why = strerror(-sfd);
		return OWNER_UNVERIFIED;
	}
	ret = store_identify_fd(sfd, uuid, why);
	close(sfd);
	if (ret != 0) {
		if (!*why)
			*why = "bad superblock";
		return OWNER_UNVERIFIED;
	}
	vswap_uuid_format(uuid, owner_uuid);
	if (!store_staging_name_parse(name, name_uuid))
		return OWNER_UNKNOWN;
	return strcmp(name_uuid, owner_uuid) == 0 ? OWNER_ALIVE : OWNER_GONE;
}

/* Remove @name if it is still the file we judged (same inode). */
static int remove_orphan(int dirfd, const char *name, const struct stat *judged)
{
	struct stat now;

	if (fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	if (now.st_ino != judged->st_ino || now.st_dev != judged->st_dev)
		return -ESTALE;
	return unlinkat(dirfd, name, 0) == 0 ? 0 : -errno;
}

static int judge_candidate(struct vswap_fsck *f, int dirfd, const char *dir, const char *name,
			   const struct stat *own)
{
	struct stat st;
	bool data;
	ssize_t idx;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid())
		return 0;
	if (own && st.st_dev == own->st_dev && st.st_ino == own->st_ino)
		return 0;
	if (time(NULL) - st.st_mtime < ORPHAN_MIN_AGE_S || file_in_use(st.st_dev, st.st_ino))
		return 0;
	char owner_path[PATH_MAX];
	const char *why;
	enum owner_verdict owner = judge_owner(dirfd, name, owner_path, sizeof(owner_path), &why);
	if (owner == OWNER_ALIVE)
		return 0; /* a closed store's staging file: it is needed */
	if (owner == OWNER_UNVERIFIED) {
		/* A store refers to it; that store needs its own fsck. */
		fsck_log(f, VSWAP_LOG_WARN,
			 "%s/%s: staging file of %s, whose superblock cannot be verified (%s); "
			 "left alone: check that store",
			 dir, name, owner_path, why);
		return 0;
	}
	data = holds_bytes(dirfd, name);
	idx = fsck_problem(f, VSWAP_PROBLEM_ORPHAN_STAGING_FILE, FSCK_NONE, FSCK_NONE,
			   "%s/%s: staging file of no open store (%s, %llu bytes allocated)", dir,
			   name, data ? "holds staged bytes" : "empty",
			   (unsigned long long)st.st_blocks * 512ull);
	if (idx < 0)
		return -ENOMEM;
	/* Staged bytes are removed only with proof that their store is gone. */
	bool may = data ? owner == OWNER_GONE && fsck_repairing_all(f) : fsck_repairing(f);
	if (may && remove_orphan(dirfd, name, &st) == 0)
		fsck_problem_repaired(f, idx);
	return 0;
}

int fsck_check_orphans(struct vswap_fsck *f)
{
	const char *own_path = vswap_store_staging_path(f->store);
	char dir[PATH_MAX];
	struct stat own, *ownp = NULL;
	struct dirent *d;
	DIR *dp;
	int ret = 0;

	if (f->opts.no_orphan_scan || !own_path)
		return 0;
	snprintf(dir, sizeof(dir), "%s", own_path);
	if (strrchr(dir, '/'))
		*strrchr(dir, '/') = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (lstat(own_path, &own) == 0)
		ownp = &own;
	dp = opendir(dir);
	if (!dp)
		return 0; /* nothing to scan is not an error of the store */
	while (!ret && (d = readdir(dp)))
		if (store_staging_name_parse(d->d_name, NULL))
			ret = judge_candidate(f, dirfd(dp), dir, d->d_name, ownp);
	closedir(dp);
	return ret;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* A delta is written to DIR/.NAME.XXXXXX and renamed when complete. Its writer holds an
 * flock(2) on it from creation until it has its name or is removed; the kernel drops the lock
 * when the process ends, however it ends. So a temporary whose lock can be taken has no writer
 * (killed outright, SIGKILL or a crash): the next writer to DIR removes it. No pid is involved,
 * so a reused pid fools nothing. */
#include "tempfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh temporary is unlinked under us only when a sweep that listed it before we locked it
 * took it for a dead writer's; the next name is another. */
#define OPEN_TRIES 8
#define SUFFIX_LEN 6 /* mkstemp's XXXXXX */

void sp_temp_close(struct sp_temp *t)
{
	if (t->fd >= 0)
		close(t->fd);
	if (t->lock_fd >= 0)
		close(t->lock_fd);
	free(t->path);
	*t = (struct sp_temp){.fd = -1, .lock_fd = -1};
}

/* Locks t on a descriptor of its own, so that the writing one can be closed, and its error
 * seen, before the rename. 0: ours; 1: a sweep removed it before the lock; -1: errno. Where
 * the file system has no flock, the file stays unlocked: a sweep, which needs the lock, then
 * never removes it. */
static int lock(struct sp_temp *t)
{
	struct stat st;
	if ((t->lock_fd = open(t->path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 1 : -1;
	while (flock(t->lock_fd, LOCK_EX) && errno == EINTR)
		;
	if (fstat(t->lock_fd, &st))
		return -1;
	return st.st_nlink ? 0 : 1;
}

int sp_temp_open(const char *dir, const char *name, struct sp_temp *t, struct sp_err *err)
{
	*t = (struct sp_temp){.fd = -1, .lock_fd = -1};
	for (int i = 0; i < OPEN_TRIES; i++) {
		int rc = -1;
		if (asprintf(&t->path, "%s/.%s.XXXXXX", dir, name) < 0) {
			t->path = NULL;
			sp_err_set(err, "%s: out of memory", dir);
			return -1;
		}
		if ((t->fd = mkostemp(t->path, O_CLOEXEC)) < 0 || fchmod(t->fd, 0644) ||
		    (rc = lock(t)) < 0) {
			sp_err_set(err, "%s: %s", t->path, strerror(errno));
			if (t->fd >= 0)
				unlink(t->path);
			sp_temp_close(t);
			return -1;
		}
		if (rc == 0)
			return 0;
		sp_temp_close(t);
	}
	sp_err_set(err, "%s: each temporary file made here was removed at once (by another mksparse?)",
		   dir);
	return -1;
}

/* Removes DIR/entry if its writer is gone. The lock is taken on what was opened, and the name
 * removed only while it still names that file (a writer may have renamed it meanwhile). */
static void remove_orphan(const char *dir, int dfd, const char *entry)
{
	struct stat st, now;
	int fd = openat(dfd, entry, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
	    fstatat(dfd, entry, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == st.st_dev &&
	    now.st_ino == st.st_ino) {
		if (unlinkat(dfd, entry, 0) == 0)
			sp_log("%s/%s: removed: a temporary file of %llu bytes whose writer is gone "
			       "(killed before it finished)",
			       dir, entry, (unsigned long long)st.st_size);
		else
			sp_log("%s/%s: cannot remove a temporary file whose writer is gone: %s", dir,
			       entry, strerror(errno));
	}
	close(fd);
}

void sp_temp_sweep(const char *dir, const char *name)
{
	char prefix[256];
	size_t n = (size_t)snprintf(prefix, sizeof(prefix), ".%s.", name);
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return; /* the write that follows says what is wrong with dir */
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, n) && strlen(de->d_name) == n + SUFFIX_LEN)
			remove_orphan(dir, dirfd(d), de->d_name);
	closedir(d);
}

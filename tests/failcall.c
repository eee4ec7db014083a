/* SPDX-License-Identifier: Apache-2.0 */
/* Preloaded into mksparse by the fault matrix (LD_PRELOAD): makes one kind of call on its
 * temporary file (.delta.sparse.XXXXXX) fail, as FAILCALL says:
 *   close         the file is closed, then EIO (as NFS reports a failed write-back)
 *   fsync         EIO
 *   pwrite0       0 bytes written, errno untouched
 *   pwrite_short  at most 4096 bytes a call: to be retried, not a failure
 * Writes "failcall: acted" to stderr the first time it does, so that a test can tell a call
 * that it could not reach (a sanitizer's interceptor in the way) from one handled. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHORT_WRITE 4096

static int on_temp(int fd)
{
	char link[64], path[4096];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return 0;
	path[n] = 0;
	return strstr(path, "/.delta.sparse.") != NULL;
}

static int acts(const char *call, int fd)
{
	static const char note[] = "failcall: acted\n";
	static int said;
	const char *want = getenv("FAILCALL");
	if (!want || strcmp(want, call) || !on_temp(fd))
		return 0;
	if (!said++)
		(void)!write(STDERR_FILENO, note, sizeof(note) - 1);
	return 1;
}

#define REAL(name, type) static type real_##name; \
	if (!real_##name) \
		real_##name = (type)dlsym(RTLD_NEXT, #name)

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef int (*fd_fn)(int);

static ssize_t shim_pwrite(pwrite_fn real, int fd, const void *buf, size_t len, off_t off)
{
	if (acts("pwrite0", fd))
		return 0;
	if (len > SHORT_WRITE && acts("pwrite_short", fd))
		len = SHORT_WRITE;
	return real(fd, buf, len, off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite, pwrite_fn);
	return shim_pwrite(real_pwrite, fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite64, pwrite_fn);
	return shim_pwrite(real_pwrite64, fd, buf, len, off);
}

int fsync(int fd)
{
	REAL(fsync, fd_fn);
	if (acts("fsync", fd)) {
		errno = EIO;
		return -1;
	}
	return real_fsync(fd);
}

int close(int fd)
{
	REAL(close, fd_fn);
	int failing = acts("close", fd), rc = real_close(fd);
	if (rc == 0 && failing) {
		errno = EIO;
		return -1;
	}
	return rc;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Preloaded into mksparse by the fault matrix (LD_PRELOAD): makes one kind of call on its
 * temporary file (.delta.sparse.XXXXXX) fail, as FAILCALL says:
 *   close         the file is closed, then EIO (as NFS reports a failed write-back)
 *   fsync         EIO
 *   pwrite0       0 bytes written, errno untouched
 *   pwrite_short  at most 4096 bytes a call: to be retried, not a failure
 *   cjson:N       the Nth allocation libcjson makes (malloc or realloc) returns NULL
 * Writes "failcall: acted" to stderr the first time it does, so that a test can tell a call
 * that it could not reach (a sanitizer's interceptor in the way) from one handled. Under a
 * sanitizer that brings its own malloc (in the executable), cjson:N never acts. */
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

static void say_acted(void)
{
	static const char note[] = "failcall: acted\n";
	static int said;
	if (!said++)
		(void)!write(STDERR_FILENO, note, sizeof(note) - 1);
}

static int acts(const char *call, int fd)
{
	const char *want = getenv("FAILCALL");
	if (!want || strcmp(want, call) || !on_temp(fd))
		return 0;
	say_acted();
	return 1;
}

/* Is this the allocation that cjson:N names? caller: the code that asked for it. Only the
 * manifest's thread uses cJSON, so a plain counter does. */
static int cjson_fails(const void *caller)
{
	static long want = -1, seen;
	Dl_info info;
	if (want < 0) {
		const char *v = getenv("FAILCALL");
		want = v && !strncmp(v, "cjson:", 6) ? atol(v + 6) : 0;
	}
	if (!want || !dladdr(caller, &info) || !info.dli_fname ||
	    !strstr(info.dli_fname, "libcjson") || ++seen != want)
		return 0;
	say_acted();
	return 1;
}

/* glibc's own allocator behind them: dlsym could allocate while it resolves. */
void *__libc_malloc(size_t n);
void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
	return cjson_fails(__builtin_return_address(0)) ? NULL : __libc_malloc(n);
}

void *realloc(void *p, size_t n)
{
	return cjson_fails(__builtin_return_address(0)) ? NULL : __libc_realloc(p, n);
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

/* SPDX-License-Identifier: Apache-2.0 */
#include "kernel_readahead.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sparse/sparse.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *out = s;
	for (; *s; s++) {
		unsigned v;
		if (s[0] == '\\' && sscanf(s + 1, "%3o", &v) == 1) {
			*out++ = (char)v;
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = 0;
}

/* The "major:minor" of the mount at mountpoint, from /proc/self/mountinfo: asking the mount
 * itself (stat) could wait on this very daemon. The last match is the topmost mount. */
static int mount_dev(const char *mountpoint, char *dev, size_t cap)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192], d[64], mp[4096];
	int found = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %*s %63s %*s %4095s", d, mp) == 2) {
			unescape(mp);
			if (!strcmp(mp, mountpoint)) {
				snprintf(dev, cap, "%s", d);
				found = 1;
			}
		}
	fclose(f);
	return found ? 0 : -1;
}

void raise_readahead(const char *mountpoint, unsigned kb)
{
	char dev[64], path[128];
	if (mount_dev(mountpoint, dev, sizeof(dev)))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	FILE *f = fopen(path, "w");
	/* Not root (or a read-only /sys): skipped, as documented. Any other failure is said; the
	 * kernel's answer to the value comes with the write, at fclose. */
	if (!f) {
		if (errno != EACCES && errno != EPERM && errno != EROFS)
			sp_log("readahead=%u: %s: %s", kb, path, strerror(errno));
		return;
	}
	int bad = fprintf(f, "%u\n", kb) < 0;
	if (fclose(f) || bad)
		sp_log("readahead=%u: %s: %s", kb, path, strerror(errno));
}

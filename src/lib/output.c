/* SPDX-License-Identifier: Apache-2.0 */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "sparse/util.h"
#include "tempfile.h"

struct sp_output {
	struct sp_temp tmp; /* fd -1 in a dry run */
	uint64_t pos;
};

/* The temporary file being written, for sp_write_remove_temp in a signal handler: a copy in
 * static storage, since a handler may neither lock nor follow the writer's pointers. */
static char signal_tmp[PATH_MAX];
static volatile sig_atomic_t signal_tmp_set;

void sp_write_remove_temp(void)
{
	if (signal_tmp_set)
		unlink(signal_tmp);
}

/* The temporary file's error, errno as the failing call (named by call, if not a write) left
 * it. */
static int tmp_error(struct sp_output *o, const char *call, struct sp_err *err)
{
	sp_err_set(err, "%s: %s%s%s", o->tmp.path, call, *call ? ": " : "", strerror(errno));
	return -1;
}

struct sp_output *sp_output_open(const char *dir, int dry, struct sp_err *err)
{
	struct sp_output *o = calloc(1, sizeof(*o));
	if (!o) {
		sp_err_set(err, "%s: out of memory", dir);
		return NULL;
	}
	o->tmp = (struct sp_temp){.fd = -1, .lock_fd = -1};
	o->pos = sizeof(struct sp_super);
	if (dry)
		return o;
	if (sp_mkdir_p(dir)) {
		sp_err_set(err, "%s: %s", dir, strerror(errno));
		free(o);
		return NULL;
	}
	sp_temp_sweep(dir, SP_DELTA_FILE);
	if (sp_temp_open(dir, SP_DELTA_FILE, &o->tmp, err)) {
		free(o);
		return NULL;
	}
	if (strlen(o->tmp.path) < sizeof(signal_tmp)) {
		memcpy(signal_tmp, o->tmp.path, strlen(o->tmp.path) + 1);
		signal_tmp_set = 1;
	}
	return o;
}

int sp_output_append(struct sp_output *o, const void *data, uint64_t len, uint64_t *off,
		     struct sp_err *err)
{
	if (o->tmp.fd >= 0 && sp_pwrite_full(o->tmp.fd, data, len, o->pos))
		return tmp_error(o, "", err);
	*off = o->pos;
	o->pos += len;
	return 0;
}

uint64_t sp_output_size(const struct sp_output *o)
{
	return o->pos;
}

const char *sp_output_path(const struct sp_output *o)
{
	return o->tmp.path ? o->tmp.path : "delta";
}

/* The superblock, synced, and the file closed: close is where some file systems (NFS) report
 * a failed write. */
int sp_output_seal(struct sp_output *o, struct sp_super *sb, struct sp_err *err)
{
	sb->super_hash = XXH3_64bits(sb, offsetof(struct sp_super, super_hash));
	if (sp_pwrite_full(o->tmp.fd, sb, sizeof(*sb), 0))
		return tmp_error(o, "", err);
	if (fsync(o->tmp.fd))
		return tmp_error(o, "fsync", err);
	int rc = close(o->tmp.fd);
	o->tmp.fd = -1;
	return rc ? tmp_error(o, "close", err) : 0;
}

/* Closes the temporary file, which has its name or is gone, and drops its lock. */
static void forget_temp(struct sp_output *o)
{
	signal_tmp_set = 0;
	sp_temp_close(&o->tmp);
}

/* The new name made durable. File systems that cannot sync a folder say EINVAL. */
static int sync_dir(const char *dir, struct sp_err *err)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = dfd < 0 || (fsync(dfd) && errno != EINVAL) ? -1 : 0;
	if (rc)
		sp_err_set(err, "%s: %s: %s (the delta is complete, but its name may not "
				"survive a crash)",
			   dir, dfd < 0 ? "open" : "fsync", strerror(errno));
	if (dfd >= 0)
		close(dfd);
	return rc;
}

int sp_output_publish(struct sp_output *o, const char *dir, struct sp_err *err)
{
	char *final = NULL;
	if (asprintf(&final, "%s/%s", dir, SP_DELTA_FILE) < 0) {
		sp_err_set(err, "%s: out of memory", dir);
		return -1;
	}
	int rc = rename(o->tmp.path, final);
	if (rc)
		sp_err_set(err, "%s: cannot rename it to %s: %s", o->tmp.path, final,
			   strerror(errno));
	else
		forget_temp(o);
	free(final);
	return rc || sync_dir(dir, err);
}

void sp_output_free(struct sp_output *o)
{
	if (!o)
		return;
	if (o->tmp.path)
		unlink(o->tmp.path);
	forget_temp(o);
	free(o);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The temporary file a delta is written to before it takes its name, and the removal of those
 * that a killed writer left. */
#ifndef SP_TEMPFILE_H
#define SP_TEMPFILE_H

#include "sparse/sparse.h"

/* An open temporary file of ours: written through fd, and held by lock_fd until closed. */
struct sp_temp {
	char *path; /* DIR/.NAME.XXXXXX */
	int fd;     /* read-write: closed (and its error checked) before the rename */
	int lock_fd; /* read-only, holding the flock: closed once the file has its name, or gone */
};

/* Creates DIR/.NAME.XXXXXX (mode 0644) and locks it; -1 with err set. */
int sp_temp_open(const char *dir, const char *name, struct sp_temp *t, struct sp_err *err);
/* Closes what is open and frees the path (the file itself stays: the caller renames or
 * removes it first). */
void sp_temp_close(struct sp_temp *t);

/* Removes every DIR/.NAME.XXXXXX whose writer is gone (its lock can be taken), with a log line
 * for each; temporaries of writers still running are left alone. */
void sp_temp_sweep(const char *dir, const char *name);

#endif

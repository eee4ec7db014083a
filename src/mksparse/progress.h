/* SPDX-License-Identifier: Apache-2.0 */
/* mksparse's progress line on a terminal. */
#ifndef MKSPARSE_PROGRESS_H
#define MKSPARSE_PROGRESS_H

#include "sparse/sparse.h"

/* An sp_progress_fn: redraws one line on stderr (arg: unused), ending it on the final call. */
void progress_line(const struct sp_progress *p, void *arg);
/* Ends a line drawn and not yet ended, so that a message can follow on a line of its own. */
void progress_break(void);

#endif

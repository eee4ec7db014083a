/* SPDX-License-Identifier: Apache-2.0 */
/* Whole reads and writes that retry short transfers and EINTR. */
#ifndef SP_IO_H
#define SP_IO_H

#include <stddef.h>
#include <stdint.h>

int sp_pread_full(int fd, void *buf, size_t len, uint64_t off);
int sp_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* mkdir -p: a delta often goes into a directory of deltas not made yet. */
int sp_mkdir_p(const char *dir);

#endif

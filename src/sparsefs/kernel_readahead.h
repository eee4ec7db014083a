/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel's readahead window of a FUSE mount, set through its backing device. */
#ifndef SPARSEFS_KERNEL_READAHEAD_H
#define SPARSEFS_KERNEL_READAHEAD_H

/* Raises the kernel's readahead window of the FUSE mount at mountpoint (absolute) to kb KiB,
 * through its backing device's read_ahead_kb. The kernel starts FUSE mounts at 128 KiB, so a
 * sequential reader would ask for a 1 MiB chunk in eight requests. Call it once the kernel has
 * the INIT reply (which would clamp it again); best effort: it needs root. */
void raise_readahead(const char *mountpoint, unsigned kb);

#endif

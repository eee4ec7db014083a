/* SPDX-License-Identifier: Apache-2.0 */
/* Extended attributes of mounted files: what the delta says about them (user.sparse.*). */
#ifndef SPARSEFS_XATTR_H
#define SPARSEFS_XATTR_H

#include "fs.h"

void xattr_get(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void xattr_list(fuse_req_t req, fuse_ino_t ino, size_t size);

#endif

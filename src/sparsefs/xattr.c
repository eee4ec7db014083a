/* SPDX-License-Identifier: Apache-2.0 */
/* user.sparse.* on every mounted file: the delta's mode, the delta bytes the file's chunks hold,
 * its materialized size, and the base it is read over (and the base's hub id, when it has
 * one). Computed on request from the manifest and chunk table; directories and links have
 * none (the kernel keeps user.* to files and directories). */
#include "xattr.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define PREFIX "user.sparse."

static const char *const names[] = {"mode", "stored_size", "size", "base", "base_id"};
#define NNAMES (sizeof(names) / sizeof(*names))

static uint64_t stored_size(const struct node *n)
{
	const struct sp_file_info *f = sp_delta_file(n->delta, n->file);
	uint64_t sum = 0;
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++)
		sum += sp_delta_chunk_stored(n->delta, k);
	return sum;
}

/* Attribute i of n into buf; its length, or -1 when n has no such attribute. */
static int value(const struct node *n, size_t i, char *buf, size_t cap)
{
	struct sp_delta_about a;
	sp_delta_about(n->delta, &a);
	switch (i) {
	case 0: return snprintf(buf, cap, "%s", a.mode);
	case 1: return snprintf(buf, cap, "%" PRIu64, stored_size(n));
	case 2: return snprintf(buf, cap, "%" PRIu64, n->size);
	case 3: return snprintf(buf, cap, "%s", sp_delta_base_dir(n->delta));
	default:
		return a.hub_id ? snprintf(buf, cap, "%s@%s", a.hub_id, a.hub_commit) : -1;
	}
}

static const struct node *file_node(fuse_req_t req, fuse_ino_t ino, int *err)
{
	struct fs *fs = fuse_req_userdata(req);
	const struct node *n = tree_node(&fs->tree, ino);
	*err = n ? 0 : ENOENT;
	return n && n->delta && !n->link && !n->is_dir ? n : NULL;
}

/* The protocol: size 0 asks for the length; a smaller buffer than the value is ERANGE. */
static void reply(fuse_req_t req, const char *buf, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

void xattr_get(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char buf[4096];
	int err, len = -1;
	const struct node *n = file_node(req, ino, &err);
	for (size_t i = 0; n && i < NNAMES && len < 0; i++)
		if (!strncmp(name, PREFIX, strlen(PREFIX)) && !strcmp(name + strlen(PREFIX), names[i]))
			len = value(n, i, buf, sizeof(buf));
	if (len < 0 || (size_t)len >= sizeof(buf))
		fuse_reply_err(req, err ? err : ENODATA);
	else
		reply(req, buf, (size_t)len, size);
}

void xattr_list(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char buf[512], val[4096];
	size_t len = 0;
	int err;
	const struct node *n = file_node(req, ino, &err);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	for (size_t i = 0; n && i < NNAMES; i++)
		if (value(n, i, val, sizeof(val)) >= 0)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, PREFIX "%s", names[i]) + 1;
	reply(req, buf, len, size);
}

/* SPDX-License-Identifier: Apache-2.0 */
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "delta.h"
#include "sparse/util.h"

/* Chunk k decodes (its hash checked) and, where fd >= 0, equals the fine-tune's bytes. */
static const char *check_chunk(struct sp_delta *d, uint64_t k, int fd, uint8_t *out,
			       uint8_t *want)
{
	const struct sp_chunk *c = &d->chunks[k];
	if (sp_delta_decode_chunk(d, k, out))
		return "does not decode to its hash";
	if (fd < 0 || c->codec == SP_CODEC_LOSSY)
		return NULL;
	if (sp_pread_full(fd, want, c->out_len, c->out_off))
		return "the fine-tune's file cannot be read back";
	return memcmp(out, want, c->out_len) ? "differs from the fine-tune" : NULL;
}

static int check_file(struct sp_delta *d, size_t i, const char *ft_dir, uint8_t *out,
		      uint8_t *want, struct sp_err *err)
{
	const struct sp_file_info *f = &d->m.files[i];
	char *path = NULL;
	int fd = -1;
	if (f->link)
		return 0;
	if (ft_dir && (asprintf(&path, "%s/%s", ft_dir, f->name) < 0 ||
		       (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)) {
		sp_err_set(err, "%s: %s", path ? path : ft_dir, strerror(errno));
		free(path);
		return -1;
	}
	const char *why = NULL;
	uint64_t k = f->first_chunk;
	for (; !why && k < f->first_chunk + f->chunk_count; k++)
		why = check_chunk(d, k, fd, out, want);
	if (why)
		sp_err_set(err, "%s: verifying what was written: %s, chunk %llu: %s", d->dir, f->name,
			   (unsigned long long)(k - 1), why);
	if (fd >= 0)
		close(fd);
	free(path);
	return why ? -1 : 0;
}

int sp_verify_written(const char *dir, const char *file, const char *base_dir, const char *ft_dir,
		      struct sp_err *err)
{
	struct sp_delta *d = sp_delta_open_file(dir, file, base_dir, 0, err);
	if (!d)
		return -1;
	uint8_t *out = malloc(d->m.chunk_size), *want = malloc(d->m.chunk_size);
	int rc = out && want ? 0 : -1;
	if (rc)
		sp_err_set(err, "%s: out of memory", dir);
	for (size_t i = 0; rc == 0 && i < d->m.nfiles; i++)
		rc = check_file(d, i, ft_dir, out, want, err);
	free(out);
	free(want);
	sp_delta_close(d);
	return rc;
}

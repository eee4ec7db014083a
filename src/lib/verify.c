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

/* Checks the chunks of file i, comparing them with ft_dir's file where ft_dir is given; counts
 * the bad ones in *bad, the first one's reason in err (after what). -1 when ft_dir's file
 * cannot be opened. */
static int check_file(struct sp_delta *d, size_t i, const char *ft_dir, const char *what,
		      uint8_t *out, uint8_t *want, uint64_t *bad, struct sp_err *err)
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
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++) {
		const char *why = check_chunk(d, k, fd, out, want);
		if (why && !(*bad)++)
			sp_err_set(err, "%s: %s%s, chunk %llu: %s", d->dir, what, f->name,
				   (unsigned long long)k, why);
	}
	if (fd >= 0)
		close(fd);
	free(path);
	return 0;
}

/* The largest output of any chunk: auxiliary chunks may exceed the chunk size. */
static uint32_t largest_chunk(const struct sp_delta *d)
{
	uint32_t max = 1;
	for (uint64_t k = 0; k < d->sb.chunk_count; k++)
		max = d->chunks[k].out_len > max ? d->chunks[k].out_len : max;
	return max;
}

static int64_t verify(struct sp_delta *d, const char *ft_dir, const char *what,
		      struct sp_err *err)
{
	uint32_t max = largest_chunk(d);
	uint8_t *out = malloc(max), *want = malloc(max);
	uint64_t bad = 0, n = d->sb.chunk_count;
	int rc = out && want ? 0 : -1;
	if (rc)
		sp_err_set(err, "%s: out of memory", d->dir);
	for (size_t i = 0; rc == 0 && i < d->m.nfiles; i++)
		rc = check_file(d, i, ft_dir, what, out, want, &bad, err);
	for (uint64_t k = n - d->m.aux_chunks; rc == 0 && k < n; k++)
		if (check_chunk(d, k, -1, out, want) && !bad++)
			sp_err_set(err, "%s: %sauxiliary chunk %llu: does not decode to its hash", d->dir,
				   what, (unsigned long long)k);
	free(out);
	free(want);
	return rc ? -1 : (int64_t)bad;
}

int64_t sp_delta_verify(struct sp_delta *d, const char *ft_dir, struct sp_err *err)
{
	return verify(d, ft_dir, "", err);
}

int sp_verify_written(const char *dir, const char *file, const char *base_dir, const char *ft_dir,
		      struct sp_err *err)
{
	struct sp_delta *d = sp_delta_open_file(dir, file, base_dir, 0, err);
	if (!d)
		return -1;
	int64_t bad = verify(d, ft_dir, "verifying what was written: ", err);
	sp_delta_close(d);
	return bad ? -1 : 0;
}

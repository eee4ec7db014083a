/* SPDX-License-Identifier: Apache-2.0 */
#include "fuzz.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

void fuzz_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
	abort();
}

uint64_t fuzz_u(struct fuzz_in *in, size_t bytes)
{
	uint64_t v = 0;
	for (size_t i = 0; i < bytes && i < in->n; i++)
		v |= (uint64_t)in->p[i] << (8 * i);
	size_t k = bytes < in->n ? bytes : in->n;
	in->p += k;
	in->n -= k;
	return v;
}

const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t len, uint8_t *pad)
{
	const uint8_t *p = in->p;
	if (len > in->n) {
		memset(pad, 0, len);
		memcpy(pad, in->p, in->n);
		p = pad;
	}
	size_t k = len < in->n ? len : in->n;
	in->p += k;
	in->n -= k;
	return p;
}

uint8_t *fuzz_take(struct fuzz_in *in, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	FUZZ_CHECK(p);
	const uint8_t *src = fuzz_bytes(in, len, p);
	if (src != p)
		memcpy(p, src, len);
	return p;
}

static void no_log(const char *line)
{
	(void)line;
}

void fuzz_quiet(void)
{
	sp_set_log(no_log);
}

static char tmpdir[64];

static void remove_tmpdir(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, SP_DELTA_FILE);
	unlink(path);
	rmdir(tmpdir);
}

const char *fuzz_tmpdir(void)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "%s/sparse-fuzz-XXXXXX",
			 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
		FUZZ_CHECK(mkdtemp(tmpdir));
		atexit(remove_tmpdir);
	}
	return tmpdir;
}

/* The image with its manifest compressed and its superblock's lengths and hashes made right. */
static uint8_t *fix_image(const uint8_t *data, size_t size, size_t *out_len)
{
	struct sp_super sb;
	memcpy(&sb, data, sizeof(sb));
	uint64_t moff = sb.manifest_off < sizeof(sb) || sb.manifest_off > size ? size : sb.manifest_off;
	size_t raw = size - moff, cap = ZSTD_compressBound(raw);
	uint8_t *img = malloc(moff + cap);
	if (!img)
		return NULL;
	memcpy(img, data, moff);
	size_t z = ZSTD_compress(img + moff, cap, data + moff, raw, 1);
	FUZZ_CHECK(!ZSTD_isError(z));
	sb.manifest_off = moff;
	sb.manifest_len = z;
	sb.manifest_raw_len = raw;
	sb.manifest_hash = XXH3_64bits(img + moff, z);
	sb.file_size = moff + z;
	uint64_t tbytes = sb.feature_incompat & SP_FEATURE_INCOMPAT_ZTABLE
				  ? sb.chunk_table_len
				  : sb.chunk_count * sizeof(struct sp_chunk);
	if (tbytes <= moff && sb.chunk_table_off <= moff - tbytes)
		sb.chunk_table_hash = XXH3_64bits(img + sb.chunk_table_off, tbytes);
	sb.super_hash = XXH3_64bits(&sb, offsetof(struct sp_super, super_hash));
	memcpy(img, &sb, sizeof(sb));
	*out_len = moff + z;
	return img;
}

int fuzz_write_delta(const uint8_t *data, size_t size, int fix)
{
	char path[128];
	uint8_t *img = NULL;
	if (fix && size >= sizeof(struct sp_super)) {
		if (!(img = fix_image(data, size, &size)))
			return -1;
		data = img;
	}
	snprintf(path, sizeof(path), "%s/%s", fuzz_tmpdir(), SP_DELTA_FILE);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
	close(fd);
	free(img);
	return 0;
}

const char *fuzz_model_dir(void)
{
	const char *env = getenv("SPARSE_FUZZ_MODEL");
	return env ? env : SPARSE_FUZZ_MODEL;
}

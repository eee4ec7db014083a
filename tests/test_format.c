/* SPDX-License-Identifier: Apache-2.0 */
/* Damage a delta or its base in every way a reader must notice: each is refused at open with a
 * message that says why, or, for chunk data and base content, fails that read with EIO and one
 * log line while the rest still reads. usage: test_format PATH_TO_SPARSE_GENMODEL */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <unistd.h>
#include <xxhash.h>

#include "sparse/sparse.h"
#include "testutil.h"
#include "verify.h"

static char base[4096], ft[4096], delta[4096], work[4096];
static char last_log[1024];
static int log_lines;

static void capture_log(const char *line)
{
	snprintf(last_log, sizeof(last_log), "%s", line);
	log_lines++;
}

/* A fresh copy of the delta in work/, to damage. */
static void fresh_copy(void)
{
	test_sh("rm -rf '%s' && cp -r '%s' '%s'", work, delta, work);
}

static void poke(uint64_t off, uint8_t xor_with)
{
	char path[4200];
	uint8_t b = 0;
	snprintf(path, sizeof(path), "%s/%s", work, SP_DELTA_FILE);
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0 && pread(fd, &b, 1, (off_t)off) == 1);
	b ^= xor_with;
	CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
	close(fd);
}

static struct sp_super read_super(void)
{
	char path[4200];
	struct sp_super sb = {0};
	snprintf(path, sizeof(path), "%s/%s", delta, SP_DELTA_FILE);
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && pread(fd, &sb, sizeof(sb), 0) == sizeof(sb));
	close(fd);
	return sb;
}

static void expect_refused(const char *dir, const char *base_dir, const char *why)
{
	struct sp_err err = {{0}};
	struct sp_delta *d = sp_delta_open(dir, base_dir, 0, &err);
	CHECK(d == NULL);
	CHECK(strstr(err.msg, why) != NULL);
	if (!strstr(err.msg, why))
		fprintf(stderr, "  wanted '%s', got '%s'\n", why, err.msg);
	sp_delta_close(d);
}

static void damaged_metadata(void)
{
	struct sp_super sb = read_super();
	fresh_copy();
	poke(0, 0x01);
	expect_refused(work, NULL, "bad magic");
	fresh_copy();
	poke(offsetof(struct sp_super, reserved), 0x01);
	expect_refused(work, NULL, "superblock checksum");
	fresh_copy();
	poke(sb.chunk_table_off + 5, 0x80);
	expect_refused(work, NULL, "chunk table checksum");
	fresh_copy();
	poke(sb.manifest_off + 3, 0x10);
	expect_refused(work, NULL, "manifest checksum");
	fresh_copy();
	test_sh("truncate -s -1 '%s/%s'", work, SP_DELTA_FILE);
	expect_refused(work, NULL, "truncated");
}

/* A version or an incompatible feature this reader does not know, with a valid checksum. */
static void unknown_features(void)
{
	struct sp_super sb = read_super();
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", work, SP_DELTA_FILE);
	for (int k = 0; k < 2; k++) {
		struct sp_super bad = sb;
		if (k == 0)
			bad.version = SP_VERSION + 1;
		else
			bad.feature_incompat = 1ull << 40;
		bad.super_hash = XXH3_64bits(&bad, offsetof(struct sp_super, super_hash));
		fresh_copy();
		int fd = open(path, O_RDWR);
		CHECK(pwrite(fd, &bad, sizeof(bad), 0) == sizeof(bad));
		close(fd);
		expect_refused(work, NULL, k == 0 ? "version" : "features");
	}
}

/* The first chunk with the given codec in file i. */
static uint64_t chunk_with(struct sp_delta *d, size_t i, int codec)
{
	const struct sp_file_info *f = sp_delta_file(d, i);
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++)
		if (sp_delta_chunk(d, k)->codec == codec)
			return k;
	return UINT64_MAX;
}

static size_t file_named(struct sp_delta *d, const char *name)
{
	for (size_t i = 0; i < sp_delta_file_count(d); i++)
		if (!strcmp(sp_delta_file(d, i)->name, name))
			return i;
	return SIZE_MAX;
}

/* One damaged chunk: that read is EIO with one log line naming file, tensor and chunk; every
 * other file still reads. */
static void damaged_chunk(void)
{
	struct sp_err err;
	uint8_t buf[4096];
	fresh_copy();
	struct sp_delta *d = sp_delta_open(work, NULL, 0, &err);
	CHECK(d != NULL);
	if (!d)
		return;
	size_t model = file_named(d, "model.safetensors"), config = file_named(d, "config.json");
	uint64_t k = chunk_with(d, model, SP_CODEC_DELTA);
	CHECK(model != SIZE_MAX && config != SIZE_MAX && k != UINT64_MAX);
	const struct sp_chunk c = *sp_delta_chunk(d, k);
	sp_delta_close(d);
	poke(c.data_off + c.data_len / 2, 0x20);
	d = sp_delta_open(work, NULL, 0, &err);
	CHECK(d != NULL);
	log_lines = 0;
	CHECK(sp_delta_read(d, NULL, model, buf, sizeof(buf), c.out_off) == -EIO);
	CHECK(log_lines == 1);
	CHECK(strstr(last_log, "model.safetensors") && strstr(last_log, "transformer.") &&
	      strstr(last_log, "chunk"));
	CHECK(sp_delta_read(d, NULL, config, buf, sizeof(buf), 0) > 0);
	sp_delta_close(d);
}

/* Over the wrong base or none, the open is refused; a base that changed where the open's
 * samples do not look fails the read of that chunk. */
static void wrong_base(void)
{
	char copy[4200], model[4300];
	struct sp_err err;
	expect_refused(delta, ft, "differs from the base");
	snprintf(copy, sizeof(copy), "%s/missing", test_tmpdir());
	expect_refused(delta, copy, "No such file");
	snprintf(copy, sizeof(copy), "%s/base-copy", test_tmpdir());
	snprintf(model, sizeof(model), "%s/model.safetensors", copy);
	test_sh("cp -r '%s' '%s'", base, copy);
	struct sp_delta *d = sp_delta_open(delta, copy, 0, &err);
	CHECK(d != NULL);
	if (!d)
		return;
	size_t mi = file_named(d, "model.safetensors");
	uint64_t k = chunk_with(d, mi, SP_CODEC_DELTA);
	const struct sp_chunk *c = sp_delta_chunk(d, k);
	int fd = open(model, O_RDWR);
	uint8_t b = 0, buf[64];
	uint64_t at = c->base_off + 5000; /* clear of the sampled blocks, inside the chunk's base */
	CHECK(pread(fd, &b, 1, (off_t)at) == 1);
	b ^= 0x40;
	CHECK(pwrite(fd, &b, 1, (off_t)at) == 1);
	close(fd);
	log_lines = 0;
	CHECK(sp_delta_read(d, NULL, mi, buf, sizeof(buf), c->out_off) == -EIO);
	CHECK(log_lines == 1 && strstr(last_log, "checksum"));
	sp_delta_close(d);
	d = sp_delta_open(delta, copy, 0, &err); /* the cheap checks pass: only --check sees it */
	CHECK(d && sp_delta_check_base(d, &err) != 0 && strstr(err.msg, "content hash"));
	sp_delta_close(d);
}

/* mksparse's read-back: a good delta passes; a damaged chunk, or a fine-tune that differs from
 * what the delta decodes to, fails with a message naming file and chunk. */
static void verify_written(void)
{
	char file[4200], other[4200];
	struct sp_err err;
	snprintf(file, sizeof(file), "%s/%s", delta, SP_DELTA_FILE);
	CHECK(sp_verify_written(delta, file, base, ft, &err) == 0);
	snprintf(other, sizeof(other), "%s/ft-other", test_tmpdir());
	test_sh("rm -rf '%s' && cp -r '%s' '%s' && printf x | dd of='%s/model.safetensors' bs=1 "
		"seek=200000 conv=notrunc status=none", other, ft, other, other);
	CHECK(sp_verify_written(delta, file, base, other, &err) != 0 &&
	      strstr(err.msg, "model.safetensors, chunk") && strstr(err.msg, "differs from the fine-tune"));
	CHECK(sp_verify_written(delta, file, base, NULL, &err) == 0); /* hashes only */
	fresh_copy();
	struct sp_delta *d = sp_delta_open(work, NULL, 0, &err);
	CHECK(d != NULL);
	if (!d)
		return;
	uint64_t k = chunk_with(d, file_named(d, "model.safetensors"), SP_CODEC_DELTA);
	const struct sp_chunk c = *sp_delta_chunk(d, k);
	sp_delta_close(d);
	poke(c.data_off + c.data_len / 2, 0x20);
	snprintf(file, sizeof(file), "%s/%s", work, SP_DELTA_FILE);
	CHECK(sp_verify_written(work, file, base, ft, &err) != 0 &&
	      strstr(err.msg, "does not decode to its hash"));
	struct sp_write_opts o = {.chunk_size = 65536, .verify = 1};
	snprintf(other, sizeof(other), "%s/verified", test_tmpdir());
	CHECK(sp_write_delta(base, ft, other, &o, NULL, &err) == 0);
}

int main(int argc, char **argv)
{
	struct sp_write_opts o = {.chunk_size = 65536};
	struct sp_err err;
	if (argc != 2)
		return 2;
	snprintf(base, sizeof(base), "%s/base", test_tmpdir());
	snprintf(ft, sizeof(ft), "%s/ft", test_tmpdir());
	snprintf(delta, sizeof(delta), "%s/delta", test_tmpdir());
	snprintf(work, sizeof(work), "%s/work", test_tmpdir());
	if (test_sh("'%s' demo '%s' '%s'", argv[1], base, ft))
		return 1;
	if (sp_write_delta(base, ft, delta, &o, NULL, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	sp_set_log(capture_log);
	damaged_metadata();
	unknown_features();
	damaged_chunk();
	wrong_base();
	verify_written();
	return test_done();
}

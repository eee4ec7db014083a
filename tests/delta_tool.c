/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rewrites parts of a delta and seals it again (every hash recomputed), so that the fault tests
 * can hand a reader a delta that is wrong in one precise way and passes every checksum.
 *
 *   delta_tool get-manifest DELTA_DIR           the manifest's JSON on stdout
 *   delta_tool put-manifest DELTA_DIR FILE      FILE's bytes (as they are) become the manifest
 *   delta_tool set DELTA_DIR FIELD VALUE        FIELD: version, feature_compat, feature_incompat,
 *                                               or chunk.K.data_off / base_off / data_len /
 *                                               out_len / base_file
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "sparse/format.h"
#include "table_code.h"

static void die(const char *what)
{
	perror(what);
	exit(1);
}

struct delta {
	int fd;
	struct sp_super sb;
	struct sp_chunk *chunks;
};

/* The chunk table as stored: raw records, or (ZTABLE) one zstd frame of them, (DTABLE) coded
 * against the records before them, (PTABLE) as byte planes. */
static int framed(const struct delta *d)
{
	return (d->sb.feature_incompat & SP_FEATURE_INCOMPAT_ZTABLE) != 0;
}

static int coded(const struct delta *d)
{
	return (d->sb.feature_incompat & SP_FEATURE_INCOMPAT_DTABLE) != 0;
}

static int planes(const struct delta *d)
{
	return (d->sb.feature_incompat & SP_FEATURE_INCOMPAT_PTABLE) != 0;
}

static void load(const char *dir, struct delta *d)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, SP_DELTA_FILE);
	if ((d->fd = open(path, O_RDWR)) < 0)
		die(path);
	if (pread(d->fd, &d->sb, sizeof(d->sb), 0) != sizeof(d->sb))
		die("superblock");
	size_t bytes = d->sb.chunk_count * sizeof(struct sp_chunk);
	size_t stored = framed(d) ? d->sb.chunk_table_len : bytes;
	uint8_t *z = malloc(stored + bytes + 1);
	if (!(d->chunks = malloc(bytes + 1)) || !z ||
	    pread(d->fd, z, stored, (off_t)d->sb.chunk_table_off) != (ssize_t)stored)
		die("chunk table");
	if (!framed(d))
		memcpy(d->chunks, z, bytes);
	else if (ZSTD_decompress(planes(d) ? z + stored : (uint8_t *)d->chunks, bytes, z, stored) !=
		 bytes)
		die("chunk table frame");
	if (planes(d))
		sp_table_from_planes(z + stored, d->sb.chunk_count, d->chunks);
	if (coded(d))
		sp_table_uncode(d->chunks, d->sb.chunk_count, d->sb.feature_incompat);
	free(z);
}

/* Writes the chunk table back where it was: a frame goes at the same offset, and the manifest
 * moves up or down behind it (the file is cut or grown to fit). */
static void put_table(struct delta *d)
{
	size_t bytes = d->sb.chunk_count * sizeof(struct sp_chunk), cap = ZSTD_compressBound(bytes);
	uint8_t *z = malloc(cap), *man = malloc(d->sb.manifest_len + 1);
	struct sp_chunk *records = malloc(bytes + 1);
	uint8_t *stored = malloc(bytes + 1);
	if (!records || !stored)
		die("chunk table");
	memcpy(records, d->chunks, bytes);
	if (coded(d))
		sp_table_code(records, d->sb.chunk_count, d->sb.feature_incompat);
	if (planes(d))
		sp_table_to_planes(records, d->sb.chunk_count, stored);
	else
		memcpy(stored, records, bytes);
	size_t len = framed(d) ? ZSTD_compress(z, cap, stored, bytes, 19) : bytes;
	free(records);
	free(stored);
	if (!z || !man || ZSTD_isError(len) ||
	    pread(d->fd, man, d->sb.manifest_len, (off_t)d->sb.manifest_off) !=
		    (ssize_t)d->sb.manifest_len)
		die("chunk table");
	const void *table = framed(d) ? (const void *)z : (const void *)d->chunks;
	d->sb.chunk_table_hash = XXH3_64bits(table, len);
	if (framed(d))
		d->sb.chunk_table_len = len;
	d->sb.manifest_off = d->sb.chunk_table_off + len;
	d->sb.file_size = d->sb.manifest_off + d->sb.manifest_len;
	if (pwrite(d->fd, table, len, (off_t)d->sb.chunk_table_off) != (ssize_t)len ||
	    pwrite(d->fd, man, d->sb.manifest_len, (off_t)d->sb.manifest_off) !=
		    (ssize_t)d->sb.manifest_len ||
	    ftruncate(d->fd, (off_t)d->sb.file_size))
		die("write");
	free(z);
	free(man);
}

/* Hashes the chunk table and the superblock and writes both back. */
static void seal(struct delta *d)
{
	put_table(d);
	d->sb.super_hash = XXH3_64bits(&d->sb, offsetof(struct sp_super, super_hash));
	if (pwrite(d->fd, &d->sb, sizeof(d->sb), 0) != sizeof(d->sb))
		die("write");
	close(d->fd);
	free(d->chunks);
}

static int get_manifest(struct delta *d)
{
	char *z = malloc(d->sb.manifest_len + 1), *json = malloc(d->sb.manifest_raw_len + 1);
	if (!z || !json ||
	    pread(d->fd, z, d->sb.manifest_len, (off_t)d->sb.manifest_off) != (ssize_t)d->sb.manifest_len ||
	    ZSTD_decompress(json, d->sb.manifest_raw_len, z, d->sb.manifest_len) != d->sb.manifest_raw_len)
		die("manifest");
	fwrite(json, 1, d->sb.manifest_raw_len, stdout);
	free(z);
	free(json);
	close(d->fd);
	free(d->chunks);
	return 0;
}

static int put_manifest(struct delta *d, const char *file)
{
	FILE *f = fopen(file, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st))
		die(file);
	size_t len = (size_t)st.st_size, cap = ZSTD_compressBound(len);
	char *json = malloc(len + 1), *z = malloc(cap);
	if (!json || !z || fread(json, 1, len, f) != len)
		die(file);
	fclose(f);
	size_t zlen = ZSTD_compress(z, cap, json, len, 3);
	if (ZSTD_isError(zlen) ||
	    pwrite(d->fd, z, zlen, (off_t)d->sb.manifest_off) != (ssize_t)zlen ||
	    ftruncate(d->fd, (off_t)(d->sb.manifest_off + zlen)))
		die("put manifest");
	d->sb.manifest_len = zlen;
	d->sb.manifest_raw_len = len;
	d->sb.manifest_hash = XXH3_64bits(z, zlen);
	d->sb.file_size = d->sb.manifest_off + zlen;
	free(json);
	free(z);
	seal(d);
	return 0;
}

static int set_chunk(struct delta *d, const char *field, unsigned long long v)
{
	char *end;
	unsigned long long k = strtoull(field + 6, &end, 10);
	if (*end != '.' || k >= d->sb.chunk_count)
		return 2;
	struct sp_chunk *c = &d->chunks[k];
	if (!strcmp(end + 1, "data_off"))
		c->data_off = v;
	else if (!strcmp(end + 1, "base_off"))
		c->base_off = v;
	else if (!strcmp(end + 1, "data_len"))
		c->data_len = (uint32_t)v;
	else if (!strcmp(end + 1, "out_len"))
		c->out_len = (uint32_t)v;
	else if (!strcmp(end + 1, "base_file"))
		c->base_file = (uint32_t)v;
	else
		return 2;
	seal(d);
	return 0;
}

static int set(struct delta *d, const char *field, const char *value)
{
	unsigned long long v = strtoull(value, NULL, 0);
	if (!strncmp(field, "chunk.", 6))
		return set_chunk(d, field, v);
	if (!strcmp(field, "version"))
		d->sb.version = (uint32_t)v;
	else if (!strcmp(field, "feature_compat"))
		d->sb.feature_compat = v;
	else if (!strcmp(field, "feature_incompat"))
		d->sb.feature_incompat = v;
	else
		return 2;
	seal(d);
	return 0;
}

int main(int argc, char **argv)
{
	struct delta d;
	if (argc < 3)
		goto usage;
	load(argv[2], &d);
	if (!strcmp(argv[1], "get-manifest") && argc == 3)
		return get_manifest(&d);
	if (!strcmp(argv[1], "put-manifest") && argc == 4)
		return put_manifest(&d, argv[3]);
	if (!strcmp(argv[1], "set") && argc == 5 && set(&d, argv[3], argv[4]) == 0)
		return 0;
usage:
	fprintf(stderr, "usage: delta_tool get-manifest|put-manifest|set DELTA_DIR ...\n");
	return 2;
}

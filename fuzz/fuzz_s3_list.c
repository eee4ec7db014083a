/* SPDX-License-Identifier: Apache-2.0 */
/* ListObjectsV2 answers (s3_list.c): XML from the network in, keys and a continuation token
 * out. Whatever it accepts is bounded by the input and by S3's own limits; a callback that
 * stops the parse stops it. */
#include <stdlib.h>

#include "fuzz.h"
#include "s3.h"

/* A listing callback gives up after this many keys, so that the stop path is fuzzed too. */
#define STOP_AFTER 64

struct seen {
	size_t keys, bytes;
	struct sp_err *err;
};

static int on_key(const char *k, void *arg)
{
	struct seen *s = arg;
	size_t n = strlen(k);
	FUZZ_CHECK(n <= 1024);
	s->bytes += n;
	if (++s->keys < STOP_AFTER)
		return 0;
	sp_err_set(s->err, "enough keys");
	return -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_err err = {{0}};
	struct seen s = {.err = &err};
	char *next = (char *)1;
	int rc = sp_s3_list_parse((const char *)data, size, on_key, &s, &next, &err);
	/* no DTD, so no entity expands to more than the characters that name it */
	FUZZ_CHECK(s.bytes <= size);
	FUZZ_CHECK(rc == 0 || (rc == -1 && !next && err.msg[0]));
	FUZZ_CHECK(!next || strlen(next) <= 4096);
	free(next);
	return 0;
}

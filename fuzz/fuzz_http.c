/* SPDX-License-Identifier: Apache-2.0 */
/* The response headers a remote read parses (http.h): the input is header lines, each taken
 * as exactly its bytes (so ASan sees any read past one); what parses must be what the reader
 * relies on: a Content-Range inside its total, a Retry-After within its cap, an ETag that
 * fits and can be sent back in If-Match. */
#include <stdlib.h>

#include "fuzz.h"
#include "http.h"

#define CAP 30

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

static void one_line(const char *line, size_t n)
{
	const char *v;
	size_t vl;
	uint64_t a, b, t;
	unsigned s;
	if (sp_http_header(line, n, "content-range", &v, &vl) &&
	    !sp_http_content_range(v, vl, &a, &b, &t))
		FUZZ_CHECK(a > b ? t != UINT64_MAX : t == UINT64_MAX || b < t);
	if (sp_http_header(line, n, "retry-after", &v, &vl) &&
	    !sp_http_retry_after(v, vl, 1700000000, CAP, &s))
		FUZZ_CHECK(s <= CAP);
	if (sp_http_header(line, n, "etag", &v, &vl)) {
		FUZZ_CHECK(v >= line && v + vl <= line + n);
		int k = sp_http_etag_kind(v, vl, 128);
		FUZZ_CHECK(!k || (vl < 128 && v[vl - 1] == '"' && !memchr(v, '\n', vl) &&
				  !memchr(v, '\r', vl)));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	while (in.n) {
		const uint8_t *nl = memchr(in.p, '\n', in.n);
		size_t n = nl ? (size_t)(nl - in.p) + 1 : in.n;
		uint8_t *line = fuzz_take(&in, n);
		one_line((const char *)line, n);
		free(line);
	}
	return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
#include "sparse/util.h"

#include <stdlib.h>

void *sp_scratch_get(struct sp_scratch *s, size_t n)
{
	if (s->cap < n || !s->p) {
		uint8_t *p = realloc(s->p, n ? n : 1);
		if (!p)
			return NULL;
		s->p = p;
		s->cap = n;
	}
	return s->p;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* A buffer that grows as needed and is kept between calls: fresh memory costs page faults,
 * which on the read path cost more than decoding. */
#ifndef SP_SCRATCH_H
#define SP_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

struct sp_scratch {
	uint8_t *p;
	size_t cap;
};

/* At least n bytes (NULL when out of memory); the contents do not survive growing. */
void *sp_scratch_get(struct sp_scratch *s, size_t n);

#endif

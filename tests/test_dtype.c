/* SPDX-License-Identifier: Apache-2.0 */
/* Names and sizes of every dtype, and the float conversions a dtype change relies on. */
#include <math.h>

#include "dtype.h"
#include "testutil.h"

static uint16_t to16(enum sp_dtype dt, double v)
{
	uint16_t h;
	sp_dtype_convert(SP_DT_F64, &v, dt, &h, 1);
	return h;
}

static void names(void)
{
	static const char *all[] = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64",
				    "F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"};
	static const size_t sizes[] = {1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8, 1, 1};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		enum sp_dtype dt = sp_dtype_from_name(all[i]);
		CHECK(dt != SP_DT_BYTES && !strcmp(sp_dtype_name(dt), all[i]));
		CHECK(sp_dtype_size(dt) == sizes[i]);
	}
	CHECK(sp_dtype_from_name("F8_E8M0") == SP_DT_BYTES && sp_dtype_size(SP_DT_BYTES) == 1);
}

static void rounding(void)
{
	CHECK(to16(SP_DT_F16, 1.0) == 0x3c00);
	CHECK(to16(SP_DT_F16, -2.0) == 0xc000);
	CHECK(to16(SP_DT_F16, 65504.0) == 0x7bff);
	CHECK(to16(SP_DT_F16, 65520.0) == 0x7c00);
	CHECK(to16(SP_DT_F16, ldexp(1, -24)) == 0x0001);
	CHECK(to16(SP_DT_F16, ldexp(1, -25)) == 0x0000);     /* tie: to even */
	CHECK(to16(SP_DT_F16, 3 * ldexp(1, -25)) == 0x0002); /* tie: to even */
	CHECK(to16(SP_DT_F16, 0.1) == 0x2e66);
	CHECK((to16(SP_DT_F16, NAN) & 0x7c00) == 0x7c00 && (to16(SP_DT_F16, NAN) & 0x3ff));
	CHECK(to16(SP_DT_BF16, 1.0) == 0x3f80);
	CHECK(to16(SP_DT_BF16, 1.0 + ldexp(1, -8)) == 0x3f80);     /* tie: to even */
	CHECK(to16(SP_DT_BF16, 1.0 + 3 * ldexp(1, -8)) == 0x3f82); /* tie: to even */
	CHECK(to16(SP_DT_BF16, -0.0) == 0x8000);
}

/* Every non-NaN 16-bit pattern survives a trip through F64 and F32. */
static void round_trips(void)
{
	for (uint32_t u = 0; u < 0x10000; u++) {
		uint16_t h = (uint16_t)u, back;
		double d;
		float f;
		if ((h & 0x7c00) != 0x7c00 || !(h & 0x3ff)) {
			sp_dtype_convert(SP_DT_F16, &h, SP_DT_F64, &d, 1);
			sp_dtype_convert(SP_DT_F64, &d, SP_DT_F16, &back, 1);
			CHECK(back == h);
		}
		if ((h & 0x7f80) != 0x7f80 || !(h & 0x7f)) {
			sp_dtype_convert(SP_DT_BF16, &h, SP_DT_F32, &f, 1);
			sp_dtype_convert(SP_DT_F32, &f, SP_DT_BF16, &back, 1);
			CHECK(back == h);
		}
	}
}

int main(void)
{
	names();
	rounding();
	round_trips();
	return test_done();
}

/* test_dtype.c - dtype names and sizes, and the scalar conversions
 * (e4m3 exhaustively, bf16 and f16 exhaustively plus rounding cases). */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/dtype.h"

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

Test(dtype, sizes_and_names)
{
    static const struct {
        dsa_dtype t;
        const char *name;
        size_t size;
    } want[] = {
        {DSA_DTYPE_F32, "F32", 4},      {DSA_DTYPE_F16, "F16", 2},
        {DSA_DTYPE_BF16, "BF16", 2},    {DSA_DTYPE_F8_E4M3, "F8_E4M3", 1},
        {DSA_DTYPE_I32, "I32", 4},      {DSA_DTYPE_I64, "I64", 8},
        {DSA_DTYPE_I8, "I8", 1},
    };
    cr_assert_eq(sizeof want / sizeof *want, DSA_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        cr_assert_eq(dsa_dtype_size(want[i].t), want[i].size);
        cr_assert_str_eq(dsa_dtype_name(want[i].t), want[i].name);
        dsa_dtype t = DSA_DTYPE_COUNT;
        cr_assert_eq(dsa_dtype_parse(want[i].name, &t), 0);
        cr_assert_eq(t, want[i].t);
    }
    cr_assert_eq(dsa_dtype_size(DSA_DTYPE_COUNT), 0);
    cr_assert_eq(dsa_dtype_size((dsa_dtype)-1), 0);
    cr_assert_str_eq(dsa_dtype_name(DSA_DTYPE_COUNT), "?");
}

Test(dtype, parse_rejects_unknown)
{
    dsa_dtype t = DSA_DTYPE_F32;
    const char *bad[] = {"", "f32", "F8", "F8_E5M2", "BOOL", "U8", "F64", "F32 ", "BF16x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(dsa_dtype_parse(bad[i], &t), -1, "'%s' accepted", bad[i]);
    cr_assert_eq(t, DSA_DTYPE_F32);
}

Test(dtype, e4m3_all_codes_round_trip)
{
    for (int c = 0; c < 256; c++) {
        float f = dsa_e4m3_to_f32((uint8_t)c);
        if ((c & 0x7f) == 0x7f) {
            cr_assert(isnan(f), "code 0x%02x should be NaN", c);
            cr_assert_eq(dsa_f32_to_e4m3(f), 0x7f);
            continue;
        }
        cr_assert(isfinite(f), "code 0x%02x", c);
        cr_assert(fabsf(f) <= 448.0f);
        cr_assert_eq(dsa_f32_to_e4m3(f), c, "code 0x%02x -> %g -> 0x%02x", c, f,
                     dsa_f32_to_e4m3(f));
    }
}

Test(dtype, e4m3_known_values)
{
    cr_assert_eq(dsa_e4m3_to_f32(0x00), 0.0f);
    cr_assert(signbit(dsa_e4m3_to_f32(0x80)));
    cr_assert_eq(dsa_e4m3_to_f32(0x38), 1.0f);
    cr_assert_eq(dsa_e4m3_to_f32(0xb8), -1.0f);
    cr_assert_eq(dsa_e4m3_to_f32(0x7e), 448.0f);
    cr_assert_eq(dsa_e4m3_to_f32(0xfe), -448.0f);
    cr_assert_eq(dsa_e4m3_to_f32(0x08), ldexpf(1, -6));  /* min normal */
    cr_assert_eq(dsa_e4m3_to_f32(0x01), ldexpf(1, -9));  /* min subnormal */
    cr_assert_eq(dsa_e4m3_to_f32(0x07), 7 * ldexpf(1, -9));
    cr_assert_eq(dsa_e4m3_to_f32(0x39), 1.125f);
    cr_assert_eq(dsa_e4m3_to_f32(0x40), 2.0f);
    cr_assert_eq(dsa_e4m3_to_f32(0x77), 240.0f);
    cr_assert_eq(dsa_e4m3_to_f32(0x78), 256.0f);
}

Test(dtype, e4m3_rounding)
{
    cr_assert_eq(dsa_f32_to_e4m3(1.0625f), 0x38);   /* tie -> even (1.0) */
    cr_assert_eq(dsa_f32_to_e4m3(1.1875f), 0x3a);   /* tie -> even (1.25) */
    cr_assert_eq(dsa_f32_to_e4m3(1.07f), 0x39);     /* nearest above the tie */
    cr_assert_eq(dsa_f32_to_e4m3(ldexpf(1, -10)), 0x00);     /* tie -> 0 */
    cr_assert_eq(dsa_f32_to_e4m3(3 * ldexpf(1, -10)), 0x02); /* 1.5 units -> 2 */
    cr_assert_eq(dsa_f32_to_e4m3(0.0155f), 0x08);   /* rounds up to min normal */
    cr_assert_eq(dsa_f32_to_e4m3(-0.0f), 0x80);
    cr_assert_eq(dsa_f32_to_e4m3(1e-9f), 0x00);
    cr_assert_eq(dsa_f32_to_e4m3(-1e-9f), 0x80);
    /* saturation, no infinities */
    cr_assert_eq(dsa_f32_to_e4m3(448.0f), 0x7e);
    cr_assert_eq(dsa_f32_to_e4m3(460.0f), 0x7e);
    cr_assert_eq(dsa_f32_to_e4m3(1e6f), 0x7e);
    cr_assert_eq(dsa_f32_to_e4m3(-1e6f), 0xfe);
    cr_assert_eq(dsa_f32_to_e4m3(INFINITY), 0x7e);
    cr_assert_eq(dsa_f32_to_e4m3(-INFINITY), 0xfe);
    cr_assert_eq(dsa_f32_to_e4m3(NAN), 0x7f);
    cr_assert_eq(dsa_f32_to_e4m3(432.0f), 0x7e); /* tie 416/448 -> even (448) */
    cr_assert_eq(dsa_f32_to_e4m3(420.0f), 0x7d); /* nearer 416 */
}

Test(dtype, e4m3_nearest_for_every_value_between_codes)
{
    /* Midpoints between neighbouring positive codes round to the even one;
     * points just off the midpoint round to the nearer. */
    for (int c = 0; c < 0x7e; c++) {
        float lo = dsa_e4m3_to_f32((uint8_t)c), hi = dsa_e4m3_to_f32((uint8_t)(c + 1));
        float mid = (lo + hi) / 2;
        int even = (c & 1) ? c + 1 : c;
        cr_assert_eq(dsa_f32_to_e4m3(mid), even, "mid of 0x%02x", c);
        cr_assert_eq(dsa_f32_to_e4m3(nextafterf(mid, 0)), c, "below mid of 0x%02x", c);
        cr_assert_eq(dsa_f32_to_e4m3(nextafterf(mid, 1000)), c + 1, "above mid of 0x%02x", c);
        cr_assert_eq(dsa_f32_to_e4m3(-mid), 0x80 | even);
    }
}

Test(dtype, bf16_all_codes_round_trip)
{
    for (uint32_t c = 0; c < 65536; c++) {
        float f = dsa_bf16_to_f32((uint16_t)c);
        if (isnan(f)) {
            cr_assert(isnan(dsa_bf16_to_f32(dsa_f32_to_bf16(f))), "0x%04x", c);
            continue;
        }
        cr_assert_eq(dsa_f32_to_bf16(f), c, "0x%04x", c);
    }
}

Test(dtype, bf16_rounding)
{
    cr_assert_eq(dsa_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(dsa_f32_to_bf16(-2.0f), 0xc000);
    cr_assert_eq(dsa_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);     /* tie -> even */
    cr_assert_eq(dsa_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3f82); /* tie -> even */
    cr_assert_eq(dsa_f32_to_bf16(1.0f + 1.5f * ldexpf(1, -8)), 0x3f81);
    cr_assert_eq(dsa_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(dsa_f32_to_bf16(-INFINITY), 0xff80);
    cr_assert_eq(dsa_f32_to_bf16(3.0e38f), 0x7f62);
    cr_assert_eq(dsa_f32_to_bf16(3.4028235e38f), 0x7f80); /* FLT_MAX rounds up to inf */
    uint16_t n = dsa_f32_to_bf16(NAN);
    cr_assert((n & 0x7f80) == 0x7f80 && (n & 0x7f), "NaN -> 0x%04x", n);
    /* a NaN whose payload sits in the low bits must not become inf */
    uint32_t snan = 0x7f800001u;
    float fs;
    memcpy(&fs, &snan, 4);
    cr_assert(isnan(dsa_bf16_to_f32(dsa_f32_to_bf16(fs))));
    cr_assert_eq(f32_bits(dsa_bf16_to_f32(0x3f80)), 0x3f800000u);
}

Test(dtype, f16_all_codes_round_trip)
{
    for (uint32_t c = 0; c < 65536; c++) {
        float f = dsa_f16_to_f32((uint16_t)c);
        if (isnan(f)) {
            cr_assert(((c >> 10) & 0x1f) == 0x1f && (c & 0x3ff), "0x%04x", c);
            cr_assert(isnan(dsa_f16_to_f32(dsa_f32_to_f16(f))));
            continue;
        }
        cr_assert_eq(dsa_f32_to_f16(f), c, "0x%04x -> %g -> 0x%04x", c, f, dsa_f32_to_f16(f));
    }
}

Test(dtype, f16_known_values_and_rounding)
{
    cr_assert_eq(dsa_f16_to_f32(0x3c00), 1.0f);
    cr_assert_eq(dsa_f16_to_f32(0xc000), -2.0f);
    cr_assert_eq(dsa_f16_to_f32(0x7bff), 65504.0f);
    cr_assert_eq(dsa_f16_to_f32(0x0001), ldexpf(1, -24));
    cr_assert_eq(dsa_f16_to_f32(0x0400), ldexpf(1, -14));
    cr_assert(isinf(dsa_f16_to_f32(0x7c00)));
    cr_assert_eq(dsa_f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(dsa_f32_to_f16(65520.0f), 0x7c00); /* tie rounds to inf */
    cr_assert_eq(dsa_f32_to_f16(1e9f), 0x7c00);
    cr_assert_eq(dsa_f32_to_f16(-1e9f), 0xfc00);
    cr_assert_eq(dsa_f32_to_f16(ldexpf(1, -25)), 0x0000);     /* tie -> even */
    cr_assert_eq(dsa_f32_to_f16(3 * ldexpf(1, -25)), 0x0002); /* tie -> even */
    cr_assert_eq(dsa_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);
    cr_assert_eq(dsa_f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3c02);
    cr_assert_eq(dsa_f32_to_f16(ldexpf(1, -14) - ldexpf(1, -25)), 0x0400); /* up to normal */
    cr_assert_eq(dsa_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(dsa_f32_to_f16(0.1f), 0x2e66);
    uint16_t n = dsa_f32_to_f16(NAN);
    cr_assert((n & 0x7c00) == 0x7c00 && (n & 0x3ff));
}

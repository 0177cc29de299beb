/* dtype.c - dtype names and scalar conversions; see dtype.h. */
#include "common/dtype.h"

#include <math.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[DSA_DTYPE_COUNT] = {
    [DSA_DTYPE_F32] = {"F32", 4},       [DSA_DTYPE_F16] = {"F16", 2},
    [DSA_DTYPE_BF16] = {"BF16", 2},     [DSA_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [DSA_DTYPE_I32] = {"I32", 4},       [DSA_DTYPE_I64] = {"I64", 8},
    [DSA_DTYPE_I8] = {"I8", 1},
};

size_t dsa_dtype_size(dsa_dtype t)
{
    return (unsigned)t < DSA_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *dsa_dtype_name(dsa_dtype t)
{
    return (unsigned)t < DSA_DTYPE_COUNT ? dtype_info[t].name : "?";
}

int dsa_dtype_parse(const char *s, dsa_dtype *out)
{
    for (int i = 0; i < DSA_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (dsa_dtype)i;
            return 0;
        }
    }
    return -1;
}

float dsa_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    float f;
    if (exp == 0) {
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    uint32_t u;
    if (exp == 31)
        u = sign | 0x7f800000u | (man << 13);
    else
        u = sign | ((exp + 112) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dsa_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    float a = fabsf(f);
    if (isnan(f))
        return sign | 0x7e00;
    if (a >= 65520.0f)
        return sign | 0x7c00;
    if (a < 6.103515625e-05f) { /* subnormal: units of 2^-24 */
        float q = nearbyintf(a * 16777216.0f);
        return sign | (uint16_t)q;
    }
    int e;
    float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5,1) */
    float q = nearbyintf(m * 2048.0f); /* 11 significant bits */
    if (q >= 2048.0f) {
        q /= 2.0f;
        e++;
    }
    return sign | (uint16_t)(((e + 14) << 10) | ((uint32_t)q - 1024));
}

float dsa_e4m3_to_f32(uint8_t b)
{
    int sign = b >> 7;
    int exp = (b >> 3) & 0xf;
    int man = b & 7;
    float v;
    if (exp == 0xf && man == 7)
        return NAN;
    if (exp == 0)
        v = ldexpf((float)man, -9);
    else
        v = ldexpf(1.0f + (float)man / 8.0f, exp - 7);
    return sign ? -v : v;
}

uint8_t dsa_f32_to_e4m3(float f)
{
    if (isnan(f))
        return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f)
        return sign | 0x7e;
    if (a < 0.015625f) { /* below 2^-6: subnormal, units of 2^-9 */
        float q = nearbyintf(a * 512.0f);
        return sign | (uint8_t)q; /* q == 8 encodes 2^-6 exactly */
    }
    int e;
    float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5,1) */
    float q = nearbyintf(m * 16.0f); /* 4 significant bits */
    if (q >= 16.0f) {
        q /= 2.0f;
        e++;
    }
    int biased = e - 1 + 7;
    uint8_t code = (uint8_t)((biased << 3) | ((int)q - 8));
    if (code > 0x7e)
        code = 0x7e;
    return sign | code;
}

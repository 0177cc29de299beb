/* dtype.h - element types of checkpoints and tensors, and scalar conversions.
 *
 * F8_E4M3 is float8_e4m3fn (OCP FP8: 4 exponent bits, bias 7, 3 mantissa
 * bits, no infinities, 0x7F/0xFF are NaN, max finite 448). */
#ifndef DSA_COMMON_DTYPE_H
#define DSA_COMMON_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum dsa_dtype {
    DSA_DTYPE_F32,
    DSA_DTYPE_F16,
    DSA_DTYPE_BF16,
    DSA_DTYPE_F8_E4M3,
    DSA_DTYPE_I32,
    DSA_DTYPE_I64,
    DSA_DTYPE_I8,       /* int8 weights with F32 scales (--lm-head-dtype int8) */
    DSA_DTYPE_COUNT
} dsa_dtype;

/* Bytes per element; 0 for an invalid value. */
size_t dsa_dtype_size(dsa_dtype t);
/* The safetensors spelling ("F32", "BF16", "F8_E4M3", ...). */
const char *dsa_dtype_name(dsa_dtype t);
/* Parses a safetensors dtype string; returns 0 and sets *out, or -1. */
int dsa_dtype_parse(const char *s, dsa_dtype *out);

static inline float dsa_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, NaN kept quiet. */
static inline uint16_t dsa_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float dsa_f16_to_f32(uint16_t h);
uint16_t dsa_f32_to_f16(float f);

/* e4m3 decoding: exact for every one of the 256 codes. */
float dsa_e4m3_to_f32(uint8_t b);
/* Round to nearest even, saturating to ±448; NaN maps to 0x7F. */
uint8_t dsa_f32_to_e4m3(float f);

#endif

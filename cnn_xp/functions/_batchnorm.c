/* Batch normalisation of (n, c, h, w) arrays on the CPU: each pass goes over the batch once,
   channel plane after channel plane (hw contiguous elements), where NumPy's reductions over the
   axes (0, 2, 3) and its broadcasts take two or three passes each.

   Sums are kept in double whatever the array's type, in eight partial sums per channel that the
   compiler turns into vector lanes (their order is fixed by the code: no -ffast-math), so float32
   statistics are far more exact than float32 sums would be.  cnn_xp/functions/batchnorm.py
   calls these, adds the sums of the shards of a batch, and derives the per-channel factors:

     forward   bn_sum (sum x), bn_sqdev (sum (x - mean)^2), bn_affine (y = x * scale + shift)
     backward  bn_grad_sums (sum dy, sum dy * (x - mean)), bn_grad_apply (dx = a dy + b x + k)

   x, y, dy, dx (n, c, hw); scale, shift, a, b, k (c,) of the array's type; mean (c,) and the
   sums' out (c,) or (2 c,) in double. */

#include "_kernels.h"

#define LANES 8

#define DEFINE_BATCHNORM(T_, S_)                                                                     \
                                                                                                     \
CNN_XP_CLONES void bn_sum_##S_(const T_ *restrict x, idx n, idx c, idx hw, double *restrict out)                   \
{                                                                                                    \
    for (idx ch = 0; ch < c; ch++) {                                                                 \
        double acc[LANES] = {0};                                                                     \
        for (idx img = 0; img < n; img++) {                                                          \
            const T_ *p = x + (img * c + ch) * hw;                                                   \
            idx i = 0;                                                                               \
            for (; i + LANES <= hw; i += LANES)                                                      \
                for (int l = 0; l < LANES; l++) acc[l] += (double)p[i + l];                          \
            for (; i < hw; i++) acc[i % LANES] += (double)p[i];                                      \
        }                                                                                            \
        double s = 0;                                                                                \
        for (int l = 0; l < LANES; l++) s += acc[l];                                                 \
        out[ch] = s;                                                                                 \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
CNN_XP_CLONES void bn_sqdev_##S_(const T_ *restrict x, idx n, idx c, idx hw, const double *restrict mean,           \
                   double *restrict out)                                                             \
{                                                                                                    \
    for (idx ch = 0; ch < c; ch++) {                                                                 \
        double acc[LANES] = {0}, m = mean[ch];                                                       \
        for (idx img = 0; img < n; img++) {                                                          \
            const T_ *p = x + (img * c + ch) * hw;                                                   \
            idx i = 0;                                                                               \
            for (; i + LANES <= hw; i += LANES)                                                      \
                for (int l = 0; l < LANES; l++) {                                                    \
                    double d = (double)p[i + l] - m;                                                 \
                    acc[l] += d * d;                                                                 \
                }                                                                                    \
            for (; i < hw; i++) {                                                                    \
                double d = (double)p[i] - m;                                                         \
                acc[i % LANES] += d * d;                                                             \
            }                                                                                        \
        }                                                                                            \
        double s = 0;                                                                                \
        for (int l = 0; l < LANES; l++) s += acc[l];                                                 \
        out[ch] = s;                                                                                 \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
CNN_XP_CLONES void bn_affine_##S_(const T_ *restrict x, idx n, idx c, idx hw, const T_ *restrict scale,             \
                    const T_ *restrict shift, T_ *restrict y)                                        \
{                                                                                                    \
    for (idx img = 0; img < n; img++)                                                                \
        for (idx ch = 0; ch < c; ch++) {                                                             \
            const T_ *p = x + (img * c + ch) * hw;                                                   \
            T_ *q = y + (img * c + ch) * hw, a = scale[ch], b = shift[ch];                           \
            for (idx i = 0; i < hw; i++) q[i] = p[i] * a + b;                                        \
        }                                                                                            \
}                                                                                                    \
                                                                                                     \
CNN_XP_CLONES void bn_grad_sums_##S_(const T_ *restrict dy, const T_ *restrict x, idx n, idx c, idx hw,            \
                       const double *restrict mean, double *restrict out)                            \
{                                                                                                    \
    for (idx ch = 0; ch < c; ch++) {                                                                 \
        double s1[LANES] = {0}, s2[LANES] = {0}, m = mean[ch];                                       \
        for (idx img = 0; img < n; img++) {                                                          \
            const T_ *g = dy + (img * c + ch) * hw, *p = x + (img * c + ch) * hw;                    \
            idx i = 0;                                                                               \
            for (; i + LANES <= hw; i += LANES)                                                      \
                for (int l = 0; l < LANES; l++) {                                                    \
                    double d = (double)g[i + l];                                                     \
                    s1[l] += d;                                                                      \
                    s2[l] += d * ((double)p[i + l] - m);                                             \
                }                                                                                    \
            for (; i < hw; i++) {                                                                    \
                double d = (double)g[i];                                                             \
                s1[i % LANES] += d;                                                                  \
                s2[i % LANES] += d * ((double)p[i] - m);                                             \
            }                                                                                        \
        }                                                                                            \
        double a = 0, b = 0;                                                                         \
        for (int l = 0; l < LANES; l++) {                                                            \
            a += s1[l];                                                                              \
            b += s2[l];                                                                              \
        }                                                                                            \
        out[ch] = a;                                                                                 \
        out[c + ch] = b;                                                                             \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
CNN_XP_CLONES void bn_grad_apply_##S_(const T_ *restrict dy, const T_ *restrict x, idx n, idx c, idx hw,           \
                        const T_ *restrict a, const T_ *restrict b, const T_ *restrict k,            \
                        T_ *restrict dx)                                                             \
{                                                                                                    \
    for (idx img = 0; img < n; img++)                                                                \
        for (idx ch = 0; ch < c; ch++) {                                                             \
            const T_ *g = dy + (img * c + ch) * hw, *p = x + (img * c + ch) * hw;                    \
            T_ *q = dx + (img * c + ch) * hw, ca = a[ch], cb = b[ch], ck = k[ch];                    \
            for (idx i = 0; i < hw; i++) q[i] = ca * g[i] + (cb * p[i] + ck);                        \
        }                                                                                            \
}

DEFINE_BATCHNORM(float, f32)
DEFINE_BATCHNORM(double, f64)

/* Max pooling on the CPU: the forward keeps, per output, which window element won; the backward
   sends each output's gradient there.  The same results as cnn_xp/layers/pooling.py's NumPy
   passes (tests/functions/test_native.py compares them):

   - the max is NumPy's maximum chained over the window in row-major order: a NaN anywhere
     makes the output NaN; padding is -inf and never wins unless every real element is -inf;
   - the winner is the first element (row-major) equal to the max, padding included; a NaN
     output has none, and its gradient goes nowhere;
   - the backward adds the gradients window offset by offset, in row-major order, so that
     overlapping windows sum in the NumPy passes' order; where they multiply a gradient by a
     zero mask (-0.0 for a negative one), this writes +0.0.

   x, dx (n * c planes of h, w); y, dy, win (n * c planes of oh, ow); win[o] = i * kw + j of the
   winner of output o, or 255 for none (kh * kw < 255). */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_kernels.h"

#define NONE 255
#define ROW 4096 /* the 2x2 fast path's longest output row */

#define DEFINE_POOLING(T_, U_, S_)                                                                     \
                                                                                                   \
CNN_XP_CLONES void max_pool_##S_(const T_ *restrict x, idx planes, idx h, idx w, idx kh, idx kw, idx sh, idx sw, \
                   idx ph, idx pw, idx oh, idx ow, T_ *restrict y, u8 *restrict win)               \
{                                                                                                  \
    for (idx p = 0; p < planes; p++) {                                                             \
        const T_ *xp = x + p * h * w;                                                              \
        T_ *yp = y + p * oh * ow;                                                                  \
        u8 *wp = win + p * oh * ow;                                                                \
        if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && ow <= ROW) {         \
            /* the common case, 2x2 windows tiling the image: selects and arithmetic, no       */ \
            /* branches (the winner follows no pattern a branch could predict), so it vectorizes */ \
            for (idx oy = 0; oy < oh; oy++) {                                                      \
                const T_ *r0 = xp + 2 * oy * w, *r1 = r0 + w;                                      \
                T_ *yo = yp + oy * ow;                                                             \
                int k[ROW], nan = 0;                                                               \
                for (idx ox = 0; ox < ow; ox++) {                                                  \
                    T_ a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];     \
                    T_ m = a > b ? a : b; /* numpy.maximum of numbers: ties to the second */       \
                    m = m > c ? m : c;                                                             \
                    m = m > d ? m : d;                                                             \
                    yo[ox] = m;                                                                    \
                    int na = a != m, nb = b != m, nc = c != m, nd = d != m; /* the first equal: */ \
                    k[ox] = na + (na & nb) + (na & nb & nc) + (na & nb & nc & nd) * (NONE - 3);    \
                    nan |= (a != a) | (b != b) | (c != c) | (d != d);                              \
                }                                                                                  \
                if (nan) /* rare: the row again, with numpy.maximum's NaN rule (the first wins) */ \
                    for (idx ox = 0; ox < ow; ox++) {                                              \
                        T_ a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1]; \
                        if (a != a || b != b || c != c || d != d) {                                \
                            yo[ox] = a != a ? a : b != b ? b : c != c ? c : d;                     \
                            k[ox] = NONE;                                                          \
                        }                                                                          \
                    }                                                                              \
                for (idx ox = 0; ox < ow; ox++) wp[oy * ow + ox] = (u8)k[ox];                      \
            }                                                                                      \
            continue;                                                                              \
        }                                                                                          \
        for (idx oy = 0; oy < oh; oy++)                                                            \
            for (idx ox = 0; ox < ow; ox++) {                                                      \
                T_ m = 0;                                                                          \
                for (idx k = 0; k < kh * kw; k++) {                                                \
                    idx yy = oy * sh + k / kw - ph, xx = ox * sw + k % kw - pw;                    \
                    T_ v = (yy >= 0 && yy < h && xx >= 0 && xx < w) ? xp[yy * w + xx] : -INFINITY; \
                    if (k == 0 || !(m > v || m != m)) m = v;                                      \
                }                                                                                  \
                u8 best = NONE;                                                                    \
                for (idx k = 0; k < kh * kw && best == NONE; k++) {                                \
                    idx yy = oy * sh + k / kw - ph, xx = ox * sw + k % kw - pw;                    \
                    T_ v = (yy >= 0 && yy < h && xx >= 0 && xx < w) ? xp[yy * w + xx] : -INFINITY; \
                    if (v == m) best = (u8)k;                                                      \
                }                                                                                  \
                yp[oy * ow + ox] = m;                                                              \
                wp[oy * ow + ox] = best;                                                           \
            }                                                                                      \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES void max_pool_grad_##S_(const T_ *restrict dy, const u8 *restrict win, idx planes, idx h, idx w,  \
                        idx kh, idx kw, idx sh, idx sw, idx ph, idx pw, idx oh, idx ow,            \
                        T_ *restrict dx)                                                           \
{                                                                                                  \
    memset(dx, 0, sizeof(T_) * (size_t)(planes * h * w));                                         \
    for (idx p = 0; p < planes; p++) {                                                             \
        const T_ *dyp = dy + p * oh * ow;                                                          \
        const u8 *wp = win + p * oh * ow;                                                          \
        T_ *dxp = dx + p * h * w;                                                                  \
        if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0) {                      \
            /* the common case: each window's four gradients are dy or zero, chosen by a bit   */ \
            /* mask on dy's bits (a select would be a branch, and would not vectorize)         */ \
            for (idx oy = 0; oy < oh; oy++) {                                                      \
                U_ *d0 = (U_ *)(dxp + 2 * oy * w), *d1 = d0 + w;                                   \
                const U_ *g = (const U_ *)(dyp + oy * ow);                                         \
                const u8 *k = wp + oy * ow;                                                        \
                for (idx ox = 0; ox < ow; ox++) {                                                  \
                    U_ q = k[ox], v = g[ox];                                                       \
                    d0[2 * ox] = v & ((U_)0 - (U_)(q == 0));                                       \
                    d0[2 * ox + 1] = v & ((U_)0 - (U_)(q == 1));                                   \
                    d1[2 * ox] = v & ((U_)0 - (U_)(q == 2));                                       \
                    d1[2 * ox + 1] = v & ((U_)0 - (U_)(q == 3));                                   \
                }                                                                                  \
            }                                                                                      \
            continue;                                                                              \
        }                                                                                          \
        if (sh >= kh && sw >= kw) { /* windows apart: every pixel has at most one window */     \
            for (idx oy = 0; oy < oh; oy++)                                                        \
                for (idx ox = 0; ox < ow; ox++) {                                                  \
                    idx k = wp[oy * ow + ox];                                                      \
                    idx yy = oy * sh + k / kw - ph, xx = ox * sw + k % kw - pw;                    \
                    if (k != NONE && yy >= 0 && yy < h && xx >= 0 && xx < w)                       \
                        dxp[yy * w + xx] = dyp[oy * ow + ox];                                      \
                }                                                                                  \
            continue;                                                                              \
        }                                                                                          \
        for (idx k = 0; k < kh * kw; k++) /* offset by offset, as the NumPy passes add */          \
            for (idx oy = 0; oy < oh; oy++) {                                                      \
                idx yy = oy * sh + k / kw - ph;                                                    \
                if (yy < 0 || yy >= h) continue;                                                   \
                for (idx ox = 0; ox < ow; ox++) {                                                  \
                    idx xx = ox * sw + k % kw - pw;                                                \
                    if (wp[oy * ow + ox] == k && xx >= 0 && xx < w)                                \
                        dxp[yy * w + xx] += dyp[oy * ow + ox];                                     \
                }                                                                                  \
            }                                                                                      \
    }                                                                                              \
}

DEFINE_POOLING(float, uint32_t, f32)
DEFINE_POOLING(double, uint64_t, f64)

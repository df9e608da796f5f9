/* The columns of a strided convolution, and their gradient added back (cnn_xp/functions/conv2d.py's
   strided path): one pass each way over each image plane, where the NumPy passes pad a copy of
   the batch and then go over it once per window offset.

     x, dx      (n, c, h, w)
     cols       (c, kh, kw, n, oh, ow):  cols[ci, i, j, img, oy, ox] = x[img, ci, oy*sh + i - ph, ox*sw + j - pw],
                                         0 where that pixel is padding
     col2im:    dx[img, ci, y, x] = 0 + the values of cols that read that pixel, added offset by
                offset (i, j) in row-major order: the NumPy passes' order, so the same bits

   (tests/functions/test_native.py compares both with the NumPy passes.) */

#include <string.h>

#include "_kernels.h"

/* the ox whose column ox*s + j - p falls inside [0, w): [*lo, *hi) (every pointer formed then
   points into its array) */
CNN_XP_INLINE void inside(idx w, idx ow, idx s, idx p, idx j, idx *lo, idx *hi)
{
    idx a = p - j > 0 ? (p - j + s - 1) / s : 0;
    idx b = w - 1 + p - j >= 0 ? (w - 1 + p - j) / s + 1 : 0;
    *lo = a < ow ? a : ow;
    *hi = b < ow ? b : ow;
    if (*hi < *lo) *hi = *lo;
}

#define DEFINE_IM2COL(T_, S_)                                                                          \
                                                                                                   \
CNN_XP_CLONES void im2col_##S_(const T_ *restrict x, idx n, idx c, idx h, idx w, idx kh, idx kw, idx sh, idx sw, \
                 idx ph, idx pw, idx oh, idx ow, T_ *restrict cols)                                \
{                                                                                                  \
    for (idx ci = 0; ci < c; ci++)                                                                 \
        for (idx i = 0; i < kh; i++)                                                               \
            for (idx j = 0; j < kw; j++) {                                                         \
                idx lo, hi;                                                                        \
                inside(w, ow, sw, pw, j, &lo, &hi);                                                \
                T_ *out = cols + ((ci * kh + i) * kw + j) * n * oh * ow;                           \
                for (idx img = 0; img < n; img++) {                                                \
                    const T_ *plane = x + (img * c + ci) * h * w;                                  \
                    for (idx oy = 0; oy < oh; oy++, out += ow) {                                   \
                        idx yy = oy * sh + i - ph;                                                 \
                        if (yy < 0 || yy >= h) {                                                   \
                            for (idx ox = 0; ox < ow; ox++) out[ox] = 0;                           \
                            continue;                                                              \
                        }                                                                          \
                        const T_ *row = plane + yy * w;                                            \
                        for (idx ox = 0; ox < lo; ox++) out[ox] = 0;                               \
                        for (idx ox = lo; ox < hi; ox++) out[ox] = row[ox * sw + j - pw];          \
                        for (idx ox = hi; ox < ow; ox++) out[ox] = 0;                              \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES void col2im_##S_(const T_ *restrict cols, idx n, idx c, idx h, idx w, idx kh, idx kw, idx sh, idx sw, \
                 idx ph, idx pw, idx oh, idx ow, T_ *restrict dx)                                  \
{                                                                                                  \
    for (idx img = 0; img < n; img++)                                                              \
        for (idx ci = 0; ci < c; ci++) {                                                           \
            T_ *plane = dx + (img * c + ci) * h * w;                                               \
            memset(plane, 0, sizeof(T_) * (size_t)(h * w));                                        \
            for (idx i = 0; i < kh; i++)                                                           \
                for (idx j = 0; j < kw; j++) {                                                     \
                    idx lo, hi;                                                                    \
                    inside(w, ow, sw, pw, j, &lo, &hi);                                            \
                    const T_ *in = cols + (((ci * kh + i) * kw + j) * n + img) * oh * ow;          \
                    for (idx oy = 0; oy < oh; oy++, in += ow) {                                    \
                        idx yy = oy * sh + i - ph;                                                 \
                        if (yy < 0 || yy >= h) continue;                                           \
                        T_ *row = plane + yy * w;                                                  \
                        for (idx ox = lo; ox < hi; ox++) row[ox * sw + j - pw] += in[ox];          \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
}

DEFINE_IM2COL(float, f32)
DEFINE_IM2COL(double, f64)

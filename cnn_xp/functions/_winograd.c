/* Winograd F(2x2, 3x3) transforms on the CPU, one image plane at a time.

   Each function computes bit for bit what its namesake in cnn_xp/functions/winograd.py computes
   with whole-array passes: the same additions and subtractions in the same order (there are no
   multiplications, so nothing to contract; built without -ffast-math).  Only the junk tiles (the
   last tile of every tile row, computed and dropped) may differ.

   The plane is kept in four quarters -- even and odd rows, even and odd columns -- so that every
   loop runs over contiguous memory: with t1 tiles per tile row (the junk one included), the
   quarter (row parity, column parity) holds element (2 * i + rp, 2 * j + cp) at i * t1 + j, and
   a tile's 4x4 patch is the same index in all four quarters plus the next one (i * t1 + j + 1
   for the columns, + t1 for the rows).

   Layouts (T = n * th * tw tiles, ordered image, tile row, tile column):
     x, dx   (n, c, h, w)        v, dv   (16, c, T)
     y, dy   (n, fn, oh, ow)     m, dm   (16, fn, T)
   tw is the tiles per tile row in v, m, dv, dm: t1 (the NumPy passes' layout, junk tiles
   included) or t1 - 1 (compact: no junk tiles, so the matrix products between the transforms
   do no work on them).
   (ph, pw) is the zero padding on the top and left.  scratch holds winograd_scratch(th, t1)
   elements of the array's type. */

#include <string.h>

#include "_kernels.h"

idx winograd_scratch(idx th, idx t1)
{
    return 16 * (th + 1) * t1 + 16;
}

#define DEFINE_TRANSFORMS(T_, S_)                                                                  \
                                                                                                   \
/* B^T (d0, d1, d2, d3) = (d0 - d2, d1 + d2, d2 - d1, d1 - d3), one element of four rows. */      \
CNN_XP_INLINE void bt_##S_(T_ d0, T_ d1, T_ d2, T_ d3, T_ *o0, T_ *o1, T_ *o2, T_ *o3)             \
{                                                                                                  \
    *o0 = d0 - d2;                                                                                 \
    *o1 = d1 + d2;                                                                                 \
    *o2 = d2 - d1;                                                                                 \
    *o3 = d1 - d3;                                                                                 \
}                                                                                                  \
                                                                                                   \
/* A^T's adjoint: (g0, g1) -> (g0, g0 + g1, g0 - g1, 0 - g1), one element. */                    \
CNN_XP_INLINE void at_adjoint_##S_(T_ g0, T_ g1, T_ *o0, T_ *o1, T_ *o2, T_ *o3)                   \
{                                                                                                  \
    *o0 = g0;                                                                                      \
    *o1 = g0 + g1;                                                                                 \
    *o2 = g0 - g1;                                                                                 \
    *o3 = 0 - g1;                                                                                  \
}                                                                                                  \
                                                                                                   \
/* Copies between x's plane (h, w) and the four quarters q (2, 2, th + 1, t1) of that plane     */ \
/* zero-padded by (ph, pw): into the quarters if to_q, else back (padding dropped), counting    */ \
/* the non-finite values copied back (x - x is 0 for a finite x only).                          */ \
CNN_XP_INLINE idx quarters_##S_(T_ *restrict x, idx h, idx w, idx ph, idx pw, idx th, idx t1,             \
                         T_ *restrict q, int to_q)                                                 \
{                                                                                                  \
    idx size = (th + 1) * t1, bad = 0;                                                             \
    for (idx y = 0; y < h; y++)                                                                    \
        for (idx cp = 0; cp < 2; cp++) {                                                           \
            idx x0 = (pw + cp) & 1; /* first column of x that lands in this column parity */       \
            T_ *row = x + y * w + x0;                                                              \
            T_ *quarter = q + (((ph + y) & 1) * 2 + cp) * size + ((ph + y) >> 1) * t1 + ((pw + x0) >> 1); \
            idx count = (w - x0 + 1) / 2;                                                          \
            if (to_q)                                                                              \
                for (idx k = 0; k < count; k++) quarter[k] = row[2 * k];                           \
            else                                                                                   \
                for (idx k = 0; k < count; k++) {                                                  \
                    T_ v = quarter[k];                                                             \
                    row[2 * k] = v;                                                                \
                    bad += (v - v) != 0;                                                           \
                }                                                                                  \
        }                                                                                          \
    return bad;                                                                                    \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES void winograd_input_##S_(const T_ *restrict x, idx n, idx c, idx h, idx w, idx ph, idx pw,        \
                         idx th, idx t1, idx tw, T_ *restrict v, T_ *restrict scratch)             \
{                                                                                                  \
    idx plane = th * t1, size = (th + 1) * t1, ct = c * n * th * tw;                               \
    T_ *restrict q = scratch;               /* (2, 2, th + 1, t1): the padded plane */             \
    T_ *restrict r = scratch + 4 * size;    /* (4, 2, plane + 1): B^T d down the columns */        \
    memset(q, 0, sizeof(T_) * (size_t)(4 * size));                                                 \
    for (idx k = 0; k < 8; k++) r[k * (plane + 1) + plane] = 0; /* read by the last junk tile */   \
    for (idx ci = 0; ci < c; ci++)                                                                 \
        for (idx img = 0; img < n; img++) {                                                        \
            quarters_##S_((T_ *)x + (img * c + ci) * h * w, h, w, ph, pw, th, t1, q, 1);           \
            for (idx cp = 0; cp < 2; cp++) {                                                       \
                const T_ *d0 = q + cp * size, *d1 = q + (2 + cp) * size, *d2 = d0 + t1,            \
                         *d3 = d1 + t1;                                                            \
                T_ *r0 = r + cp * (plane + 1), *r1 = r0 + 2 * (plane + 1), *r2 = r1 + 2 * (plane + 1), \
                   *r3 = r2 + 2 * (plane + 1);                                                     \
                for (idx m = 0; m < plane; m++)                                                    \
                    bt_##S_(d0[m], d1[m], d2[m], d3[m], r0 + m, r1 + m, r2 + m, r3 + m);           \
            }                                                                                      \
            for (idx a = 0; a < 4; a++) {  /* . B along the rows */                                \
                const T_ *e0 = r + 2 * a * (plane + 1), *e1 = e0 + plane + 1, *e2 = e0 + 1,        \
                         *e3 = e1 + 1;                                                             \
                T_ *o0 = v + 4 * a * ct + (ci * n + img) * th * tw, *o1 = o0 + ct, *o2 = o1 + ct,  \
                   *o3 = o2 + ct;                                                                  \
                for (idx i = 0; i < th; i++)                                                       \
                    for (idx j = 0; j < tw; j++) {                                                 \
                        idx m = i * t1 + j, o = i * tw + j;                                        \
                        bt_##S_(e0[m], e1[m], e2[m], e3[m], o0 + o, o1 + o, o2 + o, o3 + o);       \
                    }                                                                              \
            }                                                                                      \
        }                                                                                          \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES idx winograd_input_grad_##S_(const T_ *restrict dv, idx n, idx c, idx h, idx w, idx ph, idx pw,  \
                              idx th, idx t1, idx tw, T_ *restrict dx, T_ *restrict scratch)       \
{                                                                                                  \
    idx bad = 0; /* non-finite outputs: the caller falls back to the direct path */                \
    idx plane = th * t1, size = (th + 1) * t1, ct = c * n * th * tw;                               \
    T_ *restrict q = scratch;               /* (2, 2, th + 1, t1): the padded plane's gradient */  \
    T_ *restrict r = scratch + 4 * size;    /* (4, 2, plane): gradients of B^T d */               \
    for (idx ci = 0; ci < c; ci++)                                                                 \
        for (idx img = 0; img < n; img++) {                                                        \
            /* B's adjoint along the rows: tile j's d0, d1 go to its own columns, its d2, d3  */   \
            /* to tile j + 1's (the last real tile's to the junk tile's place, which a junk   */   \
            /* tile's own zero gradient leaves as it is)                                      */   \
            for (idx a = 0; a < 4; a++)                                                            \
                for (idx i = 0; i < th; i++) {                                                     \
                    const T_ *g0 = dv + 4 * a * ct + (ci * n + img) * th * tw + i * tw,            \
                             *g1 = g0 + ct, *g2 = g1 + ct, *g3 = g2 + ct;                          \
                    T_ *ev = r + 2 * a * plane + i * t1, *od = ev + plane;                         \
                    ev[0] = g0[0];                                                                 \
                    od[0] = (g1[0] - g2[0]) + g3[0];                                               \
                    for (idx j = 1; j < tw; j++) {                                                 \
                        ev[j] = g0[j] + ((g1[j - 1] + g2[j - 1]) - g0[j - 1]);                     \
                        od[j] = ((g1[j] - g2[j]) + g3[j]) - g3[j - 1];                             \
                    }                                                                              \
                    if (tw < t1) {                                                                 \
                        ev[tw] = 0 + ((g1[tw - 1] + g2[tw - 1]) - g0[tw - 1]);                     \
                        od[tw] = 0 - g3[tw - 1];                                                   \
                    }                                                                              \
                }                                                                                  \
            /* ... and down the columns, into the even and odd rows */                             \
            for (idx cp = 0; cp < 2; cp++) {                                                       \
                const T_ *g0 = r + cp * plane, *g1 = g0 + 2 * plane, *g2 = g1 + 2 * plane,         \
                         *g3 = g2 + 2 * plane;                                                     \
                T_ *ev = q + cp * size, *od = q + (2 + cp) * size;                                 \
                for (idx m = 0; m < t1; m++) {                                                     \
                    ev[m] = g0[m];                                                                 \
                    od[m] = (g1[m] - g2[m]) + g3[m];                                               \
                }                                                                                  \
                for (idx m = t1; m < plane; m++) {                                                 \
                    ev[m] = g0[m] + ((g1[m - t1] + g2[m - t1]) - g0[m - t1]);                      \
                    od[m] = ((g1[m] - g2[m]) + g3[m]) - g3[m - t1];                                \
                }                                                                                  \
                for (idx m = plane; m < size; m++) {                                               \
                    ev[m] = 0 + ((g1[m - t1] + g2[m - t1]) - g0[m - t1]);                          \
                    od[m] = 0 - g3[m - t1];                                                        \
                }                                                                                  \
            }                                                                                      \
            bad += quarters_##S_(dx + (img * c + ci) * h * w, h, w, ph, pw, th, t1, q, 0);                \
        }                                                                                          \
    return bad;                                                                                    \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES idx winograd_output_##S_(const T_ *restrict m, const T_ *restrict b, idx n, idx fn, idx oh,      \
                          idx ow, idx th, idx t1, idx tw, T_ *restrict y, T_ *restrict scratch)    \
{                                                                                                  \
    idx bad = 0; /* non-finite outputs: the caller falls back to the direct path */                \
    idx plane = th * t1, size = (th + 1) * t1, ft = fn * n * th * tw;                              \
    T_ *restrict q = scratch;               /* (2, 2, th + 1, t1): the output plane, quarters */   \
    T_ *restrict r = scratch + 4 * size;    /* (2, 4, plane): A^T m down the columns */           \
    memset(r, 0, sizeof(T_) * (size_t)(8 * plane)); /* junk places, never written if tw < t1 */   \
    for (idx f = 0; f < fn; f++)                                                                   \
        for (idx img = 0; img < n; img++) {                                                        \
            const T_ *mt = m + (f * n + img) * th * tw;                                            \
            T_ bias = b[f];  /* into m[1][1], which enters every output pixel once */              \
            for (idx k = 0; k < 4; k++) {                                                          \
                const T_ *m0 = mt + k * ft, *m1 = m0 + 4 * ft, *m2 = m1 + 4 * ft, *m3 = m2 + 4 * ft; \
                T_ *r0 = r + k * plane, *r1 = r0 + 4 * plane;                                      \
                for (idx i = 0; i < th; i++)                                                       \
                    for (idx j = 0; j < tw; j++) {                                                 \
                        idx s = i * tw + j, d = i * t1 + j;                                        \
                        T_ g1 = k == 1 ? m1[s] + bias : m1[s];                                     \
                        r0[d] = (m0[s] + g1) + m2[s];                                              \
                        r1[d] = (g1 - m2[s]) - m3[s];                                              \
                    }                                                                              \
            }                                                                                      \
            for (idx a = 0; a < 2; a++) {  /* . A along the rows */                                \
                const T_ *g0 = r + 4 * a * plane, *g1 = g0 + plane, *g2 = g1 + plane,              \
                         *g3 = g2 + plane;                                                         \
                T_ *ev = q + 2 * a * size, *od = ev + size;                                        \
                for (idx j = 0; j < plane; j++) {                                                  \
                    ev[j] = (g0[j] + g1[j]) + g2[j];                                               \
                    od[j] = (g1[j] - g2[j]) - g3[j];                                               \
                }                                                                                  \
            }                                                                                      \
            bad += quarters_##S_(y + (img * fn + f) * oh * ow, oh, ow, 0, 0, th, t1, q, 0);               \
        }                                                                                          \
    return bad;                                                                                    \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES void winograd_output_grad_##S_(const T_ *restrict dy, idx n, idx fn, idx oh, idx ow, idx th,      \
                               idx t1, idx tw, T_ *restrict dm, T_ *restrict scratch)              \
{                                                                                                  \
    idx plane = th * t1, size = (th + 1) * t1, ft = fn * n * th * tw;                              \
    T_ *restrict q = scratch;               /* (2, 2, th + 1, t1): dy's plane, quarters */        \
    T_ *restrict r = scratch + 4 * size;    /* (2, 4, plane): A's adjoint along the rows */       \
    memset(q, 0, sizeof(T_) * (size_t)(4 * size)); /* junk tiles and a short last row or column */ \
    for (idx f = 0; f < fn; f++)                                                                   \
        for (idx img = 0; img < n; img++) {                                                        \
            quarters_##S_((T_ *)dy + (img * fn + f) * oh * ow, oh, ow, 0, 0, th, t1, q, 1);        \
            for (idx a = 0; a < 2; a++) {  /* (g0, g1) -> (g0, g0 + g1, g0 - g1, 0 - g1) */        \
                const T_ *g0 = q + 2 * a * size, *g1 = g0 + size;                                  \
                T_ *r0 = r + 4 * a * plane, *r1 = r0 + plane, *r2 = r1 + plane, *r3 = r2 + plane;  \
                for (idx j = 0; j < plane; j++)                                                    \
                    at_adjoint_##S_(g0[j], g1[j], r0 + j, r1 + j, r2 + j, r3 + j);                 \
            }                                                                                      \
            T_ *mt = dm + (f * n + img) * th * tw;                                                 \
            for (idx k = 0; k < 4; k++) {  /* ... the same down the columns */                     \
                const T_ *g0 = r + k * plane, *g1 = g0 + 4 * plane;                                \
                T_ *m0 = mt + k * ft, *m1 = m0 + 4 * ft, *m2 = m1 + 4 * ft, *m3 = m2 + 4 * ft;      \
                for (idx i = 0; i < th; i++)                                                       \
                    for (idx j = 0; j < tw; j++) {                                                 \
                        idx s = i * t1 + j, o = i * tw + j;                                        \
                        at_adjoint_##S_(g0[s], g1[s], m0 + o, m1 + o, m2 + o, m3 + o);             \
                    }                                                                              \
            }                                                                                      \
        }                                                                                          \
}

DEFINE_TRANSFORMS(float, f32)
DEFINE_TRANSFORMS(double, f64)

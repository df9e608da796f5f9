/* Winograd F(4x4, 3x3) transforms on the CPU, a group of images at a time.

   Each 4x4 block of output pixels (a tile) comes from the 6x6 input patch under it as
   A^T [(G g G^T) * (B^T d B)] A (Lavin & Gray 2015, interpolation points 0, 1, -1, 2, -2 and
   infinity): 36 products per tile and channel pair instead of 144 (F(2x2, 3x3): 16 instead of
   36).  The filter transform is a matrix product in cnn_xp/functions/winograd.py.

   Planes are small (8x8 to 28x28: 2 to 7 tiles per tile row), so a loop along a plane would be a
   few elements long.  Instead every loop runs across the images of a group (nb of them, the
   last group of a call possibly fewer): a group's channel plane is first copied image-innermost
   (element (y, x) of image p at (y * width + x) * gn + p, zero padding included), and each tile
   row is then transformed in two passes: down its columns (one run over the whole row of
   tiles) and along each of its six rows (one call for all the tiles of the row).  Groups are
   small (a block of images whose transforms stay in cache: 8 to 32 images), so each call does
   a whole tile row's work, not one tile's.

   Layouts (T = n * th * tw tiles; th = ceil(oh / 4), tw = ceil(ow / 4)):
     x, dx   (n, c, h, w)        v, dv   (36, c, T), planes ldk apart
     y, dy   (n, fn, oh, ow)     m, dm   (36, fn, T), planes ldk apart
   Each of the 36 planes is a C-contiguous (c, T) or (fn, T) matrix; ldk >= c * T (fn * T) is
   chosen by the caller so that the planes do not fall into the same cache sets
   (cnn_xp/functions/native.py, plane_stride).
   Tiles are ordered (group, tile row, tile column, image in the group): group g (images
   g * nb .. g * nb + gn - 1) holds tiles g * nb * th * tw onwards, so a block of whole groups is
   one run of tiles.  (ph, pw) is the zero padding on the top and left.  scratch holds
   winograd4_scratch(th, tw, nb) elements of the array's type.  Each gradient function is the
   exact adjoint of its forward (the tests check <T v, w> = <v, T* w>). */

#include <string.h>

#include "_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define HAVE_SSE_TRANSPOSE 1
#endif

/* d[e * ds + a] = s[a * ss + e] for a, e < 4: a 4 x 4 block transposed, between four images'
   rows of four pixels and four pixels' runs of four images.  In SSE registers for float (four
   loads, the shuffles of _MM_TRANSPOSE4_PS, four stores: the compilers leave the loops as
   sixteen single loads and inserts), element by element otherwise. */
static inline void transpose4_f32(const float *restrict s, idx ss, float *restrict d, idx ds)
{
#ifdef HAVE_SSE_TRANSPOSE
    __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + ss), r2 = _mm_loadu_ps(s + 2 * ss),
           r3 = _mm_loadu_ps(s + 3 * ss);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(d, r0);
    _mm_storeu_ps(d + ds, r1);
    _mm_storeu_ps(d + 2 * ds, r2);
    _mm_storeu_ps(d + 3 * ds, r3);
#else
    for (int a = 0; a < 4; a++)
        for (int e = 0; e < 4; e++) d[e * ds + a] = s[a * ss + e];
#endif
}

static inline void transpose4_f64(const double *restrict s, idx ss, double *restrict d, idx ds)
{
    for (int a = 0; a < 4; a++)
        for (int e = 0; e < 4; e++) d[e * ds + a] = s[a * ss + e];
}

idx winograd4_scratch(idx th, idx tw, idx nb)
{
    /* the padded planes, and one tile row's partial transforms: 6 rows of 4 * tw + 2 columns
       (input), 6 x 6 values of tw tiles (input gradient) or 6 x 4 of them (output) */
    return ((4 * th + 2) * (4 * tw + 2) + 36 * tw + 12) * nb;
}

#define DEFINE_TRANSFORMS4(T_, S_)                                                                 \
                                                                                                   \
/* B^T (d0 .. d5) over count runs of gn elements: the input transform of six rows.  Run j of       \
   input k is dk[j * is ..], of output k ok[j * os ..]. */                                         \
CNN_XP_INLINE void bt6_##S_(idx count, idx gn, idx is, idx os, const T_ *restrict d0, const T_ *restrict d1, \
                     const T_ *restrict d2, const T_ *restrict d3, const T_ *restrict d4,          \
                     const T_ *restrict d5, T_ *restrict o0, T_ *restrict o1, T_ *restrict o2,     \
                     T_ *restrict o3, T_ *restrict o4, T_ *restrict o5)                            \
{                                                                                                  \
    for (idx j = 0; j < count; j++)                                                                \
        for (idx p = 0; p < gn; p++) {                                                             \
            idx q = j * is + p, u = j * os + p;                                                    \
            T_ a1 = d1[q], a2 = d2[q], a3 = d3[q], a4 = d4[q];                                     \
            o0[u] = (4 * d0[q] - 5 * a2) + a4;                                                     \
            o1[u] = (a3 + a4) - 4 * (a1 + a2);                                                     \
            o2[u] = (a4 - a3) + 4 * (a1 - a2);                                                     \
            o3[u] = (a4 - a2) - 2 * (a1 - a3);                                                     \
            o4[u] = (a4 - a2) + 2 * (a1 - a3);                                                     \
            o5[u] = (4 * a1 - 5 * a3) + d5[q];                                                     \
        }                                                                                          \
}                                                                                                  \
                                                                                                   \
/* B (g0 .. g5): the adjoint of bt6, gradients of its outputs to gradients of its inputs, added    \
   to o0 .. o5 if add, else stored; runs as in bt6. */                                             \
CNN_XP_INLINE void b6_##S_(idx count, idx gn, idx is, idx os, const T_ *restrict g0, const T_ *restrict g1, \
                    const T_ *restrict g2, const T_ *restrict g3, const T_ *restrict g4,           \
                    const T_ *restrict g5, T_ *restrict o0, T_ *restrict o1, T_ *restrict o2,      \
                    T_ *restrict o3, T_ *restrict o4, T_ *restrict o5, int add)                    \
{                                                                                                  \
    for (idx j = 0; j < count; j++)                                                                \
        for (idx p = 0; p < gn; p++) {                                                             \
            idx q = j * is + p, u = j * os + p;                                                    \
            T_ a0 = g0[q], a1 = g1[q], a2 = g2[q], a3 = g3[q], a4 = g4[q], a5 = g5[q];             \
            T_ s12 = a1 + a2, s34 = a3 + a4;                                                       \
            T_ r0 = 4 * a0;                                                                        \
            T_ r1 = (4 * (a2 - a1) + 2 * (a4 - a3)) + 4 * a5;                                      \
            T_ r2 = (-5 * a0 - 4 * s12) - s34;                                                     \
            T_ r3 = ((a1 - a2) + 2 * (a3 - a4)) - 5 * a5;                                          \
            T_ r4 = (a0 + s12) + s34;                                                              \
            if (add) {                                                                             \
                o0[u] += r0; o1[u] += r1; o2[u] += r2; o3[u] += r3; o4[u] += r4; o5[u] += a5;      \
            } else {                                                                               \
                o0[u] = r0; o1[u] = r1; o2[u] = r2; o3[u] = r3; o4[u] = r4; o5[u] = a5;            \
            }                                                                                      \
        }                                                                                          \
}                                                                                                  \
                                                                                                   \
/* A^T (m0 .. m5) + (0, bias, 0, 0, 0, 0): the output transform of six rows; runs as in bt6. */    \
CNN_XP_INLINE void at6_##S_(idx count, idx gn, idx is, idx os, const T_ *restrict m0, const T_ *restrict m1, \
                     const T_ *restrict m2, const T_ *restrict m3, const T_ *restrict m4,          \
                     const T_ *restrict m5, T_ bias, T_ *restrict o0, T_ *restrict o1,             \
                     T_ *restrict o2, T_ *restrict o3)                                             \
{                                                                                                  \
    for (idx j = 0; j < count; j++)                                                                \
        for (idx p = 0; p < gn; p++) {                                                             \
            idx q = j * is + p, u = j * os + p;                                                    \
            T_ a1 = m1[q] + bias, a2 = m2[q], a3 = m3[q], a4 = m4[q];                              \
            T_ s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4;                         \
            o0[u] = (m0[q] + s12) + s34;                                                           \
            o1[u] = d12 + 2 * d34;                                                                 \
            o2[u] = s12 + 4 * s34;                                                                 \
            o3[u] = (d12 + 8 * d34) + m5[q];                                                       \
        }                                                                                          \
}                                                                                                  \
                                                                                                   \
/* A (g0 .. g3): the adjoint of at6; runs as in bt6. */                                            \
CNN_XP_INLINE void a6_##S_(idx count, idx gn, idx is, idx os, const T_ *restrict g0, const T_ *restrict g1, \
                    const T_ *restrict g2, const T_ *restrict g3, T_ *restrict o0, T_ *restrict o1, \
                    T_ *restrict o2, T_ *restrict o3, T_ *restrict o4, T_ *restrict o5)            \
{                                                                                                  \
    for (idx j = 0; j < count; j++)                                                                \
        for (idx p = 0; p < gn; p++) {                                                             \
            idx q = j * is + p, u = j * os + p;                                                    \
            T_ a0 = g0[q], a1 = g1[q], a2 = g2[q], a3 = g3[q];                                     \
            T_ s02 = a0 + a2, s13 = a1 + a3, e = a0 + 4 * a2, f = 2 * a1 + 8 * a3;                 \
            o0[u] = a0;                                                                            \
            o1[u] = s02 + s13;                                                                     \
            o2[u] = s02 - s13;                                                                     \
            o3[u] = e + f;                                                                         \
            o4[u] = e - f;                                                                         \
            o5[u] = a3;                                                                            \
        }                                                                                          \
}                                                                                                  \
                                                                                                   \
/* How many of the h x w values of gn images placed at (top, left) in xi (rows of cols, image      \
   innermost) are not finite (x - x is 0 for a finite x only): one pass that only looks, over      \
   runs a whole row long, and a count only where it finds one.  (Counted while copying, element    \
   by element, the test cost as much as the transforms.) */                                        \
CNN_XP_INLINE idx nonfinite_##S_(const T_ *restrict xi, idx gn, idx h, idx w, idx top, idx left,   \
                          idx cols)                                                                \
{                                                                                                  \
    int any = 0;                                                                                   \
    for (idx y = 0; y < h; y++) {                                                                  \
        const T_ *s = xi + ((top + y) * cols + left) * gn;                                         \
        for (idx q = 0; q < w * gn; q++)                                                           \
            any |= (s[q] - s[q]) != 0;                                                             \
    }                                                                                              \
    idx bad = 0;                                                                                   \
    if (any)                                                                                       \
        for (idx y = 0; y < h; y++) {                                                              \
            const T_ *s = xi + ((top + y) * cols + left) * gn;                                     \
            for (idx q = 0; q < w * gn; q++)                                                       \
                bad += (s[q] - s[q]) != 0;                                                         \
        }                                                                                          \
    return bad;                                                                                    \
}                                                                                                  \
                                                                                                   \
/* Copies between gn planes (h, w), stride apart, and their image-innermost copy xi (rows,         \
   cols, gn) with the planes placed at (top, left): into xi if to_xi (the rest of xi zeroed), else \
   back (the rest of xi dropped).  Four images at a time, in 4 x 4 blocks read and written whole,  \
   not one scattered store each. */                                                                \
CNN_XP_INLINE void interleave_##S_(T_ *restrict x, idx stride, idx gn, idx h, idx w, idx top, idx left,\
                            idx rows, idx cols, T_ *restrict xi, int to_xi)                        \
{                                                                                                  \
    idx p = 0;                                                                                     \
    if (to_xi) { /* zero the padding: the rows above and below, the columns either side */         \
        memset(xi, 0, sizeof(T_) * (size_t)(top * cols * gn));                                     \
        memset(xi + (top + h) * cols * gn, 0, sizeof(T_) * (size_t)((rows - top - h) * cols * gn));\
        for (idx y = top; y < top + h; y++) {                                                      \
            memset(xi + y * cols * gn, 0, sizeof(T_) * (size_t)(left * gn));                       \
            memset(xi + (y * cols + left + w) * gn, 0,                                             \
                   sizeof(T_) * (size_t)((cols - left - w) * gn));                                 \
        }                                                                                          \
    }                                                                                              \
    for (; p + 4 <= gn; p += 4)                                                                    \
        for (idx y = 0; y < h; y++) {                                                              \
            T_ *row = x + p * stride + y * w;                                                      \
            T_ *dst = xi + ((top + y) * cols + left) * gn + p;                                     \
            idx k = 0;                                                                             \
            for (; k + 4 <= w; k += 4) {                                                           \
                if (to_xi)                                                                         \
                    transpose4_##S_(row + k, stride, dst + k * gn, gn);                            \
                else                                                                               \
                    transpose4_##S_(dst + k * gn, gn, row + k, stride);                            \
            }                                                                                      \
            for (; k < w; k++)                                                                     \
                for (int a = 0; a < 4; a++) {                                                      \
                    if (to_xi)                                                                     \
                        dst[k * gn + a] = row[a * stride + k];                                     \
                    else                                                                           \
                        row[a * stride + k] = dst[k * gn + a];                                     \
                }                                                                                  \
        }                                                                                          \
    for (; p < gn; p++) /* the images left over, one at a time */                                  \
        for (idx y = 0; y < h; y++) {                                                              \
            T_ *row = x + p * stride + y * w;                                                      \
            T_ *dst = xi + ((top + y) * cols + left) * gn + p;                                     \
            for (idx k = 0; k < w; k++) {                                                          \
                if (to_xi)                                                                         \
                    dst[k * gn] = row[k];                                                          \
                else                                                                               \
                    row[k] = dst[k * gn];                                                          \
            }                                                                                      \
        }                                                                                          \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES void winograd4_input_##S_(const T_ *restrict x, idx n, idx c, idx h, idx w, idx ph, idx pw,        \
                          idx th, idx tw, idx nb, idx ldk, T_ *restrict v, T_ *restrict scratch)   \
{                                                                                                  \
    idx rows = 4 * th + 2, cols = 4 * tw + 2, ct = ldk;                                            \
    for (idx ci = 0; ci < c; ci++)                                                                 \
        for (idx g0 = 0; g0 < n; g0 += nb) {                                                       \
            idx gn = n - g0 < nb ? n - g0 : nb;                                                    \
            T_ *xi = scratch;                   /* (rows, cols, gn): the padded planes */          \
            T_ *r = scratch + rows * cols * gn; /* (6, cols, gn): B^T d of one tile row */         \
            interleave_##S_((T_ *)x + (g0 * c + ci) * h * w, c * h * w, gn, h, w, ph, pw, rows,    \
                            cols, xi, 1);                                                          \
            T_ *out = v + ci * n * th * tw + g0 * th * tw;                                         \
            idx dr = cols * gn; /* one row of xi, and of r */                                      \
            for (idx i = 0; i < th; i++) {                                                         \
                const T_ *d = xi + 4 * i * dr; /* down all columns of the tile row at once */      \
                bt6_##S_(1, dr, 0, 0, d, d + dr, d + 2 * dr, d + 3 * dr, d + 4 * dr, d + 5 * dr, r, \
                         r + dr, r + 2 * dr, r + 3 * dr, r + 4 * dr, r + 5 * dr);                  \
                for (idx a = 0; a < 6; a++) { /* ... and along row a of every tile */              \
                    const T_ *e = r + a * dr;                                                      \
                    T_ *o = out + 6 * a * ct + i * tw * gn;                                        \
                    bt6_##S_(tw, gn, 4 * gn, gn, e, e + gn, e + 2 * gn, e + 3 * gn, e + 4 * gn,    \
                             e + 5 * gn, o, o + ct, o + 2 * ct, o + 3 * ct, o + 4 * ct, o + 5 * ct); \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES idx winograd4_input_grad_##S_(const T_ *restrict dv, idx n, idx c, idx h, idx w, idx ph, idx pw,   \
                               idx th, idx tw, idx nb, idx ldk, T_ *restrict dx,                   \
                               T_ *restrict scratch)                                               \
{                                                                                                  \
    idx bad = 0; /* non-finite outputs: the caller falls back to the direct path */                \
    idx rows = 4 * th + 2, cols = 4 * tw + 2, ct = ldk;                                            \
    for (idx ci = 0; ci < c; ci++)                                                                 \
        for (idx g0 = 0; g0 < n; g0 += nb) {                                                       \
            idx gn = n - g0 < nb ? n - g0 : nb;                                                    \
            T_ *xi = scratch;                   /* (rows, cols, gn): the padded planes' gradient */ \
            T_ *r = scratch + rows * cols * gn; /* (6, tw, 6, gn): a tile row's, B^T d */          \
            idx dr = cols * gn, o = 6 * tw * gn; /* one row of xi, of r */                         \
            memset(xi, 0, sizeof(T_) * (size_t)(rows * dr));                                       \
            const T_ *in = dv + ci * n * th * tw + g0 * th * tw;                                   \
            for (idx i = 0; i < th; i++) {                                                         \
                for (idx a = 0; a < 6; a++) { /* B's adjoint along row a of every tile */          \
                    const T_ *g = in + 6 * a * ct + i * tw * gn;                                   \
                    T_ *e = r + a * o;                                                             \
                    b6_##S_(tw, gn, gn, 6 * gn, g, g + ct, g + 2 * ct, g + 3 * ct, g + 4 * ct,     \
                            g + 5 * ct, e, e + gn, e + 2 * gn, e + 3 * gn, e + 4 * gn, e + 5 * gn, 0); \
                }                                                                                  \
                for (idx s = 0; s < 6; s++) { /* ... down column s of every tile, added in place */ \
                    const T_ *e = r + s * gn;                                                      \
                    T_ *d = xi + (4 * i * cols + s) * gn;                                          \
                    b6_##S_(tw, gn, 6 * gn, 4 * gn, e, e + o, e + 2 * o, e + 3 * o, e + 4 * o,     \
                            e + 5 * o, d, d + dr, d + 2 * dr, d + 3 * dr, d + 4 * dr, d + 5 * dr, 1); \
                }                                                                                  \
            }                                                                                      \
            bad += nonfinite_##S_(xi, gn, h, w, ph, pw, cols);                                     \
            interleave_##S_(dx + (g0 * c + ci) * h * w, c * h * w, gn, h, w, ph, pw, rows, cols, xi,\
                            0);                                                                    \
        }                                                                                          \
    return bad;                                                                                    \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES idx winograd4_output_##S_(const T_ *restrict m, const T_ *restrict b, idx n, idx fn, idx oh,       \
                           idx ow, idx th, idx tw, idx nb, idx ldk, T_ *restrict y,                \
                           T_ *restrict scratch)                                                   \
{                                                                                                  \
    idx bad = 0; /* non-finite outputs: the caller falls back to the direct path */                \
    idx rows = 4 * th, cols = 4 * tw, ft = ldk;                                                    \
    for (idx f = 0; f < fn; f++)                                                                   \
        for (idx g0 = 0; g0 < n; g0 += nb) {                                                       \
            idx gn = n - g0 < nb ? n - g0 : nb;                                                    \
            T_ *yi = scratch;                   /* (rows, cols, gn): the output planes */          \
            T_ *r = scratch + rows * cols * gn; /* (6, tw, 4, gn): a tile row's . A */             \
            idx dr = cols * gn;                 /* one row of yi, and of r */                      \
            const T_ *in = m + f * n * th * tw + g0 * th * tw;                                     \
            for (idx i = 0; i < th; i++) {                                                         \
                for (idx a = 0; a < 6; a++) { /* along row a of every tile; b into m[1][1] */      \
                    const T_ *g = in + 6 * a * ft + i * tw * gn;                                   \
                    T_ *e = r + a * dr;                                                            \
                    at6_##S_(tw, gn, gn, 4 * gn, g, g + ft, g + 2 * ft, g + 3 * ft, g + 4 * ft,    \
                             g + 5 * ft, a == 1 ? b[f] : 0, e, e + gn, e + 2 * gn, e + 3 * gn);    \
                }                                                                                  \
                T_ *d = yi + 4 * i * dr; /* ... and down all columns of the tile row at once */    \
                at6_##S_(1, dr, 0, 0, r, r + dr, r + 2 * dr, r + 3 * dr, r + 4 * dr, r + 5 * dr, 0, d, \
                         d + dr, d + 2 * dr, d + 3 * dr);                                          \
            }                                                                                      \
            bad += nonfinite_##S_(yi, gn, oh, ow, 0, 0, cols);                                     \
            interleave_##S_(y + (g0 * fn + f) * oh * ow, fn * oh * ow, gn, oh, ow, 0, 0, rows, cols,\
                            yi, 0);                                                                \
        }                                                                                          \
    return bad;                                                                                    \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES void winograd4_output_grad_##S_(const T_ *restrict dy, idx n, idx fn, idx oh, idx ow, idx th,      \
                                idx tw, idx nb, idx ldk, T_ *restrict dm, T_ *restrict scratch)    \
{                                                                                                  \
    idx rows = 4 * th, cols = 4 * tw, ft = ldk;                                                    \
    for (idx f = 0; f < fn; f++)                                                                   \
        for (idx g0 = 0; g0 < n; g0 += nb) {                                                       \
            idx gn = n - g0 < nb ? n - g0 : nb;                                                    \
            T_ *yi = scratch;                   /* (rows, cols, gn): dy's planes, zero-padded */   \
            T_ *r = scratch + rows * cols * gn; /* (6, cols, gn): a tile row's, A's adjoint */     \
            idx dr = cols * gn;                 /* one row of yi, and of r */                      \
            interleave_##S_((T_ *)dy + (g0 * fn + f) * oh * ow, fn * oh * ow, gn, oh, ow, 0, 0,    \
                            rows, cols, yi, 1);                                                    \
            T_ *out = dm + f * n * th * tw + g0 * th * tw;                                         \
            for (idx i = 0; i < th; i++) {                                                         \
                const T_ *d = yi + 4 * i * dr; /* down all columns of the tile row at once */      \
                a6_##S_(1, dr, 0, 0, d, d + dr, d + 2 * dr, d + 3 * dr, r, r + dr, r + 2 * dr,     \
                        r + 3 * dr, r + 4 * dr, r + 5 * dr);                                       \
                for (idx a = 0; a < 6; a++) { /* ... and along row a of every tile */              \
                    const T_ *e = r + a * dr;                                                      \
                    T_ *o = out + 6 * a * ft + i * tw * gn;                                        \
                    a6_##S_(tw, gn, 4 * gn, gn, e, e + gn, e + 2 * gn, e + 3 * gn, o, o + ft,      \
                            o + 2 * ft, o + 3 * ft, o + 4 * ft, o + 5 * ft);                       \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
}

DEFINE_TRANSFORMS4(float, f32)
DEFINE_TRANSFORMS4(double, f64)

/* Every function of cnn_xp's compiled CPU kernels (the extension cnn_xp.functions._kernels).

   This header is the one statement of their arguments: each kernel's .c file includes it, so the
   compiler refuses a definition that differs from it, and cnn_xp/functions/native.py reads it
   (it ships with the package) to type every call it makes through ctypes.  Keep to the forms
   below, which that reader understands: one declaration per line inside CNN_XP_KERNELS (T_ the
   element type, S_ its suffix f32/f64; each returns void or idx -- the output transforms and the
   input-gradient transforms return how many non-finite values they wrote), arguments `const T_ *restrict name`, `T_ *restrict name`,
   `const u8 *restrict name`, `u8 *restrict name`, `const double *restrict name`, `double *restrict name`,
   `idx name` or `double name`.

   Raise CNN_XP_KERNELS_ABI whenever an argument list changes: native.py uses a build only if
   the number the library reports equals the one this header states. */

#ifndef CNN_XP_KERNELS_H
#define CNN_XP_KERNELS_H

#include <stddef.h>

typedef ptrdiff_t idx;
typedef unsigned char u8;

/* CNN_XP_CLONES on a kernel: where GCC builds for x86-64 Linux, the kernel is compiled three
   times -- for AVX-512, for AVX2 and for the x86-64 baseline (SSE2) -- and the loader picks the
   widest the CPU has (an ifunc, resolved once).  Each variant computes the same bits: -std=c99
   forbids contracting a * b + c into a fused multiply-add, and no sum is reordered.
   CNN_XP_INLINE on a kernel's helpers puts their loops into each variant (a helper left out of
   line would run the baseline code).  Elsewhere both are plain C. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(CNN_XP_ONE_VARIANT)
#define CNN_XP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define CNN_XP_INLINE static inline __attribute__((always_inline))
#else
#define CNN_XP_CLONES
#define CNN_XP_INLINE static inline
#endif

#define CNN_XP_KERNELS_ABI 8

int cnn_xp_kernels_abi(void);
int cnn_xp_flush_denormals(int on);
idx winograd_scratch(idx th, idx t1);
idx winograd4_scratch(idx th, idx tw, idx nb);

#define CNN_XP_KERNELS(T_, S_)                                                                                       \
    void winograd_input_##S_(const T_ *restrict x, idx n, idx c, idx h, idx w, idx ph, idx pw, idx th, idx t1, idx tw, T_ *restrict v, T_ *restrict scratch); \
    idx winograd_input_grad_##S_(const T_ *restrict dv, idx n, idx c, idx h, idx w, idx ph, idx pw, idx th, idx t1, idx tw, T_ *restrict dx, T_ *restrict scratch); \
    idx winograd_output_##S_(const T_ *restrict m, const T_ *restrict b, idx n, idx fn, idx oh, idx ow, idx th, idx t1, idx tw, T_ *restrict y, T_ *restrict scratch); \
    void winograd_output_grad_##S_(const T_ *restrict dy, idx n, idx fn, idx oh, idx ow, idx th, idx t1, idx tw, T_ *restrict dm, T_ *restrict scratch); \
    void winograd4_input_##S_(const T_ *restrict x, idx n, idx c, idx h, idx w, idx ph, idx pw, idx th, idx tw, idx nb, idx ldk, T_ *restrict v, T_ *restrict scratch); \
    idx winograd4_input_grad_##S_(const T_ *restrict dv, idx n, idx c, idx h, idx w, idx ph, idx pw, idx th, idx tw, idx nb, idx ldk, T_ *restrict dx, T_ *restrict scratch); \
    idx winograd4_output_##S_(const T_ *restrict m, const T_ *restrict b, idx n, idx fn, idx oh, idx ow, idx th, idx tw, idx nb, idx ldk, T_ *restrict y, T_ *restrict scratch); \
    void winograd4_output_grad_##S_(const T_ *restrict dy, idx n, idx fn, idx oh, idx ow, idx th, idx tw, idx nb, idx ldk, T_ *restrict dm, T_ *restrict scratch); \
    void max_pool_##S_(const T_ *restrict x, idx planes, idx h, idx w, idx kh, idx kw, idx sh, idx sw, idx ph, idx pw, idx oh, idx ow, T_ *restrict y, u8 *restrict win); \
    void max_pool_grad_##S_(const T_ *restrict dy, const u8 *restrict win, idx planes, idx h, idx w, idx kh, idx kw, idx sh, idx sw, idx ph, idx pw, idx oh, idx ow, T_ *restrict dx); \
    void relu_##S_(const T_ *restrict x, idx size, T_ *restrict y, u8 *restrict mask); \
    void relu_grad_##S_(const T_ *restrict dy, const u8 *restrict mask, idx size, T_ *restrict dx); \
    void adam_##S_(T_ *restrict p, const T_ *restrict g, T_ *restrict m, T_ *restrict v, idx size, double a1, double a2, double lr, double eps); \
    void bn_sum_##S_(const T_ *restrict x, idx n, idx c, idx hw, double *restrict out); \
    void bn_sqdev_##S_(const T_ *restrict x, idx n, idx c, idx hw, const double *restrict mean, double *restrict out); \
    void bn_affine_##S_(const T_ *restrict x, idx n, idx c, idx hw, const T_ *restrict scale, const T_ *restrict shift, T_ *restrict y); \
    void bn_grad_sums_##S_(const T_ *restrict dy, const T_ *restrict x, idx n, idx c, idx hw, const double *restrict mean, double *restrict out); \
    void bn_grad_apply_##S_(const T_ *restrict dy, const T_ *restrict x, idx n, idx c, idx hw, const T_ *restrict a, const T_ *restrict b, const T_ *restrict k, T_ *restrict dx); \
    void im2col_##S_(const T_ *restrict x, idx n, idx c, idx h, idx w, idx kh, idx kw, idx sh, idx sw, idx ph, idx pw, idx oh, idx ow, T_ *restrict cols); \
    void col2im_##S_(const T_ *restrict cols, idx n, idx c, idx h, idx w, idx kh, idx kw, idx sh, idx sw, idx ph, idx pw, idx oh, idx ow, T_ *restrict dx);

CNN_XP_KERNELS(float, f32)
CNN_XP_KERNELS(double, f64)

#endif

/* ReLU on the CPU, one pass each way instead of NumPy's two forward and three backward:

     forward:  y = numpy.maximum(x, 0) (NaN passes, -0.0 becomes +0.0), mask = x <= 0
     backward: dx = dy * (mask ? 0 : 1), NumPy's multiplication by the float mask

   the same values, bit for bit, as cnn_xp/layers/activation.py's NumPy passes
   (tests/functions/test_native.py).  mask is one byte (numpy.bool_) per element. */

#include "_kernels.h"

#define DEFINE_RELU(T_, S_)                                                                        \
                                                                                                   \
CNN_XP_CLONES void relu_##S_(const T_ *restrict x, idx size, T_ *restrict y, u8 *restrict mask)                 \
{                                                                                                  \
    for (idx i = 0; i < size; i++) {                                                               \
        T_ v = x[i];                                                                               \
        y[i] = (v > 0 || v != v) ? v : 0; /* numpy.maximum(v, 0) */                                \
        mask[i] = v <= 0;                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
CNN_XP_CLONES void relu_grad_##S_(const T_ *restrict dy, const u8 *restrict mask, idx size, T_ *restrict dx)    \
{                                                                                                  \
    for (idx i = 0; i < size; i++) dx[i] = dy[i] * (T_)(1 - mask[i]);                               \
}

DEFINE_RELU(float, f32)
DEFINE_RELU(double, f64)

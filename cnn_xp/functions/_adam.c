/* One Adam update on the CPU, in place, one pass over the parameter and its two moments instead
   of NumPy's dozen:

     m = m + a1 * (g - m);  v = v + a2 * (g * g - v);  p = p - (lr * m) / (sqrt(v) + eps)

   with a1 = 1 - beta1, a2 = 1 - beta2 and lr already rounded to the array's type, as NumPy
   rounds a Python float beside a float32 array: the same operations in the same order as
   cnn_xp/optim/adaptive.py's NumPy passes, so the same bits (built without contraction into
   fused multiply-adds: -std=c99). */

#include <math.h>

#include "_kernels.h"

#define DEFINE_ADAM(T_, S_, SQRT)                                                                  \
CNN_XP_CLONES void adam_##S_(T_ *restrict p, const T_ *restrict g, T_ *restrict m, T_ *restrict v, idx size,   \
               double a1, double a2, double lr, double eps)                                        \
{                                                                                                  \
    const T_ a1_ = (T_)a1, a2_ = (T_)a2, lr_ = (T_)lr, eps_ = (T_)eps;                             \
    for (idx i = 0; i < size; i++) {                                                               \
        T_ gi = g[i];                                                                              \
        T_ mi = m[i] + a1_ * (gi - m[i]);                                                          \
        T_ vi = v[i] + a2_ * (gi * gi - v[i]);                                                     \
        m[i] = mi;                                                                                 \
        v[i] = vi;                                                                                 \
        p[i] = p[i] - (lr_ * mi) / (SQRT(vi) + eps_);                                              \
    }                                                                                              \
}

DEFINE_ADAM(float, f32, sqrtf)
DEFINE_ADAM(double, f64, sqrt)

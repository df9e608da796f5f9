/* The module of cnn_xp's compiled CPU kernels: what every kernel shares.

   Python imports it as cnn_xp.functions._kernels (a module with no functions of its own), and
   cnn_xp/functions/native.py calls the kernels of the other _*.c files through ctypes, typed
   from _kernels.h.  Here: the version of their arguments, and the switch that makes a thread
   flush subnormal floats to zero. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_kernels.h"

#if defined(__SSE__) || defined(_M_X64) || defined(__x86_64__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#define FTZ_DAZ 0x8040u /* MXCSR: flush-to-zero (bit 15) and denormals-are-zero (bit 6) */
#endif

int cnn_xp_kernels_abi(void)
{
    return CNN_XP_KERNELS_ABI;
}

/* Subnormal floats cost up to tens of times a normal operation on some CPUs (Intel's especially):
   with on = 1 the calling thread's SSE/AVX arithmetic -- NumPy's, BLAS's and these kernels' --
   treats subnormal inputs as zero and flushes subnormal results to zero; on = 0 restores IEEE
   behaviour.  Returns the thread's previous setting (1 or 0), or -1 where there is no such
   switch (then nothing changed).  The setting is per thread. */
int cnn_xp_flush_denormals(int on)
{
#ifdef HAVE_MXCSR
    unsigned int csr = _mm_getcsr();
    int was = (csr & FTZ_DAZ) == FTZ_DAZ;
    _mm_setcsr(on ? (csr | FTZ_DAZ) : (csr & ~FTZ_DAZ));
    return was;
#else
    (void)on;
    return -1;
#endif
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "cnn_xp's compiled CPU kernels, called through ctypes (see cnn_xp/functions/native.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    return PyModule_Create(&module);
}

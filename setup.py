"""The one compiled part of cnn_xp: CPU kernels for the Winograd transforms, max pooling,
ReLU and Adam's update (cnn_xp/functions/native.py).  Everything else is in pyproject.toml.

The extension is optional: without a C compiler the install goes on, and the same computations
run as NumPy passes (the same results; see cnn_xp/functions/native.py).
"""

import sys

from setuptools import Extension, setup

# -std=c99: no -ffast-math and no contraction into fused multiply-adds, so results stay exact;
# -fno-math-errno lets sqrt vectorize (it sets no errno; its results are the same)
flags = [] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-math-errno"]

setup(
    ext_modules=[
        Extension(
            "cnn_xp.functions._kernels",
            sources=[
                "cnn_xp/functions/_winograd.c",
                "cnn_xp/functions/_winograd4.c",
                "cnn_xp/functions/_pooling.c",
                "cnn_xp/functions/_relu.c",
                "cnn_xp/functions/_adam.c",
            ],
            extra_compile_args=flags,
            optional=True,
        )
    ]
)

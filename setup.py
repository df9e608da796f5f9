"""The one compiled part of cnn_xp: CPU kernels for the Winograd transforms, strided convolutions'
columns, max pooling, ReLU, batch normalisation and Adam's update (cnn_xp/functions/native.py).  Everything else is in pyproject.toml.

The kernels are built wherever a C compiler works.  Where none does (or CNN_XP_NO_KERNELS=1 is
set), the install goes on without them -- the same computations then run as NumPy passes,
slower -- and says so in a banner; the wheel is then a pure-Python one (py3-none-any), so its
tags never claim kernels it does not hold.  A compiler that works but fails on the kernels'
sources stops the build: that is a bug to report, not a reason to ship slower code in silence.

CNN_XP_SANITIZE=1 builds the kernels with AddressSanitizer and UndefinedBehaviorSanitizer
(for the CI's memory-safety run: see .ci/run).
"""

import os
import sys
import tempfile

from setuptools import Extension, setup

SOURCES = [
    "cnn_xp/functions/_module.c",
    "cnn_xp/functions/_winograd.c",
    "cnn_xp/functions/_winograd4.c",
    "cnn_xp/functions/_pooling.c",
    "cnn_xp/functions/_relu.c",
    "cnn_xp/functions/_adam.c",
    "cnn_xp/functions/_batchnorm.c",
    "cnn_xp/functions/_im2col.c",
]

# -std=c99: no -ffast-math and no contraction into fused multiply-adds, so results stay exact;
# -fno-math-errno lets sqrt vectorize (it sets no errno; its results are the same)
FLAGS = [] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-math-errno"]
LINK: list[str] = []
if os.environ.get("CNN_XP_SANITIZE") == "1":
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"]
    FLAGS = ["-O1", "-std=c99", "-fno-math-errno", *sanitize]
    LINK = sanitize


def compiler_works() -> bool:
    """Whether the C compiler setuptools would use compiles and links a trivial file."""
    try:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler

        compiler = new_compiler()
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as d:
            source = os.path.join(d, "probe.c")
            with open(source, "w") as f:
                f.write("int cnn_xp_probe(void) { return 0; }\n")
            objects = compiler.compile([source], output_dir=d)
            compiler.link_shared_object(objects, os.path.join(d, "probe.so"))
        return True
    except Exception:
        return False


def banner(text: str) -> None:
    line = "*" * 78
    sys.stderr.write(f"\n{line}\n{text}\n{line}\n\n")


if os.environ.get("CNN_XP_NO_KERNELS") == "1":
    kernels = []
    banner("cnn_xp: CNN_XP_NO_KERNELS=1 -- building WITHOUT the compiled CPU kernels (NumPy passes, slower).")
elif not compiler_works():
    kernels = []
    banner(
        "cnn_xp: NO WORKING C COMPILER -- installing WITHOUT the compiled CPU kernels.\n"
        "The same computations run as NumPy passes, slower. Install gcc or clang and reinstall cnn_xp\n"
        "to get them; `cnn_xp doctor` reports which you have."
    )
else:
    kernels = [
        Extension(
            "cnn_xp.functions._kernels",
            sources=SOURCES,
            depends=["cnn_xp/functions/_kernels.h"],
            extra_compile_args=FLAGS,
            extra_link_args=LINK,
        )
    ]

setup(ext_modules=kernels)

"""2-D convolution (cross-correlation) by im2col and one matrix product (see functions.conv2d)."""

from __future__ import annotations

from typing import Any

from ..checks import IntPair, check_rank, pair
from ..functions.conv2d import ConvState, conv2d_backward, conv2d_forward
from ..functions.conv_utils import window_output_shape
from ..functions.dtypes import as_float
from ..functions.workspace import Workspace
from .base import Array, Layer, adopt_input, bias_param, check_dout, float_param, settings, shape_setting, zeros
from .grad_mode import grad_enabled


class Convolution(Layer):
    """Convolution with weights ``W`` (FN, C, FH, FW) and bias ``b`` (FN,), or no bias with
    ``b=None`` (before a batch normalisation, which would cancel it: ``param_names`` is then ``("W",)``).

    ``forward(x)``: x (N, C, H, W) -> (N, FN, OH, OW), ``OH = (H + 2*pad - FH)//stride + 1``.
    ``backward(dout)``: dout (N, FN, OH, OW) -> dx (N, C, H, W); fills ``dW`` and ``db``.
    Integer inputs are cast to W's dtype.  ``stride``/``pad`` may be (h, w) pairs.  The layer
    keeps its im2col columns between forward and backward in a buffer reused every step; under
    :func:`~cnn_xp.no_grad` it keeps and touches nothing (see :mod:`cnn_xp.functions.conv2d`).
    """

    param_names: tuple[str, ...] = ("W", "b")
    can_skip_dx = True
    shard_safe = True

    def __init__(self, W: Array, b: Array | float | None, stride: IntPair = 1, pad: IntPair = 0) -> None:
        super().__init__()
        W = float_param("W", W)
        check_rank("W", W, 4, "(FN, C, FH, FW)")
        bias: Array | None = None
        if b is not None:
            bias = bias_param(b, W, W.shape[0])
            if tuple(bias.shape) != (W.shape[0],):
                raise ValueError(
                    f"b: expected shape (FN,)=({W.shape[0]},) to match W of shape {tuple(W.shape)}, got {tuple(bias.shape)}"
                )
        else:
            self.param_names = ("W",)
        self.W, self.b = W, bias
        self.stride = pair("stride", stride, 1)
        self.pad = pair("pad", pad, 0)
        self.dW: Array | None = None
        self.db: Array | None = None
        self._state: ConvState | None = None
        self._workspace = Workspace()  # im2col columns, reused from step to step

    def replica_state(self, shard: int, turnstile: Any) -> dict[str, Any]:
        return {"_workspace": Workspace()}  # each shard's columns in its own buffer

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "type": "Convolution",
            "shape": [int(v) for v in self.W.shape],
            "stride": list(self.stride),
            "pad": list(self.pad),
        }
        if self.b is None:
            config["bias"] = False
        return config

    @classmethod
    def state_names(cls, config: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (("W", "b") if config.get("bias", True) else ("W",)), ()

    @classmethod
    def state_shapes(cls, config: Any) -> dict[str, tuple[int, ...]]:
        s = settings(cls, config, {"shape": ..., "stride": 1, "pad": 0, "bias": True})
        fn, c, fh, fw = shape_setting("Convolution", "shape", s["shape"], 4)
        pair("Convolution config: stride", s["stride"], 1)
        pair("Convolution config: pad", s["pad"], 0)
        if not isinstance(s["bias"], bool):
            raise ValueError(f"Convolution config: bias expected true or false, got {s['bias']!r}")
        return {"W": (fn, c, fh, fw), **({"b": (fn,)} if s["bias"] else {})}

    @classmethod
    def output_shape(cls, config: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        fn, c, fh, fw = config["shape"]
        if len(shape) != 3 or shape[0] != c:
            raise ValueError(f"Convolution: takes (C, H, W) with C={c}, got {shape}")
        (sh, sw), (ph, pw) = pair("stride", config.get("stride", 1), 1), pair("pad", config.get("pad", 0), 0)
        oh, ow = window_output_shape((1, *shape), fh, fw, sh, sw, ph, pw, name="input")
        return (fn, oh, ow)

    @classmethod
    def from_config(cls, config: Any, dtype: Any = "float32") -> Convolution:
        shapes = cls.state_shapes(config)
        b = zeros(shapes["b"], dtype) if "b" in shapes else None
        return cls(zeros(shapes["W"], dtype), b, config.get("stride", 1), config.get("pad", 0))

    def forward(self, x: Array) -> Array:
        W = self.W
        check_rank("W", W, 4, "(FN, C, FH, FW)")  # W and b are public: checked again before every use
        if self.b is not None and tuple(self.b.shape) != (W.shape[0],):
            raise ValueError(
                f"b: expected shape (FN,)=({W.shape[0]},) to match W of shape {tuple(W.shape)}, got {tuple(self.b.shape)}"
            )
        _, c, fh, fw = W.shape
        check_rank("x", x, 4, "(N, C, H, W)")
        if x.shape[1] != c:
            raise ValueError(
                f"x: expected {c} input channels to match W of shape {tuple(W.shape)}, got x of shape {tuple(x.shape)}"
            )
        x = adopt_input("x", x, W)
        window_output_shape(tuple(x.shape), fh, fw, *self.stride, *self.pad, name="x")
        x = as_float(x, like=W)
        if not grad_enabled():  # keep nothing, touch nothing: an earlier forward's state stays usable
            return conv2d_forward(x, W, self.b, self.stride, self.pad, keep_cols=False)[0]
        self._state = None  # the workspace is about to be overwritten: the old state is void
        y, self._state = conv2d_forward(x, W, self.b, self.stride, self.pad, workspace=self._workspace)
        return y

    @property
    def algorithm(self) -> str | None:
        """The code path of the last forward with gradients -- ``"winograd"``, ``"flat_rows"`` or
        ``"generic"`` (see :mod:`cnn_xp.functions.conv2d`) -- or None before one."""
        return None if self._state is None else self._state.path

    @property
    def winograd_tile(self) -> int | None:
        """The output tile of the last forward with gradients when it took Winograd: 2
        (F(2x2, 3x3)) or 4 (F(4x4, 3x3)); None otherwise."""
        state = self._state
        return state.tile if state is not None and state.path == "winograd" else None

    def backward(self, dout: Array, need_dx: bool = True) -> Array | None:
        """dx (N, C, H, W); fills dW and db.  ``need_dx=False`` returns None and skips dx's work."""
        state = self._state
        if state is None:
            raise self._not_run()
        if tuple(self.W.shape) != state.w_shape:
            raise ValueError(
                f"W: has shape {tuple(self.W.shape)} but the forward ran with {state.w_shape}; run forward again "
                "after replacing W"
            )
        n, fn = state.x.shape[0], self.W.shape[0]
        fh, fw = self.W.shape[2], self.W.shape[3]
        oh, ow = window_output_shape(tuple(state.x.shape), fh, fw, *self.stride, *self.pad)
        check_dout(dout, (n, fn, oh, ow))
        has_bias = self.b is not None
        dx, self.dW, db = conv2d_backward(as_float(dout, like=self.W), self.W, state, need_dx, need_db=has_bias)
        if has_bias:
            self.db = db
        return dx

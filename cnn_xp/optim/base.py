"""What every optimizer shares: checking (params, grads) before touching anything, and state I/O."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from ..backend import get_array_module, on_device
from ..checks import check_number, check_same_place
from ..functions.denormals import flushing

Array = Any


class Optimizer:
    """Base class: ``update(params, grads)`` updates the arrays of ``params`` in place.
    ``weight_decay`` adds ``weight_decay * p`` to each gradient first (L2 regularisation, as the
    ``weight_decay`` of PyTorch's SGD and Adam).

    ``params`` is a network's ``params`` (or any dict of arrays) and ``grads`` a dict with the
    same keys, as returned by ``network.gradient``.  Every gradient is checked (present, same
    shape, same device) before any parameter or state is changed.  Per-parameter state
    (velocities, squared-gradient sums) is created lazily on the parameter's device and dtype.
    """

    state_names: tuple[str, ...] = ()
    hyper_names: tuple[str, ...] = ("lr", "weight_decay")

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        self.lr = check_number("lr", lr, 0.0)
        self.weight_decay = check_number("weight_decay", weight_decay, 0.0, low_inclusive=True)
        self.state: dict[str, dict[str, Array]] = {name: {} for name in self.state_names}
        self.iter = 0

    def update(self, params: MutableMapping[str, Array], grads: Mapping[str, Array]) -> None:
        self._check(params, grads)
        self.iter += 1
        self._begin_step()
        if self.weight_decay:  # L2 regularisation: the gradient of weight_decay / 2 * |p|^2 added (new arrays)
            grads = {k: grads[k] + self.weight_decay * params[k] for k in params}
        # state and temporaries on the params' GPU; subnormals flushed on the CPU (cnn_xp.functions.denormals)
        with on_device(next(iter(params.values()), None)), flushing():
            for key in params:
                self._update_one(key, params, grads[key])

    def _begin_step(self) -> None:
        """Hook for per-step scalars (Adam's bias correction)."""

    def _update_one(self, key: str, params: MutableMapping[str, Array], grad: Array) -> None:  # pragma: no cover
        raise NotImplementedError

    def _slot(self, name: str, key: str, like: Array) -> Array:
        """State array ``name`` for parameter ``key``, zeros like the parameter on first use."""
        slot = self.state[name]
        if key not in slot:
            slot[key] = get_array_module(like).zeros_like(like)
        return slot[key]

    @staticmethod
    def _check(params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        for key in params:
            if key not in grads or grads[key] is None:
                raise ValueError(
                    f"grads: no gradient for parameter {key!r} (got keys {list(grads)}); run backward/gradient first"
                )
            p, g = params[key], grads[key]
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(
                    f"grads[{key!r}]: expected shape {tuple(p.shape)} to match the parameter, got {tuple(g.shape)}"
                )
            check_same_place(f"grads[{key!r}]", g, p)
            if not getattr(getattr(p, "flags", None), "writeable", True):
                raise ValueError(
                    f"params[{key!r}]: a read-only array (loaded from bytes or a read-only memory map?) cannot be "
                    "updated in place; give the network writeable copies (load_state_dict copies what it is given)"
                )

    # ------------------------------------------------------------------ state I/O

    def hyperparameters(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.hyper_names}

    def state_dict(self) -> dict[str, Any]:
        """``{'name', 'hyper', 'iter', 'state': {state_name: {param_key: array}}}``."""
        return {
            "name": type(self).__name__,
            "hyper": self.hyperparameters(),
            "iter": self.iter,
            "state": {name: dict(slot) for name, slot in self.state.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output (arrays are copied as they are: move them first)."""
        if state.get("name") != type(self).__name__:
            raise ValueError(f"state: is for optimizer {state.get('name')!r}, not {type(self).__name__}")
        slots = state.get("state", {})
        if set(slots) != set(self.state_names):
            raise ValueError(f"state: expected state entries {list(self.state_names)}, got {sorted(slots)}")
        for name, value in state.get("hyper", {}).items():
            if name not in self.hyper_names:
                raise ValueError(f"state: unknown hyperparameter {name!r} for {type(self).__name__}")
            setattr(self, name, float(value))
        self.iter = int(state.get("iter", 0))
        # copies, so that this optimizer never shares state arrays with another one -- each made
        # with its array's GPU current, as CuPy copies to the current device
        self.state = {name: {k: _copy(v) for k, v in slots[name].items()} for name in self.state_names}

    def to_device(self, device: Any) -> Optimizer:
        """Move the optimizer's state arrays to ``device``; returns self."""
        from ..backend import to_device

        self.state = {name: {k: to_device(v, device) for k, v in slot.items()} for name, slot in self.state.items()}
        return self

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({hyper})"


def _copy(a: Array) -> Array:
    """A copy of ``a`` on ``a``'s device."""
    with on_device(a):
        return get_array_module(a).asarray(a, copy=True)

"""PyTorch CPU tensors as a second real array-API backend for the whole training path.

The layers, networks and optimizers run on torch tensors through ``array_api_compat.torch``
(see the ``backend`` fixture); here the Trainer, the DataLoader and checkpoints do too, in
float64, and must equal the NumPy run to round-off: the tensors come out as torch tensors, the
numbers as NumPy's.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import Adam, to_numpy
from cnn_xp.train import Trainer, load_checkpoint

from .conftest import loaders, small_net

TOLERANCE = 1e-10  # float64: different summation orders only


def _fit(data, device, out=None, epochs=2):
    train, test = loaders(data, dtype="float64", device=device)
    trainer = Trainer(
        small_net("float64").to_device(device), Adam(lr=0.01), train, test, quiet=True, out_dir=out, device=device
    )
    trainer.fit(epochs)
    return trainer


def test_trainer_dataloader_and_checkpoints_on_torch_tensors_equal_numpy(mnist_small, tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install 'cnn_xp[torch]'")
    cpu = torch.device("cpu")
    batch = next(iter(loaders(mnist_small, dtype="float64", device=cpu)[0]))
    assert all(isinstance(a, torch.Tensor) for a in batch)  # torch tensors in ...
    on_numpy = _fit(mnist_small, "cpu")
    on_torch = _fit(mnist_small, cpu, out=tmp_path)
    assert all(isinstance(p, torch.Tensor) for p in on_torch.model.params.values())  # ... and out
    worst = max(
        float(np.max(np.abs(to_numpy(on_torch.model.params[k]) - to_numpy(v))))
        for k, v in on_numpy.model.params.items()
    )
    assert worst <= TOLERANCE, worst
    for a, b in zip(on_torch.history, on_numpy.history, strict=True):
        assert a["test_acc"] == b["test_acc"] and abs(a["loss"] - b["loss"]) <= TOLERANCE
    # a checkpoint written from torch tensors resumes on NumPy and on torch alike
    ck = load_checkpoint(tmp_path / "last.safetensors")
    for device in ("cpu", cpu):
        train, test = loaders(mnist_small, dtype="float64", device=device)
        resumed = Trainer(ck.build_model(device=device), ck.build_optimizer(device=device), train, test, quiet=True)
        resumed.load_state(ck.trainer, ck.rng)
        resumed.fit(3)
        if device == "cpu":
            reference = resumed
        else:
            for k, v in reference.model.params.items():
                np.testing.assert_allclose(to_numpy(resumed.model.params[k]), to_numpy(v), rtol=0, atol=TOLERANCE)


def test_the_trainer_moves_nothing_and_refuses_a_model_elsewhere_than_its_loaders(mnist_small, torch):
    train, test = loaders(mnist_small, dtype="float64", device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"model: holds numpy arrays on cpu but the loaders deliver batches on "
                       r"device\(type='cpu'\); move it first with model.to_device"):  # fmt: skip
        Trainer(small_net("float64"), Adam(lr=0.01), train, test, quiet=True)

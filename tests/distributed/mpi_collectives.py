"""Collectives, run *under* ``mpirun -n 2`` (tests/distributed/test_launch.py launches this file so; pytest does not collect it by itself).

Run by hand: ``mpirun -n 2 python -m pytest tests/distributed/mpi_collectives.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'cnn_xp[mpi]' mpich")

from cnn_xp import SimpleConvNet, distributed
from cnn_xp.data import DataLoader

distributed.init()
pytestmark = pytest.mark.skipif(
    distributed.size() != 2, reason="run under `mpirun -n 2 python -m pytest tests/distributed/mpi_collectives.py`"
)
comm = distributed.init()


def test_rank_size_local_rank():
    assert distributed.size() == 2 and distributed.rank() in (0, 1) and distributed.local_rank() in (0, 1)


def test_weighted_gradient_mean_equals_the_global_batch_mean():
    r = distributed.rank()
    counts = [3, 1]  # uneven slices of a global batch of 4
    grads = {"W": np.full((2, 2), 10.0 * (r + 1)), "b": np.array([r + 1.0])}
    out, (flag,) = distributed.allreduce_step(grads, count=counts[r], extra=(float(r == 1),))
    np.testing.assert_allclose(out["W"], (3 * 10 + 1 * 20) / 4)
    np.testing.assert_allclose(out["b"], (3 * 1 + 1 * 2) / 4)
    assert flag == 1.0  # summed over ranks: every rank learns that rank 1 raised it


def test_a_rank_with_no_samples_contributes_nothing():
    r = distributed.rank()
    out = distributed.allreduce_gradients({"W": np.full(3, 5.0 if r == 0 else 123.0)}, count=1 if r == 0 else 0)
    np.testing.assert_allclose(out["W"], 5.0)
    plain = distributed.allreduce_gradients({"W": np.full(2, float(r))})  # unweighted: the plain mean
    np.testing.assert_allclose(plain["W"], 0.5)


def test_broadcast_makes_different_initialisations_identical():
    net = SimpleConvNet(seed=100 + distributed.rank())
    distributed.broadcast_params(net, root=0)
    mine = np.concatenate([v.ravel() for v in net.state_dict().values()])
    theirs = comm.bcast(mine if distributed.rank() == 0 else None, root=0)
    np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(net.params["W1"], SimpleConvNet(seed=100).params["W1"])


@pytest.mark.parametrize(("n", "batch"), [(23, 5), (9, 4), (5, 1)])
def test_ranks_together_see_exactly_the_global_batches(n, batch):
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    t = np.arange(n, dtype=np.uint8)
    mine = DataLoader(x, t, batch, seed=3, rank=distributed.rank(), world_size=2)
    single = DataLoader(x, t, batch, seed=3)
    gathered = comm.allgather([tb.tolist() for _, tb in mine.batches(2)])
    for k, (_, tb) in enumerate(single.batches(2)):
        assert gathered[0][k] + gathered[1][k] == tb.tolist()  # rank 0's slice, then rank 1's
        assert abs(len(gathered[0][k]) - len(gathered[1][k])) <= 1

"""How a network's arrays are named: the one place this is decided (networks, files and
optimizers follow it).

The parameters of the leaf layers, depth first, are numbered by attribute as the book numbers
them -- the first layer with a ``W`` gives ``W1``, the next ``W2``, likewise ``b``, ``gamma``,
``beta`` -- and then the buffers (``running_mean1``, ...).  A leaf is named by its dotted path
(``Stage1.Block2.body.bn1``); composite layers hold no arrays of their own.
"""

from __future__ import annotations

from collections import Counter

Leaf = tuple[str, tuple[str, ...], tuple[str, ...]]  # (path, parameter names, buffer names)


def slot_keys(leaves: list[Leaf]) -> list[tuple[str, str, str, bool]]:
    """(state key, leaf path, attribute, trainable) of every parameter, then every buffer."""
    keys: list[tuple[str, str, str, bool]] = []
    for group in (1, 2):
        counters: Counter[str] = Counter()
        for leaf in leaves:
            path, names = leaf[0], leaf[group]
            for attr in names:
                counters[attr] += 1
                keys.append((f"{attr}{counters[attr]}", path, attr, group == 1))
    return keys

"""The filtering functions of synthetic data generation, over one prompt's k scores.

Each returns the indices of the generations it keeps, best score first (`none` keeps the
generation order). Pure functions of the scores, so they are checked on known numbers:

- `none`: every generation.
- `random`: `top_k` generations drawn uniformly, ignoring the scores (a baseline to compare
  the score-based filters against); seeded, so a job reruns the same.
- `top_k`: the `top_k` best.
- `top_p`: the fewest best generations whose softmax probability (over all k scores) sums to
  at least `top_p`, as nucleus sampling does with token probabilities.
- `top_k_top_p`: `top_k` first, then `top_p` over the softmax of the remaining scores.
- `sigmoid`: those whose sigmoid(score) is at least `threshold`; may keep none.
"""

from __future__ import annotations

import math
import random

from llamaray.api.synthetic_data_generation import FilteringFunction


def keep(
    scores: list[float],
    function: FilteringFunction,
    *,
    top_k: int = 1,
    top_p: float = 0.9,
    threshold: float = 0.5,
    seed: int = 0,
) -> list[int]:
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if function is FilteringFunction.none:
        return list(range(len(scores)))
    if function is FilteringFunction.random:
        drawn = random.Random(seed).sample(range(len(scores)), min(top_k, len(scores)))
        return sorted(drawn, key=lambda i: (-scores[i], i))
    if function is FilteringFunction.top_k:
        return ranked[:top_k]
    if function is FilteringFunction.top_p:
        return _nucleus(ranked, scores, top_p)
    if function is FilteringFunction.top_k_top_p:
        return _nucleus(ranked[:top_k], scores, top_p)
    if function is FilteringFunction.sigmoid:
        return [i for i in ranked if sigmoid(scores[i]) >= threshold]
    raise ValueError(f"unknown filtering function {function!r}")


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)  # no overflow for very negative scores
    return z / (1.0 + z)


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _nucleus(ranked: list[int], scores: list[float], top_p: float) -> list[int]:
    """`ranked` is best first; the shortest prefix whose probability mass reaches `top_p`."""
    probabilities = softmax([scores[i] for i in ranked])
    kept, mass = [], 0.0
    for index, probability in zip(ranked, probabilities):
        kept.append(index)
        mass += probability
        if mass >= top_p - 1e-12:
            break
    return kept

"""Every filtering function on known scores."""

import math

import pytest
from pydantic import ValidationError

from llamaray.api.synthetic_data_generation import FilteringFunction as F
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest
from llamaray.pipelines.filters import keep, sigmoid, softmax
from llamaray.pipelines.sdg import Statistics

SCORES = [0.5, 2.0, -1.0, 1.0]  # ranked: 1 (2.0), 3 (1.0), 0 (0.5), 2 (-1.0)


def test_none_keeps_all_in_order():
    assert keep(SCORES, F.none) == [0, 1, 2, 3]


def test_top_k_keeps_the_best():
    assert keep(SCORES, F.top_k, top_k=2) == [1, 3]
    assert keep(SCORES, F.top_k, top_k=10) == [1, 3, 0, 2]


def test_top_p_over_the_softmax_of_scores():
    p = softmax(SCORES)
    assert math.isclose(sum(p), 1.0)
    # p[1] ≈ 0.61, p[3] ≈ 0.22, p[0] ≈ 0.14, p[2] ≈ 0.03
    assert keep(SCORES, F.top_p, top_p=0.5) == [1]
    assert keep(SCORES, F.top_p, top_p=0.8) == [1, 3]
    assert keep(SCORES, F.top_p, top_p=0.9) == [1, 3, 0]
    assert keep(SCORES, F.top_p, top_p=1.0) == [1, 3, 0, 2]


def test_top_k_top_p_renormalises_after_top_k():
    # Among the best two, softmax([2.0, 1.0]) = [0.73, 0.27].
    assert keep(SCORES, F.top_k_top_p, top_k=2, top_p=0.7) == [1]
    assert keep(SCORES, F.top_k_top_p, top_k=2, top_p=0.75) == [1, 3]
    assert keep(SCORES, F.top_k_top_p, top_k=1, top_p=1.0) == [1]


def test_sigmoid_threshold_may_keep_none():
    assert keep(SCORES, F.sigmoid, threshold=0.5) == [1, 3, 0]  # sigmoid(-1) = 0.27
    assert keep(SCORES, F.sigmoid, threshold=sigmoid(1.0)) == [1, 3]
    assert keep(SCORES, F.sigmoid, threshold=0.99) == []
    assert sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0


def test_random_is_seeded_and_ignores_scores():
    picks = {tuple(keep(SCORES, F.random, top_k=2, seed=s)) for s in range(30)}
    assert len(picks) > 1  # not always the best two
    assert all(len(p) == 2 for p in picks)
    assert keep(SCORES, F.random, top_k=2, seed=7) == keep(SCORES, F.random, top_k=2, seed=7)


def test_ties_keep_the_earlier_generation():
    assert keep([1.0, 1.0, 1.0], F.top_k, top_k=2) == [0, 1]


def test_statistics():
    stats = Statistics()
    stats.add([1.0, 3.0], [1], 10)
    stats.add([-2.0, 2.0], [0, 1], 6)
    out = stats.as_dict(1.5)
    assert out["num_prompts"] == 2 and out["num_generations"] == 4 and out["num_kept"] == 3
    assert out["kept_fraction"] == 0.75 and out["score_mean"] == 1.0
    assert (out["score_min"], out["score_max"], out["generated_tokens"]) == (-2.0, 3.0, 16)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"prompts": []}, "prompts"),
        ({"prompts": [{"role": "user", "content": "  "}]}, "prompts"),
        ({"prompts": [{"role": "user", "content": "hi"}], "num_generations": 0}, "num_generations"),
        ({"prompts": [{"role": "user", "content": "hi"}], "threshold": 1.5}, "threshold"),
        ({"prompts": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
        ({"prompts": [{"role": "user", "content": "hi"}], "top_k": 0}, "top_k"),
        ({"prompts": [{"role": "user", "content": "hi"}], "filtering_function": "best"}, "filtering_function"),
    ],
)
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(ValidationError) as err:
        SyntheticDataGenerationRequest.model_validate(body)
    assert field in str(err.value)

"""exporters.style_controls: the style-based generator's controls in numpy, against closed forms."""

import numpy as np
import pytest

from exporters import style_controls as sc

RNG = np.random.default_rng(0)
W = RNG.standard_normal((5, 6)).astype(np.float32)
W_B = RNG.standard_normal((5, 6)).astype(np.float32)
W_AVG = RNG.standard_normal(6).astype(np.float32)


def test_truncation_closed_form_and_ends():
    assert np.array_equal(sc.truncate(W, W_AVG, 1.0), W)
    assert np.allclose(sc.truncate(W, W_AVG, 0.0), np.broadcast_to(W_AVG, W.shape))
    assert np.allclose(sc.truncate(W, W_AVG, 0.3), W_AVG + 0.3 * (W - W_AVG), atol=1e-6)


def test_mixing_takes_the_fine_layers_from_seed_b():
    ws = sc.style_inputs(W, 4, W_AVG, mix_w=W_B, from_layer=2)
    assert ws.shape == (5, 4, 6)
    assert np.array_equal(ws[:, :2], np.repeat(W[:, None], 2, 1))
    assert np.array_equal(ws[:, 2:], np.repeat(W_B[:, None], 2, 1))
    assert np.array_equal(sc.style_inputs(W, 4, W_AVG, mix_w=W_B, from_layer=0),
                          sc.style_inputs(W_B, 4, W_AVG))


def test_edits_move_along_the_direction_in_std_units_and_zero_changes_nothing():
    directions = sc.pca_directions(RNG.standard_normal((200, 6)) * [3, 1, 1, 1, 1, 1], k=2)
    plain = sc.style_inputs(W, 3, W_AVG)
    assert np.array_equal(sc.style_inputs(W, 3, W_AVG, edits={"pc0": 0.0},
                                          directions=directions), plain)
    moved = sc.style_inputs(W, 3, W_AVG, edits={"pc0": 2.0}, directions=directions)
    pc0 = directions["pc0"]
    assert np.allclose(moved - plain, 2.0 * pc0["std"] * np.asarray(pc0["vector"]), atol=1e-5)


def test_pca_directions_find_the_axis_of_largest_variance():
    samples = RNG.standard_normal((4000, 3)) * [0.5, 4.0, 1.0]
    directions = sc.pca_directions(samples, k=3)
    assert np.allclose(np.abs(directions["pc0"]["vector"]), [0, 1, 0], atol=0.02)
    assert directions["pc0"]["std"] == pytest.approx(4.0, rel=0.05)
    shares = [directions[f"pc{i}"]["explained_variance"] for i in range(3)]
    assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(1.0)
    assert directions["pc0"]["vector"][1] > 0  # sign fixed: largest entry positive


@pytest.mark.parametrize("call,message", [
    (lambda: sc.check_truncation(1.5), "truncation must be a number in [0, 1] (1 = none), got 1.5"),
    (lambda: sc.check_truncation(-0.1), "got -0.1"),
    (lambda: sc.check_mix((3, 9), 8),
     "from_layer must be in [0, 8] (this model has 8 style layers), got 9"),
    (lambda: sc.check_mix((3, 1), None), "needs a style-based generator"),
    (lambda: sc.check_mix("3", 8), "mix must be (seed_b, from_layer), two integers, got (3,)"),
    (lambda: sc.check_mix("a:b", 8), "mix must be SEED_B:FROM_LAYER"),
    (lambda: sc.check_edits({"pc9": 1.0}, {"pc0": {}}),
     "unknown direction 'pc9'; this model has ['pc0']"),
    (lambda: sc.check_edits({"pc0": 1.0}, None), "run `zoo directions RUN` first"),
    (lambda: sc.check_edits({"pc0": float("nan")}, {"pc0": {}}), "must be a finite number"),
    (lambda: sc.parse_edits("pc0"), "edits must be NAME=AMOUNT"),
    (lambda: sc.pca_directions(np.zeros((10, 3)), k=4), "k must be an integer in [1, 3], got 4"),
])
def test_bad_controls_name_the_value(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_parsers_accept_the_cli_forms():
    assert sc.check_mix("7:3", 8) == (7, 3)
    assert sc.check_mix({"seed_b": 7, "from_layer": 3}, 8) == (7, 3)
    assert sc.check_edits("pc0=2,pc1=-1.5", {"pc0": {}, "pc1": {}}) == {"pc0": 2.0, "pc1": -1.5}

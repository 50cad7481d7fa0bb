"""Every family through the shared harness (tests/harness.py)."""

import harness
import pytest

CASES = pytest.mark.parametrize("case", harness.CASES, ids=[c.id for c in harness.CASES])


def cases(fast=()):
    """harness.CASES with every case not named in `fast` marked slow (the full tier runs all)."""
    ids = [c.id for c in harness.CASES]
    assert set(fast) <= set(ids), f"unknown case ids {set(fast) - set(ids)}"
    return pytest.mark.parametrize("case", [
        pytest.param(c, id=c.id, marks=() if c.id in fast else pytest.mark.slow)
        for c in harness.CASES
    ])


# The fast tier fits one case of each train step: GAN (CGAN's too), VAE (CVAE's too), WGAN-GP;
# diffusion train steps run eagerly in test_diffusion.py. It saves/loads one case; parity on two
# replicas is all slow.
FIT_FAST = ("gan-dcgan", "vae-bernoulli", "wgan_gp-dcgan")


@CASES
def test_config_round_trip(case):
    harness.check_config_round_trip(case)


@cases(fast=FIT_FAST)
def test_fit_on_real_digits_changes_losses(case):
    harness.check_fit_changes_losses(case)


@CASES
def test_sample_is_deterministic_for_a_seed(case):
    harness.check_sample_is_deterministic(case)


@cases(fast=("gan-mlp",))
def test_keras_round_trip_gives_same_samples_and_keeps_training(case, tmp_path):
    harness.check_save_load_continues(case, tmp_path)


@cases()
def test_two_replicas_train_like_one(case):
    harness.check_replica_parity(case)


@CASES
def test_bad_sample_input_is_a_clear_error(case):
    harness.check_bad_sample_input(case)


def test_uncompiled_model_saves_and_loads(tmp_path):
    import keras
    import numpy as np

    model = harness.CASES[0].build()
    model.save(tmp_path / "fresh.keras")
    loaded = keras.models.load_model(tmp_path / "fresh.keras")
    np.testing.assert_array_equal(model.sample(2, seed=0), loaded.sample(2, seed=0))

"""Every family through the shared harness (tests/harness.py)."""

import harness
import pytest

CASES = pytest.mark.parametrize("case", harness.CASES, ids=[c.id for c in harness.CASES])


@CASES
def test_config_round_trip(case):
    harness.check_config_round_trip(case)


@CASES
def test_fit_on_real_digits_changes_losses(case):
    harness.check_fit_changes_losses(case)


@CASES
def test_sample_is_deterministic_for_a_seed(case):
    harness.check_sample_is_deterministic(case)


@CASES
def test_keras_round_trip_gives_same_samples_and_keeps_training(case, tmp_path):
    harness.check_save_load_continues(case, tmp_path)


@CASES
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

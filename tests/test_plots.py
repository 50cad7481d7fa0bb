"""zoo.plots: every picture of a run is a valid PNG; the pure helpers do what they say."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo import callbacks, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_slerp_keeps_ends_and_norm_of_orthogonal_unit_vectors():
    path = plots.slerp([1.0, 0.0], [0.0, 1.0], np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], [1, 0], atol=1e-6)
    np.testing.assert_allclose(path[-1], [0, 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(path[2], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    np.testing.assert_allclose(plots.slerp([1.0, 0.0], [2.0, 0.0], [0.5]), [[1.5, 0.0]])


def test_latent_grid_is_symmetric_normal_quantiles():
    grid = plots.latent_grid(3)
    assert grid.shape == (9, 2)
    np.testing.assert_allclose(sorted(set(np.round(grid[:, 0], 4))), [-1.6449, 0.0, 1.6449])


def test_read_history_parses_columns(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,2.5,3.0\n1,1.5,\n")
    history = plots.read_history(path)
    assert history["epoch"] == [0.0, 1.0] and history["loss"] == [2.5, 1.5]
    assert np.isnan(history["val_loss"][1])


def _write_run(root, name, model, history=True):
    run = root / name
    run.mkdir()
    model.compile()  # a run's model is compiled; saving reads its compile config
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"model": name, "dataset": "mnist5k"}))
    if history:
        (run / "history.csv").write_text("epoch,d_loss,g_loss\n0,1.2,0.9\n1,1.0,1.1\n2,0.9,1.3\n")
    return run


def _assert_pngs(paths, expected):
    names = {path.stem for path in paths}
    assert names == expected
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()


def test_conditional_run_gets_samples_class_rows_interpolations_and_losses(tmp_path):
    import zoo

    model = zoo.build("cgan", latent_dim=8, base_filters=8, embedding_dim=4, seed=0)
    run = _write_run(tmp_path, "cgan", model)
    paths = plots.plot_run(run)
    _assert_pngs(paths, {"samples", "classes", "interpolation", "loss_curves"})
    assert all(path.parent == run / "plots" for path in paths)
    with Image.open(run / "plots" / "classes.png") as image:
        assert image.size == (10 * 30 + 2, 10 * 30 + 2)  # 10 classes x 10, 28 px + 2 padding


def test_vae_with_2d_latent_gets_reconstructions_and_manifold(tmp_path):
    import zoo

    run = _write_run(tmp_path, "vae", zoo.build("vae", latent_dim=2, base_filters=8, seed=0), False)
    out = tmp_path / "pictures"
    paths = plots.plot_run(run, out)
    _assert_pngs(paths, {"samples", "interpolation", "reconstructions", "latent_manifold"})
    assert all(path.parent == out for path in paths)


def test_conditional_vae_gets_class_rows_and_reconstructions(tmp_path):
    import zoo

    model = zoo.build("cvae", latent_dim=4, base_filters=8, embedding_dim=4, seed=0)
    paths = plots.plot_run(_write_run(tmp_path, "cvae", model, False))
    _assert_pngs(paths, {"samples", "classes", "interpolation", "reconstructions"})


def test_missing_run_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="no run folder at .*missing.*no such file or folder"):
        plots.plot_run(tmp_path / "missing")


def test_a_run_without_model_says_so_and_writes_nothing(tmp_path):
    """Neither model.keras nor export/ (a committed pretrained run ships an export, which plot
    draws from: tests/test_pretrained.py)."""
    import shutil

    run = tmp_path / "cgan-mnist5k"
    committed = Path(__file__).resolve().parents[1] / "saved_models" / "cgan-mnist5k"
    shutil.copytree(committed, run, ignore=shutil.ignore_patterns("export", "plots"))
    with pytest.raises(ValueError, match="is a run folder but holds no model.keras .*history.csv"):
        plots.plot_run(run)
    assert not (run / "plots").exists()


class _FakeModel:
    def __init__(self, num_classes):
        self.num_classes = num_classes

    def sample(self, n, labels=None, seed=None):
        return np.zeros((n, 8, 8, 1), np.float32)


@pytest.mark.parametrize("num_classes, n, columns", [(0, 64, 8), (0, 10, 4), (10, 100, 10)])
def test_sample_grid_is_square_ish_or_one_column_per_class(tmp_path, num_classes, n, columns):
    grid = callbacks.SampleGrid(tmp_path, n=n)
    grid.set_model(_FakeModel(num_classes))
    grid.on_epoch_end(0)
    rows = -(-n // columns)
    with Image.open(tmp_path / "epoch-001.png") as image:
        assert image.size == (columns * 10 + 2, rows * 10 + 2)  # 8 px + 2 padding per cell


def test_history_csv_has_no_empty_validation_columns(tmp_path):
    path = tmp_path / "history.csv"

    def log(append, epochs):
        logger = callbacks.HistoryCSV(str(path), append=append)
        logger.on_train_begin()
        for epoch, loss in epochs:
            logger.on_epoch_end(epoch, {"g_loss": loss, "d_loss": 1.0})
        logger.on_train_end()

    log(False, [(0, 0.5)])
    log(True, [(1, 0.25)])  # a resumed run appends under the same header
    assert path.read_text().splitlines() == ["epoch,d_loss,g_loss", "0,1.0,0.5", "1,1.0,0.25"]

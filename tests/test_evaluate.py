"""zoo.evaluate: golden values of the score math, then scores of real, untrained and trained models.

The domain classifier is trained once per module on a budget (a few epochs, narrow) into a
temporary cache; its accuracy is lower than the cached production classifier's, which is fine
for ordering models.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from zoo import evaluate

# ---- Frechet distance ---------------------------------------------------------------------


def test_frechet_of_two_1d_gaussians_has_closed_form():
    # (mu1 - mu2)^2 + (s1 - s2)^2 for N(0, 2^2) and N(1, 1^2)
    assert evaluate.frechet_distance_from_statistics([0.0], [[4.0]], [1.0], [[1.0]]) == (
        pytest.approx(2.0)
    )


def test_frechet_of_non_commuting_2d_covariances():
    # tr sqrt(M) for a 2x2 M with positive eigenvalues is sqrt(tr M + 2 sqrt(det M)).
    s1, s2 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 3.0]])
    m = s1 @ s2  # [[2, 3], [1, 6]]: trace 8, det 9
    expected = 1.0**2 + 2.0**2 + 4.0 + 4.0 - 2.0 * math.sqrt(8.0 + 2.0 * math.sqrt(9.0))
    assert np.trace(m) == 8.0 and np.linalg.det(m) == pytest.approx(9.0)
    assert evaluate.frechet_distance_from_statistics([0, 0], s1, [1, 2], s2) == pytest.approx(
        expected
    )
    assert expected == pytest.approx(13.0 - 2.0 * math.sqrt(14.0))


def test_frechet_matches_scipy_sqrtm_on_random_statistics():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert evaluate.frechet_distance_from_statistics(mu1, s1, mu2, s2) == pytest.approx(expected)


def test_frechet_from_features_uses_unbiased_covariance():
    # [-1, 1]: mean 0, variance 2; [2, 6]: mean 4, variance 8 -> 16 + (sqrt 2 - sqrt 8)^2 = 18
    assert evaluate.frechet_distance([[-1.0], [1.0]], [[2.0], [6.0]]) == pytest.approx(18.0)


def test_frechet_of_a_set_against_itself_is_zero():
    features = np.random.default_rng(1).normal(size=(400, 32))
    assert evaluate.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="widths differ"):
        evaluate.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


# ---- KID ----------------------------------------------------------------------------------


def test_kid_golden_value_by_hand():
    # d = 1: k(x, y) = (x y + 1)^3. XX off-diagonal: k(0,1) = 1. YY: k(1,2) = 27.
    # XY: k(0,1) + k(0,2) + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37 -> mean 9.25.
    # MMD^2 = 1 + 27 - 2 * 9.25 = 9.5
    kid, spread = evaluate.kernel_inception_distance(
        [[0.0], [1.0]], [[1.0], [2.0]], num_subsets=3, subset_size=2
    )
    assert kid == pytest.approx(9.5) and spread == pytest.approx(0.0)


def test_kid_matches_an_explicit_double_loop():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 3)), rng.normal(0.5, 1.0, size=(6, 3))

    def k(a, b):
        return (np.dot(a, b) / 3 + 1) ** 3

    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    kid, _ = evaluate.kernel_inception_distance(x, y, num_subsets=1, subset_size=6)
    assert kid == pytest.approx(xx + yy - 2 * xy)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    same, _ = evaluate.kernel_inception_distance(a, b, num_subsets=10, subset_size=300)
    shifted, _ = evaluate.kernel_inception_distance(a, b + 1.0, num_subsets=10, subset_size=300)
    assert abs(same) < 0.01 < shifted


# ---- precision / recall and class consistency ---------------------------------------------


def test_precision_recall_golden_value_with_k1():
    # Real balls (k=1): radius 1 around 0, 1, 2, 3. Fake balls: 0.2 around 0.1 and 0.3, 0.5
    # around 10 and 10.5. Precision: 0.1 and 0.3 inside -> 1/2. Recall: only 0 inside -> 1/4.
    real = [[0.0], [1.0], [2.0], [3.0]]
    fake = [[0.1], [0.3], [10.0], [10.5]]
    assert evaluate.precision_recall(real, fake, k=1) == pytest.approx((0.5, 0.25))


def test_precision_recall_of_a_set_with_itself_is_one():
    features = np.random.default_rng(4).normal(size=(200, 8))
    assert evaluate.precision_recall(features, features, k=3) == (1.0, 1.0)


def test_knn_radii_skip_the_point_itself():
    assert evaluate.knn_radii([[0.0], [1.0], [3.0], [7.0]], k=2).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_class_consistency_per_class_and_overall():
    result = evaluate.class_consistency([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], num_classes=4)
    assert result == {"overall": pytest.approx(0.6), "per_class": [0.5, 1.0, 0.0, None]}


# ---- with the domain classifier ----------------------------------------------------------


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("classifiers")


@pytest.fixture(scope="module")
def classifier(cache_dir):
    return evaluate.load_classifier("mnist5k", cache_dir=cache_dir, epochs=4, filters=16)


@pytest.fixture(scope="module")
def test_split():
    from zoo import data

    return data.load_arrays("mnist5k", "test")


FAST = {"kid_subsets": 10, "kid_subset_size": 500}


class RealImages:
    """A "perfect generator": hands out held-apart real images of the requested labels."""

    family = "real"
    latent_dim = 1

    def __init__(self, images, labels, num_classes=10):
        self.images, self.labels = images, labels
        self.image_shape, self.num_classes = images.shape[1:], num_classes

    def sample(self, n, labels=None, seed=None, batch_size=None):
        rng = np.random.default_rng(seed)
        if labels is None:
            return self.images[rng.choice(len(self.images), n)]
        return np.stack([self.images[rng.choice(np.flatnonzero(self.labels == y))] for y in labels])


@pytest.mark.slow  # trains the domain classifier (~20 s)
def test_classifier_is_cached_with_its_accuracy(classifier, cache_dir):
    folder = evaluate.classifier_dir("mnist5k", cache_dir, epochs=4, filters=16)
    assert folder.parent == cache_dir / "mnist5k" and classifier.info["path"] == str(folder)
    assert (folder / "classifier.keras").is_file()
    saved = json.loads((folder / "info.json").read_text())
    assert saved["test_accuracy"] == classifier.info["test_accuracy"] > 0.9
    told = []
    again = evaluate.load_classifier(
        "mnist5k", cache_dir=cache_dir, announce=told.append, filters=16, epochs=4
    )
    assert again.info["settings"]["epochs"] == 4 and told == []  # reused, not retrained


@pytest.mark.slow  # trains the domain classifier (~20 s)
def test_classifier_reads_digits_through_background_speckle(classifier, test_split):
    # Young GANs paint faint speckle on the background; the noise augmentation is for this.
    images, labels = test_split
    rng = np.random.default_rng(0)
    speckle = rng.uniform(0.0, 0.4, images.shape).astype(np.float32) * (images < -0.9)
    assert classifier.accuracy(np.clip(images + speckle, -1, 1), labels) > 0.8


def test_cache_root_comes_from_argument_then_environment_then_xdg(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path / ".")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(evaluate.CLASSIFIER_DIR_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    default = tmp_path / "home" / ".cache" / "genzoo" / "classifiers"
    assert evaluate.classifier_cache_root() == default
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: ignored
    assert evaluate.classifier_cache_root() == default
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert evaluate.classifier_cache_root() == tmp_path / "xdg" / "genzoo" / "classifiers"
    monkeypatch.setenv(evaluate.CLASSIFIER_DIR_ENV, str(tmp_path / "env"))
    assert evaluate.classifier_dir("idx:/data/fashion").parent == (
        tmp_path / "env" / "idx_data_fashion"
    )
    assert evaluate.classifier_cache_root("elsewhere") == Path("elsewhere")


def test_cache_is_keyed_by_dataset_and_training_settings():
    key = evaluate.classifier_dir
    assert key("mnist5k", "c") == key("mnist5k", "c", epochs=30, filters=32)  # defaults filled
    assert key("mnist5k", "c") != key("mnist5k", "c", epochs=4)
    assert key("mnist5k", "c") != key("mnist5k", "c", augmentation={"shift": 0.1})
    assert key("mnist5k", "c").name == key("digits", "c").name  # same settings, other dataset
    assert key("mnist5k", "c").parent != key("digits", "c").parent


def test_classifier_training_is_announced_and_cached_per_user(monkeypatch, tmp_path):
    """Where the first eval puts its classifier, without training a real one."""
    work, cache = tmp_path / "work", tmp_path / "xdg"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(evaluate.CLASSIFIER_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    trained = []

    def fake_train(dataset, **kwargs):
        trained.append(kwargs)
        model = evaluate.build_classifier((8, 8, 1), 10, filters=2, blocks=1, feature_dim=4)
        return evaluate.DomainClassifier(model, {"dataset": dataset})

    monkeypatch.setattr(evaluate, "train_classifier", fake_train)
    told = []
    first = evaluate.load_classifier("digits", announce=told.append)
    folder = cache / "genzoo" / "classifiers" / "digits" / evaluate.settings_key(
        evaluate.classifier_settings()
    )
    assert first.info["path"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["classifier.keras", "info.json"]
    assert len(told) == 1 and "under a minute" in told[0] and str(folder) in told[0]
    assert list(work.iterdir()) == []  # nothing in the current folder
    again = evaluate.load_classifier("digits", announce=told.append)
    assert len(trained) == 1 and len(told) == 1 and again.info["path"] == str(folder)


def test_command_line_overrides_keep_defaults_for_what_was_not_given():
    assert evaluate.classifier_overrides() == {}
    assert evaluate.classifier_overrides(3, None) == {"epochs": 3}
    cheap = evaluate.classifier_overrides(3, 20000)
    assert cheap == {"epochs": 3, "max_train": 20000}
    # a cheaper classifier is cached apart from the default one
    assert evaluate.classifier_dir("mnist5k", "/c", **cheap) != evaluate.classifier_dir("mnist5k", "/c")


def test_training_estimate_scales_with_data_and_epochs():
    full = evaluate.estimate_training_seconds("mnist5k")
    assert full == pytest.approx(270.0)  # the measured 4.5 min it is scaled from
    assert evaluate.estimate_training_seconds("mnist5k", epochs=15) == pytest.approx(135.0)
    assert evaluate.estimate_training_seconds("digits") < full / 10  # 8x8 images, 1,500 of them


@pytest.mark.slow  # trains the domain classifier (~20 s)
def test_perfect_generator_is_class_consistent_and_near_the_floor(classifier, test_split):
    result = evaluate.evaluate_model(
        RealImages(*test_split), "mnist5k", 500, classifier=classifier, **FAST
    )
    consistency = result["class_consistency"]
    assert consistency["overall"] > 0.9 and min(consistency["per_class"]) > 0.75
    assert result["model"]["fid"] < 2 * result["real_floor"]["fid"] + 1.0
    assert result["model"]["precision"] > 0.7


@pytest.mark.slow  # trains the classifier and a VAE for 8 epochs
def test_untrained_far_worse_than_real_and_trained_better(classifier):
    import zoo
    from zoo import data

    def build():
        return zoo.build("vae", latent_dim=8, base_filters=8, seed=0)

    untrained = build()
    trained = build()
    trained.compile()
    trained.fit(data.load("mnist5k", batch_size=64, seed=0), epochs=8, verbose=0)
    scores = {
        name: evaluate.evaluate_model(model, "mnist5k", 500, classifier=classifier, **FAST)
        for name, model in (("untrained", untrained), ("trained", trained))
    }
    floor = scores["untrained"]["real_floor"]
    assert scores["untrained"]["model"]["fid"] > 10 * floor["fid"]
    assert scores["untrained"]["model"]["kid"] > 10 * max(floor["kid"], 1e-3)
    assert scores["trained"]["model"]["fid"] < 0.5 * scores["untrained"]["model"]["fid"]
    assert scores["trained"]["model"]["kid"] < scores["untrained"]["model"]["kid"]
    assert scores["trained"]["likelihood"]["elbo"] > scores["untrained"]["likelihood"]["elbo"]
    assert (
        scores["trained"]["likelihood"]["reconstruction_mse"]
        < (scores["untrained"]["likelihood"]["reconstruction_mse"])
    )


@pytest.mark.slow  # trains the domain classifier (~20 s)
def test_conditional_vae_gets_likelihood_and_class_consistency(classifier):
    import zoo

    model = zoo.build("cvae", latent_dim=4, base_filters=8, embedding_dim=4, seed=0)
    result = evaluate.evaluate_model(model, "mnist5k", 100, classifier=classifier, **FAST)
    assert result["likelihood"]["n"] == 1000 and result["likelihood"]["kl"] >= 0
    assert np.isfinite(result["likelihood"]["elbo"]) and result["likelihood"]["elbo"] < 0
    assert len(result["class_consistency"]["per_class"]) == 10


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    import zoo

    run = tmp_path_factory.mktemp("cgan-run")
    model = zoo.build("cgan", latent_dim=8, base_filters=8, embedding_dim=4, seed=0)
    model.compile()  # a run's model is compiled; saving reads its compile config
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"model": "cgan", "dataset": "mnist5k"}))
    return run


@pytest.mark.slow  # trains the domain classifier (~20 s)
def test_evaluate_run_writes_eval_json_and_a_table(classifier, cgan_run):
    result = evaluate.evaluate_run(cgan_run, n=200, classifier=classifier, **FAST)
    assert json.loads((cgan_run / "eval.json").read_text()) == json.loads(json.dumps(result))
    assert result["dataset"] == "mnist5k" and result["family"] == "cgan"
    assert len(result["class_consistency"]["per_class"]) == 10
    table = evaluate.format_table(result)
    assert "FID" in table and "real floor" in table and "class consistency" in table
    assert "not comparable with Inception FID" in table


@pytest.mark.slow  # samples and embeds 200 images
def test_classifier_settings_pick_the_classifier_cached_under_them(classifier, cache_dir, cgan_run):
    result = evaluate.evaluate_run(cgan_run, n=200, cache_dir=cache_dir, **FAST,
                                   classifier_settings={"epochs": 4, "filters": 16})
    assert result["classifier"]["path"] == classifier.info["path"]  # found, not trained again


def test_zoo_eval_passes_the_classifier_flags(cgan_run, monkeypatch, capsys):
    from zoo import cli

    seen = {}

    def fake_evaluate_run(run, **kwargs):
        seen.update(kwargs)
        return {"run": str(run), "dataset": "mnist5k", "family": "cgan", "n": kwargs["n"]}

    monkeypatch.setattr(evaluate, "evaluate_run", fake_evaluate_run)
    monkeypatch.setattr(evaluate, "format_table", lambda result: "table")
    cli.main(["eval", str(cgan_run), "--n", "50", "--classifier-epochs", "3",
              "--classifier-max-train", "20000"])
    assert seen["classifier_settings"] == {"epochs": 3, "max_train": 20000}
    cli.main(["eval", str(cgan_run), "--n", "50"])
    assert seen["classifier_settings"] == {}
    with pytest.raises(SystemExit):
        cli.main(["eval", str(cgan_run), "--classifier-epochs", "0"])
    assert "--classifier-epochs" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n must be a positive integer, got 0"),
        ({"dataset": "no-such-dataset"}, "unknown dataset 'no-such-dataset'"),
        ({"dataset": "digits"}, r"shape \(28, 28, 1\) but dataset 'digits' has \(8, 8, 1\)"),
    ],
)
def test_bad_input_is_a_one_line_value_error(cgan_run, cache_dir, kwargs, match):
    with pytest.raises(ValueError, match=match) as error:
        evaluate.evaluate_run(cgan_run, cache_dir=cache_dir, **kwargs)
    assert "\n" not in str(error.value)


def test_missing_run_names_the_path(tmp_path):
    with pytest.raises(ValueError, match="no run folder at .*nowhere.*no such file or folder"):
        evaluate.evaluate_run(tmp_path / "nowhere")


def test_run_without_model_says_what_it_has_and_keeps_its_scores(tmp_path):
    """Neither model.keras nor export/ (a committed pretrained run ships an export, which eval
    scores: tests/test_pretrained.py)."""
    import shutil

    run = tmp_path / "vae-mnist5k"
    committed = Path(__file__).resolve().parents[1] / "saved_models" / "vae-mnist5k"
    shutil.copytree(committed, run, ignore=shutil.ignore_patterns("export", "plots"))
    before = (run / "eval.json").read_bytes()
    with pytest.raises(ValueError, match="is a run folder but holds no model.keras .*eval.json"):
        evaluate.evaluate_run(run)
    assert (run / "eval.json").read_bytes() == before

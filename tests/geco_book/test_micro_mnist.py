"""The Micro-MNIST experiment (geco_core.micro_mnist): tiling measures against closed forms and
synthetic posteriors, the cache's staleness rules and provenance, and a smoke-profile run end
to end."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from geco_core import micro_mnist as mm


# --------------------------------------------------------------------------------------------
# Tiling measures on synthetic Gaussian posteriors
# --------------------------------------------------------------------------------------------
def gaussian_log_q(z: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
    """log N(z; mean_j, std² I) for every sample and every component: [S, k]."""
    d = z.shape[-1]
    sq = (z[:, None, :] - means[None]).pow(2).sum(-1)
    return -0.5 * sq / std**2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)


def synthetic(means: torch.Tensor, std: float, per_point: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k, d = means.shape
    source = torch.arange(k).repeat_interleave(per_point)
    z = means[source] + std * torch.randn(k * per_point, d, generator=g, dtype=means.dtype)
    return z, source


def test_self_classification_rate_is_one_for_well_separated_clusters():
    k = 7
    angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = 10.0 * torch.stack([angles.cos(), angles.sin()], 1)
    z, source = synthetic(means, 0.3, 200)
    log_q = gaussian_log_q(z, means, 0.3)
    assert mm.self_classification_rate(log_q, source) == 1.0
    assert mm.own_weight(log_q, source) > 1 - 1e-9


def test_self_classification_rate_is_one_over_k_for_identical_posteriors():
    k = 5
    means = torch.zeros(k, 2, dtype=torch.float64)
    z, source = synthetic(means, 1.0, 100)
    log_q = gaussian_log_q(z, means, 1.0)
    assert mm.self_classification_rate(log_q, source) == pytest.approx(1 / k, abs=1e-12)
    assert mm.own_weight(log_q, source) == pytest.approx(1 / k, abs=1e-12)


def test_self_classification_rate_matches_the_bayes_error_of_two_overlapping_gaussians():
    # Two unit 1-D Gaussians at ±a: a sample is on its own side with probability Φ(a).
    a = 0.5
    means = torch.tensor([[-a], [a]], dtype=torch.float64)
    z, source = synthetic(means, 1.0, 200_000, seed=1)
    rate = mm.self_classification_rate(gaussian_log_q(z, means, 1.0), source)
    phi = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    assert rate == pytest.approx(phi, abs=4e-3)


def test_own_weight_matches_numerical_integration():
    # E_{z~N(a,1)}[w_own(z)], w_own = sigmoid(2 a z), by quadrature on a fine grid.
    a = 0.7
    means = torch.tensor([[-a], [a]], dtype=torch.float64)
    z, source = synthetic(means, 1.0, 200_000, seed=2)
    w = mm.own_weight(gaussian_log_q(z, means, 1.0), source)
    grid = np.linspace(a - 12, a + 12, 200_001)
    dens = np.exp(-0.5 * (grid - a) ** 2) / math.sqrt(2 * math.pi)
    ref = np.trapezoid(dens / (1 + np.exp(-2 * a * grid)), grid)
    assert w == pytest.approx(ref, abs=3e-3)


def test_self_classification_rate_rejects_bad_shapes():
    with pytest.raises(ValueError, match="log_q"):
        mm.self_classification_rate(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="source"):
        mm.self_classification_rate(torch.zeros(3, 2), torch.tensor([0, 1, 2]))


def test_posterior_spread_is_sqrt_det_of_the_covariance():
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    z = (torch.randn(2, 50_000, 2, generator=g, dtype=torch.float64) @ chol.T).numpy()
    z[1] *= 0.1  # a tighter posterior: √det scales by 0.1² in 2-D
    spread = mm.posterior_spread(z)
    expected = math.sqrt(float(torch.linalg.det(cov)))
    assert spread[0] == pytest.approx(expected, rel=0.02)
    assert spread[1] == pytest.approx(0.01 * expected, rel=0.02)


def test_count_modes_counts_merged_posteriors_once():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [0.05, 0.0]])
    z = centres[:, None, :] + 0.5 * torch.randn(5, 300, 2, generator=g)
    assert mm.count_modes(z) == 3  # points 0, 1, 4 share a mode
    assert mm.count_modes(z[2:4]) == 2


def test_effective_tiles_spans_one_to_n():
    assert mm.effective_tiles(0.0) == 1.0
    assert mm.effective_tiles(mm.LN7) == pytest.approx(7.0)


def test_pairwise_log_q_matches_matched_rows_of_the_model():
    from geco_core.models import build_model

    torch.manual_seed(0)
    m = build_model(
        "vae_nvp",
        (1, 28, 28),
        latent_dim=2,
        channels=(4, 4),
        context_dim=8,
        flow_hidden=8,
        n_flows=2,
    ).eval()
    x = torch.rand(3, 1, 28, 28)
    z = torch.randn(5, 2)
    with torch.no_grad():
        pairs = mm.pairwise_log_q(m, z, x)
        for j in range(3):
            ref = m.log_q(z, x[j : j + 1].expand(5, -1, -1, -1))
            torch.testing.assert_close(pairs[:, j], ref, atol=1e-5, rtol=1e-5)


def test_run_spec_validation_and_names():
    assert [s.name for s in mm.FIG8_RUNS] == ["elbo", "re-0.05", "cla-0.9"]
    with pytest.raises(ValueError, match="kappa"):
        mm.RunSpec("geco", "re", 0.0)
    with pytest.raises(ValueError, match="constraint"):
        mm.RunSpec("geco", "fre", 0.1)
    with pytest.raises(ValueError, match="probability"):
        mm.RunSpec("geco", "cla", 1.5)
    specs = mm.run_specs(mm.settings_for("cpu"))
    assert len(specs) == len(set(specs)) == 12  # ELBO + 5 RE + 4 CLA (Fig. 8 shared) + 2 ablations
    with pytest.raises(ValueError, match="profile"):
        mm.settings_for("laptop")
    with pytest.raises(ValueError, match="setting"):
        mm.settings_for("cpu", stepz=3)


# --------------------------------------------------------------------------------------------
# Config hash and code version
# --------------------------------------------------------------------------------------------
DATA = {"dataset": "micro-mnist", "source": "synthetic", "labels": list(range(7))}


def test_config_hash_changes_with_any_setting_and_not_otherwise():
    a = mm.experiment_config("cpu", 0, data=DATA)
    assert mm.config_hash(a) == mm.config_hash(mm.experiment_config("cpu", 0, data=DATA))
    assert mm.config_hash(a) != mm.config_hash(mm.experiment_config("cpu", 1, data=DATA))
    assert mm.config_hash(a) != mm.config_hash(mm.experiment_config("cpu", 0, data=DATA, steps=7))
    assert mm.config_hash(a) != mm.config_hash(mm.experiment_config("smoke", 0, data=DATA))
    other = dict(DATA, source="mnist-60k")
    assert mm.config_hash(a) != mm.config_hash(mm.experiment_config("cpu", 0, data=other))


def test_code_version_ignores_docstrings_and_comments_but_not_code(tmp_path, monkeypatch):
    pkg = tmp_path / "cvpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    mod = pkg / "m.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    mod.write_text('"""Doc."""\n\ndef f(x):\n    """Old."""\n    return x + 1\n')
    v1 = mm.code_version(["cvpkg.m"])
    mod.write_text('"""New doc."""\n\n\ndef f(x):  # a comment\n    """New."""\n    return x + 1\n')
    assert mm.code_version(["cvpkg.m"]) == v1
    mod.write_text('"""Doc."""\n\ndef f(x):\n    return x + 2\n')
    v2 = mm.code_version(["cvpkg.m"])
    assert v2 != v1
    # presentation-only names can be left out: editing them keeps the version
    mod.write_text("def f(x):\n    return x + 2\n\n\ndef table():\n    return 1\n")
    skip = {"cvpkg.m": {"table"}}
    v3 = mm.code_version(["cvpkg.m"], skip=skip)
    assert v3 == v2
    mod.write_text("def f(x):\n    return x + 2\n\n\ndef table():\n    return 2\n")
    assert mm.code_version(["cvpkg.m"], skip=skip) == v3
    assert mm.code_version(["cvpkg.m"]) != v3


def test_the_chapter_code_version_ignores_the_tables_but_not_the_training():
    assert {"fig8_table", "sweep_table", "paper_comparison", "main"} <= mm.PRESENTATION_NAMES
    assert not {"train_run", "evaluate_model", "SETTINGS", "run_experiment"} & (
        mm.PRESENTATION_NAMES
    )
    assert "geco_core.micro_mnist" in mm.CODE_MODULES


# --------------------------------------------------------------------------------------------
# The smoke profile end to end, and the cache
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    t0 = time.perf_counter()
    result = mm.run_experiment("smoke", 0, root, use_cache=True, progress=False)
    return result, root, time.perf_counter() - t0


def test_smoke_profile_runs_end_to_end_quickly(smoke):
    result, _, wall = smoke
    assert wall < 60, f"smoke profile took {wall:.1f} s"
    assert not result.from_cache
    settings = result.config["settings"]
    n_post = settings["n_posterior"]
    assert result.x.shape == (7, 28, 28) and result.x.dtype == np.uint8
    assert sorted(result.labels.tolist()) == sorted(result.config["data"]["labels"])
    assert [r.spec for r in result.fig8] == list(mm.FIG8_RUNS)
    for run in result.runs.values():
        assert run.z.shape == (7, n_post, 2) and np.isfinite(run.z).all()
        assert run.recon.shape == (7, settings["n_recon"], 28, 28)
        assert run.curves["step"][-1] == settings["steps"] - 1

    table = mm.fig8_table(result)
    expected = {
        "λ (final)",
        "β = 1/λ",
        "MSE",
        "avg KL",
        "marginal KL",
        "I(n; z)",
        "e^I (eff. tiles)",
        "self-class. rate",
        "E[w_own]",
        "spread √det Σ",
        "p_true (CLA)",
    }
    assert expected <= set(table.columns)
    models = table.drop(index="perfect tiling (Prop. 2)")
    assert list(models.index) == [s.label for s in mm.FIG8_RUNS]
    assert np.isfinite(models[sorted(expected)].to_numpy(dtype=float)).all()
    assert table.loc["perfect tiling (Prop. 2)", "avg KL"] == pytest.approx(math.log(7))
    # Internal consistency of the numbers (hold for any trained model):
    for run in result.runs.values():
        m = run.metrics
        assert 0 <= m["self_class_rate"] <= 1 and 1 / 7 - 1e-9 <= m["own_weight"] <= 1
        assert 1 <= m["n_modes"] <= 7 and 1 <= m["distinct_digits"] <= 7
        assert m["mutual_info"] <= math.log(7) + 1e-6
        assert m["lambda"] * m["beta"] == pytest.approx(1.0, rel=1e-4)

    sweep = mm.sweep_table(result)
    assert {"modes (posterior means)", "distinct digits", "marginal KL"} <= set(sweep.columns)
    assert list(sweep.index.get_level_values(0).unique()) == ["RE", "CLA"]
    assert np.isfinite(sweep.to_numpy(dtype=float)).all()
    assert len(mm.paper_comparison(result)) == 5


def test_provenance_has_the_required_fields(smoke):
    result, root, _ = smoke
    prov = json.loads((root / "smoke" / "provenance.json").read_text())
    for key in (
        "git_commit",
        "git_uncommitted",
        "code_fingerprints",
        "command",
        "seed",
        "versions",
        "wall_time_s",
        "run_wall_time_s",
        "data",
        "config",
        "config_hash",
        "code_version",
        "created_utc",
        "files",
    ):
        assert key in prov, key
    assert prov["seed"] == 0 and prov["profile"] == "smoke"
    assert prov["config_hash"] == mm.config_hash(result.config)
    assert prov["code_version"] == mm.code_version()
    assert prov["code_fingerprints"] == mm.code_fingerprints()
    assert set(prov["code_fingerprints"]) == set(mm.CODE_MODULES)
    if prov["git_commit"] is not None:  # a git checkout: a 40-hex commit and a list of files
        assert len(prov["git_commit"]) == 40 and isinstance(prov["git_uncommitted"], list)
    assert {"python", "torch", "numpy"} <= set(prov["versions"])
    assert prov["data"]["source"] == result.config["data"]["source"]
    assert "run_experiment(profile='smoke'" in prov["command"]
    assert prov["wall_time_s"] >= sum(prov["run_wall_time_s"].values()) > 0
    size = sum(p.stat().st_size for p in (root / "smoke").iterdir())
    assert size < 2_000_000


def test_same_config_loads_the_cache_without_training(smoke, monkeypatch):
    result, root, _ = smoke

    def no_training(*args, **kwargs):
        raise AssertionError("a valid cache must not retrain")

    monkeypatch.setattr(mm, "train_run", no_training)
    again = mm.run_experiment("smoke", 0, root, use_cache=True, progress=False)
    assert again.from_cache
    for name, run in result.runs.items():
        np.testing.assert_array_equal(again.runs[name].z, run.z)
        np.testing.assert_array_equal(again.runs[name].recon, run.recon)
        assert again.runs[name].metrics == pytest.approx(run.metrics, nan_ok=True)
    assert mm.fig8_table(again).equals(mm.fig8_table(result))


def test_changed_config_or_code_makes_the_cache_stale(smoke, monkeypatch):
    result, root, _ = smoke
    d = root / "smoke"
    assert mm.cache_status(d, result.config).valid
    changed = mm.experiment_config("smoke", 0, data=result.config["data"], steps=31)
    status = mm.cache_status(d, changed)
    assert not status.valid and "config hash" in status.reason
    assert not mm.cache_status(root / "nowhere", result.config).valid
    real = mm.code_fingerprints()
    edited = dict(real, **{"geco_core.geco": "0123456789abcdef"})
    monkeypatch.setattr(mm, "code_fingerprints", lambda *a, **k: edited)
    status = mm.cache_status(d, result.config)
    assert not status.valid and "code version" in status.reason
    assert "changed: geco_core.geco" in status.reason


def test_an_edited_cache_file_is_stale(smoke, tmp_path):
    import shutil

    result, root, _ = smoke
    d = tmp_path / "copy"
    shutil.copytree(root / "smoke", d)
    metrics = json.loads((d / "metrics.json").read_text())
    metrics["elbo"]["metrics"]["avg_kl"] = 1.0
    (d / "metrics.json").write_text(json.dumps(metrics))
    status = mm.cache_status(d, result.config)
    assert not status.valid and "sha256" in status.reason


def test_changed_config_recomputes_and_rewrites_the_cache(smoke, tmp_path):
    import shutil

    result, root, _ = smoke
    shutil.copytree(root / "smoke", tmp_path / "smoke")
    calls = []
    original = mm.train_run

    def counting(*args, **kwargs):
        calls.append(args[0].name)
        return original(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(mm, "train_run", counting)
    try:
        fresh = mm.run_experiment("smoke", 0, tmp_path, use_cache=True, progress=False, steps=4)
    finally:
        mp.undo()
    assert not fresh.from_cache
    assert calls == [s.name for s in mm.run_specs(fresh.config["settings"])]
    assert fresh.runs["elbo"].curves["step"][-1] == 3
    assert mm.cache_status(tmp_path / "smoke", fresh.config).valid
    assert not mm.cache_status(tmp_path / "smoke", result.config).valid


def test_smoke_never_reads_the_cache_by_default(smoke, monkeypatch):
    _, root, _ = smoke

    class Trained(Exception):
        pass

    def trained(*args, **kwargs):
        raise Trained

    seen = []
    monkeypatch.setattr(mm, "cache_status", lambda *a, **k: seen.append(a))
    monkeypatch.setattr(mm, "train_run", trained)
    with pytest.raises(Trained):  # it trains although root/smoke holds a valid cache
        mm.run_experiment("smoke", 0, root, progress=False)
    assert seen == []

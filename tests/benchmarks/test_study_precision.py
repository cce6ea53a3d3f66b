"""benchmarks/study_precision.py: its configs are chapter 03's runs, and its comparison of the
two precisions computes what it says (against hand-computed means, sds and ratios)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "study_precision.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_precision", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_float32_configs_are_the_chapters_and_differ_only_in_precision(study):
    from geco_book.chapters.large_scale import RunSpec, settings_for, train_config

    cfgs = study.study_configs({("convdraw", "mnist"): 2, ("vae_nvp", "mnist"): 2,
                                ("convdraw", "mnist-rotate"): 2})
    assert [(c.model, c.seed, c.precision) for c in cfgs[:4]] == [
        ("convdraw", 0, "float32"), ("convdraw", 0, "bfloat16"),
        ("convdraw", 1, "float32"), ("convdraw", 1, "bfloat16")]  # fmt: skip
    chapter = train_config(RunSpec("vae_nvp", "mnist", "geco", "re", 0.1, seed=1),
                           settings_for("cpu"))
    assert cfgs[6] == chapter
    assert cfgs[7].to_dict() == {**chapter.to_dict(), "precision": "bfloat16"}
    rotate = train_config(RunSpec("convdraw", "mnist-rotate", "geco", "re", 0.1, seed=0),
                          settings_for("cpu"))
    assert cfgs[8] == rotate and rotate.dataset == "mnist-rotate"


def _row(precision, seed, mse, wall, setting="m/d"):
    return {"setting": setting, "precision": precision, "seed": seed, "mse": mse, "kl": 2 * mse,
            "lambda": 10 * mse, "constraint_met": mse < 3, "lambda_at_bound": False,
            "lambda_bound_fraction": 0.0,
            "wall_time_s": wall}


def test_compare_gives_means_sds_gap_and_paired_wall_ratios(study):
    rows = [_row("float32", 0, 1.0, 10.0), _row("float32", 1, 3.0, 12.0),
            _row("bfloat16", 1, 4.0, 6.0), _row("bfloat16", 0, 2.0, 5.0)]
    e = study.compare(rows)["m/d"]
    mse = e["mse"]
    assert mse["float32"]["mean"] == 2.0 and mse["bfloat16"]["mean"] == 3.0
    assert mse["float32"]["sd"] == pytest.approx(math.sqrt(2.0))
    assert mse["gap"] == 1.0 and mse["gap_over_sd"] == pytest.approx(1 / math.sqrt(2.0))
    assert e["kl"]["gap"] == 2.0
    assert mse["paired_relative_difference"] == [pytest.approx(1 / 3), 2 / 3, 1.0]  # 4/3, 2/1
    # paired by seed: 10/5 and 12/6, whatever the order of the rows
    assert e["float32_over_bfloat16_wall"] == [2.0, 2.0, 2.0]
    assert e["constraint_met"] == {"float32": 1, "bfloat16": 1}
    # largest |bf16 − f32| of one seed (1.0) over the float32 seeds' sd (√2)
    assert mse["largest_paired_difference_over_sd"] == pytest.approx(1 / math.sqrt(2.0))


def test_run_summary_reads_the_end_of_the_log_and_the_bounds(study):
    from geco_core.train import TrainConfig

    cfg = TrainConfig(geco_kwargs={"lambda_bounds": [1e-3, 1e8]}, progress=False)
    log = pd.DataFrame({"step": [0, 9], "mse": [0.1, 0.01], "kl": [1.0, 5.0],
                        "lambda": [1.0, 1e8], "c_ma": [0.2, -0.01], "wall_time": [0.1, 2.5]})
    s = study.run_summary(cfg, log)
    assert (s["mse"], s["kl"], s["lambda"], s["wall_time_s"]) == (0.01, 5.0, 1e8, 2.5)
    assert s["constraint_met"] and s["lambda_at_bound"] and s["lambda_bound_fraction"] == 0.5
    assert s["curves"]["lambda"] == [1.0, 1e8]
    assert s["setting"] == "conv_vae/mnist"


def test_compare_refuses_a_seed_without_its_twin(study):
    rows = [_row("float32", 0, 1.0, 10.0), _row("float32", 1, 3.0, 12.0),
            _row("bfloat16", 0, 2.0, 5.0), _row("bfloat16", 2, 4.0, 6.0)]
    with pytest.raises(ValueError, match="both precisions at every seed"):
        study.compare(rows)


def test_relative_curves_pair_each_seed_with_its_twin(study):
    def run(precision, seed, kl):
        return {"setting": "m/d", "precision": precision, "seed": seed,
                "curves": {"step": [0, 1], "mse": [1.0, 2.0], "kl": kl, "lambda": [1.0, 1.0]}}

    rel = study.relative_curves([run("bfloat16", 0, [2.0, 3.0]), run("float32", 0, [1.0, 2.0]),
                                 run("float32", 1, [4.0, 4.0]), run("bfloat16", 1, [2.0, 5.0])])
    assert rel["m/d", 0]["kl"] == [1.0, 0.5] and rel["m/d", 1]["kl"] == [-0.5, 0.25]
    assert rel["m/d", 0]["mse"] == [0.0, 0.0] and rel["m/d", 0]["step"] == [0, 1]


def test_drift_summary_averages_the_last_quarter_and_scales_by_the_seed_sd(study):
    def run(precision, seed, kl):
        other = [1.0 + seed] * 4  # MSE and λ: equal twins, seeds apart
        return {"setting": "m/d", "precision": precision, "seed": seed,
                "curves": {"step": [0, 300, 600, 900], "mse": other, "kl": kl, "lambda": other}}

    rows = [run("float32", 0, [1.0, 1.0, 1.0, 2.0]), run("bfloat16", 0, [1.0, 1.0, 1.0, 3.0]),
            run("float32", 1, [1.0, 3.0, 3.0, 4.0]), run("bfloat16", 1, [1.0, 3.0, 3.0, 4.0])]
    d = study.drift_summary(rows)["m/d"]["kl"]
    assert d["last_quarter_mean_relative_difference"] == [0.5, 0.0]  # the last of 4 steps
    # steps >= 250: float32 sd is √2 at every step; seed 0 differs by 1 at step 900
    assert d["largest_difference_over_sd"] == [pytest.approx(1 / math.sqrt(2.0)), 0.0]
    assert study.drift_summary(rows)["m/d"]["mse"]["largest_difference_over_sd"] == [0.0, 0.0]

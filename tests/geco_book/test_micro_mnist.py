"""Chapter 02 (geco_book.chapters.micro_mnist): run specs, configs, staleness through the run
store, and the smoke profile end to end."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from geco_book import verdicts
from geco_book.chapters import micro_mnist as mm
from geco_book.chapters import micro_mnist_tables as tables
from geco_book.store import RunStore, run_key


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


def _keys(profile="cpu", **overrides):
    settings = mm.settings_for(profile, **overrides)
    return {s.name: run_key(mm.train_config(s, settings, 0)) for s in mm.run_specs(settings)}


def test_changing_a_setting_invalidates_exactly_the_runs_that_use_it():
    base = _keys()
    assert len(set(base.values())) == len(base)  # every run its own key
    # λ⁰ of CLA: only the CLA runs that take the chapter's λ⁰ (not the λ⁰ = 1 ablation).
    cla = _keys(lambda_init={"re": 1.0, "cla": 50.0})
    changed = {n for n in base if cla[n] != base[n]}
    assert changed == {n for n in base if n.startswith("cla-") and "lambda0" not in n}
    # The factor clamp: every GECO run, not the ELBO.
    clamp = _keys(geco_kwargs={"factor_clamp": [0.97, 1.03], "lambda_bounds": [1e-3, 1e7]})
    assert {n for n in base if clamp[n] != base[n]} == set(base) - {"elbo"}
    # Evaluation settings and the number of workers change no training run.
    assert _keys(n_posterior=50, workers=1, threads=2) == base
    # Steps: every run.
    steps = _keys(steps=10)
    assert all(steps[n] != base[n] for n in base)


def test_eval_steps_end_at_steps_and_are_checked():
    assert mm.settings_for("cpu")["eval_steps"][-1] == mm.settings_for("cpu")["steps"]
    assert mm.settings_for("cpu", steps=7000)["eval_steps"] == [2000, 5000, 7000]
    assert mm.settings_for("cpu", steps=20_000, eval_steps=[20_000])["eval_steps"] == [20_000]
    for bad in ([2000, 1000, 20_000], [5000, 10_000], [0, 20_000], [2000, 2000, 20_000], []):
        with pytest.raises(ValueError, match="eval_steps"):
            mm.settings_for("cpu", eval_steps=bad)
    with pytest.raises(ValueError, match="fig8_seeds"):
        mm.settings_for("cpu", fig8_seeds=0)
    with pytest.raises(ValueError, match="sweep_seeds"):
        mm.settings_for("cpu", sweep_seeds=1.5)
    # a stage's config differs from the final one in its steps only
    spec, settings = mm.FIG8_RUNS[1], mm.settings_for("cpu")
    a, b = mm.train_config(spec, settings, 0, 2000), mm.train_config(spec, settings, 0)
    diff = {k for k, v in a.to_dict().items() if b.to_dict()[k] != v}
    assert diff == {"steps", "ckpt_every"} and b.steps == 20_000


def test_editing_a_docstring_of_a_model_module_keeps_the_committed_cache_valid(
        tmp_path, official_mnist):
    """A copy of the library whose VAE+NVP module has a new docstring renders chapter 02 from
    the committed records (trained on the official 60k split) without training (training
    would raise)."""
    if not (Path(mm.__file__).resolve().parents[2] / "book" / "_cache" / "runs").is_dir():
        pytest.skip("no committed cpu records")
    import geco_core

    lib = tmp_path / "geco_core"
    shutil.copytree(Path(geco_core.__file__).parent, lib,
                    ignore=shutil.ignore_patterns("__pycache__"))
    nvp = lib / "models" / "nvp.py"
    text = nvp.read_text()
    assert text.startswith('"""')
    nvp.write_text('"""EDITED DOCSTRING. ' + text[3:])
    code = (
        "import geco_core.models.nvp as n, geco_core.train as t\n"
        "assert n.__doc__.startswith('EDITED'), n.__file__\n"
        "def boom(*a, **k): raise SystemExit('stale: the chapter tried to train')\n"
        "t.fit = boom\n"
        "from geco_book.chapters import micro_mnist as mm\n"
        "r = mm.run_experiment('cpu', progress=False, workers=1)  # fit patched\n"
        "assert r.from_cache and r.provenance['data']['source'] == 'mnist-60k'\n"
        "print('ok', len(r.runs))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GECO_RUNS": str(tmp_path / "no-ckpts"),
           "GECO_DATA": str(official_mnist)}
    # cwd = the copy's parent: `python -c` puts the working directory first on sys.path.
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok 12")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    store = RunStore(root / "records", root / "checkpoints")
    t0 = time.perf_counter()
    result = mm.run_experiment("smoke", 0, store=store, progress=False)
    return result, store, time.perf_counter() - t0


def test_smoke_profile_runs_end_to_end_quickly(smoke):
    result, _, wall = smoke
    assert wall < 90, f"smoke profile took {wall:.1f} s"
    assert not result.from_cache
    settings = result.config["settings"]
    n_post = settings["n_posterior"]
    assert result.x.shape == (7, 28, 28) and result.x.dtype == np.uint8
    assert sorted(result.labels.tolist()) == sorted(result.provenance["data"]["labels"])
    assert [r.spec for r in result.fig8] == list(mm.FIG8_RUNS)
    for run in result.runs.values():
        assert run.z.shape == (7, n_post, 2) and np.isfinite(run.z).all()
        assert run.recon.shape == (7, settings["n_recon"], 28, 28)
        assert run.curves["step"][-1] == settings["steps"] - 1

    table = tables.fig8_table(result)
    assert set(tables.TABLE_COLUMNS) <= set(table.columns)
    models = table.drop(index="perfect tiling (Prop. 2)")
    assert list(models.index) == [s.label for s in mm.FIG8_RUNS]
    assert np.isfinite(models[sorted(tables.TABLE_COLUMNS)].to_numpy(dtype=float)).all()
    assert table.loc["perfect tiling (Prop. 2)", "avg KL"] == pytest.approx(math.log(7))
    for run in result.runs.values():  # internal consistency, true of any trained model
        m = run.metrics
        assert 0 <= m["self_class_rate"] <= 1 and 1 / 7 - 1e-9 <= m["own_weight"] <= 1
        assert 1 <= m["n_modes"] <= 7 and 1 <= m["distinct_digits"] <= 7
        assert m["mutual_info"] <= math.log(7) + 1e-6
        assert m["lambda"] * m["beta"] == pytest.approx(1.0, rel=1e-4)
    sweep = tables.sweep_table(result)
    assert list(sweep.index.get_level_values(0).unique()) == ["RE", "CLA"]
    touched = sweep.pop("λ touched a bound (any step)")
    assert set(touched) <= {"no", "floor", "ceiling", "both"}
    assert np.isfinite(sweep.to_numpy(dtype=float)).all()
    assert len(tables.paper_comparison(result)) == 5


def test_every_run_is_evaluated_at_every_stage_and_fig8_at_every_seed(smoke):
    result, store, _ = smoke
    settings = result.config["settings"]
    stages = settings["eval_steps"]
    assert len(stages) >= 2
    assert [r.config["seed"] for r in result.seeds] == list(range(settings["fig8_seeds"]))
    assert settings["sweep_seeds"] == 1  # smoke: the sweep at the chapter's seed only
    assert result.has_sweeps and not any(r.has_sweeps for r in result.replicates)
    for rep in result.replicates:
        assert [r.spec for r in rep.fig8] == list(mm.FIG8_RUNS) and len(rep.runs) == 3
        assert rep.provenance["data"]["pool_indices"] != result.provenance["data"]["pool_indices"]
    for r in result.seeds:
        for name, run in r.runs.items():
            assert [int(h["steps"]) for h in run.history] == stages
            assert run.history[-1] == run.metrics
            keys = r.provenance["stage_runs"][name]
            assert len(keys) == len(stages) and keys[-1] == r.provenance["runs"][name]
            # each stage continued the previous stage's checkpoint
            for before, after in zip(keys, keys[1:]):
                assert store.load(after).record["continued_from"] == before
    # the measures moved between stages (a stage is a real evaluation, not a copy)
    elbo = result.runs["elbo"].history
    assert elbo[0]["avg_kl"] != elbo[-1]["avg_kl"]
    table = tables.convergence_table(result)
    assert len(table) == 3 * settings["fig8_seeds"]
    assert (table["max rel. change"] >= 0).all()
    seeds = tables.fig8_seed_table(result)
    assert list(seeds["seeds"]) == [settings["fig8_seeds"]] * 3
    met = seeds.loc[mm.FIG8_RUNS[1].label, "constraint met (last 25 %)"]
    assert met.endswith(f"/{settings['fig8_seeds']}")


def test_sweep_seeds_train_the_sweep_at_the_further_seeds_and_reach_the_verdicts(smoke,
                                                                                   tmp_path):
    _, store, _ = smoke
    copy = RunStore(tmp_path / "records", tmp_path / "checkpoints")
    shutil.copytree(store.records, copy.records)
    shutil.copytree(store.checkpoints, copy.checkpoints)
    result = mm.run_experiment("smoke", 0, store=copy, progress=False, sweep_seeds=2)
    sweep = {f"re-{k:g}" for k in (0.3,)} | {f"cla-{k:g}" for k in (0.2,)}
    rep = result.replicates[0]
    assert rep.has_sweeps and sweep <= set(rep.runs) and "cla-0.9-lambda0-1" not in rep.runs
    # only the replicate's sweep runs were trained: everything else came from the store
    assert set(rep.provenance["trained_now"]) == sweep
    assert result.provenance["trained_now"] == []
    table = tables.paper_comparison(result)
    assert list(table["seeds"]) == [2, 2, 2, 2, 2]


def test_a_run_continued_over_stages_equals_one_straight_run(smoke, tmp_path):
    """The staged run's final numbers equal those of one run trained straight to the end."""
    result, store, _ = smoke
    settings = result.config["settings"]
    straight = RunStore(tmp_path / "records", tmp_path / "checkpoints")
    for spec in mm.FIG8_RUNS[:2]:
        run = straight.get_or_train(mm.train_config(spec, settings, 0))
        assert run.record["continued_from"] is None
        staged = store.load(result.provenance["runs"][spec.name])
        assert run.key == staged.key
        numbers = {k: v for k, v in run.metrics.items() if k != "wall_time"}
        assert numbers == {k: staged.metrics[k] for k in numbers}  # bitwise: the same floats


def test_provenance_names_every_run_and_its_origin(smoke):
    result, store, _ = smoke
    prov = result.provenance
    assert prov["profile"] == "smoke" and prov["seed"] == 0
    assert set(prov["runs"]) == set(result.runs)
    assert set(prov["trained_now"]) == set(result.runs)
    assert prov["data"]["source"] == "mnist-test-10k"
    assert {"python", "torch", "numpy"} <= set(prov["versions"])
    assert "run_experiment(profile='smoke'" in prov["command"]
    size = sum(p.stat().st_size for p in store.records.rglob("*") if p.is_file())
    assert size < 3_000_000


def test_a_second_call_loads_everything_without_training_or_checkpoints(smoke, monkeypatch):
    result, store, _ = smoke
    import geco_core.train

    monkeypatch.setattr(geco_core.train, "fit", lambda *a, **k: pytest.fail("retrained"))
    # Evaluations are cached in the records: the checkpoints are not needed any more.
    no_ckpt = RunStore(store.records, store.checkpoints.parent / "elsewhere")
    again = mm.run_experiment("smoke", 0, store=no_ckpt, progress=False)
    assert again.from_cache and again.provenance["trained_now"] == []
    for name, run in result.runs.items():
        np.testing.assert_array_equal(again.runs[name].z, run.z)
        np.testing.assert_array_equal(again.runs[name].recon, run.recon)
        assert again.runs[name].metrics == pytest.approx(run.metrics, nan_ok=True)
    assert tables.fig8_table(again).equals(tables.fig8_table(result))


def test_a_changed_setting_retrains_only_the_runs_it_touches(smoke, tmp_path):
    _, store, _ = smoke
    copy = RunStore(tmp_path / "records", tmp_path / "checkpoints")
    shutil.copytree(store.records, copy.records)
    fresh = mm.run_experiment("smoke", 0, store=copy, progress=False,
                              lambda_init={"re": 1.0, "cla": 50.0})
    assert set(fresh.provenance["trained_now"]) == {"cla-0.9", "cla-0.2"}


# --------------------------------------------------------------------------------------------
# Tables on hand-built results (no training): constraint flags and verdicts
# --------------------------------------------------------------------------------------------
_SETTINGS = {"re_kappas": [0.05, 0.2], "cla_kappas": [0.9, 0.2], "ablations": [],
             "geco_kwargs": {"factor_clamp": [0.98, 1.02], "lambda_bounds": [1e-3, 1e7]}}


def _metrics(**kw):
    base = {"lambda": 10.0, "beta": 0.1, "mse": 0.001, "avg_kl": 5.0, "marginal_kl": 3.0,
            "mutual_info": math.log(7), "effective_tiles": 7.0, "self_class_rate": 1.0,
            "own_weight": 1.0, "spread": 0.01, "p_true": 0.99, "n_modes": 7.0,
            "distinct_digits": 7.0, "c_ma": -0.001}
    base.update(kw)
    return base


def _fake_result(seed=0, elbo_kl=20.0, geco_kl=5.0, tiles=(7.0, 1.0), c_ma_log=None,
                 overrides=None):
    """A MicroMNISTResult with the given numbers: ELBO, RE κ = 0.05 / 0.2, CLA κ = 0.9 / 0.2."""
    specs = [mm.RunSpec("elbo"), mm.RunSpec("geco", "re", 0.05), mm.RunSpec("geco", "cla", 0.9),
             mm.RunSpec("geco", "re", 0.2), mm.RunSpec("geco", "cla", 0.2)]
    values = {
        "elbo": _metrics(avg_kl=elbo_kl, marginal_kl=elbo_kl - 2, c_ma=math.nan),
        "re-0.05": _metrics(avg_kl=geco_kl, marginal_kl=geco_kl - 2, effective_tiles=tiles[0]),
        "cla-0.9": _metrics(avg_kl=geco_kl, marginal_kl=geco_kl - 2, effective_tiles=tiles[0]),
        "re-0.2": _metrics(effective_tiles=tiles[1]),
        "cla-0.2": _metrics(effective_tiles=tiles[1]),
    }
    for name, kw in (overrides or {}).items():
        values[name].update(kw)
    z, recon = np.zeros((7, 2, 2)), np.zeros((7, 1, 28, 28), np.uint8)

    def curves(name):  # a log that sits at the run's final C_ma unless c_ma_log is given
        c = (np.full(8, values[name]["c_ma"]) if c_ma_log is None
             else np.asarray(c_ma_log, dtype=float))
        return {"step": np.arange(len(c)), "c_ma": c}

    runs = {s.name: mm.RunResult(s, values[s.name], z, recon, curves(s.name)) for s in specs}
    return mm.MicroMNISTResult(np.zeros((7, 28, 28), np.uint8), np.arange(7), runs,
                               {"profile": "test", "seed": seed, "settings": _SETTINGS}, {})


def test_constraint_met_columns_follow_c_ma_and_the_evaluated_constraint():
    # RE κ = 0.05 met everywhere; RE κ = 0.2: C_ma ≤ 0 at the last step but the evaluated MSE
    # 0.056 > κ² = 0.04 (the chapter's cpu case); CLA κ = 0.9: C_ma > 0 and p_true 0.85 < 0.9,
    # λ at the upper bound; CLA κ = 0.2 met with λ at the lower bound.
    result = _fake_result(
        c_ma_log=[0.1] * 6 + [-0.01, 0.01, -0.01, -0.01],
        overrides={
            "re-0.05": {"c_ma": -0.002, "mse": 0.0004},
            "re-0.2": {"c_ma": -0.0004, "mse": 0.056},
            "cla-0.9": {"c_ma": 0.05, "p_true": 0.85, "lambda": 1e7 * (1 - 1e-7)},
            "cla-0.2": {"c_ma": -0.1, "p_true": 0.3, "lambda": 0.0010000000474974513},  # float32
        },
    )
    fig8 = tables.fig8_table(result)
    assert set(tables.CONSTRAINT_COLUMNS) <= set(fig8.columns)
    elbo, re, cla = (fig8.loc[s.label] for s in mm.FIG8_RUNS)
    assert elbo["met: C_ma ≤ 0 (final)"] is None and elbo["λ at a bound (end)"] is None
    assert re["met: C_ma ≤ 0 (final)"] is True and re["met: C ≤ 0 (eval.)"] is True
    assert re["C (eval.)"] == pytest.approx(0.0004 - 0.05**2)
    assert cla["met: C_ma ≤ 0 (final)"] is False and cla["met: C ≤ 0 (eval.)"] is False
    assert cla["C (eval.)"] == pytest.approx(0.9 - 0.85)
    assert cla["λ at a bound (end)"] is True and re["λ at a bound (end)"] is False
    # the share over the last quarter of the log: its last 3 of 10 rows, 0.01, -0.01, -0.01
    assert re["share C_ma ≤ 0 (last 25 %)"] == pytest.approx(2 / 3)
    assert fig8.loc["perfect tiling (Prop. 2)", "met: C_ma ≤ 0 (final)"] is None

    sweep = tables.sweep_table(result)
    assert sweep.loc[("RE", 0.2), "met: C_ma ≤ 0 (final)"]
    assert not sweep.loc[("RE", 0.2), "met: C ≤ 0 (eval.)"]
    assert sweep.loc[("RE", 0.2), "C (eval.)"] == pytest.approx(0.056 - 0.04)
    end = "λ at a bound (end)"
    assert sweep.loc[("CLA", 0.2), end] and not sweep.loc[("RE", 0.2), end]
    assert sweep["met: C_ma ≤ 0 (final)"].dtype == bool
    assert tables.format_cell(sweep.loc[("CLA", 0.9), "met: C_ma ≤ 0 (final)"]) == "no"


def test_one_seed_never_yields_a_positive_verdict():
    # GECO far below the ELBO and a clean collapse along κ: still no verdict from one seed
    result = _fake_result(elbo_kl=1000.0, geco_kl=2.0, tiles=(7.0, 1.0))
    table = tables.paper_comparison(result)
    assert len(table) == 5 and (table["seeds"] == 1).all()
    for verdict in table["verdict"]:
        assert "one seed; not a verdict" in verdict
        assert not verdict.startswith(("yes", "holds", "partly", "reproduced"))
    assert "RE lower, CLA lower" in table["verdict"][0]  # the direction is still reported
    assert tables.paper_comparison([result])["verdict"].equals(table["verdict"])


def test_seed_table_and_convergence_table_on_known_numbers():
    base = _fake_result(0, elbo_kl=20.0)
    base.replicates = [_fake_result(1, elbo_kl=22.0), _fake_result(2, elbo_kl=24.0)]
    for r, fail in zip(base.seeds, (False, True, False)):
        for run in r.fig8:
            run.history = [dict(run.metrics, steps=100, avg_kl=run.metrics["avg_kl"] * 2,
                                marginal_kl=0.01), dict(run.metrics, steps=200)]
        if fail:  # RE not met at seed 1: on average 0.0075 above κ² over the last quarter
            r.runs["re-0.05"].curves["c_ma"][:] = 0.0075
    seeds = tables.fig8_seed_table(base)
    # ELBO avg KL 20, 22, 24: mean 22, SE = 2 / √3
    assert seeds.loc["ELBO (β = 1)", "avg KL"] == f"22 ± {2 / math.sqrt(3):.2g}"
    met, counted = "constraint met (last 25 %)", "counted"
    assert seeds.loc["GECO + RE (κ = 0.05)", met] == "2/3"
    assert seeds.loc["GECO + RE (κ = 0.05)", counted] == "2/3"
    assert seeds.loc["GECO + CLA (κ = 0.9)", met] == "3/3"
    assert seeds.loc["ELBO (β = 1)", met] == "—"
    base.replicates[0].runs["cla-0.9"].curves["lambda"] = np.array([1.0, 1e7, 3.0])
    seeds = tables.fig8_seed_table(base)  # met at the end, but λ touched its ceiling: not counted
    assert seeds.loc["GECO + CLA (κ = 0.9)", met] == "3/3"
    assert seeds.loc["GECO + CLA (κ = 0.9)", "λ touched ceiling / floor"] == "1/3 / 0/3"
    assert seeds.loc["GECO + CLA (κ = 0.9)", counted] == "2/3"
    conv = tables.convergence_table(base)
    assert len(conv) == 9
    # avg KL halved between the stages: rel. change 0.5; marginal KL 0.01 → 18 (ELBO, seed 0)
    row = conv.loc[("ELBO (β = 1)", 0)]
    assert row["avg KL (rel. change)"] == pytest.approx(0.5)
    assert row["marginal KL (rel. change)"] == pytest.approx((18.0 - 0.01) / 0.1)
    assert row["max rel. change"] == pytest.approx((18.0 - 0.01) / 0.1)
    assert row["steps"] == "100 → 200"
    base.fig8[0].history = base.fig8[0].history[:1]
    with pytest.raises(ValueError, match="two evaluated steps"):
        tables.convergence_table(base)


def test_sweep_seed_table_over_the_seeds_that_hold_the_sweep():
    base = _fake_result(0, tiles=(7.0, 1.0))
    base.replicates = [_fake_result(1, tiles=(6.0, 2.0)), _fake_result(2, tiles=(5.0, 3.0))]
    base.replicates[1].runs["re-0.2"].curves["c_ma"][:] = 0.01  # MSE 0.05 > κ² = 0.04: not met
    table = tables.sweep_seed_table(base)
    assert list(table.index) == [("RE", 0.05), ("RE", 0.2), ("CLA", 0.9), ("CLA", 0.2)]
    assert (table["seeds"] == 3).all()
    assert table.loc[("RE", 0.05), "e^I (eff. tiles)"] == "6 ± 0.58"  # 7, 6, 5
    assert table.loc[("CLA", 0.2), "e^I (eff. tiles)"] == "2 ± 0.58"  # 1, 2, 3
    assert table.loc[("RE", 0.2), "constraint met (last 25 %)"] == "2/3"
    # a replicate without the sweep is left out
    base.replicates[1].runs = {k: v for k, v in base.replicates[1].runs.items()
                               if k in ("elbo", "re-0.05", "cla-0.9")}
    assert (tables.sweep_seed_table(base)["seeds"] == 2).all()


def test_several_seeds_need_a_gap_beyond_the_seed_spread():
    apart = [_fake_result(s, elbo_kl=20.0 + s, geco_kl=5.0 + 0.1 * s, tiles=(7.0 - 0.01 * s, 1.0))
             for s in range(3)]
    table = tables.paper_comparison(apart)
    assert (table["seeds"] == 3).all()
    assert table["verdict"][0].startswith("holds")  # marginal KL
    assert table["verdict"][2].startswith("holds")  # |avg KL − ln 7|
    assert table["verdict"][3].startswith("holds") and table["verdict"][4].startswith("holds")
    assert table["verdict"][1].startswith("no clear difference")  # all rates 1
    assert "±" in table["ours"][0]
    # the ELBO's seeds overlap GECO's: no verdict however large one seed's gap is
    overlap = [_fake_result(0, elbo_kl=30.0, geco_kl=5.0), _fake_result(1, elbo_kl=6.0,
                                                                        geco_kl=8.0)]
    assert tables.paper_comparison(overlap)["verdict"][0].startswith("no clear difference")
    with pytest.raises(ValueError, match="seed"):
        tables.paper_comparison([apart[0], apart[0]])


def test_a_low_kl_from_collapsed_posteriors_refutes_the_tiling_claims():
    """GECO far below the ELBO in marginal KL, but RE's posteriors merged (e^I 2.1, 1.6, 2.0,
    the shape of the pre-policy CLA seeds): not a tighter tiling, and an average KL below
    ln 7 is overlap, not 'closer to ln 7'."""
    seeds = [_fake_result(s, elbo_kl=20.0 + s, geco_kl=2.0 + 0.01 * s, overrides={
        "re-0.05": {"effective_tiles": t, "avg_kl": 0.6 + 0.01 * s, "marginal_kl": 0.4}})
        for s, t in zip(range(3), (2.1, 1.6, 2.0))]
    table = tables.paper_comparison(seeds)
    for row in (0, 2):  # marginal KL; |avg KL − ln 7|: CLA tightens, RE collapsed
        assert table["verdict"][row].startswith("partly"), table["verdict"][row]
        assert "RE collapsed" in table["verdict"][row] and "3/3 counted" in table["verdict"][row]
    for r in seeds:  # both GECO models collapsed: refuted
        r.runs["cla-0.9"].metrics.update(r.runs["re-0.05"].metrics)
    for row in (0, 2):
        assert tables.paper_comparison(seeds)["verdict"][row].startswith("does not hold")
    # the same numbers with the tiles kept apart would hold
    apart = [_fake_result(s, elbo_kl=20.0 + s, geco_kl=2.0 + 0.01 * s) for s in range(3)]
    assert tables.paper_comparison(apart)["verdict"][0].startswith("holds")


def test_runs_that_missed_kappa_or_hit_the_ceiling_are_not_counted():
    bounds = tuple(_SETTINGS["geco_kwargs"]["lambda_bounds"])
    seeds = [_fake_result(s, elbo_kl=20.0 + s, geco_kl=2.0 + 0.01 * s) for s in range(3)]
    seeds[0].runs["re-0.05"].curves["c_ma"][:] = 0.0075  # MSE 0.01 > κ² = 0.0025: missed κ
    spec, m = mm.RunSpec("geco", "re", 0.05), seeds[0].runs["re-0.05"].metrics

    def tail(*c):  # a run whose logged C_ma is c (the last quarter's mean is what counts)
        return mm.RunResult(spec, m, None, None, curves={"c_ma": np.array(c)})

    assert tables.counted(tail(0.1, 0.1, 0.1, 1e-4), bounds)  # ≤ 5 % of κ² above 0 on average
    assert tables.counted(tail(0.1, 0.1, -0.0004, 0.0004, -0.0002, 0.0003), bounds)  # oscillates
    assert not tables.counted(tail(0.1, 0.1, 0.1, 2e-4), bounds)  # 8 % above κ²: not on target
    assert not tables.counted(tail(), bounds)  # no log: nothing says it met κ
    seeds[1].runs["re-0.05"].curves = {"step": np.arange(3), "c_ma": np.zeros(3),
                                       "lambda": np.array([1.0, 1e7, 50.0])}  # hit the ceiling
    assert not tables.counted(seeds[0].runs["re-0.05"], bounds)
    assert not tables.counted(seeds[1].runs["re-0.05"], bounds)
    assert tables.constraint_status(seeds[1].runs["re-0.05"], bounds)[
        "λ touched a bound (any step)"] == "ceiling"
    seeds[2].runs["re-0.05"].curves = {"lambda": np.array([1.0, 1e-3, 0.01]),
                                       "c_ma": np.array([0.1, -0.5, -0.5])}
    assert not tables.counted(seeds[2].runs["re-0.05"], bounds)  # clipped, then active again
    seeds[2].runs["re-0.05"].curves["lambda"] = np.array([1.0, 1e-3, 1e-3])  # inactive at the end
    seeds[2].runs["re-0.05"].metrics["lambda"] = 1e-3
    assert tables.counted(seeds[2].runs["re-0.05"], bounds)
    verdict = tables.paper_comparison(seeds)["verdict"][0]
    # one GECO model supports the claim, the other cannot be tested: partly, saying which
    assert verdict.startswith("partly") and "RE not testable" in verdict
    assert "in 1/3 seeds" in verdict and "CLA lower (3/3 seeds counted)" in verdict


def test_the_collapse_along_kappa_needs_counted_runs_at_both_ends():
    seeds = [_fake_result(s, tiles=(7.0 - 0.1 * s, 1.0 + 0.1 * s)) for s in range(3)]
    assert tables.paper_comparison(seeds)["verdict"][3].startswith("holds")
    for r in seeds[:2]:  # RE κ = 0.05 misses its κ in 2 of 3 seeds
        r.runs["re-0.05"].curves["c_ma"][:] = 0.0075
    verdict = tables.paper_comparison(seeds)["verdict"][3]
    assert verdict.startswith("not testable") and "1/3, 3/3" in verdict


@pytest.mark.parametrize("value", ["false", "False", 0, None])
def test_a_string_force_retrain_is_refused_before_anything_is_deleted(value, monkeypatch):
    """``papermill -p force_retrain false`` passes the string "false" (truthy): it must not
    reach ``forget`` (which deletes stored runs)."""
    from geco_book.store import RunStore

    monkeypatch.setattr(RunStore, "forget", lambda *a: pytest.fail("a stored run was deleted"))
    with pytest.raises(TypeError, match="^force_retrain must be True or False"):
        mm.run_experiment("cpu", force=value)


def test_settled_table_claims_column_and_conclusions_read_the_numbers():
    """micro_mnist_prose: the ELBO's average KL halves over the last doubling (mean 44 → 22,
    seed SD 2: not settled); every other measure is the same at both stages (settled)."""
    from geco_book.chapters import micro_mnist_prose as prose

    base = _fake_result(0, elbo_kl=20.0)
    base.replicates = [_fake_result(1, elbo_kl=22.0), _fake_result(2, elbo_kl=24.0)]
    for r in base.seeds:
        for run in r.runs.values():
            before = dict(run.metrics, steps=100)
            if run.spec.objective == "elbo":
                before["avg_kl"] = 2 * run.metrics["avg_kl"]
            run.history = [before, dict(run.metrics, steps=200)]
    st = prose.settled_table(base)
    row = st.loc[("ELBO (β = 1)", "avg KL")]
    assert row["mean before"] == pytest.approx(44.0) and row["mean after"] == pytest.approx(22.0)
    assert row["seed SD"] == pytest.approx(2.0) and not row["settled"]
    assert st.drop(("ELBO (β = 1)", "avg KL"))["settled"].all()
    assert row["steps"] == "100 → 200"
    # the sweeps' ends RE κ = 0.05 and CLA κ = 0.9 are Fig. 8's runs: one row each, not two,
    # so only RE κ = 0.2 and CLA κ = 0.2 add a row
    assert len(st) == 3 * len(prose.SETTLE_MEASURES) + 2
    claims = prose.claims_table(base)
    settled = claims["settled (last doubling)"]
    # |avg KL − ln 7|: seed 2's ELBO moved 48 → 24, the largest of the three
    assert settled[2] == "no: ELBO (β = 1) avg KL: a seed moved 24 (seed SD 2)"
    assert claims["caveat"][2] == "provisional: measures still moving over the last doubling"
    assert list(settled[[0, 1, 3, 4]]) == ["yes"] * 4
    assert "provisional" not in claims["caveat"][0]
    # the verdicts are the book's words for the chapter's, whose text is the reason
    assert list(claims.columns[:7]) == list(verdicts.CLAIM_COLUMNS)
    comparison = tables.paper_comparison(base)
    assert claims["reason"].tolist() == comparison["verdict"].tolist()
    assert claims["verdict"].tolist() == [tables.verdict_class(v) for v in comparison["verdict"]]
    # seeds that move apart while their mean stands still have not settled
    for r, d in zip(base.seeds, (-1.0, 0.0, 1.0)):
        r.fig8[1].history[0] = dict(r.fig8[1].metrics, steps=100,
                                    effective_tiles=r.fig8[1].metrics["effective_tiles"] + d)
    row = prose.settled_table(base).loc[("GECO + RE (κ = 0.05)", "e^I (eff. tiles)")]
    assert row["|change of the mean|"] == 0 and row["largest seed change"] == 1.0
    assert not row["settled"]
    text = prose.conclusions(base, parts=("fig8", "sweep", "convergence"))
    assert "ELBO (β = 1) avg KL 44 → 22 (24, SD 2)" in text
    assert "average KL 22 ± 1.2" in text  # the ELBO's 20, 22, 24: mean 22, SE 2/√3
    assert "κ = 0.05: 7 ± 0 (3/3 counted)" in text
    with pytest.raises(ValueError, match="parts"):
        prose.conclusions(base, parts=("fig9",))


def test_the_collapse_must_hold_at_the_weakest_active_kappa_too():
    """RE κ = 0.05 / 0.1 / 0.3 over 3 seeds; κ = 0.3 is inactive (λ ends at the floor, e^I = 1
    for free). e^I at κ = 0.1 no lower than at 0.05: partly, not holds; lower: holds."""
    bounds = (1e-3, 1e8)

    def run(kappa, tiles, lam):
        m = _metrics(effective_tiles=tiles, **{"lambda": lam})
        return mm.RunResult(mm.RunSpec("geco", "re", kappa), m, None, None,
                            curves={"c_ma": np.full(8, -1e-4), "lambda": np.full(8, lam)})

    def sweeps(middle):
        return [[run(0.05, 7.0 - 0.01 * s, 100.0), run(0.1, middle - 0.01 * s, 10.0),
                 run(0.3, 1.0, 1e-3)] for s in range(3)]

    flat = tables._collapse(sweeps(7.0), bounds, 0.05)
    assert flat.startswith("partly") and "weakest active κ = 0.1: no clear difference" in flat
    falls = tables._collapse(sweeps(3.0), bounds, 0.05)
    assert falls.startswith("holds") and "weakest active κ = 0.1: lower" in falls

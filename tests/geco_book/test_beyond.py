"""Chapter 05 (geco_book.chapters.beyond): configs that reuse chapter 03's runs, every method's
config valid, the smoke profile end to end (tables and figures), the log summaries."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from geco_book.chapters import beyond as b  # noqa: E402
from geco_book.chapters import beyond_tables as bt  # noqa: E402
from geco_book.chapters import large_scale as ls  # noqa: E402
from geco_book.chapters.large_scale_eval import cached_dataset  # noqa: E402
from geco_book.figures import beyond as figs  # noqa: E402
from geco_book.store import RunStore, key_fields, run_key  # noqa: E402

RUNS = Path(__file__).resolve().parents[2] / "book" / "_cache" / "runs"


def test_geco_elbo_annealed_are_chapter_03s_runs():
    s = b.settings_for("cpu")
    for model, data in s["search_combos"]:
        for seed in (0, 1, 2):
            ours = b.train_config(b.Spec(model, data, "geco", seed=seed), s)
            theirs = ls.train_config(ls.RunSpec(model, data, "geco", "re", 0.1, seed=seed),
                                     s["base"])
            assert run_key(ours) == run_key(theirs)
            e = b.train_config(b.Spec(model, data, "elbo", seed=seed), s)
            assert run_key(e) == run_key(ls.train_config(ls.RunSpec(model, data, "elbo",
                                                                    seed=seed), s["base"]))


def test_every_method_config_is_valid_and_differs_only_where_it_should():
    s = b.settings_for("cpu")
    geco = b.train_config(b.Spec("vae_nvp", "mnist", "geco"), s)
    keys = set()
    for spec in b.method_specs(s, lam_beta=1e5):
        cfg = b.train_config(spec, s, kl_target=60.0)
        cfg.validate_kwargs()
        assert (cfg.model, cfg.dataset, cfg.steps, cfg.batch_size, cfg.lr) == (
            geco.model, geco.dataset, geco.steps, geco.batch_size, geco.lr)
        keys.add(run_key(cfg))
        if spec.method not in ("geco", "geco_nu1", "geco_speedup", "geco_floor", "softplus_adam",
                               "cooper_ga", "cooper_nupi"):
            # no GECO setting leaks into the key of a run without a constraint
            assert not {"constraint", "kappa", "geco_kwargs"} & set(key_fields(cfg))
    assert len(keys) == len(b.method_specs(s, lam_beta=1e5))
    bv = b.train_config(b.Spec("vae_nvp", "mnist", "beta_vae", lam=1e5), s)
    assert bv.objective == "beta_vae" and bv.beta == pytest.approx(1e-5)
    cv = b.train_config(b.Spec("vae_nvp", "mnist", "control_vae"), s, kl_target=61.23456)
    assert cv.objective_kwargs == {"kl_target": 61.23}
    fl = b.train_config(b.Spec("vae_nvp", "mnist", "geco_floor"), s)
    assert fl.geco_kwargs["lambda_bounds"] == [392.0, 1e8] and fl.lambda_init == 392.0
    fc = b.train_config(b.Spec("convdraw", "color-mnist", "geco_floor"), s)
    assert fc.geco_kwargs["lambda_bounds"][0] == pytest.approx(
        cached_dataset("color-mnist", "test", 0, 1).x[0].numel() / 2)
    nu1 = b.train_config(b.Spec("vae_nvp", "mnist", "geco_nu1"), s)
    assert nu1.nu == 1.0 and geco.nu == "auto"
    assert {f for f, v in nu1.to_dict().items() if geco.to_dict()[f] != v} == {"nu"}
    sp = b.train_config(b.Spec("vae_nvp", "mnist", "geco_speedup"), s)
    assert sp.geco_kwargs == {"lambda_bounds": [1e-3, 1e8], "satisfied_speedup": 10.0}
    with pytest.raises(ValueError, match="lam"):
        b.train_config(b.Spec("vae_nvp", "mnist", "beta_vae"), s)
    with pytest.raises(ValueError, match="kl_target"):
        b.train_config(b.Spec("vae_nvp", "mnist", "control_vae"), s)


def test_robustness_changes_one_setting_at_a_time():
    s = b.settings_for("cpu")
    specs = b.robustness_specs(s, lam_beta=1e5)
    base = b.train_config(b.Spec("vae_nvp", "mnist", "geco"), s).to_dict()
    for spec in specs:
        cfg = b.train_config(spec, s).to_dict()
        (k, v), = spec.variant
        assert cfg[k] == v
        changed = {f for f in base if cfg[f] != base[f]}
        if spec.method == "geco":
            assert changed == {k}
    assert sum(x.method == "beta_vae" for x in specs) == 0  # the cpu budget: GECO's only
    assert sum(x.method == "geco" for x in specs) == 6
    gpu = b.robustness_specs(b.settings_for("gpu"), lam_beta=1e5)
    assert sum(x.method == "beta_vae" for x in gpu) == 4  # lr and batch, two values each
    assert sum(x.method == "geco" for x in gpu) == 10


def test_rule_and_alpha_runs_are_the_policy_studys():
    """Chapter 05's ν = 1 ablation and α = 0.99 point are the configs the policy study trained
    (so the store returns its committed records), and the methods combination's ν = 1 is the
    methods table's."""
    s = b.settings_for("cpu")
    for spec in b.rule_specs(s):
        cfg = b.train_config(spec, s)
        if spec.method == "geco_nu1":
            key = run_key(cfg, data_source="mnist-60k")
            assert (RUNS / key / "record.json").is_file(), spec
    a99 = b.train_config(b.Spec("vae_nvp", "mnist", "geco", variant=(("alpha", 0.99),)), s)
    assert (RUNS / run_key(a99, data_source="mnist-60k") / "record.json").is_file()


def test_log_summary_time_to_target_and_runaway():
    log = pd.DataFrame({"step": [0, 25, 50, 75, 100],
                        "mse": [0.5, 0.02, 0.009, 0.009, 0.009],
                        "lambda": [1.0, 1e8, 1e8, 5e7, 1e6]})
    s = bt.log_summary(log, target=0.01, window=50)
    assert s["time_to_target"] == 75 and s["lambda_peak"] == 1e8 and s["lambda_end"] == 1e6
    assert s["lambda_peak_step"] == 25 and s["lambda_bound_step"] == 25
    assert math.isnan(s["lambda_floor_step"])
    assert bt.log_summary(log.assign(**{"lambda": [1, 1e-3, 1, 1, 1]}), 0.01)[
        "lambda_floor_step"] == 25
    assert math.isnan(s["c0"])
    assert bt.log_summary(log.assign(c_hat=[0.2, 0, 0, 0, 0]), 0.01)["c0"] == 0.2
    never = bt.log_summary(log.assign(mse=0.5), target=0.01)
    assert math.isnan(never["time_to_target"])


def test_smoke_end_to_end(beyond_smoke):
    smoke = beyond_smoke
    s = smoke.settings
    assert set(smoke.search) == {tuple(c) for c in s["search_combos"]}
    sweep = bt.sweep_table(smoke)
    assert list(sweep.index) == [tuple(c) for c in s["search_combos"]]
    assert sweep["search runs"].iloc[0] == smoke.search[("vae_nvp", "mnist")]["search"].n_runs
    m = bt.methods_table(smoke)
    assert len(m) == len(s["methods"])
    r = bt.robustness_table(smoke)
    assert ("geco", "(reference)") in r.index and ("geco", "nu=10") in r.index
    v = bt.rule_verdicts(smoke)
    assert list(v.columns) == [tuple(c) for c in s["search_combos"]]
    auto = bt.RULE_ROWS["geco"]
    assert v.loc[f"{auto}: met"].iloc[0].endswith(f"/{len(s['rule_seeds'])}")
    assert set(v.loc["KL: ν auto vs ν = 1"]) <= {"lower", "higher", "no clear difference"}
    hist = bt.search_history(smoke)
    assert len(hist) == sum(x["search"].n_runs for x in smoke.search.values())
    rule = bt.rule_table(smoke)
    # ν auto (chapter 03), ν = 1 and the speed-up, each at every rule seed and combination
    assert len(rule) == 3 * len(s["rule_seeds"]) * len(s["search_combos"])
    nus = rule["ν"].groupby(level="GECO").agg(["min", "max"])
    assert (nus.loc[bt.RULE_ROWS["geco_nu1"]] == 1.0).all()  # the ablation ran at ν = 1
    assert (nus.loc[auto] != 1.0).all()  # the policy's ν from Ĉ⁰ (0.05/|Ĉ⁰|)
    ref = bt.robustness_reference(smoke)
    assert set(ref) == set(s["robustness"])
    geco = smoke.runs[b.Spec(*s["methods_combo"], "geco", seed=int(s["seed"])).name]
    assert ref["nu"] == float(geco.log()["nu"].iloc[0]) and geco.config.nu == "auto"
    assert not smoke.from_cache
    assert smoke.provenance["n_runs"] == len(smoke.runs)
    for fig in (figs.search_vs_geco(smoke),
                figs.trajectories({n: smoke.log(n) for n in list(smoke.runs)[:3]}, 0.1, 1e8),
                figs.robustness(r, bt.robustness_reference(smoke))):
        assert fig.axes
        matplotlib.pyplot.close(fig)


def test_smoke_second_call_trains_nothing(beyond_smoke, monkeypatch):
    smoke = beyond_smoke
    store = next(iter(smoke.runs.values())).record_dir.parent
    st = RunStore(store, store.parent / "c")
    res = b.run_chapter("smoke", store=st, progress=False)
    assert res.from_cache
    assert bt.methods_table(res).equals(bt.methods_table(smoke))


def test_each_method_is_checked_against_its_own_lambda_bounds():
    from geco_core.objectives.alternatives import CONTROL_VAE_BETA_RANGE
    from geco_core.train import TrainConfig

    geco = TrainConfig(model="conv_vae", dataset="mnist", objective="geco")
    control = TrainConfig(model="conv_vae", dataset="mnist", objective="control_vae",
                          objective_kwargs={"kl_target": 40.0})
    assert bt.lambda_range(geco) == (bt.LAMBDA_FLOOR, bt.LAMBDA_CEILING)
    assert bt.lambda_range(control) == (0.0, 1.0 / CONTROL_VAE_BETA_RANGE[0])
    narrow = TrainConfig(model="conv_vae", dataset="mnist", objective="control_vae",
                         objective_kwargs={"kl_target": 40.0, "beta_min": 1e-4})
    assert bt.lambda_range(narrow)[1] == pytest.approx(1e4)
    # ControlVAE's β at β_min (λ = 10⁶) is a touch of its own ceiling, far below GECO's
    log = pd.DataFrame({"step": [0, 1, 2], "mse": [0.1] * 3, "lambda": [1e3, 1e6, 5e4]})
    assert bt.log_summary(log, 0.01, bounds=bt.lambda_range(control))["lambda_bound_step"] == 1
    assert math.isnan(bt.log_summary(log, 0.01)["lambda_bound_step"])

"""Chapter 03 (geco_book.chapters.large_scale): runs, configs, verdicts, figures, and the
smoke profile end to end; every gpu-profile config trains two steps at full model size."""

from __future__ import annotations

import dataclasses
import math
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from geco_book import verdicts  # noqa: E402
from geco_book.chapters import large_scale as ls  # noqa: E402
from geco_book.chapters import large_scale_tables as tables  # noqa: E402
from geco_book.figures import large_scale as figs  # noqa: E402
from geco_book.store import RunStore, run_key  # noqa: E402


def test_cpu_runs_cover_the_issue():
    s = ls.settings_for("cpu")
    specs = ls.run_specs(s)
    assert len(specs) == len(set(specs)) == len({s.name for s in specs})
    names = {x.name for x in specs}
    for model, data in s["combos"]:
        for seed in (0, 1, 2):
            assert f"{model}/{data}/elbo/s{seed}" in names
            kh = ls.headline_kappa(s, model, data)
            assert f"{model}/{data}/geco-re-{kh:g}/s{seed}" in names
        assert f"{model}/{data}/annealed/s0" in names
        for k in (0.06, 0.1, 0.175):
            assert f"{model}/{data}/geco-re-{k:g}/s0" in names
    assert {"convdraw/mnist/geco-cla-0.9/s0", "convdraw/color-mnist/geco-pncc-0.82/s0"} <= names
    assert not any("color-mnist/geco-cla" in n for n in names)  # no single label per image
    assert ls.headline_kappa(s, "vae_nvp", "color-mnist") == 0.25  # 0.1: infeasible here
    assert {f"vae_nvp/mnist/geco-re-0.175/s{seed}" for seed in (0, 1, 2)} <= names  # Table 2
    keys = [run_key(ls.train_config(x, s, n)) for x in specs for n in ls.run_stages(x, s)]
    assert len(set(keys)) == len(keys)
    # the every-seed runs at three doubling stages, the others at the last one
    assert ls.run_stages(ls.RunSpec("convdraw", "mnist", "elbo", seed=2), s) == [750, 1500, 3000]
    assert ls.run_stages(ls.RunSpec("convdraw", "mnist", "annealed"), s) == [3000]


def test_stages_are_checked():
    with pytest.raises(ValueError, match="stages"):
        ls.settings_for("cpu", stages={"convdraw": [1010, 3000], "vae_nvp": [12000]})
    with pytest.raises(ValueError, match="stages"):
        ls.settings_for("cpu", stages={"convdraw": [3000, 1500], "vae_nvp": [12000]})


def test_train_config_follows_the_policy_and_the_settings():
    s = ls.settings_for("cpu")
    c = ls.train_config(ls.RunSpec("convdraw", "mnist-rotate", "geco", "re", 0.1, seed=2), s)
    assert (c.lr, c.alpha, c.nu, c.model_size, c.seed) == (1e-3, 0.9, "auto", "small", 2)
    assert c.steps == 3000 and c.batch_size == 32
    assert ls.train_config(ls.RunSpec("convdraw", "mnist", "elbo"), s, 750).steps == 750
    assert c.geco_kwargs == {"lambda_bounds": [1e-3, 1e8]}
    g = ls.train_config(ls.RunSpec("vae_nvp", "mnist", "elbo"), ls.settings_for("gpu"))
    assert (g.lr, g.alpha, g.model_size) == (1e-6, 0.99, "paper")
    with pytest.raises(ValueError, match="constraint"):
        ls.RunSpec("convdraw", "mnist", "geco", "nope", 0.1)
    with pytest.raises(ValueError, match="constraint"):
        ls.RunSpec("convdraw", "mnist", "elbo", "re", 0.1)


def test_matched_specs_set_kappa_from_the_elbo_mse():
    s = ls.settings_for("cpu")
    mse = {("convdraw", "mnist"): 0.0064, ("convdraw", "mnist-rotate"): 0.0049,
           ("vae_nvp", "mnist"): 0.01, ("vae_nvp", "color-mnist"): 0.05}
    out = ls.matched_specs(s, mse)
    assert [(x.kappa, x.matched) for x in out] == [(0.08, True), (0.07, True), (0.1, True),
                                                    (0.2236, True)]
    assert out[2].name == "vae_nvp/mnist/geco-re-0.1-matched/s0"


def test_compare_needs_a_gap_beyond_the_seed_spread():
    assert tables.compare([10, 11, 12], [1, 2, 3]) == "lower"
    assert tables.compare([1, 2, 3], [10, 11, 12]) == "higher"
    assert tables.compare([10, 11, 12], [9, 11.5, 13]) == "no clear difference"
    assert tables.compare([10.0], [1.0]) == "no clear difference"  # one seed decides nothing
    # a big mean gap driven by one outlier seed overlaps the other's range: no verdict
    assert tables.compare([10, 10.1, 10.2], [1, 1, 10.15]) == "no clear difference"


def test_summarise_gives_mean_and_standard_error():
    t = pd.DataFrame({"model": ["m"] * 3, "dataset": ["d"] * 3, "method": ["elbo"] * 3,
                      "kappa": [None] * 3, "label": ["ELBO"] * 3,
                      **{c: [1.0, 2.0, 3.0] for c in tables._METRICS}})
    s = tables.summarise(t)
    assert s.loc[0, "test_avg_kl"] == 2.0 and s.loc[0, "n_seeds"] == 3
    assert s.loc[0, "test_avg_kl_se"] == pytest.approx(1 / math.sqrt(3))


def test_equivalent_kappa_is_zero_error_for_no_noise_and_grows_with_noise():
    assert ls.equivalent_kappa("fre", "mnist", noise=0.0, n=20) == 0.0
    a, b = (ls.equivalent_kappa("fre", "mnist", noise=v, n=20) for v in (0.05, 0.2))
    assert 0 < a < b
    c, d = (ls.equivalent_kappa("pncc", "mnist", noise=v, n=20) for v in (0.0, 0.2))
    assert 0 < d < c <= 1


def _log(n=20):
    step = np.arange(n)
    return pd.DataFrame({"step": step, "kl": 10.0 / (1 + step), "mse": 0.02 / (1 + step),
                         "nll": 1.0 / (1 + step), "beta": 1e-3 * (1 + step)})


def test_figures_draw_what_they_are_given():
    fig = figs.trajectory(_log(), kappa=0.1)
    assert len(fig.axes) == 4  # three panels and the colour bar
    assert fig.axes[2].lines[1].get_ydata()[0] == 0.1  # the κ line
    fig = figs.average_kl_curves({"a": (_log(), _log())})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    rng = np.random.default_rng(0)
    imgs = {"data": rng.integers(0, 255, (6, 3, 28, 28), dtype=np.uint8)}
    imgs["recon"], imgs["samples"] = imgs["data"], imgs["data"][:, :1].repeat(3, 1)
    fig = figs.image_blocks({"ELBO": imgs, "GECO": imgs})
    assert fig.axes[0].images[0].get_array().shape == (56, 84, 3)
    summary = pd.DataFrame({
        "model": ["m"] * 4, "dataset": ["d"] * 4,
        "method": ["elbo", "annealed", "geco-re-0.1", "geco-re-0.06"],
        "kappa": [np.nan, np.nan, 0.1, 0.06], "test_avg_kl": [10, 8, 3, 5],
        "nll_bits_per_dim": [0.5, 0.6, 0.9, 0.7], "test_avg_kl_se": [1, np.nan, 0.2, np.nan],
        "nll_bits_per_dim_se": [0.01, np.nan, 0.02, np.nan]})
    fig = figs.information_plane(summary, models=["m"])
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [5, 3]  # the κ sweep, in κ order
    plt_close_all()


def plt_close_all():
    import matplotlib.pyplot as plt

    plt.close("all")


def _stages(elbo_kl, geco_kl, steps=(750, 1500, 3000)):
    """Stage rows of one pair: ``*_kl[i][seed]`` the KL at ``steps[i]``."""
    rows = []
    for method, vals in (("elbo", elbo_kl), ("geco-re-0.1", geco_kl)):
        for n, per_seed in zip(steps, vals):
            for seed, v in enumerate(per_seed):
                rows.append({"model": "convdraw", "dataset": "mnist", "method": method,
                             "matched": False, "seed": seed, "steps": n, "test_avg_kl": v,
                             "nll_bits_per_dim": 2.0})
    return pd.DataFrame(rows)


def test_convergence_asks_for_a_change_below_the_seed_spread():
    s = ls.settings_for("cpu", combos=[["convdraw", "mnist"]])
    moving = [[100, 101, 102], [80, 81, 82], [60, 61, 62]]  # −20 per doubling, sd 1
    still = [[40, 41, 42], [30, 31, 32], [30.2, 31.1, 32.3]]  # +0.2 mean change, sd ≈ 1.15
    c = tables.convergence_table(_stages(moving, still), s).set_index(["method", "metric"])
    assert c.loc[("elbo", "test_avg_kl"), "change"] == pytest.approx(-20)
    assert not c.loc[("elbo", "test_avg_kl"), "settled"]
    assert c.loc[("geco-re-0.1", "test_avg_kl"), "change"] == pytest.approx(0.2)
    assert c.loc[("geco-re-0.1", "test_avg_kl"), "seed sd"] == pytest.approx(
        np.std([30.2, 31.1, 32.3], ddof=1))
    assert c.loc[("geco-re-0.1", "test_avg_kl"), "settled"]
    assert c.loc[("elbo", "nll_bits_per_dim"), "settled"]  # no change at all: settled
    assert (c["from step"] == 1500).all() and (c["to step"] == 3000).all()


def test_a_pair_valid_test_only_with_kappa_met_and_lambda_off_its_guards():
    ok = pd.DataFrame({"constraint_met": [True] * 3, "lambda_touched_bound": [False] * 3})
    assert tables.valid_test(ok)
    assert not tables.valid_test(ok.assign(lambda_touched_bound=[False, True, False]))
    assert not tables.valid_test(ok.assign(constraint_met=[True, True, False]))
    assert not tables.valid_test(ok.iloc[:0])


def test_matched_pairs_need_the_mse_within_ten_percent_and_the_constraint_met():
    def table(geco_mse, met=True, touched=False, geco_kl=20.0):
        rows = [{"model": "m", "dataset": "d", "method": "elbo", "matched": False, "seed": i,
                 "train_mse": 0.01, "test_avg_kl": 50.0 + i} for i in range(3)]
        rows.append({"model": "m", "dataset": "d", "method": "geco-re-0.1-matched",
                     "matched": True, "seed": 0, "kappa": 0.1, "train_mse": geco_mse,
                     "constraint_met": met, "lambda_touched_bound": touched,
                     "test_avg_kl": geco_kl})
        return pd.DataFrame(rows)

    assert tables.matched_table(table(0.0105), 0)["GECO vs ELBO"].iloc[0] == (
        "lower than every ELBO seed")
    assert tables.matched_table(table(0.0105, geco_kl=51.0), 0)["GECO vs ELBO"].iloc[0] == (
        "within the ELBO seeds' range")
    for bad in (table(0.0125), table(0.0105, met=False), table(0.0105, touched=True)):
        m = tables.matched_table(bad, 0)
        assert not m["matched"].iloc[0] and m["GECO vs ELBO"].iloc[0] == "not matched"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ls.run_chapter("smoke", store=RunStore(root / "r", root / "c"), progress=False)


def test_smoke_end_to_end(smoke):
    t = smoke.table
    assert len(t) == len(ls.run_specs(smoke.settings)) + len(smoke.settings["matched"])
    for col in ("test_avg_kl", "nll_bits_per_dim", "test_mse", "sigma_opt", "train_kl"):
        assert np.isfinite(t[col].to_numpy(dtype=float)).all(), col
    assert (t["nll_bits_per_dim"] > 0).all() and (t["sigma_opt"] > 0).all()
    assert t["nll_bits_per_dim"].to_numpy() == pytest.approx(
        t["nll_nats_per_pixel"].to_numpy() / math.log(2))
    geco = t[t["objective"] == "geco"]
    assert geco["constraint_met"].notna().all() and geco["lambda_at_bound"].notna().all()
    for name, arr in smoke.arrays.items():
        k = smoke.settings["eval"]["n_show"]
        assert arr["data"].shape[0] == arr["recon"].shape[0] == arr["samples"].shape[0] == k
        assert arr["data"].dtype == np.uint8
        assert ("context" in arr) == name.startswith("convdraw/mnist-rotate"), name
    conv = tables.convergence_table(smoke.stages, smoke.settings)
    # two headline methods × two metrics per pair, each from its two stages
    assert len(conv) == 4 * len(smoke.settings["combos"])
    assert (conv["from step"] == 2).all() and (conv["to step"] == 4).all()
    h = tables.headline_table(t, smoke.settings, conv)
    assert set(h["GECO's KL vs ELBO's"]) <= {"lower", "higher", "no clear difference"}
    assert len(tables.constraint_table(t)) == len(geco)
    claims = tables.claims_table(smoke, trajectory="convdraw/mnist-rotate/geco-re-0.1/s0")
    assert len(claims) == 6 and claims["reason"].str.len().gt(0).all()
    assert list(claims.columns) == list(verdicts.CLAIM_COLUMNS)
    assert set(claims["verdict"]) <= set(verdicts.VERDICTS)
    assert claims["paper's number"].tolist() == [
        tables.PAPER_NUMBERS[k] for k in ("fig4_kl", "fig4_magnitude", "fig4_nll", "fig3_phases",
                                          "fig5", "fig6")]
    text = tables.conclusions(smoke)
    assert "**convdraw / mnist-rotate**" in text and "The κ sweep" in text
    fig = figs.convergence(smoke.stages, {tuple(c): ["elbo", "geco-re-0.1"]
                                          for c in smoke.settings["combos"]}, bounds=[1e-3, 1e8])
    assert len(fig.axes) == 3 * len(smoke.settings["combos"])
    assert not smoke.from_cache


def test_smoke_second_call_trains_nothing(smoke, monkeypatch):
    import geco_core.train

    monkeypatch.setattr(geco_core.train, "fit", lambda *a, **k: pytest.fail("retrained"))
    store = RunStore(smoke.runs[next(iter(smoke.runs))].record_dir.parent, "/nonexistent")
    again = ls.run_chapter("smoke", store=store, progress=False)
    assert again.from_cache
    pd.testing.assert_frame_equal(again.table, smoke.table)


@pytest.mark.slow
def test_every_gpu_config_trains_two_steps_at_full_size():
    """The gpu profile cannot run here: build every one of its configs and train two steps of
    each distinct (model, data, objective, constraint) at the paper's model size (batch 4).
    CIFAR-10 and CelebA need a download: their configs are built and validated only."""
    from geco_core.train import fit

    s = ls.settings_for("gpu")
    specs = ls.run_specs(s) + ls.matched_specs(
        s, {tuple(c): 0.01 for c in s["matched"]})
    configs = [ls.train_config(x, s) for x in specs]
    assert all(c.model_size == "paper" and c.steps == 200_000 for c in configs)
    seen = set()
    for spec, cfg in zip(specs, configs):
        kind = (spec.model, spec.dataset, spec.objective, spec.constraint)
        if kind in seen or spec.dataset in ("cifar10", "celeba"):
            continue
        seen.add(kind)
        short = dataclasses.replace(cfg, steps=2, batch_size=4, device="cpu", out_dir=None,
                                    dataset_kwargs={"n": 64})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit(short)
        assert res.step == 2 and math.isfinite(res.metrics["loss"]), spec.name
    assert len(seen) >= 20


@pytest.mark.parametrize("module", ["large_scale", "marginal_kl", "micro_mnist", "regenerate",
                                    "beyond"])
@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "error: --workers: must be an integer >= 1, got '0'"),
    (["--workers", "two"], "error: --workers: must be an integer >= 1, got 'two'"),
    (["--seed", str(2**64)], "error: --seed: must be an integer in [0, 2**63)"),
    (["--seed", "1.5"], "error: --seed: must be an integer in [0, 2**63), got '1.5'"),
    (["--seed", "-1"], "error: --seed: must be an integer in [0, 2**63), got '-1'"),
])
def test_chapter_clis_refuse_bad_counts_and_seeds_in_one_line(module, argv, message, capsys):
    import importlib

    mod = importlib.import_module(f"geco_book.chapters.{module}")
    with pytest.raises(SystemExit) as e:
        mod.main(["--profile", "smoke", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    takes_seed = module in ("marginal_kl", "micro_mnist")
    takes_workers = module != "beyond"
    if (argv[0] == "--seed" and takes_seed) or (argv[0] == "--workers" and takes_workers):
        assert err.startswith(message), err
    else:
        assert err.startswith("error: unrecognized arguments:"), err


def test_an_re_run_on_target_within_five_percent_of_kappa_squared_counts():
    runs = pd.DataFrame({"constraint_met": [False, True], "constraint_on_target": [True, True],
                         "lambda_touched_bound": [False, False]})
    assert tables.valid_test(runs)
    assert not tables.valid_test(runs.assign(constraint_on_target=[False, True]))
    assert ls.ON_TARGET == 0.05

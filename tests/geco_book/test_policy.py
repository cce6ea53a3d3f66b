"""The book's one GECO policy: where chapters get their settings, and the study behind it."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from geco_book import policy
from geco_book import policy_study as ps
from geco_book.chapters import large_scale as ls
from geco_book.chapters import micro_mnist as mm
from geco_book.paths import cache_root
from geco_book.store import run_key
from geco_core.train import TrainConfig


def test_the_policy_is_nu_auto_with_guards_and_fresh_copies():
    g = policy.geco_settings("cpu")
    assert g == {"alpha": policy.GECO_ALPHA["cpu"], "nu": "auto", "lambda_init": 1.0,
                 "geco_kwargs": {"lambda_bounds": [1e-3, 1e8]}}
    g["geco_kwargs"]["lambda_bounds"][1] = 0.0
    assert policy.geco_settings("cpu")["geco_kwargs"]["lambda_bounds"] == [1e-3, 1e8]
    assert policy.geco_settings("gpu")["alpha"] == 0.99  # the paper's, at the paper's scale
    TrainConfig(**{k: v for k, v in g.items() if k != "geco_kwargs"})  # valid engine fields
    with pytest.raises(ValueError, match="^pre_policy: unknown value 'chapter_9'"):
        policy.geco_settings("cpu", pre_policy="chapter_9")
    with pytest.raises(ValueError, match="^profile: unknown value 'tpu'"):
        policy.geco_settings("tpu")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_chapter_03_takes_its_geco_settings_from_the_policy_module(profile):
    s = ls.settings_for(profile)
    expected = policy.geco_settings(profile)
    assert s["geco"] == expected
    for spec in ls.run_specs(s):
        cfg = ls.train_config(spec, s)
        assert cfg.alpha == expected["alpha"]
        if spec.objective == "geco":
            assert cfg.nu == expected["nu"]
            assert cfg.lambda_init == expected["lambda_init"]
            assert cfg.geco_kwargs == expected["geco_kwargs"]


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_chapter_02_takes_its_geco_settings_from_the_policy_module(profile):
    s = mm.settings_for(profile)
    expected = policy.geco_settings(profile)
    lambda_inits = set()
    for spec in mm.run_specs(s):
        if spec.objective != "geco":
            continue
        cfg = mm.train_config(spec, s, seed=0)
        assert (cfg.alpha, cfg.nu, cfg.geco_kwargs) == (
            expected["alpha"], expected["nu"], expected["geco_kwargs"])
        li = expected["lambda_init"]
        if spec.lambda_init is None:
            assert cfg.lambda_init == li
        else:
            lambda_inits.add(cfg.lambda_init)
    # the ablations start at another λ⁰ than the runs they are compared with
    assert lambda_inits == {100.0}


def test_study_configs_change_only_gecos_settings():
    items = ps.study_configs("smoke", seeds=(0,))
    assert {v for _, v, _, _ in items} == set(ps.VARIANTS)
    for group, variant, seed, cfg in items:
        chapter = next(g[1] for g in ps.GROUPS if g[0] == group)
        assert next(g[7] for g in ps.GROUPS if g[0] == group) is None or cfg.steps == \
            ls.settings_for("smoke")["steps"][cfg.model]  # longer stages at the cpu profile only
        base = (ls.train_config(ls.RunSpec(cfg.model, cfg.dataset, "geco", cfg.constraint,
                                           cfg.kappa, seed=seed), ls.settings_for("smoke"))
                if chapter == "large_scale" else
                mm.train_config(mm.RunSpec("geco", cfg.constraint, cfg.kappa),
                                mm.settings_for("smoke"), seed))
        changed = {k for k, v in cfg.to_dict().items() if base.to_dict()[k] != v}
        assert changed <= {"alpha", "nu", "lambda_init", "geco_kwargs"}, (group, variant)
        if variant == "policy":
            assert cfg.nu == "auto" and cfg.alpha == policy.GECO_ALPHA["smoke"]
        elif variant == "alpha=0.99":
            assert cfg.nu == "auto" and cfg.alpha == 0.99
        else:
            assert cfg.nu == 1.0


def _log(lam, c_ma, step=10):
    n = len(lam)
    return pd.DataFrame({"step": [i * step for i in range(n)], "mse": [0.01] * n,
                         "kl": [5.0] * n, "lambda": lam, "c_ma": c_ma})


def test_summarize_run_reports_bounds_touched_at_any_step_not_only_the_last():
    cfg = TrainConfig(nu="auto", geco_kwargs={"lambda_bounds": [1e-3, 1e8]})
    # λ touches the ceiling at step 20 and comes back; C_ma met in the last quarter
    r = ps.summarize_run(cfg, _log([1.0, 1e4, 1e8, 1e6, 1e4, 1e3, 1e3, 1e3],
                                   [0.1, 0.05, 0.01, -0.01, -0.02, -0.01, 0.001, -0.001]))
    assert r["touched_upper"] and not r["touched_lower"] and r["first_step_at_upper"] == 20
    assert r["met_at_end"] and r["last_quarter_met_fraction"] == 0.5 and r["first_step_met"] == 30
    assert r["max_log_lambda_step"] == pytest.approx(math.log(1e4) / 10)
    assert math.isnan(r["nu"])  # "auto" and no logged ν: unknown, not a number made up
    low = ps.summarize_run(cfg, _log([1.0, 1e-2, 1e-3], [-0.1, -0.1, -0.1]))
    assert low["touched_lower"] and not low["touched_upper"] and low["first_step_at_upper"] is None


def test_summarize_run_reads_the_resolved_nu_from_the_log():
    cfg = TrainConfig(nu="auto", geco_kwargs={"lambda_bounds": [1e-3, 1e8]})
    log = _log([1.0, 2.0], [0.1, 0.1]).assign(nu=[0.25, 0.25])
    assert ps.summarize_run(cfg, log)["nu"] == 0.25
    assert ps.summarize_run(TrainConfig(nu=1.0), _log([1.0, 2.0], [0.1, 0.1]))["nu"] == 1.0


def _entry(group, variant, alpha, kl, sd=1.0, met=3, upper=0):
    return {"group": group, "variant": variant, "alpha": alpha, "n": 3, "kl": [kl, sd],
            "met_at_end": met, "touched_upper": upper, "touched_lower": 0}


def test_choose_alpha_counts_sound_settings_then_kl_beyond_the_spread_then_the_paper():
    s = {1: _entry("a", "policy", 0.9, 10), 2: _entry("a", "alpha=0.99", 0.99, 20),
         3: _entry("b", "policy", 0.9, 10), 4: _entry("b", "alpha=0.99", 0.99, 10, met=2)}
    c = ps.choose_alpha(s)
    assert c["alpha"] == 0.9 and c["sound"] == {0.9: ["a", "b"], 0.99: ["a"]}
    s[4] = _entry("b", "alpha=0.99", 0.99, 5)  # both sound on both; 0.99 lower on b, 0.9 on a
    assert ps.choose_alpha(s)["alpha"] == 0.99  # tie 1 : 1 goes to the paper's value
    s[2] = _entry("a", "alpha=0.99", 0.99, 10.5)  # a's gap 0.5 < the seed-sd 1: no verdict
    c = ps.choose_alpha(s)
    assert c["kl_lower_beyond_spread"] == {0.9: [], 0.99: ["b"]} and c["alpha"] == 0.99
    s[3] = _entry("b", "policy", 0.9, 10, upper=1)  # λ touched the bound: not sound
    assert ps.choose_alpha(s)["sound"][0.9] == ["a"]


STUDY = cache_root() / "policy_study.json"


@pytest.mark.skipif(not STUDY.exists(), reason="the policy study has not been committed")
def test_the_committed_study_reproduces_from_its_records_and_supports_the_policy():
    """Every number of ``policy_study.json`` recomputes from the committed records (by key:
    they were trained on the official split, which this machine may not have), and the
    policy states what the study found: α as chosen, ν = auto never at a bound."""
    from geco_book.store import default_store

    study = json.loads(STUDY.read_text())
    # the study's configs are the runs it summarised (its length does not follow chapter 03's)
    assert [run_key(c, data_source="mnist-60k") for *_, c in ps.study_configs("cpu")] == [
        row["key"] for row in study["runs"]]
    store = default_store()
    rows = []
    for row in study["runs"]:
        run = store.load(row["key"])
        assert run is not None, row["key"]
        assert run.record["data"]["source"] == "mnist-60k"
        rows.append({**{k: row[k] for k in ("group", "variant", "seed", "key", "wall_time_s",
                                            "source")},
                     **ps.summarize_run(run.config, run.log())})
    assert json.loads(json.dumps(rows)) == study["runs"]
    summary = ps.summarize(rows)
    assert json.loads(json.dumps(summary)) == study["summary"]
    choice = ps.choose_alpha(summary)
    assert json.loads(json.dumps(choice)) == study["alpha_choice"]
    assert policy.GECO_ALPHA["cpu"] == choice["alpha"]
    # the statements of geco_book/policy.py's docstring
    get = {(e["group"], e["variant"]): e for e in summary.values()}
    nvp = get["vae_nvp/mnist RE", "nu=1"]
    assert nvp["touched_upper"] == nvp["n"] == 3
    assert nvp["kl"][0] > 3 * get["vae_nvp/mnist RE", "policy"]["kl"][0]
    for c in ("FRE", "pNCC", "CLA"):
        assert get[f"convdraw/mnist {c}", "nu=1"]["touched_upper"] == 1
    for e in summary.values():
        if e["variant"] == "policy":
            assert e["max_log_lambda_step"] < 0.06, e["group"]
            if e["met_at_end"] == e["n"]:
                assert e["touched_upper"] == e["touched_lower"] == 0, e["group"]
    ceiling = {e["group"] for e in summary.values()
               if e["variant"] == "policy" and e["touched_upper"]}
    assert ceiling == {"vae_nvp/color-mnist RE", "micro-mnist CLA"}
    assert all(get["vae_nvp/color-mnist RE", v]["touched_upper"] == 3 for v in ps.VARIANTS)
    long = get["vae_nvp/mnist RE, 9,000 steps", "policy"]
    assert long["met_at_end"] == 3 and long["touched_upper"] == 0
    assert max(r["lambda_max"] for r in rows if r["group"] == long["group"]
               and r["variant"] == "policy") < 3.6e4
    assert set(choice["kl_lower_beyond_spread"][0.9]) >= {
        "convdraw/mnist RE", "convdraw/color-mnist RE", "micro-mnist RE"}

"""Chapter 05's computed prose (geco_book.chapters.beyond_prose): the words follow the numbers
of the tables they sit under, and a price is said only at a met target."""

from __future__ import annotations

import math

import pytest

from geco_book.chapters import beyond_prose as bp
from geco_book.chapters import beyond_tables as bt


@pytest.mark.parametrize("x, text", [(3.3e4, "3.3·10⁴"), (1e8, "10⁸"), (0.5, "0.5"),
                                     (99.4, "99"), (9.96e4, "10⁵"), (1.2e-3, "0.0012"),
                                     (math.nan, "—")])
def test_lam_writes_powers_of_ten(x, text):
    assert bp.lam(x) == text


def test_price_clause_calls_a_price_only_where_both_met_the_target():
    both = bp.price_clause("lower", True, True)
    assert both.startswith("GECO's KL is lower than the β-VAE's") and "both meeting" in both
    assert "not a price" not in both
    only_geco = bp.price_clause("higher", True, False)
    assert "only GECO met" in only_geco and "not a price" in only_geco
    only_other = bp.price_clause("lower", False, True, "σ-VAE")
    assert "only σ-VAE met" in only_other and "not a price" in only_other
    assert "neither" in bp.price_clause("no clear difference", False, False)
    assert "not different from the β-VAE's" in bp.price_clause("no clear difference", True, True)
    assert bp.price_clause("lower", True, True, "ν = 1", "ν auto").startswith(
        "ν auto's KL is lower than ν = 1's")


def test_sweep_findings_quote_the_sweep_tables_numbers(beyond_smoke):
    text = bp.sweep_findings(beyond_smoke)
    table = bt.sweep_table(beyond_smoke)
    for (model, data), row in table.iterrows():
        line = next(x for x in text.splitlines() if x.startswith(f"- **{model} / {data}**"))
        assert f"{row['GECO held-out MSE / κ²']} κ²" in line
        assert f"met the target on {row['GECO met (≤ 1.05 κ²)']} seeds" in line
        assert f"KL {row['GECO KL']} nats" in line
        assert f"{row['β-VAE MSE / κ²']} κ²" in line
        assert f"after {row['search runs']} runs" in line or f"{row['search runs']} runs" in line
    met_all = sum(int(v.split("/")[0]) == int(v.split("/")[1])
                  for v in table["GECO met (≤ 1.05 κ²)"])
    assert f"on {met_all} of {len(table)} (model, data set)" in text


def test_methods_findings_one_bullet_per_method_with_its_table_numbers(beyond_smoke):
    table = bt.methods_table(beyond_smoke)
    text = bp.methods_findings(beyond_smoke, bp.ALTERNATIVES + bp.VARIANTS)
    bullets = [x for x in text.splitlines() if x.startswith("- **")]
    assert len(bullets) == len(table)
    for label, row in table.iterrows():
        line = next(x for x in bullets if x.startswith(f"- **{label}**"))
        assert f"{row['held-out MSE / κ²']} κ² (met {row['met']})" in line
        assert f"at {row['held-out KL']} nats" in line
        # a verdict in the table is a verdict in the text; none in the table, none in the text
        if not row["KL vs GECO"].startswith("—"):
            assert "beyond the seed spread" in line
        elif row["KL vs GECO"] == "— (no β met the target)":
            assert "infeasible at this budget, so its KL is not compared" in line
        elif row["KL vs GECO"] == "— (λ at its bound)":
            assert "no KL verdict" in line


def test_robustness_findings_one_line_per_changed_setting(beyond_smoke):
    rob = bt.robustness_table(beyond_smoke)
    text = bp.robustness_findings(beyond_smoke)
    changed = [v for _, v in rob.index if v != "(reference)"]
    assert sum(x.startswith("  - ") for x in text.splitlines()) == len(changed)
    for (_method, variant), row in rob.iterrows():
        if variant != "(reference)":
            assert f"{row['mse_over_target']:.3g} κ²" in text


def test_softplus_bound_holds_for_the_softplus_run(beyond_smoke):
    bound = bp.softplus_bound(beyond_smoke)
    rows = bp._method_rows(beyond_smoke)
    lam_end = rows[rows["method"] == "softplus_adam"]["lambda_peak"].max()
    assert 1.0 <= lam_end <= bound


def test_rule_findings_and_conclusions_cover_every_combination(beyond_smoke):
    rule = bp.rule_findings(beyond_smoke)
    for c in beyond_smoke.search:
        assert f"- **{c[0]} / {c[1]}**" in rule
    text = bp.conclusions(beyond_smoke)
    assert text.count("\n- ") == 4 and text.startswith("- **The workflow.**")
    assert "- **The speed-up**" in text


def test_regeneration_names_the_profiles_command_and_says_when_it_trained_nothing(beyond_smoke):
    """At smoke the runs are trained by the page itself, not by the chapter's command."""
    assert bp.regeneration(beyond_smoke) == (
        "No run shown here was trained by `python -m geco_book.chapters.beyond --profile "
        "smoke`.")

"""The book's results page: every claim the chapters test, in one table, taken from the
chapters' own claims tables (the same functions, on the same records), so that the summary
cannot say what a chapter does not.

Each chapter's result is loaded at ``profile`` from the run store (at the cpu profile: the
committed records; nothing is trained when they are all there) and its claims table is
called exactly as the chapter calls it; :func:`summary` stacks them with the chapter each row
comes from. Columns: ``chapter``, ``page``, then every claims table's own
(:data:`geco_book.verdicts.CLAIM_COLUMNS`: the claim, the paper's number, our measure, ours,
the verdict, its caveat and its reason) and any a chapter adds (e.g. ``settled (last
doubling)``). :func:`tally` counts the verdicts.

Example:
    >>> [c.page for c in CHAPTERS]
    ['02_micro_mnist', '03_large_scale', '04_marginal_kl', '05_beyond']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from geco_book.verdicts import BOOK_QUESTION, CLAIM_COLUMNS, VERDICTS

__all__ = ["CHAPTERS", "PAGE_COLUMNS", "WITH_CAVEAT", "Chapter", "chapter_claims",
           "page_notes", "page_table", "summary", "tally", "tally_sentence"]


def _micro_mnist(profile: str, seed: int) -> pd.DataFrame:
    from geco_book.chapters import micro_mnist as mm
    from geco_book.chapters.micro_mnist_prose import claims_table

    return claims_table(mm.run_experiment(profile, seed, progress=False))


def _large_scale(profile: str, seed: int) -> pd.DataFrame:
    from geco_book.chapters import large_scale as ls
    from geco_book.chapters import large_scale_tables as tables

    n = len(ls.settings_for(profile)["seeds"])
    settings = ls.settings_for(profile, seeds=[seed + i for i in range(n)])
    result = ls.run_chapter(profile, seeds=settings["seeds"], progress=False)
    return tables.claims_table(result, trajectory=ls.fig3_run(settings, seed))


def _marginal_kl(profile: str, seed: int) -> pd.DataFrame:
    from geco_book.chapters import marginal_kl as mk
    from geco_book.chapters import marginal_kl_tables as tables

    return tables.claims_table(mk.run_chapter(profile, seed=seed, progress=False))


def _beyond(profile: str, seed: int) -> pd.DataFrame:
    from geco_book.chapters import beyond, beyond_prose

    return beyond_prose.claims_table(beyond.run_chapter(profile, seed=seed, progress=False))


@dataclass(frozen=True)
class Chapter:
    """A chapter whose claims the summary shows: its page (``book/chapters/<page>.md``), its
    title, and how its claims table is made from its result (as the chapter makes it)."""

    page: str
    title: str
    claims: Callable[[str, int], pd.DataFrame]


#: The chapters in the book's order (chapter 01, the theory, draws its figures from the
#: fixed-point equations and states no verdict table).
CHAPTERS: tuple[Chapter, ...] = (
    Chapter("02_micro_mnist", "Micro-MNIST posteriors (Fig. 8)", _micro_mnist),
    Chapter("03_large_scale", "Large-scale training (Figs. 3–6)", _large_scale),
    Chapter("04_marginal_kl", "Marginal KL (Table 2)", _marginal_kl),
    Chapter("05_beyond", "Beyond the paper: the workflow and later methods", _beyond),
)


def chapter_claims(profile: str = "cpu", seed: int = 0) -> dict[str, pd.DataFrame]:
    """Each chapter's claims table at ``profile`` and ``seed``, by page, as the chapter shows
    it."""
    return {c.page: c.claims(profile, seed).reset_index(drop=True) for c in CHAPTERS}


def summary(claims: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The chapters' claims tables stacked, each row with its chapter's page and title (the
    rows, their order and their text unchanged).

    Example:
        >>> t = summary({"05_beyond": pd.DataFrame([{"claim (paper)": "c", "verdict": "v"}])})
        >>> t.loc[0, ["chapter", "claim (paper)", "verdict"]].tolist()
        ['Beyond the paper: the workflow and later methods', 'c', 'v']
    """
    titles = {c.page: c.title for c in CHAPTERS}
    unknown = sorted(set(claims) - set(titles))
    if unknown:
        raise ValueError(f"claims: no chapter {unknown[0]!r} (known: {sorted(titles)})")
    parts = []
    for page in [c.page for c in CHAPTERS if c.page in claims]:
        t = claims[page].copy()
        t.insert(0, "chapter", titles[page])
        t.insert(1, "page", page)
        parts.append(t)
    out = pd.concat(parts, ignore_index=True)
    columns: list[Any] = ["chapter", "page", *CLAIM_COLUMNS]
    return out[[c for c in columns if c in out] + [c for c in out if c not in columns]]


#: The tally's last column: how many of the verdicts carry a caveat (one seed, not converged,
#: only k of n cases, …), whatever the verdict.
WITH_CAVEAT = "of these, with a caveat"


def tally(table: pd.DataFrame) -> pd.DataFrame:
    """How many claims of the paper got each verdict (:data:`~geco_book.verdicts.VERDICTS`,
    every one shown, in order), per chapter and in all, and how many of them carry a caveat
    (:data:`WITH_CAVEAT`); the book's own questions are left out.

    Example:
        >>> rows = [{"claim (paper)": "c", "verdict": "reproduced", "caveat": "one seed"},
        ...         {"claim (paper)": "d", "verdict": "reproduced", "caveat": ""}]
        >>> t = summary({"05_beyond": pd.DataFrame(rows)})
        >>> tally(t).loc["all", ["reproduced", "partly reproduced", WITH_CAVEAT]].tolist()
        [2, 0, 1]
    """
    paper = table[~table["claim (paper)"].str.startswith(BOOK_QUESTION)]
    chapters = list(dict.fromkeys(paper["chapter"]))
    counts = pd.crosstab(paper["chapter"], paper["verdict"]).reindex(
        index=chapters, columns=list(VERDICTS), fill_value=0)
    caveated = paper[paper["caveat"].fillna("").str.len().gt(0)]
    counts[WITH_CAVEAT] = caveated.groupby("chapter").size().reindex(chapters, fill_value=0)
    counts.loc["all"] = counts.sum()
    return counts.rename_axis(index=None, columns=None)


def tally_sentence(counts: pd.DataFrame, profile: str) -> str:
    """The sentence above the tally: how many claims of the paper, from how many chapters, at
    ``profile`` (the verdict columns only: :data:`WITH_CAVEAT` counts some of them again).

    Example:
        >>> rows = [{"claim (paper)": "c", "verdict": "reproduced", "caveat": "one seed"}]
        >>> print(tally_sentence(tally(summary({"05_beyond": pd.DataFrame(rows)})), "cpu"))
        ... # doctest: +NORMALIZE_WHITESPACE
        Profile `cpu`: 1 claim of the paper from 1 chapter, by verdict, 1 of them with a caveat
        (the book's own question is not counted):
    """
    n = int(counts.loc["all", list(VERDICTS)].sum())
    chapters = len(counts) - 1
    caveats = int(counts.loc["all", WITH_CAVEAT])
    return (f"Profile `{profile}`: {n} claim{'s' * (n != 1)} of the paper from {chapters} "
            f"chapter{'s' * (chapters != 1)}, by verdict, {caveats} of them with a caveat (the "
            f"book's own question is not counted):")


#: The columns of the results page's table per chapter (what fits the book's column); the
#: others of a claims table are :func:`page_notes` under it.
PAGE_COLUMNS = ("claim (paper)", "paper's number", "ours", "verdict", "caveat")


def page_table(part: pd.DataFrame) -> pd.DataFrame:
    """One chapter's rows of :func:`summary` as the results page shows them: the claims
    numbered, :data:`PAGE_COLUMNS` only.

    Example:
        >>> row = {"claim (paper)": "c", "verdict": "reproduced", "caveat": "", "ours": "o",
        ...        "paper's number": "p", "reason": "r"}
        >>> page_table(summary({"05_beyond": pd.DataFrame([row])})).columns.tolist()
        ['#', 'claim (paper)', "paper's number", 'ours', 'verdict', 'caveat']
    """
    out = part[list(PAGE_COLUMNS)].reset_index(drop=True)
    out.insert(0, "#", range(1, len(out) + 1))
    return out


def page_notes(part: pd.DataFrame) -> str:
    """The rest of each claim of one chapter's rows, by its number in :func:`page_table`: what
    we measured, why the verdict is what it is, and the columns a chapter adds (Markdown).

    Example:
        >>> row = {"claim (paper)": "c", "verdict": "reproduced", "caveat": "", "ours": "o",
        ...        "paper's number": "p", "our measure": "m", "reason": "r"}
        >>> print(page_notes(summary({"05_beyond": pd.DataFrame([row])})))
        1. **our measure**: m; **reason**: r
    """
    skip = {"chapter", "page", *PAGE_COLUMNS}
    lines = []
    for i, (_, r) in enumerate(part.iterrows(), start=1):
        # a count stacked beside chapters without it comes back as a float (3.0): print 3
        extra = [f"**{c}**: {int(r[c]) if isinstance(r[c], float) and r[c].is_integer() else r[c]}"
                 for c in part.columns if c not in skip and pd.notna(r[c]) and str(r[c]) != ""]
        lines.append(f"{i}. " + "; ".join(extra))
    return "\n".join(lines)

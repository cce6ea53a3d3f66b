"""geco_core — GECO (Rezende & Viola, "Taming VAEs", 2018) as a small library.

Submodules (import them explicitly):

- :mod:`geco_core.geco` — the GECO optimizer, Algorithm 1 (re-exported here as :class:`GECO`).
- :mod:`geco_core.constraints` — reconstruction constraints of Table 1 (RE, FRE, CLA, pNCC).
- :mod:`geco_core.models` — conv VAE, VAE + conditional RealNVP posterior, ConvDRAW, classifier.
- :mod:`geco_core.objectives` — ELBO, GECO, hand-annealed β and fixed-β objectives.
- :mod:`geco_core.train` — the training engine and CLI (``python -m geco_core.train``);
  :mod:`geco_core.checkpoint` — atomic checkpoints loaded with ``weights_only=True``.
- :mod:`geco_core.metrics` — σ_opt, quantized-normal NLL, average and marginal KL.
- :mod:`geco_core.theory` — fixed-point equations of Propositions 1–6 and Appendices A–B.
- the argument checks and the atomic writer every module uses are the ground floor's,
  :mod:`geco_base.checks` and :mod:`geco_base.io` (a package of their own, which the data code
  ``data_builders`` uses too).

The book's chapters, figures and run profiles live in the separate package ``geco_book``,
which this library never imports.
"""

__all__ = ["GECO"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy re-export: `import geco_core.theory` need not import the optimizer's dependencies.
    if name == "GECO":
        from geco_core.geco import GECO

        return GECO
    raise AttributeError(f"module 'geco_core' has no attribute {name!r}")

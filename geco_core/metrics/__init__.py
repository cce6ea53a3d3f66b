"""Evaluation metrics of the paper: σ_opt, the quantized-normal NLL, average and marginal KL.

- :mod:`~geco_core.metrics.estimators` — tensor-level: σ_opt of Eq. 26 from reconstructions
  (:func:`optimal_sigma`), the quantized normal of Appendix D (:func:`quantized_normal_log_prob`),
  the Gaussian KL, Monte Carlo means with standard errors;
- :mod:`~geco_core.metrics.marginal` — tensor-level marginal-KL estimators of §4.1.1 / Table 2
  (the exact N-component mixture in bounded memory, its diagonal-Gaussian matmul form, the
  subsampled mixture) with the mutual information I(n; z);
- :mod:`~geco_core.metrics.aggregate` — estimators of the marginal KL from one matrix of
  log q(z_s|xᵢ) (exact, leave-one-out, held-out, the minibatch estimators of Chen et al. 2018)
  and the aggregate density log q(z) (imported from the submodule, not re-exported);
- :mod:`~geco_core.metrics.evaluation` — model-level: :func:`sigma_opt`, :func:`nll_per_pixel`,
  :func:`average_kl`, :func:`marginal_kl` of a
  :class:`~geco_core.models.base.LatentVariableModel` on data tensors.

Every public name of the three modules is re-exported here.

References:
    Rezende & Viola, "Taming VAEs", 2018: §4.1.1, Table 2, Appendix D (Eq. 26).

Example:
    >>> import torch
    >>> mu = log_sigma = torch.zeros(5, 3, dtype=torch.float64)
    >>> r = marginal_kl_gaussian(mu, log_sigma, S=100, seed=0)  # every encoder is the prior
    >>> abs(r.value) < 1e-12 and abs(r.mutual_info) < 1e-12
    True
"""

from geco_core.metrics.estimators import (
    gaussian_kl,
    mean_stderr,
    optimal_sigma,
    quantized_normal_log_prob,
    standard_normal_log_prob,
)
from geco_core.metrics.evaluation import (
    METHODS,
    AverageKL,
    QuantizedNLL,
    average_kl,
    log_q_pairs_fn,
    marginal_kl,
    nll_per_pixel,
    sigma_opt,
)
from geco_core.metrics.marginal import (
    SAMPLINGS,
    LogQPairsFn,
    MarginalKL,
    draw_sources,
    gaussian_blocks,
    gaussian_log_q_pairs,
    gaussian_log_q_pairs_fn,
    logsumexp_chunked,
    marginal_kl_from_log_q,
    marginal_kl_gaussian,
    marginal_kl_subsampled_from_log_q,
)

__all__ = [
    "METHODS",
    "SAMPLINGS",
    "AverageKL",
    "LogQPairsFn",
    "MarginalKL",
    "QuantizedNLL",
    "average_kl",
    "log_q_pairs_fn",
    "draw_sources",
    "gaussian_blocks",
    "gaussian_kl",
    "gaussian_log_q_pairs",
    "gaussian_log_q_pairs_fn",
    "logsumexp_chunked",
    "marginal_kl",
    "marginal_kl_from_log_q",
    "marginal_kl_gaussian",
    "marginal_kl_subsampled_from_log_q",
    "mean_stderr",
    "nll_per_pixel",
    "optimal_sigma",
    "quantized_normal_log_prob",
    "sigma_opt",
    "standard_normal_log_prob",
]

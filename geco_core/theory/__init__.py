"""Fixed points of high-capacity VAEs: Propositions 1–6 and Appendices A–C of "Taming VAEs".

Everything here is numpy/scipy on a *discretised* latent space: the latent square is cut into a
grid of tiles φ_a (Prop. 4's orthogonal basis of indicator functions), the prior becomes the
tile masses π_a, the encoder q(z|x_i) becomes a table of tile masses, and the decoder becomes one
reconstruction vector ψ_a per tile. No trained network is needed.

One module per section of the paper (grep for the equation number to land on its function);
every public name is re-exported here, so ``from geco_core import theory`` is all a caller needs:

- :mod:`~geco_core.theory.grid` — the tiled latent space (Prop. 4's basis, Appendix A):
  :func:`latent_grid`, :class:`LatentGrid`, :func:`init_reconstructions`.
- :mod:`~geco_core.theory.tilings` — Props. 1–3 (Eqs. 3–4, 13–17, Appendix C.2):
  :func:`equiprobable_partition`, :func:`supports_from_labels`,
  :func:`restricted_prior_posteriors`, :func:`tile_average_kl`, :func:`partition_kl`,
  :func:`optimal_decoder` (Eq. 4), :func:`overlap_reconstruction` (Eq. 17),
  :func:`expected_reconstruction_error` (Eq. 15), :func:`elbo_fixed_point_step` (Eqs. 3–4),
  :func:`elbo_fixed_point_iteration` (with Eq. 15), :func:`hole_tiles` and
  :func:`uncovered_prior_mass` (the holes of §3.1 and Fig. 1).
- :mod:`~geco_core.theory.fixed_points` — Prop. 4 (Eqs. 19–20, Appendix A):
  :func:`tile_responsibilities` (Eq. 19), :func:`fixed_point_map` (Eq. 20, reference),
  :func:`fixed_point_sweep` (Eq. 20 batched over β, Appendix A's smoothing and stopping),
  :class:`FixedPointSweep`, :func:`lipschitz_fixed_points` (Eq. 20 + Eq. 25, Prop. 6).
- :mod:`~geco_core.theory.phase` — u(β) and the critical temperatures (§3.2, Fig. 2):
  :func:`reconstruction_error`, :func:`second_derivative`, :func:`critical_betas`,
  :class:`CriticalBetas`, :func:`cluster_fixed_points`, :func:`cluster_counts` (single linkage),
  :func:`location_tolerance`, :func:`fixed_point_locations`,
  :func:`count_fixed_point_locations` (complete linkage: what a picture shows),
  :func:`critical_beta_from_covariance`, :func:`collapse_beta`, :func:`merging_clusters`
  (deterministic annealing's β_c = λ_max, Rose et al. 1990, Rose 1998).
- :mod:`~geco_core.theory.equipartition` — Prop. 5 (Appendix C.6):
  :func:`equipartition_gamma`, :func:`equipartition_residual`, :func:`equipartition_objective`,
  :func:`equipartition_gamma_direct`, :func:`fixed_point_energies`.
- :mod:`~geco_core.theory.lipschitz` — Appendix B and Prop. 6 (Eqs. 7–8, 21–25):
  :func:`tile_distance_moments`, :func:`lipschitz_weights` (Eq. 8),
  :func:`lipschitz_projection` (Eq. 25), :func:`neighbour_spread`.
- :mod:`~geco_core.theory.lipschitz_bounds` — Eq. 8 as a bound (KKT multipliers, not a fixed
  strength): :class:`LipschitzBound`, :func:`lipschitz_bound`, :func:`bound_violation`,
  :func:`bound_projection`, :func:`bound_multipliers`, :func:`lipschitz_bound_fixed_points`.

The theory chapter's settings, figure runs and tables live in the book package
(:mod:`geco_book.chapters.theory`), its figures in :mod:`geco_book.figures.theory`; this
package never imports either.

Conventions: data ``x`` is ``[n, d]`` (Fig. 1's images are flattened by the callers), the latent
grid has ``B = size²`` tiles, ``β`` plays the role of the decoder variance σ² (Eq. 19 writes
e^{-‖x-ψ‖²/2β}), and arrays over a β sweep carry β as their leading dimension ``K``.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Props. 1–6, Eqs. 3–6, 8, 17,
    19–20, 21–25, Appendices A, B, C. Rose, Gurewitz & Fox (1990), Phys. Rev. Lett. 65, 945,
    and Rose (1998), Proc. IEEE 86, 2210: deterministic annealing's critical temperatures.

Example:
    >>> import numpy as np
    >>> from geco_core import theory
    >>> grid = theory.latent_grid(8)
    >>> x = np.array([[-0.25, 0.0], [0.25, 0.0]])
    >>> res = theory.fixed_point_sweep(x, [1e-3, 1.0], grid=grid, seed=0, progress=False)
    >>> [len(theory.cluster_fixed_points(p)[0]) for p in res.psi]   # β small: 2; β large: 1
    [2, 1]
"""

from geco_core.theory.equipartition import (
    equipartition_gamma,
    equipartition_gamma_direct,
    equipartition_objective,
    equipartition_residual,
    fixed_point_energies,
)
from geco_core.theory.fixed_points import (
    FixedPointSweep,
    fixed_point_map,
    fixed_point_sweep,
    lipschitz_fixed_points,
    tile_responsibilities,
)
from geco_core.theory.grid import LatentGrid, init_reconstructions, latent_grid
from geco_core.theory.lipschitz import (
    lipschitz_projection,
    lipschitz_weights,
    neighbour_spread,
    tile_distance_moments,
)
from geco_core.theory.lipschitz_bounds import (
    LipschitzBound,
    bound_multipliers,
    bound_projection,
    bound_violation,
    lipschitz_bound,
    lipschitz_bound_fixed_points,
)
from geco_core.theory.phase import (
    CriticalBetas,
    cluster_counts,
    cluster_fixed_points,
    collapse_beta,
    count_fixed_point_locations,
    critical_beta_from_covariance,
    critical_betas,
    fixed_point_locations,
    location_tolerance,
    merging_clusters,
    reconstruction_error,
    second_derivative,
)
from geco_core.theory.tilings import (
    elbo_fixed_point_iteration,
    elbo_fixed_point_step,
    equiprobable_partition,
    expected_reconstruction_error,
    hole_tiles,
    optimal_decoder,
    overlap_reconstruction,
    partition_kl,
    restricted_prior_posteriors,
    supports_from_labels,
    tile_average_kl,
    uncovered_prior_mass,
)

__all__ = [
    "CriticalBetas",
    "FixedPointSweep",
    "LatentGrid",
    "LipschitzBound",
    "bound_multipliers",
    "bound_projection",
    "bound_violation",
    "cluster_counts",
    "cluster_fixed_points",
    "collapse_beta",
    "count_fixed_point_locations",
    "critical_beta_from_covariance",
    "critical_betas",
    "elbo_fixed_point_iteration",
    "elbo_fixed_point_step",
    "equipartition_gamma",
    "equipartition_gamma_direct",
    "equipartition_objective",
    "equipartition_residual",
    "equiprobable_partition",
    "expected_reconstruction_error",
    "fixed_point_energies",
    "fixed_point_locations",
    "fixed_point_map",
    "fixed_point_sweep",
    "hole_tiles",
    "init_reconstructions",
    "latent_grid",
    "lipschitz_bound",
    "lipschitz_bound_fixed_points",
    "lipschitz_fixed_points",
    "lipschitz_projection",
    "lipschitz_weights",
    "location_tolerance",
    "merging_clusters",
    "neighbour_spread",
    "optimal_decoder",
    "overlap_reconstruction",
    "partition_kl",
    "reconstruction_error",
    "restricted_prior_posteriors",
    "second_derivative",
    "supports_from_labels",
    "tile_average_kl",
    "tile_distance_moments",
    "tile_responsibilities",
    "uncovered_prior_mass",
]

"""Moved: the marginal-KL estimators are in :mod:`geco_core.metrics` (this alias re-exports it)."""

from geco_core.metrics import *  # noqa: F403
from geco_core.metrics import __all__  # noqa: F401

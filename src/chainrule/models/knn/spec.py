"""The k-NN model's policy: its defaults and the grid that cross-validation searches.

The search machinery and the estimator live beside this module; what the command line
and the experiment layer choose for k-NN (default k and metric, the ks that
cross-validation tries) lives here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_K", "DEFAULT_KS", "DEFAULT_METRIC"]

DEFAULT_K = 1
DEFAULT_METRIC = "l2"
# The ks of the course's cross-validation exercise (cs231n / DeepRob).
DEFAULT_KS = (1, 3, 5, 8, 10, 12, 15, 20, 50, 100)

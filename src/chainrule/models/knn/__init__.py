"""k-nearest neighbours: brute force, chunked, exact.

Distances are computed block by block (a chunk of queries against a block of training
rows), so memory stays bounded for any number of queries and training points; no
``(n_queries, n_train, n_features)`` array is ever formed.

The neighbours, and therefore predictions, are those of a float64 brute-force
computation: the same indices, ties between equal distances resolved towards the smaller
training index, and the vote tie towards the smaller label. Distances returned by
``kneighbors`` are always the float64 ones. Fast float32 passes are used only where a
proven bound of their rounding error shows that they cannot change that answer.

Modules, from the estimator down (as scikit-learn's neighbours: a thin estimator over
search machinery):

- ``_estimator``: ``KNearestNeighbors`` (fit, kneighbors, predict, model-file state);
- ``_cv``: ``knn_cross_validate`` and ``knn_best_k`` (the model's command-line policy,
  its defaults and the ks cross-validation tries there, is ``chainrule.models.knn_spec``);
- ``_search``: ``NeighborSearch``, the exact k nearest rows of one training array (one
  shard): approximate pass, certificate, exact pass;
- ``_projection``: the l2 and cosine projection filter (a lower bound of every distance
  from a few hundred numbers per row);
- ``_modelfile``: model files that keep the training images (uint8) and their
  preprocessing instead of the float32 rows;
- ``_groupsums``: the l1 group-sum filter (lower bounds from sums over groups of
  features that move together, coarse to fine);
- ``_metrics``: the distances with their error bounds (``Prepared`` rows);
- ``_select``: candidate lists, the smallest values of each row, ``merge_neighbors``;
- ``_parallel``: threads for the loops outside matrix products;
- ``_distributed``: training rows sharded across the workers of a Dask cluster (``fit``
  on a Dask array or shard futures), each shard's search kept on its worker.

Sharded training sets: ``NeighborSearch(shard, metric).kneighbors(Q, k)`` gives each
shard's exact top k (float64 values, local indices); ``merge_neighbors`` of those lists,
with each shard's offset added to its indices, is the exact top k of the whole set.
"""

from chainrule.models.knn._cv import knn_best_k, knn_cross_validate, stratified_folds
from chainrule.models.knn._estimator import KNearestNeighbors
from chainrule.models.knn._search import NeighborSearch
from chainrule.models.knn._select import merge_neighbors

# The public path (model files and the registry name classes by module and name).
for _public in (KNearestNeighbors, NeighborSearch, knn_best_k, knn_cross_validate):
    _public.__module__ = __name__
del _public

__all__ = [
    "KNearestNeighbors",
    "NeighborSearch",
    "knn_best_k",
    "knn_cross_validate",
    "merge_neighbors",
    "stratified_folds",
]

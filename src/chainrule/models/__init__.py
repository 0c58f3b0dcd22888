"""Classifiers with scikit-learn conventions (fit, predict, predict_proba, score).

Each family is an estimator class (``knn``, ``linear``, ``mlp``, ``convnet``; the conventions in
``_base``) with a spec beside it (``*_spec``; the protocol in ``spec``): its defaults for
the data, search grid, command-line options and plots. The families trained by gradient
descent (``linear``, ``mlp``, ``convnet``) are siblings on one base, `NetworkClassifier`
(``_network``; its training options in ``_options``). ``registry`` names them (name ->
class and spec, imported on first use); ``io`` writes and reads model files.
"""

from chainrule.models._network import NetworkClassifier  # noqa: F401
from chainrule.models.convnet import ConvNet  # noqa: F401
from chainrule.models.export import export_onnx  # noqa: F401
from chainrule.models.io import LoadedModel, load_model, save_model  # noqa: F401
from chainrule.models.knn import KNearestNeighbors, knn_best_k, knn_cross_validate  # noqa: F401
from chainrule.models.linear import LinearSVM, SoftmaxClassifier  # noqa: F401
from chainrule.models.mlp import FullyConnectedNet, TwoLayerNet  # noqa: F401
from chainrule.models.registry import (  # noqa: F401
    MODEL_REGISTRY,
    get_model_class,
    get_model_spec,
    model_name,
    register_model,
)
from chainrule.models.spec import ModelSpec  # noqa: F401


def __getattr__(name: str):
    # Made on first use, deriving from scikit-learn's classes where it is installed
    # (models/_base.py): importing them above would import scikit-learn with chainrule.
    if name in ("NotFittedError", "DataConversionWarning"):
        from chainrule.models import _base

        return getattr(_base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

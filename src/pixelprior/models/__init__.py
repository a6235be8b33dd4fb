"""Models: the SqueezeNet architectures (torchvision-compatible ``state_dict`` keys), the
model registry and loader, faster query copies, wrappers and training.

Every model here takes ``float`` images in [0, 1] and normalises inside ``forward``, so
attacks search in pixel space.
"""

from ..data import imagenet_class_names  # noqa: F401  (re-exported: its earlier home)
from .inference import ChannelsLast, fold_batchnorm, inference_model, predict, scores_agree
from .loaders import (
    GradientsUnavailableError,
    LoadedModel,
    ModelInputError,
    ModelLoadError,
    Normalize,
    OnnxModel,
    accuracy_on,
    as_registered,
    load_model_spec,
    model_spec_problem,
    one_class_warning,
    output_kind,
    predict_labels,
    to_model_channels,
)
from .registry import (
    MODELS,
    REGISTRY,
    WEIGHTS_ENV,
    ModelSpec,
    WeightsError,
    bundled_weights_path,
    load_model,
    model_card,
    model_spec,
    read_state_dict,
    resolve_weights,
    weight_candidates,
)
from .squeezenet import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Fire,
    Normalized,
    SqueezeNet,
    SqueezeNetCifar,
)
from .wrappers import ResizeInside

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "ChannelsLast", "Fire", "GradientsUnavailableError",
    "IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "MODELS", "ModelInputError",
    "ModelLoadError", "ModelSpec", "Normalize", "Normalized", "OnnxModel", "REGISTRY",
    "ResizeInside", "SqueezeNet", "SqueezeNetCifar", "WEIGHTS_ENV", "WeightsError",
    "accuracy_on", "as_registered", "bundled_weights_path", "fold_batchnorm",
    "imagenet_class_names", "inference_model", "load_model", "load_model_spec",
    "model_card", "model_spec", "model_spec_problem", "one_class_warning", "output_kind",
    "predict", "predict_labels", "read_state_dict", "resolve_weights", "scores_agree",
    "to_model_channels", "weight_candidates",
]

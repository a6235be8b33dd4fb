"""Models: the SqueezeNet architectures (torchvision-compatible ``state_dict`` keys), the
model registry, the spec loader (one module per format in ``formats/``; the probe in
``probing``), wrappers, faster query copies, fingerprints, accuracy and training.

Every model here takes ``float`` images in [0, 1] and normalises inside ``forward``, so
attacks search in pixel space.
"""

from ..data import imagenet_class_names  # noqa: F401  (re-exported: its earlier home)
from .accuracy import accuracy_on, one_class_warning, predict_labels
from .channels import to_model_channels
from .errors import (
    GradientsUnavailableError,
    ModelInputError,
    ModelLoadError,
    batch_failure,
    model_failure,
    short_reason,
)
from .fingerprint import code_changed, model_fingerprint, same_model, state_dict_digest
from .inference import (
    ChannelsLast,
    copy_module,
    evaluation_mode,
    fold_batchnorm,
    gradient_problem,
    inference_model,
    predict,
    scores_agree,
)
from .probing import batch_dependence, output_kind
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
    unwrap_state_dict,
    weight_candidates,
)
from .spec import LoadedModel, as_registered, load_model_spec, model_spec_problem
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
from .watch import WeightsWatch, traced_code, weights_version
from .wrappers import ModelSettingError, Normalize, OnnxModel, ResizeInside, normalization_problem

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "ChannelsLast", "Fire",
    "GradientsUnavailableError",
    "IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "MODELS", "ModelInputError",
    "ModelLoadError", "ModelSettingError", "ModelSpec", "Normalize", "Normalized",
    "OnnxModel", "REGISTRY", "ResizeInside", "SqueezeNet", "SqueezeNetCifar", "WEIGHTS_ENV",
    "WeightsError", "WeightsWatch", "accuracy_on", "as_registered", "batch_dependence",
    "batch_failure", "bundled_weights_path",
    "code_changed",
    "copy_module", "evaluation_mode",
    "fold_batchnorm", "gradient_problem", "imagenet_class_names", "inference_model", "load_model",
    "load_model_spec", "model_card", "model_failure", "model_fingerprint", "model_spec",
    "model_spec_problem",
    "normalization_problem", "one_class_warning", "output_kind", "predict", "predict_labels",
    "read_state_dict", "resolve_weights", "same_model", "scores_agree", "short_reason",
    "state_dict_digest", "to_model_channels", "unwrap_state_dict", "weight_candidates",
    "traced_code", "weights_version",
]

"""Vision: CIFAR ResNets with pluggable (shared) attention, the destabilisation switches,
image data (CIFAR python batches, scikit-learn's digits, synthetic) and a training loop.

    from attsolver.vision import make_model, load_digits, train_classifier
    model = make_model("resnet20", num_classes=10, in_channels=1, attention="dia")
    history = train_classifier(model, load_digits(), epochs=24)

Attention names (:func:`list_vision_attention`): ``none``, ``se`` (per block),
``shared_se`` (per stage), ``dia`` (DIA unit per stage), ``iebn`` (IEBN norm layers).
"""

from .attention import AttentionSpec, list_vision_attention, parse_attention
from .data import DATASETS, ImageData, load_cifar, load_digits, load_image_data, synthetic_images
from .resnet import CifarResNet, blocks_per_stage, count_parameters, list_models, make_model
from .train import VisionHistory, augment_batch, evaluate, load_checkpoint, train_classifier

__all__ = [
    "CifarResNet", "make_model", "list_models", "count_parameters", "blocks_per_stage",
    "AttentionSpec", "parse_attention", "list_vision_attention",
    "ImageData", "load_cifar", "load_digits", "synthetic_images", "load_image_data", "DATASETS",
    "train_classifier", "evaluate", "augment_batch", "load_checkpoint", "VisionHistory",
]

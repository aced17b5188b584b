"""Vision: CIFAR ResNets with pluggable (shared) attention, the destabilisation switches,
image data (CIFAR python batches, scikit-learn's digits, synthetic) and a training loop.

    from attsolver.vision import make_model, load_digits, train_classifier
    model = make_model("resnet20", num_classes=10, in_channels=1, attention="dia")
    history = train_classifier(model, load_digits(), epochs=24)

Attention names (:func:`list_vision_attention`): ``none``, ``se`` (per block),
``shared_se`` (per stage), ``dia`` (DIA unit per stage), ``iebn`` (IEBN norm layers).

Connection masks and their search (EAN lottery tickets, :mod:`attsolver.vision.search`)::

    model = make_model("resnet20", in_channels=1, attention="dia", connection="101100110")
    split = holdout_split(load_digits())              # held out of the training images
    train_supernet(supernet, split, epochs=30)        # a random mask per mini-batch
    reward = make_reward(MaskEvaluator(supernet, split, log="search.jsonl"), sparsity_bonus=0.01)
    ticket = reinforce_search(reward, supernet.num_blocks, budget=48).best_mask
"""

from .attention import AttentionSpec, list_vision_attention, parse_attention
from .data import DATASETS, ImageData, load_cifar, load_digits, load_image_data, synthetic_images
from .resnet import (CifarResNet, attention_parameters, blocks_per_stage, check_connection, connection_key,
                     count_parameters, list_models, make_model)
from .search import (MaskEvaluator, MaskPolicy, SearchResult, holdout_split, make_reward, random_search,
                     reinforce_search, train_supernet)
from .train import VisionHistory, augment_batch, evaluate, load_checkpoint, train_classifier

__all__ = [
    "CifarResNet", "make_model", "list_models", "count_parameters", "blocks_per_stage",
    "check_connection", "connection_key", "attention_parameters",
    "holdout_split", "train_supernet", "MaskEvaluator", "make_reward", "MaskPolicy", "reinforce_search",
    "random_search", "SearchResult",
    "AttentionSpec", "parse_attention", "list_vision_attention",
    "ImageData", "load_cifar", "load_digits", "synthetic_images", "load_image_data", "DATASETS",
    "train_classifier", "evaluate", "augment_batch", "load_checkpoint", "VisionHistory",
]

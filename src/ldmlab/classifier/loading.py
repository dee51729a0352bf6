"""The trained domain classifier, loaded back from its Lightning checkpoint as data."""

from __future__ import annotations

from pathlib import Path

from ldmlab.checkpoints import read_checkpoint
from ldmlab.classifier.network import ClassifierNetwork
from ldmlab.classifier.plain_config import network_config
from ldmlab.utils.errors import ConfigError, part_key

NETWORK_FIELDS = {"in_channels": int, "num_classes": int, "resolution": int, "widths": list, "groups": int,
                  "dropout": int | float}
_CKPT_FIX = "point it at a checkpoint written by `make train-classifier` (logs/train_classifier/.../*.ckpt)"


def ckpt_key() -> str:
    """The config key of the classifier checkpoint that metrics read (``metrics.classifier_ckpt``)."""
    return part_key("metrics", "classifier_ckpt")


def load_classifier(ckpt_path: str | Path) -> ClassifierNetwork:
    """The trained network (eval mode, on CPU) from a ``ClassifierModule`` Lightning checkpoint.

    Read with ``torch.load(weights_only=True)`` (``ldmlab.checkpoints.read_checkpoint``); the
    architecture comes from the ``network`` hyperparameter stored at training time, which must be
    plain numbers (``NETWORK_FIELDS``), never a config to instantiate. Anything missing or
    inconsistent raises ``ConfigError`` naming the metrics' ``classifier_ckpt``.
    """
    path, key = Path(ckpt_path).expanduser(), ckpt_key()
    checkpoint = read_checkpoint(path, key, _CKPT_FIX)
    hparams = checkpoint.get("hyper_parameters")
    config = hparams.get("network") if isinstance(hparams, dict) else None
    if not isinstance(config, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(key, f"{path} holds no classifier (no 'network' hyperparameter)", _CKPT_FIX)
    try:
        network = ClassifierNetwork(**network_config(config, NETWORK_FIELDS))
    except (TypeError, ValueError) as err:
        raise ConfigError(key, f"{path} stores an unusable network config ({err})", _CKPT_FIX) from None
    prefix = "network."
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(
            key, f"{path}: weights do not match the stored network config ({str(err)[:300]})", _CKPT_FIX
        ) from None
    return network.eval().requires_grad_(False)

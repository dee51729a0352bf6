"""The weaker model autoguidance steers away from, loaded from its train_ldm checkpoint.

The ``guidance=autoguidance`` config builds it here (``guide`` of ``Autoguidance``): guidance
sits below models in the import graph, so it is handed the loaded module rather than loading it.
"""

from __future__ import annotations

from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.models.restore import load_ldm, resolve_ldm_checkpoint
from ldmlab.utils.errors import ConfigError, part_key

FIX = "give the weaker model's train_ldm .ckpt or run dir, e.g. {key}=logs/train_ldm/runs/<run>"


def load_guide(guide_ckpt: str | None = None, log_dir: str = "logs") -> LatentDiffusionModule:
    """The guide's module (CPU, eval) from a .ckpt or run dir. None is refused: the newest train_ldm
    run under ``log_dir`` is usually the guided model itself, and a model guiding itself is no
    guidance at all. Errors name ``guidance.guide_ckpt``."""
    key = part_key("guidance", "guide_ckpt")
    if guide_ckpt is None:
        raise ConfigError(key, "is required: autoguidance needs the weaker model's checkpoint",
                          FIX.replace("{key}", key))
    try:
        return load_ldm(resolve_ldm_checkpoint(guide_ckpt, log_dir))
    except ConfigError as err:
        raise ConfigError(key, err.problem, FIX.replace("{key}", key)) from None

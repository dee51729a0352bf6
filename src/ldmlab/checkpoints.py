"""Reading files a user hands in, as data only.

Checkpoints load with ``torch.load(weights_only=True)``; a config stored inside one is
instantiated only after every ``_target_`` in it is found on ``ARCHITECTURE_TARGETS``, an
explicit allow-list of ldmlab classes that build networks, schedules, samplers and data. A
stored config cannot name a function (``ldmlab.runs.layout.write_json_atomic`` writes
files), a callback, a logger or anything outside ldmlab (``torch.load``, ``builtins.open``).

A stored config is read-only: what it builds never downloads, writes or compiles
(``READ_ONLY_ARGUMENTS`` are forced onto it). It may name further checkpoints (a first stage, a
semantic model, a VAE prior), and every config built from a file goes through
``instantiate_stored``, which keeps the chain of checkpoints being built: one that is already
on the chain (a cycle: A → A, A → B → A) or a chain longer than ``MAX_NESTING`` is refused, as
is a stored config deeper than ``MAX_CONFIG_DEPTH`` or larger than ``MAX_CONFIG_NODES`` (a
pickle can hold a dict that contains itself).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from ldmlab.target_aliases import current_targets
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.torch_files import refusal_reason

CONFIG_KEY = "ldmlab_config"  # the run's resolved config inside every checkpoint (StoreConfig)
WORLD_SIZE_KEY = "ldmlab_world_size"  # the number of ranks that wrote it (StoreConfig)
FIRST_STAGE_CONFIG = "first_stage_autoencoder_config"  # the first stage's architecture (stage 2, classifier)

ARCHITECTURE_TARGETS = frozenset({
    "ldmlab.autoencoder.model.Autoencoder",
    "ldmlab.autoencoder.regularizers.kl.KLRegularizer",
    "ldmlab.autoencoder.regularizers.vq.VectorQuantizer",
    "ldmlab.nn.encoder.Encoder",
    "ldmlab.nn.decoder.Decoder",
    "ldmlab.backbones.unet.UNet",
    "ldmlab.backbones.mlp.MLPDenoiser",
    "ldmlab.backbones.dit.DiT",
    "ldmlab.backbones.uvit.UViT",
    "ldmlab.conditioning.conditioner.Conditioner",
    "ldmlab.conditioning.class_embedder.ClassEmbedder",
    "ldmlab.conditioning.concat_embedder.ConcatEmbedder",
    "ldmlab.conditioning.text_encoder.TextEmbedder",
    "ldmlab.conditioning.generator_embedder.GeneratorSampleEmbedder",
    "ldmlab.semantic.encoder.SemanticEncoderEmbedder",
    "ldmlab.autoencoder.prior.VAEPrior",
    "ldmlab.models.ldm.LatentDiffusionModule",
    "ldmlab.first_stage.autoencoder.FirstStage",
    "ldmlab.first_stage.identity.IdentityFirstStage",
    "ldmlab.semantic.first_stage.SemanticFirstStage",
    "ldmlab.first_stage.diffusers.DiffusersFirstStage",  # builds AutoencoderKL from plain data
    "ldmlab.diffusion.objective.DiffusionObjective",
    "ldmlab.semantic.objective.RepresentationObjective",
    "ldmlab.semantic.info_regularizer.InfoRegularizer",
    "ldmlab.diffusion.timestep_samplers.uniform.UniformTimesteps",
    "ldmlab.diffusion.timestep_samplers.truncated.TruncatedTimesteps",
    "ldmlab.diffusion.timestep_samplers.log_normal.LogNormalTimesteps",
    "ldmlab.diffusion.timestep_samplers.logit_normal.LogitNormalTimesteps",
    "ldmlab.diffusion.loss.DiffusionLoss",
    "ldmlab.diffusion.loss_weighting.uniform.UniformWeighting",
    "ldmlab.diffusion.loss_weighting.min_snr.MinSNRWeighting",
    "ldmlab.diffusion.parameterizations.eps.EpsParameterization",
    "ldmlab.diffusion.parameterizations.v.VParameterization",
    "ldmlab.diffusion.parameterizations.x0.X0Parameterization",
    "ldmlab.diffusion.parameterizations.velocity.VelocityParameterization",
    "ldmlab.diffusion.parameterizations.edm.EDMParameterization",
    "ldmlab.diffusion.schedules.linear.LinearSchedule",
    "ldmlab.diffusion.schedules.scaled_linear.ScaledLinearSchedule",
    "ldmlab.diffusion.schedules.cosine.CosineSchedule",
    "ldmlab.diffusion.schedules.flow.FlowSchedule",
    "ldmlab.diffusion.schedules.edm.EDMSchedule",
    "ldmlab.sampling.samplers.ddim.DDIMSampler",
    "ldmlab.sampling.samplers.ddpm.DDPMSampler",
    "ldmlab.sampling.samplers.dpmpp_2m.DPMPP2MSampler",
    "ldmlab.sampling.samplers.euler.EulerSampler",
    "ldmlab.sampling.samplers.heun.HeunSampler",
    "ldmlab.sampling.samplers.edm.EDMSampler",
    "ldmlab.sampling.samplers.sde.EulerMaruyamaSampler",
    "ldmlab.data.fashion_mnist.FashionMNISTDataModule",
    "ldmlab.data.image_folder.ImageFolderDataModule",
    "ldmlab.data.streaming.StreamingDataModule",
    "ldmlab.data.torchvision_sets.TorchvisionDataModule",
    "ldmlab.data.sample_transforms.AddCaption",
    "ldmlab.data.sample_transforms.AddLowRes",
})
_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
READ_ONLY_ARGUMENTS = {  # forced onto a stored config: it never downloads, writes or compiles
    "ldmlab.data.torchvision_sets.TorchvisionDataModule": {"download": False},
    "ldmlab.data.streaming.StreamingDataModule": {"download": False, "cache_dir": None},
    "ldmlab.models.ldm.LatentDiffusionModule": {"latent_cache": None, "compile": False},
}
MAX_NESTING = 8  # checkpoints built from checkpoints (a latent DDIM over a DiffAE over an autoencoder: 3)
MAX_CONFIG_DEPTH = 64  # nested containers in one stored config (real ones: about 8)
MAX_CONFIG_NODES = 100_000  # containers and leaves visited in one (real ones: a few hundred)
_FIX = "use a checkpoint written by ldmlab's own training"
# (outermost key, path, file id) of each stored config being built, outermost first
_CHAIN: ContextVar[tuple[tuple[str, str | Path, tuple[int, int] | None], ...]] = ContextVar(
    "ldmlab_stored_chain", default=())


def read_checkpoint(path: str | Path, key: str, fix: str) -> dict[str, Any]:
    """The dict stored in ``path``, read with ``weights_only=True`` on the CPU; a missing,
    unreadable or code-carrying file is a ``ConfigError`` naming ``key`` (the config key that
    gave the path) and ``fix``. Its stored config's ``_target_`` paths are made current
    (``target_aliases``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a checkpoint file" if path.is_dir() else \
            "is not a regular file" if path.exists() else "does not exist"
        raise ConfigError(key, f"{path} {what}", fix)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch.load refuses, the file is at fault
        raise ConfigError(key, f"{path} is not a readable weights-only checkpoint "
                               f"({refusal_reason(path, err)})", fix) from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(key, f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict", fix)
    if isinstance(checkpoint.get(CONFIG_KEY), dict):  # written before the reshape: current class paths
        checkpoint[CONFIG_KEY] = current_targets(checkpoint[CONFIG_KEY])
    return checkpoint


def stored_config(checkpoint: Mapping, path: str | Path, key: str, fix: str) -> dict[str, Any]:
    """The run config stored in a checkpoint (``CONFIG_KEY``), checked to be plain data."""
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict):
        raise ConfigError(key, f"{path} stores no ldmlab run config", fix)
    return config


def check_targets(node: Any, path: str | Path, key: str) -> None:
    """Refuse a stored config node unless every ``_target_`` in it is allow-listed, every leaf is
    plain YAML data, no value is an interpolation (stored configs are saved resolved; ``${...}``
    would be evaluated) and it is finite and small (``MAX_CONFIG_DEPTH``, ``MAX_CONFIG_NODES``).
    An OmegaConf node is checked unresolved."""
    if isinstance(node, DictConfig | ListConfig):  # e.g. a stored node Hydra passed on as a kwarg
        node = OmegaConf.to_container(node, resolve=False)
    pending, visited = [(node, 0)], 0
    while pending:
        node, depth = pending.pop()
        visited += 1
        if depth > MAX_CONFIG_DEPTH or visited > MAX_CONFIG_NODES:
            raise ConfigError(key, f"{path} stores a config nested more than {MAX_CONFIG_DEPTH} levels "
                              f"deep or of more than {MAX_CONFIG_NODES} values (one that contains itself?)",
                              _FIX)
        if isinstance(node, Mapping):
            target = node.get("_target_")
            if target is not None and (not isinstance(target, str) or target not in ARCHITECTURE_TARGETS):
                raise ConfigError(key, f"{path} stores _target_ {target!r}, which is not an allow-listed "
                                       "ldmlab architecture class; refusing to run it", _FIX)
            for name in node:
                if not isinstance(name, str) or (name[:1] == name[-1:] == "_" and name not in _HYDRA_KEYS):
                    raise ConfigError(key, f"{path} stores an unexpected key {name!r}",
                                      "use ldmlab checkpoints")
            pending += [(value, depth + 1) for value in node.values()]
        elif isinstance(node, list | tuple):
            pending += [(value, depth + 1) for value in node]
        elif isinstance(node, str) and "${" in node:
            raise ConfigError(key, f"{path} stores an interpolation {node!r}", "use an ldmlab checkpoint")
        elif node is not None and not isinstance(node, str | int | float | bool):
            raise ConfigError(key, f"{path} stores a {type(node).__name__} in its config",
                              "use an ldmlab checkpoint")


def instantiate_stored(node: Mapping, path: str | Path, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)`` for a config read from ``path``, after
    ``check_targets``, with ``READ_ONLY_ARGUMENTS`` forced, as one more link of the chain of
    checkpoints being built (``_nested``); ``kwargs`` come from the code, not from the file."""
    check_targets(node, path, key)
    with _nested(path, key):
        return instantiate(_read_only(node), **kwargs)


@contextmanager
def _nested(path: str | Path, key: str) -> Iterator[None]:
    """Build from ``path`` inside the checkpoints being built now: a file already on that chain (it
    builds from itself; compared by device and inode, so links and copies by hard link count) or
    a chain of more than ``MAX_NESTING`` is a ``ConfigError`` naming the outermost key. ``path``
    may be a description (a config stored without its file's path)."""
    chain = _CHAIN.get()
    here = _file_id(path)
    outer_key = chain[0][0] if chain else key
    trail = " → ".join([*(str(p) for _, p, _ in chain), str(path)])
    if here is not None and here in (i for _, _, i in chain):
        raise ConfigError(outer_key, f"{path} builds from itself through the checkpoints its stored config "
                          f"names ({trail})", _FIX)
    if len(chain) >= MAX_NESTING:
        raise ConfigError(outer_key, f"stored configs build from checkpoints more than {MAX_NESTING} deep "
                          f"({trail})", _FIX)
    token = _CHAIN.set((*chain, (outer_key, path, here)))
    try:
        yield
    finally:
        _CHAIN.reset(token)


def _file_id(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, else None (``path`` is a description)."""
    try:
        status = Path(path).expanduser().stat()
    except (OSError, ValueError):
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISREG(status.st_mode) else None


def _read_only(node: Any) -> Any:
    """``node`` with ``READ_ONLY_ARGUMENTS`` set on every node of those targets (a copy)."""
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, Mapping):
        return {k: _read_only(v) for k, v in node.items()} | READ_ONLY_ARGUMENTS.get(node.get("_target_"), {})
    if isinstance(node, list | tuple):
        return [_read_only(v) for v in node]
    return node

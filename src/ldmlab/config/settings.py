"""Each command's settings table (``ldmlab.config.types``): the types of its own keys, the ``paths``
group, the training commands' own keys and the ``trainer`` knobs ldmlab types more narrowly than
Lightning's signature (counts Lightning accepts at construction and divides by later; ``precision``,
whose ``auto`` ldmlab resolves before Lightning sees it)."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from ldmlab.config.types import AtLeast, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt


class Paths(TypedDict, total=False):
    root_dir: str
    data_dir: str
    log_dir: str
    cache_dir: str
    output_dir: str


class CommandSettings(TypedDict, total=False):
    """The keys every command has; each command's table extends it."""

    task_name: str
    paths: Paths


class TrainerKnobs(TypedDict, total=False):
    precision: str | int
    accumulate_grad_batches: PositiveInt
    check_val_every_n_epoch: PositiveInt | None
    log_every_n_steps: PositiveInt | None
    num_nodes: PositiveInt
    min_epochs: NonNegativeInt | None
    min_steps: NonNegativeInt | None
    gradient_clip_val: NonNegativeFloat | None
    val_check_interval: PositiveInt | PositiveFloat | None  # 0 divides by zero at the first batch
    reload_dataloaders_every_n_epochs: NonNegativeInt


class TrainSettings(CommandSettings, total=False):
    """conf/train_*.yaml (and their groups' and experiments' top-level variables)."""

    seed: int
    lr_scaling: Literal["none", "linear", "sqrt"]
    ckpt_path: str | None
    resume_changes: list[str]
    optimized_metric: str | None
    tags: list[str]
    conditioner_context_dim: PositiveInt | None
    first_stage_embed_dim: PositiveInt
    first_stage_downsample_factor: PositiveInt
    semantic_dim: PositiveInt
    generator_ckpt: str | None
    trainer: TrainerKnobs


class SampleSettings(CommandSettings, total=False):
    """conf/sample.yaml."""

    ckpt: str | None
    num_samples: PositiveInt
    batch_size: PositiveInt
    class_label: NonNegativeInt | None
    prompt: str | None
    seed: int
    use_ema: bool
    nrow: PositiveInt
    device: str


class GuidanceGrid(TypedDict, total=False):
    """Guidance settings swept by evaluate (interval guidance's bounds; another setting is left to
    ``guidance_grid``, which names the guidance's own): a list, or one value (a one-value list)."""

    sigma_low: NonNegativeFloat | list[NonNegativeFloat]
    sigma_high: NonNegativeFloat | None | list[NonNegativeFloat | None]


class Grid(TypedDict, total=False):
    """Sampler settings swept by evaluate, and under ``guidance`` the guidance's own settings:
    a list, or one value (a one-value list)."""

    sampler: list[str] | str | None
    steps: list[PositiveInt] | PositiveInt | None
    eta: list[NonNegativeFloat] | NonNegativeFloat | None
    guidance: GuidanceGrid


class EvaluateSettings(CommandSettings, total=False):
    """conf/evaluate.yaml."""

    ckpt: str | None
    guidance_scales: list[NonNegativeFloat]
    class_label: NonNegativeInt | None
    num_samples: PositiveInt
    num_reference: PositiveInt
    reference_split: str
    grid: Grid
    seeds: list[NonNegativeInt] | NonNegativeInt
    batch_size: PositiveInt
    use_ema: bool
    select_by: str | None
    device: str


class InvertSettings(CommandSettings, total=False):
    """conf/invert.yaml."""

    ckpt: str | None
    split: str
    num_images: PositiveInt
    batch_size: PositiveInt
    fixed_point_iters: NonNegativeInt
    num_show: PositiveInt
    lpips: bool
    seed: int
    use_ema: bool
    device: str


class InterpolateSettings(CommandSettings, total=False):
    """conf/interpolate.yaml."""

    ckpt: str | None
    split: str
    num_pairs: PositiveInt
    frames: Annotated[int, AtLeast(2)]
    fixed_point_iters: NonNegativeInt
    semantic_only: bool
    use_ema: bool
    device: str


class ExportSettings(CommandSettings, total=False):
    """conf/export.yaml."""

    ckpt: str | None
    out: str | None
    overwrite: bool
    use_ema: bool
    scaling_factor: float | None
    seed: int
    rtol: NonNegativeFloat


class ReportSettings(CommandSettings, total=False):
    """conf/report.yaml."""

    sweep_dir: str | None
    sweep_task: str
    group_by: list[str]
    seed_key: str
    out: str | None
    evaluate_runs: list[str] | None
    labels: list[str] | None
    allow_mixed_provenance: bool

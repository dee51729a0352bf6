"""wandb logger that works without a key: offline unless the user asked for online."""

from __future__ import annotations

import os
from pathlib import Path

from pytorch_lightning.loggers import WandbLogger


def wandb_mode() -> str:
    """``$WANDB_MODE`` if set; else ``online`` when an API key is configured, otherwise ``offline``."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )
    return "online" if has_key else "offline"


def run_identity(run_dir: Path) -> tuple[str, str | None]:
    """(name, group) from the run layout: ``<task>/runs/<ts>`` → (``<task>/<ts>``, None);
    ``<task>/multiruns/<ts>/<job>`` → (``<task>/<ts>/<job>``, ``<task>/<ts>``)."""
    if run_dir.parent.parent.name == "multiruns":
        group = f"{run_dir.parents[2].name}/{run_dir.parent.name}"
        return f"{group}/{run_dir.name}", group
    return f"{run_dir.parents[1].name}/{run_dir.name}", None


def make_wandb_logger(save_dir: str, project: str, **kwargs) -> WandbLogger:
    """One wandb run per job, saved under the run dir; multirun jobs share a group."""
    os.makedirs(save_dir, exist_ok=True)
    name, group = run_identity(Path(save_dir).resolve())
    kwargs.setdefault("group", group)
    return WandbLogger(save_dir=save_dir, project=project, name=name, mode=wandb_mode(), **kwargs)

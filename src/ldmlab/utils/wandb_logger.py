"""wandb logger that works without a key: offline unless the user asked for online."""

from __future__ import annotations

import os
from pathlib import Path

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only


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


class JobWandbLogger(WandbLogger):
    """A ``WandbLogger`` whose wandb run ends with its job (``finalize``). Lightning's own leaves
    the run open, so the next job of a multirun in the same process logged into this one."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is None or getattr(self, "_run_finished", False):
            return
        super().finalize(status)
        if hasattr(self._experiment, "finish"):
            self._experiment.finish(exit_code=0 if status == "success" else 1)
        self._run_finished = True


def make_wandb_logger(save_dir: str, project: str, **kwargs) -> WandbLogger:
    """One wandb run per job, saved under the run dir; multirun jobs share a group."""
    os.makedirs(save_dir, exist_ok=True)
    name, group = run_identity(Path(save_dir).resolve())
    kwargs.setdefault("group", group)
    return JobWandbLogger(save_dir=save_dir, project=project, name=name, mode=wandb_mode(), **kwargs)

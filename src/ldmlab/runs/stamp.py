"""The run directory's name, shared by every rank of one launch: ``${run_stamp:}`` in conf/hydra.

Processes started by an external launcher (torchrun, SLURM's srun) each compose their own
config; a per-process clock would give each rank its own run directory. The stamp is the
launch's id where the launcher provides one, so all ranks (and a requeued SLURM job) share it:
``slurm-<job>[.<step>]`` under srun with several tasks, ``torchrun-<rdzv id>`` under torchrun
(``--standalone`` or an explicit ``--rdzv-id``); otherwise the local time
``%Y-%m-%d_%H-%M-%S-%f`` (Lightning's own DDP children get the run dir passed explicitly).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime

from omegaconf import OmegaConf


def run_stamp(environ: Mapping[str, str] = os.environ) -> str:
    if int(environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in environ:
        step = environ.get("SLURM_STEP_ID")
        return f"slurm-{environ['SLURM_JOB_ID']}" + (f".{step}" if step else "")
    run_id = environ.get("TORCHELASTIC_RUN_ID", "none")
    if "LOCAL_WORLD_SIZE" in environ and run_id != "none":
        return f"torchrun-{run_id}"
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")


def register() -> None:
    """Make ``${run_stamp:}`` available to configs (idempotent; one value per process)."""
    OmegaConf.register_new_resolver("run_stamp", lambda: run_stamp(), use_cache=True, replace=True)

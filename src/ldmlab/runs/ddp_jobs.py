"""DDP inside a Hydra multirun: every job's ranks train that job, in that job's directory.

Lightning starts the other local ranks by re-running the command line (plus
``hydra.run.dir=<run.dir>``). Inside ``-m`` that command is the whole sweep, so each child ran
its own multirun into a second sweep directory and paired with the parent's jobs by
coincidence; and Lightning leaves ``LOCAL_RANK`` set in the parent, so the next job took its
processes for externally launched and waited for ranks that never came. ``job_ranks`` makes
the children's command this job alone (the job's own overrides, single-run mode, run dir =
the job's output dir), then closes the process group and restores the environment, so the
next job starts a fresh group with fresh children.

A job may fail and the sweep go on (``ldmlab.runs.multirun``). Lightning's observer of the
children SIGKILLs this process as soon as a child exits non-zero — and a failed job's children
do (a diverged rank exits 2). So when a job ends, its observer is given nothing left to watch
and its children are reaped before the next job starts. (A child that fails alone, mid-job,
still ends the sweep: the other ranks would wait for it in a collective.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from omegaconf import open_dict, read_write

VALUED_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")
SINGLE_RUN = "hydra.mode=RUN"  # a config may set hydra.mode: MULTIRUN (experiment=cfg_sweep_fmnist)
CHILD_EXIT_SECONDS = 60


def job_command(argv: list[str], task_overrides: list[str]) -> list[str]:
    """``argv`` reduced to its config-selection flags, then this job's overrides, in single-run
    mode (no ``-m``, and ``hydra.mode=RUN`` over a config's own ``hydra.mode``)."""
    command, args = [argv[0]], argv[1:]
    for i, arg in enumerate(args):
        if arg in VALUED_FLAGS and i + 1 < len(args):
            command += [arg, args[i + 1]]
        elif arg.split("=", 1)[0] in VALUED_FLAGS and "=" in arg:
            command.append(arg)
    return command + list(task_overrides) + [SINGLE_RUN]


@contextmanager
def job_ranks() -> Iterator[None]:
    """Around ``trainer.fit``: in a multirun, child ranks run this job only (see module doc); the
    process group is destroyed on exit (a no-op where none was started)."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    multirun = hydra is not None and hydra.mode == RunMode.MULTIRUN
    argv, environ = list(sys.argv), dict(os.environ)
    if multirun:  # Hydra sets a fresh hydra node for every job: run.dir needs no restoring
        sys.argv = job_command(argv, list(hydra.overrides.task))
        with read_write(hydra), open_dict(hydra):
            hydra.run.dir = hydra.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        if multirun:
            os.environ.clear()
            os.environ.update(environ)
            retire_observers()


def retire_observers() -> None:
    """Empty the child lists of Lightning's process observers (they then stop quietly), then
    wait for those children to exit (killed after ``CHILD_EXIT_SECONDS``)."""
    children = []
    for thread in threading.enumerate():
        if isinstance(thread, _ChildProcessObserver):
            children += thread._child_processes
            thread._child_processes.clear()  # the launcher's own list: it is done with it too
    for child in children:
        try:
            child.wait(CHILD_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

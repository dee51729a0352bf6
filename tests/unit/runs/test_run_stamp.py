"""The run directory name shared by the ranks of one launch."""

from __future__ import annotations

import re

from ldmlab.runs.stamp import run_stamp


def test_srun_with_several_tasks_uses_the_job_and_step():
    assert run_stamp({"SLURM_NTASKS": "8", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "3"}) == "slurm-77.3"
    assert run_stamp({"SLURM_NTASKS": "8", "SLURM_JOB_ID": "77"}) == "slurm-77"


def test_torchrun_uses_the_rendezvous_id():
    assert run_stamp({"LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "abc"}) == "torchrun-abc"


def test_otherwise_the_local_time():
    for environ in ({}, {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "77"},  # one task: e.g. an sbatch shell
                    {"LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none"}):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}", run_stamp(environ))

"""Artefact writes: complete or absent, per-process temporary names, nothing foreign deleted."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ldmlab.runs.fresh_dir import RunDirTaken, check_fresh, launched_rank
from ldmlab.runs.layout import SUMMARY, in_run, last_checkpoint_of_run, latest_run, update_latest
from ldmlab.runs.layout import resolve_run_checkpoint as resolve
from ldmlab.utils.atomic_output import DiskFullError, atomic_file, temp_beside, write_json, write_text
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.output_dir import atomic_dir, checked_output_dir, foreign_files


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_temp_names_differ_per_call_and_per_process(tmp_path) -> None:
    target = tmp_path / "last.ckpt"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a second process naming a temporary file for the same target
        os.write(write, str(temp_beside(target)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    theirs = os.read(read, 4096).decode()
    ours = {str(temp_beside(target)) for _ in range(100)}
    assert len(ours) == 100 and theirs not in ours
    assert f"-{pid}-" in theirs and all(f"-{os.getpid()}-" in name for name in ours)
    assert all(Path(name).parent == tmp_path and Path(name).suffix == ".ckpt" for name in ours)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = write_text(tmp_path / "summary.json", "old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and leftovers(tmp_path) == []
    write_json(target, {"new": 1})
    assert json.loads(target.read_text()) == {"new": 1} and leftovers(tmp_path) == []


def test_a_full_disk_is_named_and_cleaned_up(tmp_path) -> None:
    target = write_text(tmp_path / "samples.npz", "old")
    with pytest.raises(DiskFullError) as caught, atomic_file(target) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_text() == "old" and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["link", "file", "file_parent"])
def test_unusable_out_is_refused_with_a_working_fix(tmp_path, case) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    value = {"link": tmp_path / "link", "file": tmp_path / "notes.txt",
             "file_parent": tmp_path / "notes.txt" / "export"}[case]
    with pytest.raises(ConfigError) as caught:
        checked_output_dir(value, "out")
    assert caught.value.key == "out" and str(value) in caught.value.problem
    fixed = Path(caught.value.fix.removeprefix("out="))
    assert checked_output_dir(fixed, "out") == fixed and not fixed.exists()
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "real").is_dir()


def build(target: Path, files: dict[str, str], fail: bool = False) -> None:
    with atomic_dir(target, "export.json", "out") as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
        write_json(tmp / "export.json", {"parts": sorted(files)})
        if fail:
            raise RuntimeError("a check failed")


def test_a_folder_is_replaced_only_when_every_file_is_its_own(tmp_path) -> None:
    out = tmp_path / "deep" / "exported"
    build(out, {"vae/config.json": "1", "vae/weights": "w1"})
    manifest = json.loads((out / "export.json").read_text())
    assert set(manifest["files"]) == {"vae/config.json", "vae/weights"}
    assert foreign_files(out, "export.json") == []
    build(out, {"vae/config.json": "2", "unet/weights": "u"})  # nothing foreign: replaced whole
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "export.json", "unet/weights", "vae/config.json"]
    (out / "README.md").write_text("my notes")
    (out / "vae" / "config.json").write_text("edited")
    assert foreign_files(out, "export.json") == ["README.md", "vae/config.json"]
    with pytest.raises(ConfigError) as caught:
        build(out, {"vae/config.json": "3"})
    assert caught.value.key == "out" and "README.md" in caught.value.problem
    assert (out / "README.md").read_text() == "my notes"
    assert (out / "vae" / "config.json").read_text() == "edited"
    assert leftovers(out.parent) == []


def test_a_folder_without_manifest_is_foreign_and_a_failed_build_changes_nothing(tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "export.json").write_text("{}")  # a manifest that vouches for nothing
    (mine / "thesis.tex").write_text("years of work")
    assert foreign_files(mine, "export.json") == ["export.json", "thesis.tex"]
    with pytest.raises(ConfigError):
        build(mine, {"vae/weights": "w"})
    assert (mine / "thesis.tex").read_text() == "years of work"
    out = tmp_path / "new" / "exported"
    with pytest.raises(RuntimeError):
        build(out, {"vae/weights": "w"}, fail=True)
    assert not (tmp_path / "new").exists()  # nor the parents it created
    build(out, {"vae/weights": "w1"})
    with pytest.raises(RuntimeError):
        build(out, {"vae/weights": "w2"}, fail=True)
    assert (out / "vae" / "weights").read_text() == "w1" and leftovers(out.parent) == []


def run_dir(task_dir: Path, name: str) -> Path:
    run = task_dir / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"ckpt")
    write_json(run / SUMMARY, {"status": "completed",
                               "checkpoints": {"last": in_run(run, run / "checkpoints" / "last.ckpt")}})
    return run


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_latest_that_is_not_a_link_is_kept_and_readers_refuse(tmp_path, kind, caplog) -> None:
    task_dir = tmp_path / "train_ldm"
    run = run_dir(task_dir, "A")
    latest = task_dir / "latest"
    if kind == "folder":
        latest.mkdir()
        (latest / "mine.txt").write_text("mine")
    else:
        latest.write_text("mine")
    assert update_latest(task_dir, run) is None and "not ldmlab's link" in caplog.text
    assert (latest / "mine.txt" if kind == "folder" else latest).read_text() == "mine"
    assert leftovers(task_dir) == []
    with pytest.raises(ConfigError) as caught:
        resolve(None, str(tmp_path), "train_ldm", "ckpt", "fix", "trained LDM")
    assert caught.value.key == "ckpt" and f"is a {kind}" in caught.value.problem
    fixed = caught.value.fix.removeprefix("ckpt=")
    assert resolve(fixed, str(tmp_path), "train_ldm", "ckpt", "fix", "x") == run / "checkpoints" / "last.ckpt"


def test_latest_is_a_relative_link_swapped_atomically(tmp_path) -> None:
    task_dir = tmp_path / "train_ae"
    first, second = run_dir(task_dir, "A"), run_dir(task_dir, "B")
    update_latest(task_dir, first)
    update_latest(task_dir, second)
    assert os.readlink(task_dir / "latest") == "runs/B" and latest_run(task_dir, "k").resolve() == second
    assert leftovers(task_dir) == []
    elsewhere = run_dir(tmp_path / "mine", "C")  # hydra.run.dir outside paths.log_dir
    update_latest(tmp_path / "logs" / "sample", elsewhere)
    assert latest_run(tmp_path / "logs" / "sample", "k").resolve() == elsewhere


def test_summary_paths_resolve_where_the_run_dir_is_now(tmp_path) -> None:
    run = run_dir(tmp_path / "train_ae", "A")
    assert json.loads((run / SUMMARY).read_text())["checkpoints"]["last"] == "checkpoints/last.ckpt"
    moved = tmp_path / "elsewhere"
    run.rename(moved)
    assert last_checkpoint_of_run(moved, "ckpt", "fix") == moved / "checkpoints" / "last.ckpt"
    old_style = {"run_dir": str(run), "checkpoints": {"last": str(run / "checkpoints" / "last.ckpt")}}
    write_json(moved / SUMMARY, old_style)  # an absolute summary of a run that has since moved
    assert last_checkpoint_of_run(moved, "ckpt", "fix") == moved / "checkpoints" / "last.ckpt"
    assert in_run(moved, tmp_path / "other.ckpt") == str(tmp_path / "other.ckpt")


def test_a_full_disk_names_the_innermost_output_key(tmp_path) -> None:
    from omegaconf import OmegaConf

    from ldmlab.commands.cli import naming_full_disk

    cfg = OmegaConf.create({"out": str(tmp_path / "export"), "sweep_dir": None,
                            "paths": {"log_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")}})

    def writing(where: Path):
        def run(_):
            raise DiskFullError(errno.ENOSPC, "no space left on the device", str(where))
        return naming_full_disk(run)

    cases = {"out": tmp_path / "export" / "vae", "paths.cache_dir": tmp_path / "cache" / "latents",
             "paths.log_dir": tmp_path / "sample" / "runs" / "a" / "samples.png"}
    for key, where in cases.items():
        with pytest.raises(ConfigError) as caught:
            writing(where)(cfg)
        assert caught.value.key == key and str(where) in caught.value.problem
    with pytest.raises(DiskFullError):  # not under any output folder: not the user's setting
        writing(Path("/elsewhere/file"))(cfg)


def test_a_run_dir_must_be_fresh_unless_a_requeued_job_resumes_its_own(tmp_path) -> None:
    """A folder holding files is never a new run dir (its fix, a free folder, is); ``ckpt_path=auto``
    may go on in a run dir of its own task, and a start of the same command that wrote nothing but
    Hydra's files may be repeated; the ranks of one launch share theirs unchecked."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("task_name: train_ldm\n")
    (run / "checkpoints").mkdir()
    with pytest.raises(RunDirTaken) as taken:
        check_fresh(run, "hydra.run.dir", "train_ldm")
    assert taken.value.error.key == "hydra.run.dir" and ".hydra, checkpoints" in taken.value.error.problem
    assert taken.value.error.fix == f"hydra.run.dir={tmp_path / 'run_2'}"
    check_fresh(tmp_path / "run_2", "hydra.run.dir")  # the fix: missing, then created by Hydra
    (tmp_path / "empty").mkdir()
    check_fresh(tmp_path / "empty", "hydra.run.dir")
    check_fresh(run, "hydra.run.dir", "train_ldm", resumes=True)  # a requeued job: its own run dir
    with pytest.raises(RunDirTaken):
        check_fresh(run, "hydra.run.dir", "train_ae", resumes=True)
    (run / "checkpoints").rmdir()
    (run / "train_ldm.log").write_text("")
    check_fresh(run, "hydra.run.dir", "train_ldm")  # only Hydra's files of a failed start
    with pytest.raises(RunDirTaken):
        check_fresh(run, "hydra.run.dir", "sample")
    (tmp_path / "file").write_text("mine")
    for bad in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(RunDirTaken):
            check_fresh(bad, "hydra.sweep.dir")
    assert (tmp_path / "file").read_text() == "mine"
    assert launched_rank({"LOCAL_RANK": "1"}) and launched_rank({"RANK": "0"})
    assert launched_rank({"SLURM_NTASKS": "2"}) and not launched_rank({"SLURM_NTASKS": "1"})


def test_sigterm_while_writing_leaves_no_temporary(tmp_path) -> None:
    """SIGTERM (a time limit, ``kill``) in the middle of writing a file or building a folder: exit
    143, the temporaries removed, the earlier file intact; a handler someone installed is kept."""
    (tmp_path / "old.txt").write_text("earlier")
    script = f"""if True:
        import os, signal
        from pathlib import Path
        from ldmlab.utils.atomic_output import atomic_file
        from ldmlab.utils.output_dir import atomic_dir
        folder = Path({str(tmp_path)!r})
        with atomic_file(folder / "old.txt") as tmp:
            tmp.write_text("half")
            if os.environ["WHERE"] == "dir":
                with atomic_dir(folder / "export", "export.json", "out") as build:
                    (build / "weights").write_bytes(bytes(1000))
                    os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
    """
    for where in ("file", "dir"):
        out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "WHERE": where},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 143, out.stderr[-2000:]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]
        assert (tmp_path / "old.txt").read_text() == "earlier"
    handled = "import signal; signal.signal(signal.SIGTERM, lambda *a: print('own handler'))\n"
    out = subprocess.run([sys.executable, "-c", handled + script], env={**os.environ, "WHERE": "file"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.count("own handler") == 1
    assert (tmp_path / "old.txt").read_text() == "half"  # the block went on: its writer's handler decided

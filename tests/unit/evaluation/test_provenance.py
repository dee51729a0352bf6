"""`make report` never mixes provenance silently: jobs or evaluate runs whose scores were measured
on different sample/reference counts, references, feature networks or versions are refused
together (one line naming allow_mixed_provenance and the values), reported with a note when
allowed; the provenance is stated above every table, ``unknown`` for rows written before it."""

from __future__ import annotations

import json

import pytest
import yaml

from ldmlab.commands.report import report
from ldmlab.evaluation.aggregate import write_report
from ldmlab.evaluation.compare import write_comparison
from ldmlab.evaluation.provenance import describe, differing, provenance_lines
from ldmlab.evaluation.table import read_csv, write_csv
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config

PROV = {"num_samples": 300, "num_reference": 1000, "reference": "fashion_mnist/test[:1000]",
        "feature_networks": "inception-v3/pool3@0123abcd", "ldmlab_version": "0.1.0"}
LINE = ("N = 300 samples vs 1000 references (fashion_mnist/test[:1000]), features "
        "inception-v3/pool3@0123abcd; NFE {nfe}; ldmlab 0.1.0")
OLD = "N = unknown samples vs unknown references (unknown), features unknown; NFE unknown; ldmlab unknown"


def job(sweep_dir, name, seed, fids, **provenance):
    """A job dir whose sweep CSV has two DDIM step counts (NFE 10 and 50) per scale."""
    (sweep_dir / name / ".hydra").mkdir(parents=True)
    (sweep_dir / name / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"seed": seed, "conditioner": {"p_uncond": 0.1}}))
    rows = [{"guidance_scale": s, "w": s - 1, "sampler": "ddim", "sampler.steps": steps, **provenance,
             **({"nfe": steps} if provenance else {}), "fid_x": fid + 10 / steps, "is_x": 10 - fid}
            for s, fid in zip((1.0, 3.0), fids, strict=True) for steps in (10, 50)]
    write_csv(rows, sweep_dir / name / "guidance_sweep" / "sweep_epoch000.csv")


def test_lines_state_the_provenance_and_compare_all_but_nfe():
    rows = [{**PROV, "nfe": 10}, {**PROV, "num_samples": 300.0, "nfe": 50.0}]  # 300.0: read from a CSV
    assert differing(rows) == {}
    assert provenance_lines(rows, False, "t") == [LINE.format(nfe="10 | 50")]
    assert describe([{"guidance_scale": 1.0}]) == OLD
    other = [*rows, {**PROV, "num_samples": 1000, "ldmlab_version": "0.2.0"}, {"fid_x": 1.0}]
    assert differing(other) == {"num_samples": ["300", "1000", "unknown"],
                                "num_reference": ["1000", "unknown"],
                                "reference": ["fashion_mnist/test[:1000]", "unknown"],
                                "feature_networks": ["inception-v3/pool3@0123abcd", "unknown"],
                                "ldmlab_version": ["0.1.0", "0.2.0", "unknown"]}
    with pytest.raises(ConfigError) as refused:
        provenance_lines(other, False, "the report of X")
    assert str(refused.value).startswith(
        "allow_mixed_provenance: the report of X would put scores of different provenance in one column: "
        "num_samples 300 vs 1000 vs unknown; ")
    assert "\n" not in str(refused.value) and refused.value.fix.startswith("allow_mixed_provenance=true")
    lines = provenance_lines(other, True, "the report of X")
    assert lines[0].startswith("N = 300 | 1000 | unknown samples") and lines[1].startswith(
        "Mixed provenance (allow_mixed_provenance=true): num_samples 300 vs 1000 vs unknown; ")


def test_report_of_one_provenance_states_it_above_the_table(tmp_path):
    job(tmp_path, "0", 1, [4.0, 3.0], **PROV)
    job(tmp_path, "1", 2, [6.0, 5.0], **PROV)
    paths = write_report(tmp_path, ["conditioner.p_uncond"])
    markdown = paths["markdown"].read_text().splitlines()
    assert markdown[:3] == [LINE.format(nfe="10 | 50"), "",
                            "| p_uncond | steps | s | w | seeds | fid_x | is_x |"]
    assert markdown[4] == "| 0.1 | 10 | 1 | 0 | 2 | 6 ± 1.4 | 5 ± 1.4 |" and len(markdown) == 8
    rows = read_csv(paths["csv"])
    assert [(r["sampler.steps"], r["nfe"], r["num_samples"], r["reference"]) for r in rows][:2] == [
        (10, 10, 300, "fashion_mnist/test[:1000]"), (50, 50, 300, "fashion_mnist/test[:1000]")]


def test_report_refuses_jobs_of_different_sample_counts_unless_allowed(tmp_path):
    job(tmp_path, "0", 1, [4.0, 3.0], **PROV)
    job(tmp_path, "1", 2, [6.0, 5.0], **{**PROV, "num_samples": 1000})
    with pytest.raises(ConfigError, match=r"^allow_mixed_provenance: the report of .* num_samples 300 vs "
                                          r"1000\. Fix: allow_mixed_provenance=true"):
        report(compose_config("report", [f"sweep_dir={tmp_path}"]))
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "report.csv").exists()
    paths = report(compose_config("report", [f"sweep_dir={tmp_path}", "allow_mixed_provenance=true"]))
    markdown = paths["markdown"].read_text().splitlines()
    assert markdown[0].startswith("N = 300 | 1000 samples vs 1000 references")
    assert markdown[2] == ("Mixed provenance (allow_mixed_provenance=true): num_samples 300 vs 1000; "
                           "each row's is in its columns.")
    assert markdown[4] == "| p_uncond | steps | num_samples | s | w | seeds | fid_x | is_x |"
    assert "| 0.1 | 10 | 300 | 1 | 0 | 1 | 5 | 6 |" in markdown  # job 0 alone: no seed mean across N
    assert "| 0.1 | 10 | 1000 | 1 | 0 | 1 | 7 | 4 |" in markdown
    assert {r["num_samples"] for r in read_csv(paths["csv"])} == {300, 1000}


def test_old_sweeps_without_provenance_still_report_as_unknown_but_not_with_new_ones(tmp_path):
    job(tmp_path, "0", 1, [4.0, 3.0])
    job(tmp_path, "1", 2, [6.0, 5.0])
    paths = write_report(tmp_path, ["conditioner.p_uncond"])
    markdown = paths["markdown"].read_text().splitlines()
    assert markdown[0] == OLD and markdown[4] == "| 0.1 | 10 | 1 | 0 | 2 | 6 ± 1.4 | 5 ± 1.4 |"
    assert "num_samples" not in read_csv(paths["csv"])[0]
    job(tmp_path, "2", 3, [5.0, 4.0], **PROV)
    with pytest.raises(ConfigError, match=r"num_samples unknown vs 300; num_reference unknown vs 1000; "):
        write_report(tmp_path, ["conditioner.p_uncond"])


def evaluate_run(root, name, rows, **summary_level):
    run = root / name
    run.mkdir(parents=True)
    summary = {"task": "evaluate", "checkpoint": f"/logs/train_ldm/runs/{name}/checkpoints/last.ckpt",
               "guidance": {"name": "cfg"}, "rows": rows, **summary_level}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_comparison_refuses_runs_of_different_references_and_reads_old_summaries(tmp_path):
    rows = [{"guidance": "cfg", "guidance_scale": s, "fid_x": f, "is_x": i} for s, f, i in ((1, 9.0, 3.0),
                                                                                         (3, 6.0, 5.0))]
    new = evaluate_run(tmp_path, "new", [{**r, **PROV, "nfe": 50} for r in rows])
    other = evaluate_run(tmp_path, "other", [{**r, **PROV, "reference": "celeba/test[:1000]", "nfe": 50}
                                             for r in rows])
    with pytest.raises(ConfigError, match=r"^allow_mixed_provenance: the comparison .*: reference "
                                          r"fashion_mnist/test\[:1000\] vs celeba/test\[:1000\]\. Fix"):
        write_comparison([new, other], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    paths = write_comparison([new, other], tmp_path / "out", allow_mixed_provenance=True)
    markdown = paths["markdown"].read_text().splitlines()
    assert markdown[2].startswith("Mixed provenance (allow_mixed_provenance=true): reference ")
    assert markdown[4] == "| run | guidance | reference | s | seeds | fid_x | is_x |"
    assert markdown[6] == "| cfg · new | cfg | fashion_mnist/test[:1000] | 1 | 1 | 9 | 3 |"
    assert paths["frontier"].is_file()
    # an old summary: counts and reference at its top level only, no features, NFE or version
    old = evaluate_run(tmp_path, "old", rows, num_samples=300, num_reference=1000,
                       reference=PROV["reference"])
    paths = write_comparison([old], tmp_path / "old_out")
    assert paths["markdown"].read_text().startswith(
        "N = 300 samples vs 1000 references (fashion_mnist/test[:1000]), features unknown; NFE unknown; "
        "ldmlab unknown\n\n| run | guidance | s | seeds | fid_x | is_x |\n")
    same = evaluate_run(tmp_path, "same", [{**r, **PROV, "nfe": 20} for r in rows])
    paths = write_comparison([new, same], tmp_path / "same_out")  # only the NFE differs: one provenance
    assert paths["markdown"].read_text().startswith(LINE.format(nfe="50 | 20") + "\n\n| run | guidance | s |")

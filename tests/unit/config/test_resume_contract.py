"""The resume contract on composed configs: what may change, what follows what it interpolates,
what an opt-in covers; and the data order when the batch size or number of ranks changes."""

from __future__ import annotations

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from ldmlab.config.resume_contract import ResumePoint, check_config, check_world_size
from ldmlab.data.resumable_sampler import ResumableSampler
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config


@pytest.fixture(autouse=True)
def _no_hydra_config_left():
    """``task`` sets the global HydraConfig; later tests of this worker must not resolve with it."""
    yield
    HydraConfig.instance().cfg = None


def point(overrides: list[str], world_size: int | None = 1) -> ResumePoint:
    stored = OmegaConf.to_container(task(overrides), resolve=True)
    return ResumePoint("run/checkpoints/last.ckpt", stored, {}, world_size)


def task(overrides: list[str]):
    """The task config as ``fit`` gets it (unresolved; Hydra's node as the global HydraConfig)."""
    cfg = compose_config("train_classifier", overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def refusal(stored: list[str], new: list[str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        check_config(point(stored), task(new))
    return caught.value


def test_length_loudness_and_places_may_change():
    new = ["trainer.max_steps=50", "trainer.limit_val_batches=2", "trainer.log_every_n_steps=1",
           "logger=csv", "paths.log_dir=/elsewhere", "data.num_workers=2", "ckpt_path=last",
           "callbacks.last_checkpoint.every_n_train_steps=7"]
    assert check_config(point([]), task(new)) == []


def test_anything_else_is_refused_naming_only_the_keys_that_were_set():
    err = refusal([], ["module.optimizer.lr=1e-7", "trainer.precision=bf16-mixed"])
    assert err.key == "ckpt_path"
    # module.scheduler.max_lr: ${..optimizer.lr} follows its source and is not listed
    assert "module.optimizer.lr 0.003 → 1e-07, trainer.precision 32-true → bf16-mixed" in err.problem
    assert "max_lr" not in str(err)
    assert "module.optimizer.lr=0.003 trainer.precision=32-true" in err.fix
    assert "resume_changes=[module.optimizer.lr,trainer.precision]" in err.fix


def test_a_whole_node_interpolated_elsewhere_is_judged_at_its_source():
    err = refusal([], ["classifier.widths=[8,32]"])
    assert "classifier.widths [16,32,64] → [8,32]" in err.problem and "module.network" not in str(err)


def test_a_stored_interpolation_is_refused_never_shown_or_suggested(monkeypatch):
    """A checkpoint's config holding ``${oc.env:SECRET}`` (training stores it resolved): refused in
    one line without the value; a refusal listing it would suggest it as a fix, which Hydra would
    then resolve into the new run's config (and show in the next error)."""
    monkeypatch.setenv("LDMLAB_TEST_SECRET", "hunter2")
    stored = OmegaConf.to_container(task([]), resolve=True)
    for where in ("data", "callbacks"):
        crafted = {**stored, where: {**stored[where], "x": ["a", "${oc.env:LDMLAB_TEST_SECRET}"]}}
        checkpoint = {"ldmlab_config": crafted, "state_dict": {}}
        refused = rf"^ckpt_path: c.ckpt stores an interpolation at {where}.x "
        with pytest.raises(ConfigError, match=refused) as err:
            ResumePoint.of("c.ckpt", checkpoint, "ldmlab_config", "world_size")
        assert "${" not in str(err.value) and "hunter2" not in str(err.value)
    assert ResumePoint.of("c.ckpt", {"ldmlab_config": stored}, "ldmlab_config", "w").config == stored


def test_many_changes_are_truncated_and_point_at_the_run_overrides():
    err = refusal([], ["seed=1", "data.batch_size=8", "module.augment=false", "module.max_shift=3",
                       "module.label_smoothing=0.1", "data.split_seed=4", "data.val_size=100"])
    assert "and 2 more" in err.problem and "overrides.yaml" in err.fix


def test_an_opt_in_covers_its_keys_and_must_have_changed():
    assert check_config(point([]), task(["module.optimizer.lr=1e-4", "resume_changes=[module.optimizer]"])) \
        == ["module.optimizer"]
    with pytest.raises(ConfigError, match="resume_changes: data.batch_size is opted in but does not differ"):
        check_config(point([]), task(["resume_changes=[data.batch_size]"]))


def test_the_number_of_ranks_needs_its_own_opt_in():
    with pytest.raises(ConfigError, match="written by 2 rank"):
        check_world_size(point([], world_size=2), 1, [])
    check_world_size(point([], world_size=2), 1, ["world_size"])
    check_world_size(point([], world_size=None), 4, [])  # a checkpoint that does not say
    with pytest.raises(ConfigError, match="world_size is opted in but"):
        check_world_size(point([]), 1, ["world_size"])


def shards(world: int, epoch_skip: int = 0) -> list[list[tuple[int, int]]]:
    out = []
    for rank in range(world):
        sampler = ResumableSampler(50, seed=3, epoch=2)
        sampler.rank, sampler.world = rank, world
        sampler.resume(2, epoch_skip)
        out.append(list(sampler))
    return out


@pytest.mark.parametrize(("world", "batch", "new_world"), [(2, 4, 2), (2, 4, 3), (1, 8, 4), (4, 2, 1)])
def test_a_resume_continues_the_global_order_at_the_next_sample(world, batch, new_world):
    """k batches per rank consumed the first k·batch·world pairs of the epoch's global order;
    the resumed shards (any number of ranks) hold exactly the rest, padded by < new_world."""
    whole = [pair for rank_pairs in zip(*shards(world), strict=True) for pair in rank_pairs][:50]
    consumed = 3 * batch * world
    before = sorted(p for rank in shards(world) for p in rank[: 3 * batch])
    assert before == sorted(whole[:consumed])
    after = shards(new_world, consumed)
    assert len({len(rank) for rank in after}) == 1
    interleaved = [pair for rank_pairs in zip(*after, strict=True) for pair in rank_pairs]
    assert interleaved[: 50 - consumed] == whole[consumed:]
    assert len(interleaved) - (50 - consumed) < new_world

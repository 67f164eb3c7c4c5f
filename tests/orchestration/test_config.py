"""The typed config: every preset loads, mistakes name their field, overrides apply."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from base.typed_config import ConfigError, check, describe, from_dict, option
from orchestration.config import CONFIGS_DIR, ProjectConfig, load_config, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name: str):
    cfg = load_config(name)
    assert isinstance(cfg, ProjectConfig)
    assert load_config(CONFIGS_DIR / f"{name}.yaml") == cfg


def test_the_presets_the_readme_names_exist():
    assert {"default", "full", "tiny"} <= set(preset_names())


def test_overrides_are_typed():
    cfg = load_config("tiny", ["data.eval_fraction=0.25", "data.augment_keys=true", "data.sources=[music21, /x]"])
    assert cfg.data.eval_fraction == 0.25 and cfg.data.augment_keys is True
    assert cfg.data.sources == ["music21", "/x"]
    # YAML reads a bare yes / no as a boolean; a yes / no / auto setting still gets its word
    cfg = load_config("tiny", ["cluster.use_gpu=no", "campaign.overlap_scoring=yes"])
    assert cfg.cluster.use_gpu == "no" and cfg.campaign.overlap_scoring == "yes"


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.eval_fraction=1.5", "data.eval_fraction: must be in [0, 1)"),
        ("data.workers=many", "data.workers: expected an integer"),
        ("data.augment_keys=maybe", "data.augment_keys: expected true or false"),
        ("data.evel_fraction=0.1", "data.evel_fraction: unknown field (did you mean 'eval_fraction'?)"),
        ("dta.x=1", "dta: unknown field"),
        ("data.collection_limits.bach=0", "data.collection_limits.bach: must be > 0"),
        ("data.sources=[]", "data.sources: name at least one source"),
        ("data.unit_length=3", "data.unit_length: must be a power of two"),
        ("dpo.beta=.inf", "dpo.beta: expected a finite number"),
        ("dpo.lr=.nan", "dpo.lr: expected a finite number"),
        ("campaign.rounds=1e23", "campaign.rounds: expected an integer"),
        ("campaign.weight_channel=nccl", "campaign.weight_channel: must be auto, object_store or broadcast"),
    ],
)
def test_bad_values_name_the_field(override: str, message: str):
    with pytest.raises(ConfigError) as err:
        load_config("default", [override])
    assert str(err.value).startswith(message)


def test_bad_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such file and no such preset"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_nested_dataclasses_and_help():
    @dataclass
    class Inner:
        n: int = option(1, help="a count")

        def __post_init__(self):
            check(self.n > 0, "n", "must be positive")

    @dataclass
    class Outer:
        inner: Inner = option(default_factory=Inner, help="inner section")

    assert from_dict(Outer, {"inner": {"n": "3"}}).inner.n == 3
    with pytest.raises(ConfigError, match=r"^inner\.n: must be positive"):
        from_dict(Outer, {"inner": {"n": -1}})
    assert ("inner.n", "1", "a count") in describe(Outer)
    assert all(help_text for _, _, help_text in describe(ProjectConfig))  # every field explains itself

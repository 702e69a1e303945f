from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from t2igan.config import (
    ConfigBase,
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
    merge_dicts,
    save_config,
    to_dict,
)


@dataclass
class TrainCfg(ConfigBase):
    lr_g: float = 1e-4
    batch_size: int = 24
    betas: tuple[float, float] = (0.0, 0.9)
    mode: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=list)
    device: str | None = None


@dataclass
class RunCfg(ConfigBase):
    name: str = "x"
    train: TrainCfg = field(default_factory=TrainCfg)


@dataclass
class LossCfg:
    weights: dict[str, float] = field(default_factory=dict)
    sizes: tuple[int, ...] = (64, 128)
    extra: Any = None
    use_ema: bool = True


@dataclass
class NeedsCfg:
    root: str
    loss: LossCfg = field(default_factory=LossCfg)


@dataclass
class PositiveCfg:
    n: int = 1

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError(f"n must be positive, got {self.n}")


@dataclass
class BadUnionCfg:
    x: int | str = 1


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------------------------------- from_dict


def test_from_dict_missing_keys_take_defaults_and_types_normalise():
    cfg = from_dict(RunCfg, {"train": {"lr_g": 2, "betas": [0.5, 0.999], "tags": ("a", "b")}})
    assert cfg == RunCfg(train=TrainCfg(lr_g=2.0, betas=(0.5, 0.999), tags=["a", "b"]))
    assert isinstance(cfg.train.lr_g, float)
    assert isinstance(cfg.train.betas, tuple)
    assert isinstance(cfg.train.tags, list)


def test_unknown_nested_key_names_dotted_key_and_sorted_valid_keys():
    with pytest.raises(ConfigError) as ei:
        from_dict(RunCfg, {"train": {"lrg": 1.0}}, source="run.yaml")
    assert _message(ei) == (
        "run.yaml: unknown key 'train.lrg'; valid keys: batch_size, betas, device, lr_g, mode, tags"
    )


def test_unknown_top_level_key_without_source_says_dict():
    with pytest.raises(ConfigError, match=r"^<dict>: unknown key 'nme'; valid keys: name, train$"):
        from_dict(RunCfg, {"nme": "y"})


@pytest.mark.parametrize("bad", ["3", True, 3.0, None])
def test_int_field_rejects_str_bool_float_and_none(bad):
    with pytest.raises(ConfigError) as ei:
        from_dict(RunCfg, {"train": {"batch_size": bad}}, source="run.yaml")
    msg = _message(ei)
    assert msg.startswith("run.yaml: train.batch_size: expected int, got ")
    assert type(bad).__name__ in msg and repr(bad) in msg


def test_wrong_type_message_format():
    with pytest.raises(ConfigError) as ei:
        from_dict(RunCfg, {"train": {"batch_size": "abc"}}, source="run.yaml")
    assert _message(ei) == "run.yaml: train.batch_size: expected int, got str 'abc'"


def test_float_field_rejects_bool_and_str():
    with pytest.raises(ConfigError, match=r"train\.lr_g: expected float, got bool True"):
        from_dict(RunCfg, {"train": {"lr_g": True}})
    with pytest.raises(ConfigError, match=r"train\.lr_g: expected float, got str '1e-4'"):
        from_dict(RunCfg, {"train": {"lr_g": "1e-4"}})


def test_bool_field_accepts_only_real_bools():
    assert from_dict(LossCfg, {"use_ema": False}).use_ema is False
    with pytest.raises(ConfigError, match=r"use_ema: expected bool, got int 1"):
        from_dict(LossCfg, {"use_ema": 1})


def test_literal_rejection_lists_allowed_values():
    with pytest.raises(ConfigError) as ei:
        from_dict(RunCfg, {"train": {"mode": "c"}}, source="run.yaml")
    assert _message(ei) == "run.yaml: train.mode: expected one of 'a', 'b', got 'c'"


def test_optional_field_accepts_none_and_checks_inner_type():
    assert from_dict(TrainCfg, {"device": None}).device is None
    assert from_dict(TrainCfg, {"device": "cuda:0"}).device == "cuda:0"
    with pytest.raises(ConfigError, match=r"device: expected str or None, got int 0"):
        from_dict(TrainCfg, {"device": 0})


def test_list_elements_are_checked_with_index_in_key():
    with pytest.raises(ConfigError, match=r"train\.tags\[1\]: expected str, got int 2"):
        from_dict(RunCfg, {"train": {"tags": ["a", 2]}})
    with pytest.raises(ConfigError, match=r"train\.tags: expected list\[str\], got str 'abc'"):
        from_dict(RunCfg, {"train": {"tags": "abc"}})


def test_fixed_tuple_length_and_variadic_tuple():
    with pytest.raises(ConfigError, match=r"train\.betas: .*2 items, got 3"):
        from_dict(RunCfg, {"train": {"betas": [0.1, 0.2, 0.3]}})
    assert from_dict(LossCfg, {"sizes": [4, 8, 16]}).sizes == (4, 8, 16)
    with pytest.raises(ConfigError, match=r"sizes\[2\]: expected int, got float 1\.5"):
        from_dict(LossCfg, {"sizes": [4, 8, 1.5]})


def test_dict_values_are_converted_and_checked():
    cfg = from_dict(LossCfg, {"weights": {"l1": 1, "kl": 0.5}})
    assert cfg.weights == {"l1": 1.0, "kl": 0.5} and isinstance(cfg.weights["l1"], float)
    with pytest.raises(ConfigError, match=r"weights\.kl: expected float, got str 'x'"):
        from_dict(LossCfg, {"weights": {"kl": "x"}})


def test_any_field_accepts_anything():
    assert from_dict(LossCfg, {"extra": {"free": [1, "x"]}}).extra == {"free": [1, "x"]}


def test_missing_required_key_and_non_mapping_data():
    with pytest.raises(ConfigError, match=r"^<dict>: missing required key 'root'$"):
        from_dict(NeedsCfg, {})
    with pytest.raises(ConfigError, match=r"^cfg\.yaml: expected a mapping for RunCfg, got list"):
        from_dict(RunCfg, [1, 2], source="cfg.yaml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^<dict>: train: expected a mapping for TrainCfg, got int 5$"):
        from_dict(RunCfg, {"train": 5})


def test_post_init_value_error_becomes_config_error():
    with pytest.raises(ConfigError, match=r"^p\.json: PositiveCfg: n must be positive, got 0$"):
        from_dict(PositiveCfg, {"n": 0}, source="p.json")


def test_unsupported_union_raises_type_error_naming_field():
    with pytest.raises(TypeError, match="field 'x'"):
        from_dict(BadUnionCfg, {"x": 1})


def test_to_dict_is_plain_and_round_trips():
    cfg = RunCfg(
        name="run1", train=TrainCfg(lr_g=3e-4, betas=(0.5, 0.99), mode="b", tags=["t"], device="cpu")
    )
    data = to_dict(cfg)
    assert data == {
        "name": "run1",
        "train": {
            "lr_g": 3e-4,
            "batch_size": 24,
            "betas": [0.5, 0.99],
            "mode": "b",
            "tags": ["t"],
            "device": "cpu",
        },
    }
    assert list(data["train"]) == ["lr_g", "batch_size", "betas", "mode", "tags", "device"]
    assert json.loads(json.dumps(data)) == data
    assert from_dict(RunCfg, data) == cfg
    loss = LossCfg(weights={"a": 1.0}, sizes=(1, 2, 3), extra={"k": (1, 2)})
    assert from_dict(LossCfg, to_dict(loss)) == LossCfg(
        weights={"a": 1.0}, sizes=(1, 2, 3), extra={"k": [1, 2]}
    )


def test_to_dict_rejects_non_dataclass():
    with pytest.raises(TypeError):
        to_dict({"a": 1})


# --------------------------------------------------------------------------------------------------- files


def test_load_yaml_with_exponent_float_and_nested_values(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("name: exp\ntrain:\n  lr_g: 1e-4\n  betas: [0.5, 0.999]\n  mode: b\n", encoding="utf-8")
    cfg = load_config(path, RunCfg)
    assert cfg == RunCfg(name="exp", train=TrainCfg(lr_g=1e-4, betas=(0.5, 0.999), mode="b"))
    assert isinstance(cfg.train.lr_g, float)


def test_load_json(tmp_path: Path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"train": {"batch_size": 8, "tags": ["x"]}}), encoding="utf-8")
    assert load_config(path, RunCfg) == RunCfg(train=TrainCfg(batch_size=8, tags=["x"]))


def test_load_error_names_the_file_and_dotted_key(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lrg: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(path, RunCfg)
    assert _message(ei).startswith(f"{path}: unknown key 'train.lrg'; valid keys: batch_size, betas,")


@pytest.mark.parametrize(
    ("name", "text"), [("empty.yaml", ""), ("comment.yaml", "# nothing yet\n"), ("e.json", "\n")]
)
def test_empty_file_gives_defaults(tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert load_config(path, RunCfg) == RunCfg()


def test_missing_file_is_config_error_naming_path(tmp_path: Path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as ei:
        load_config(path, RunCfg)
    assert str(path) in _message(ei) and "not found" in _message(ei)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: ok\ntrain:\n  lr_g: [0.1, 0.2\n  batch_size: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(path, RunCfg)
    msg = _message(ei)
    assert msg.startswith(f"{path}: invalid YAML at line ")
    assert "line 4" in msg


def test_yaml_duplicate_key_is_rejected_with_line(tmp_path: Path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\ntrain: {}\nname: b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"invalid YAML at line 3, .*duplicate key 'name'"):
        load_config(path, RunCfg)


def test_json_syntax_error_names_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "name": "a",\n  "train": {"lr_g": 0.1,}\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(path, RunCfg)
    assert _message(ei).startswith(f"{path}: invalid JSON at line 3")


def test_unsupported_extension(tmp_path: Path):
    path = tmp_path / "run.toml"
    path.write_text("name = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"run\.toml.*extension"):
        load_config(path, RunCfg)
    with pytest.raises(ConfigError, match="extension"):
        save_config(RunCfg(), tmp_path / "out.txt")


@pytest.mark.parametrize("name", ["run.yaml", "run.yml", "run.json"])
def test_save_then_load_is_equal(tmp_path: Path, name: str):
    cfg = RunCfg(
        name="é", train=TrainCfg(lr_g=1e-10, betas=(0.25, 0.5), mode="b", tags=["x", "yes"], device=None)
    )
    path = tmp_path / "sub" / name
    save_config(cfg, path)
    assert load_config(path, RunCfg) == cfg
    text = path.read_text(encoding="utf-8")
    assert text.index("name") < text.index("train") < text.index("lr_g") < text.index("batch_size")
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary file left behind


# --------------------------------------------------------------------------------------------------- overrides


def test_override_parses_values_and_fixes_exponent_floats():
    out = apply_overrides(
        {},
        [
            "train.lr_g=1e-4",
            "train.batch_size=3",
            "train.tags=[a, b]",
            "train.device=null",
            "train.mode=b",
            "name=2017",
        ],
        RunCfg,
    )
    assert out == {
        "name": "2017",
        "train": {"lr_g": 1e-4, "batch_size": 3, "tags": ["a", "b"], "device": None, "mode": "b"},
    }
    assert isinstance(out["train"]["lr_g"], float)
    assert from_dict(RunCfg, out, source="<override>").train.lr_g == 1e-4


def test_override_float_fix_for_non_yaml_float_strings():
    out = apply_overrides({}, ["train.lr_g=inf"], RunCfg)
    assert out["train"]["lr_g"] == float("inf")


def test_override_bool_and_dict_values():
    out = apply_overrides({}, ["loss.use_ema=false", "loss.weights.l1=2", "root=/data"], NeedsCfg)
    cfg = from_dict(NeedsCfg, out)
    assert cfg.loss.use_ema is False
    assert cfg.loss.weights == {"l1": 2.0}
    assert cfg.root == "/data"


def test_override_does_not_mutate_input_and_keeps_siblings():
    base = {"name": "a", "train": {"batch_size": 8, "tags": ["x"]}}
    out = apply_overrides(base, ["train.lr_g=0.5"], RunCfg)
    assert base == {"name": "a", "train": {"batch_size": 8, "tags": ["x"]}}
    assert out == {"name": "a", "train": {"batch_size": 8, "tags": ["x"], "lr_g": 0.5}}
    out["train"]["tags"].append("y")
    assert base["train"]["tags"] == ["x"]


def test_override_unknown_key_lists_valid_keys_at_that_level():
    with pytest.raises(ConfigError) as ei:
        apply_overrides({}, ["train.lrg=1"], RunCfg)
    assert _message(ei) == (
        "<override>: unknown key 'train.lrg'; valid keys: batch_size, betas, device, lr_g, mode, tags"
    )
    with pytest.raises(ConfigError, match=r"unknown key 'trian'; valid keys: name, train$"):
        apply_overrides({}, ["trian.lr_g=1"], RunCfg)


def test_override_without_equals_or_into_a_scalar_is_error():
    with pytest.raises(ConfigError, match=r"<override>: expected 'dotted\.key=value', got 'train\.lr_g'"):
        apply_overrides({}, ["train.lr_g"], RunCfg)
    with pytest.raises(ConfigError, match=r"'train\.lr_g' is float, not a nested config"):
        apply_overrides({}, ["train.lr_g.x=1"], RunCfg)


def test_override_wrong_type_is_caught_by_from_dict():
    out = apply_overrides({}, ["train.batch_size=abc"], RunCfg)
    with pytest.raises(ConfigError, match=r"^<override>: train\.batch_size: expected int, got str 'abc'$"):
        from_dict(RunCfg, out, source="<override>")


def test_merge_dicts_is_deep_and_pure():
    base = {"a": 1, "n": {"x": 1, "y": {"z": 2}}, "l": [1]}
    update = {"n": {"y": {"w": 3}}, "l": [2], "b": 4}
    out = merge_dicts(base, update)
    assert out == {"a": 1, "n": {"x": 1, "y": {"z": 2, "w": 3}}, "l": [2], "b": 4}
    assert base == {"a": 1, "n": {"x": 1, "y": {"z": 2}}, "l": [1]}
    out["n"]["x"] = 9
    assert base["n"]["x"] == 1


# --------------------------------------------------------------------------------------------------- mixin


def test_config_base_methods(tmp_path: Path):
    cfg = RunCfg.from_dict({"train": {"batch_size": 4}}, source="x")
    assert cfg.train.batch_size == 4
    assert cfg.to_dict()["train"]["betas"] == [0.0, 0.9]
    changed = cfg.replace(name="y")
    assert changed == RunCfg(name="y", train=TrainCfg(batch_size=4)) and cfg.name == "x"
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected int, got str"):
        cfg.replace(train=TrainCfg(batch_size="8"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"unknown key 'nme'"):
        cfg.replace(nme="z")
    path = tmp_path / "cfg.yaml"
    changed.save(path)
    assert RunCfg.load(path) == changed

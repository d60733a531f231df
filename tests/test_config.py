"""The config model: defaults, and one-line errors naming the file, line and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segmentation.config import Config, KRule, Scaling, load_config, parse_config
from segmentation.errors import ConfigError, DataError, DataUnavailableError, SegmentationError

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


def test_defaults_match_the_repo_config_yaml() -> None:
    assert parse_config(REPO_CONFIG.read_text(encoding="utf-8")) == Config()


def test_empty_config_gives_the_defaults() -> None:
    assert parse_config("") == Config()


def test_values_are_read() -> None:
    config = parse_config(
        "features: [age, gender]\nscaling: minmax\nselect_k:\n  rule: elbow\ncluster:\n  k: 4\n"
    )
    assert (config.features, config.scaling, config.select_k.rule, config.cluster.k) == (
        ("age", "gender"),
        Scaling.MINMAX,
        KRule.ELBOW,
        4,
    )


def test_unknown_key_names_the_key_and_its_line() -> None:
    text = "data:\n  path: x.csv\nselect_k:\n  k_mx: 5\n"
    with pytest.raises(ConfigError, match=r"^config\.yaml:4: select_k\.k_mx: unknown key"):
        parse_config(text)


def test_unknown_top_level_key_names_the_key_and_its_line() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:2: featurs: unknown key"):
        parse_config("scaling: none\nfeaturs: [age]\n")


def test_string_for_an_integer_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml:2: select_k\.k_min: .*valid integer"):
        parse_config("select_k:\n  k_min: '3'\n")


def test_boolean_for_an_integer_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml:3: cluster\.seed: .*valid integer"):
        parse_config("cluster:\n  n_init: 5\n  seed: true\n")


def test_number_out_of_bounds_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"cluster\.k: .*greater than or equal to 2"):
        parse_config("cluster:\n  k: 1\n")


def test_unknown_feature_is_named() -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml:1: features: unknown feature 'height'"):
        parse_config("features: [age, height]\n")


def test_feature_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="only once"):
        parse_config("features: [age, age]\n")


def test_empty_feature_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        parse_config("features: []\n")


def test_k_min_above_k_max_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"config\.yaml:1: select_k: k_min \(6\) must not exceed k_max \(3\)"
    ):
        parse_config("select_k:\n  k_min: 6\n  k_max: 3\n")


def test_invalid_yaml_names_line_and_column() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:3:7: invalid YAML"):
        parse_config("data:\n  path: x\n   url: y\n")


def test_unknown_scaling_lists_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"scaling: .*'standard'.*got 'zscore'"):
        parse_config("scaling: zscore\n")


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml:2: select_k\.rule: .*got 'knee'"):
        parse_config("select_k:\n  rule: knee\n")


def test_sha256_must_be_a_hex_digest() -> None:
    with pytest.raises(ConfigError, match=r"data\.sha256: must be 64 hexadecimal characters"):
        parse_config("data:\n  sha256: abc\n")


def test_sha256_is_lower_cased() -> None:
    config = parse_config(f"data:\n  sha256: {'AB' * 32}\n")
    assert config.data.sha256 == "ab" * 32


def test_a_list_at_the_top_level_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("- a\n- b\n")


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("scaling: none\nselect_k:\n  k_mx: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:3: select_k\.k_mx"):
        load_config(path)


def test_load_config_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_resolved_config_is_plain_json() -> None:
    resolved = Config().resolved()
    assert json.loads(json.dumps(resolved))["features"] == ["annual_income", "spending_score"]


@pytest.mark.parametrize(
    ("error", "code"), [(ConfigError, 2), (DataError, 3), (DataUnavailableError, 4)]
)
def test_errors_carry_their_documented_exit_code(error: type[SegmentationError], code: int) -> None:
    assert error.exit_code == code

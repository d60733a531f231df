"""The config model: defaults, and one-line errors naming the file, line and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from segmentation.config import Config, KRule, Scaling, load_config, parse_config
from segmentation.errors import ConfigError, DataError, DataUnavailableError, SegmentationError

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
TABLE = """\
data:
  path: customers.csv
columns:
  - {name: customer_id, type: id}
  - {name: age, type: numeric}
  - {name: gender, type: categorical}
features: FEATURES
"""
"""The smallest valid config: a table of three columns. What `config()` appends starts on line 8."""


def config(extra: str = "", features: str = "[age]") -> str:
    """Config text: the small table with the given features, then `extra` (from line 8)."""
    return TABLE.replace("FEATURES", features) + extra


def repo_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))
    return loaded


def test_the_repo_config_yaml_writes_the_defaults_of_every_other_section() -> None:
    shipped = repo_config()
    declared = {key: shipped[key] for key in ("data", "columns", "features", "naming")}
    assert parse_config(REPO_CONFIG.read_text(encoding="utf-8")) == Config.model_validate(declared)


def test_the_repo_config_declares_the_mall_table() -> None:
    config = parse_config(REPO_CONFIG.read_text(encoding="utf-8"))
    assert [(c.name, c.type) for c in config.columns] == [
        ("customer_id", "id"),
        ("gender", "categorical"),
        ("age", "numeric"),
        ("annual_income", "numeric"),
        ("spending_score", "numeric"),
    ]
    assert config.features == ("annual_income", "spending_score")
    assert config.naming == "mall"
    assert config.table.column("annual_income").max == 1_000_000


def test_a_config_needs_data_columns_and_features() -> None:
    with pytest.raises(pydantic.ValidationError):
        Config()  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"^config\.yaml: data: Field required$"):
        parse_config("")
    with pytest.raises(ConfigError, match=r"^config\.yaml: columns: declare the table's columns"):
        parse_config("data: {path: customers.csv}")


def test_defaults_of_the_other_sections() -> None:
    parsed = parse_config(config())
    assert (parsed.scaling, parsed.naming, parsed.prepare.on_invalid, parsed.data.as_of) == (
        Scaling.STANDARD,
        None,
        "fail",
        None,
    )
    assert (parsed.select_k.k_min, parsed.select_k.k_max, parsed.select_k.rule) == (
        2,
        10,
        KRule.SILHOUETTE,
    )
    assert parsed.select_k.min_segment_share == 0.02
    assert (parsed.cluster.k, parsed.cluster.seed) == (None, 42)


def test_values_are_read() -> None:
    parsed = parse_config(
        config("scaling: minmax\nselect_k:\n  rule: elbow\ncluster:\n  k: 4\n", "[age, gender]")
    )
    assert (parsed.features, parsed.scaling, parsed.select_k.rule, parsed.cluster.k) == (
        ("age", "gender"),
        Scaling.MINMAX,
        KRule.ELBOW,
        4,
    )


def test_the_table_is_the_declared_columns_and_features() -> None:
    table = parse_config(config(features="[gender, age]")).table
    assert [c.name for c in table.columns] == ["customer_id", "age", "gender"]
    assert table.features == ("gender", "age")
    assert table.id_column is not None and table.id_column.name == "customer_id"
    assert (table.as_of, table.imputed, table.categories) == (None, {}, {})


def test_unknown_key_names_the_key_and_its_line() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:9: select_k\.k_mx: unknown key"):
        parse_config(config("select_k:\n  k_mx: 5\n"))


def test_unknown_top_level_key_names_the_key_and_its_line() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:9: featurs: unknown key"):
        parse_config(config("scaling: none\nfeaturs: [age]\n"))


def test_string_for_an_integer_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml:9: select_k\.k_min: .*valid integer"):
        parse_config(config("select_k:\n  k_min: '3'\n"))


def test_boolean_for_an_integer_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml:10: cluster\.seed: .*valid integer"):
        parse_config(config("cluster:\n  n_init: 5\n  seed: true\n"))


def test_number_out_of_bounds_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"config\.yaml:9: cluster\.k: .*greater than or equal to 2"
    ):
        parse_config(config("cluster:\n  k: 1\n"))


def test_unknown_feature_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(features="[age, height]"))
    assert str(caught.value) == (
        "config.yaml:7: features.1: 'height' is not a declared column; "
        "declared: customer_id, age, gender"
    )


def test_feature_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:7: features\.1: 'age' is listed twice$"):
        parse_config(config(features="[age, age]"))


def test_empty_feature_list_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:7: features: list at least one declared"):
        parse_config(config(features="[]"))


def test_k_min_above_k_max_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"config\.yaml:8: select_k: k_min \(6\) must not exceed k_max \(3\)"
    ):
        parse_config(config("select_k:\n  k_min: 6\n  k_max: 3\n"))


def test_min_segment_share_must_be_below_a_half() -> None:
    with pytest.raises(
        ConfigError, match=r"^config\.yaml:9: select_k\.min_segment_share: .*less than 0\.5"
    ):
        parse_config(config("select_k:\n  min_segment_share: 0.5\n"))
    assert (
        parse_config(config("select_k:\n  min_segment_share: 0\n")).select_k.min_segment_share == 0
    )


def test_invalid_yaml_names_line_and_column() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:3:7: invalid YAML"):
        parse_config("data:\n  path: x\n   url: y\n")


def test_unknown_scaling_lists_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:8: scaling: .*'standard'.*got 'zscore'"):
        parse_config(config("scaling: zscore\n"))


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml:9: select_k\.rule: .*got 'knee'"):
        parse_config(config("select_k:\n  rule: knee\n"))


def test_sha256_must_be_a_hex_digest() -> None:
    text = config().replace("path: customers.csv", "path: customers.csv\n  sha256: abc")
    with pytest.raises(
        ConfigError, match=r"^config\.yaml:3: data\.sha256: must be 64 hexadecimal characters"
    ):
        parse_config(text)


def test_sha256_is_lower_cased() -> None:
    text = config().replace("path: customers.csv", f"path: customers.csv\n  sha256: {'AB' * 32}")
    assert parse_config(text).data.sha256 == "ab" * 32


@pytest.mark.parametrize("written", ["2024-01-31", "'2024-01-31'"])
def test_as_of_is_a_date_written_as_text_or_not(written: str) -> None:
    # Unquoted, YAML reads 2024-01-31 as a date; it means the same.
    text = config().replace("path: customers.csv", f"path: customers.csv\n  as_of: {written}")
    assert parse_config(text).data.as_of == "2024-01-31"


def test_as_of_must_be_a_real_date() -> None:
    quoted = config().replace("path: customers.csv", "path: customers.csv\n  as_of: '2024-13-01'")
    with pytest.raises(
        ConfigError, match=r"^config\.yaml:3: data\.as_of: must be a date written YYYY-MM-DD"
    ):
        parse_config(quoted)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (config().replace("path: customers.csv", "path: customers.csv\n  as_of: 2024-13-01"), 3),
        (config("report:\n  title: 2024-02-30\n"), 9),
    ],
)
def test_an_impossible_unquoted_date_is_a_config_error_with_its_line(text: str, line: int) -> None:
    # PyYAML itself fails on these with a bare ValueError, not a YAMLError.
    with pytest.raises(ConfigError, match=rf"^config\.yaml:{line}: not a date \("):
        parse_config(text)


def test_naming_is_a_vocabulary_name_or_path() -> None:
    assert parse_config(config("naming: mall\n")).naming == "mall"
    with pytest.raises(ConfigError, match=r"^config\.yaml:8: naming: .*valid string"):
        parse_config(config("naming: 3\n"))


def test_a_list_at_the_top_level_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("- a\n- b\n")


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(config("scaling: none\nselect_k:\n  k_mx: 5\n"), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:10: select_k\.k_mx"):
        load_config(path)


def test_load_config_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_resolved_config_is_plain_json() -> None:
    resolved = parse_config(REPO_CONFIG.read_text(encoding="utf-8")).resolved()
    plain = json.loads(json.dumps(resolved))
    assert plain["features"] == ["annual_income", "spending_score"]
    assert plain["columns"][1]["categories"] == ["Female", "Male"]
    assert plain["columns"][1]["aliases"] == {"F": "Female", "M": "Male"}


@pytest.mark.parametrize(
    ("error", "code"), [(ConfigError, 2), (DataError, 3), (DataUnavailableError, 4)]
)
def test_errors_carry_their_documented_exit_code(error: type[SegmentationError], code: int) -> None:
    assert error.exit_code == code

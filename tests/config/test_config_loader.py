"""Loading valid configs: interpolation, defaults, secrets, paths, the repo's own agent.yaml."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent.config_loader import load_config, parse_config, resolve_config_path
from agent.errors import ConfigError
from agent.redaction import Redactor

REPO = Path(__file__).resolve().parents[2]


def test_interpolation_defaults_and_literal_dollar(tmp_path: Path) -> None:
    text = """
probes:
  - name: api
    kind: http
    url: "http://${HOST}:${PORT:-8080}/health"
    headers: {X-Price: "$$5", X-Empty: "${EMPTY:-fallback}"}
"""
    config = parse_config(text, base_dir=tmp_path, env={"HOST": "127.0.0.1", "EMPTY": ""})
    probe = config.probes[0]
    assert probe.url == "http://127.0.0.1:8080/health"  # type: ignore[attr-defined]
    assert probe.headers == {"X-Price": "$5", "X-Empty": "fallback"}  # type: ignore[attr-defined]


def test_defaults_and_durations(tmp_path: Path) -> None:
    config = parse_config(
        "probes:\n  - {name: a, kind: tcp, port: 1, every: 1h30m}\n  - {name: b, kind: tcp, port: 2, every: 5s}\n",
        base_dir=tmp_path,
        env={},
    )
    a, b = config.probes
    assert a.every == timedelta(minutes=90)
    assert a.timeout == timedelta(seconds=10)
    assert b.timeout == timedelta(seconds=4)  # default adapts to a short interval
    assert config.agent.retention == timedelta(days=30)
    assert config.agent.data_dir == tmp_path / "var"  # relative to the config file


def test_password_file_is_read_relative_to_the_config_and_kept_secret(tmp_path: Path) -> None:
    (tmp_path / "shop.pw").write_text("s3cr3t-pass\n")
    (tmp_path / "agent.yaml").write_text(
        "sources:\n  shop: {kind: postgres, dsn: 'postgresql://u@127.0.0.1/shop', password_file: shop.pw}\n"
    )
    config = load_config(tmp_path / "agent.yaml", env={})
    password = config.sources["shop"].password  # type: ignore[union-attr]
    assert password is not None and password.get_secret_value() == "s3cr3t-pass"
    assert "s3cr3t-pass" not in repr(config) and "s3cr3t-pass" not in config.model_dump_json()
    assert (
        Redactor.from_model(config).redact("auth failed for s3cr3t-pass") == "auth failed for ***"
    )


def test_secret_from_environment_is_masked(tmp_path: Path) -> None:
    config = parse_config(
        "sources:\n  wh: {kind: mysql, password: '${WH_PW}'}\n",
        base_dir=tmp_path,
        env={"WH_PW": "hunter22"},
    )
    redactor = Redactor.from_model(config)
    assert redactor.redact("Access denied (password hunter22)") == "Access denied (password ***)"
    assert redactor.redact("mysql://root:other@127.0.0.1/x") == "mysql://root:***@127.0.0.1/x"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: config file not found"


def test_config_path_resolution() -> None:
    assert resolve_config_path("x.yaml", {"OPSAGENT_CONFIG": "y.yaml"}) == Path("x.yaml")
    assert resolve_config_path(None, {"OPSAGENT_CONFIG": "y.yaml"}) == Path("y.yaml")
    assert resolve_config_path(None, {}) == Path("agent.yaml")


def test_config_is_frozen(tmp_path: Path) -> None:
    config = parse_config("probes: [{name: a, kind: tcp, port: 1}]", base_dir=tmp_path, env={})
    with pytest.raises(Exception, match="frozen"):
        config.probes[0].name = "b"  # type: ignore[misc]


def test_repo_agent_yaml_checks_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "-c", str(REPO / "agent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok (" in proc.stdout


def test_schema_command_prints_json_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "schema"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["title"] == "opsagent agent.yaml"
    assert {"agent", "sources", "probes"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_many_probes_share_their_parsed_expectations(tmp_path: Path) -> None:
    probes = "".join(
        f"  - {{name: p{i}, kind: tcp, port: {i + 1}, expect: [connected == true, 'latency_ms < {i % 2 + 1}00']}}\n"
        for i in range(4)
    )
    config = parse_config("probes:\n" + probes, base_dir=tmp_path, env={})
    firsts = {id(p.expect[0]) for p in config.probes}
    assert len(firsts) == 1  # one parse of `connected == true` serves every probe
    assert [str(p.expect[1].source) for p in config.probes] == [
        "latency_ms < 100",
        "latency_ms < 200",
    ] * 2
    assert config.probes[0].expect[1].check({"latency_ms": 150}) is not None


def test_yaml_mistakes_are_worded_by_the_pure_python_parser(tmp_path: Path) -> None:
    # libyaml parses valid files; an invalid one is parsed again for PyYAML's own words.
    with pytest.raises(ConfigError) as caught:
        parse_config("probes:\n  - name: a\n   kind: tcp\n", "a.yaml", base_dir=tmp_path, env={})
    (problem,) = caught.value.problems
    assert str(problem) == (
        "a.yaml:3: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(check the indentation)"
    )

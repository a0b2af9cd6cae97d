"""One bad config per rule: each must report exactly its `# expect:` lines.

A file states its expected problems in comments, `# expect: LINE: path: message`
(`{dir}` stands for the file's folder); the test checks the exact
`FILE:LINE: path: message` strings, in order, and that `opsagent check` prints them
all, exits 2 and shows no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config_loader import load_config
from agent.errors import ConfigError

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))
ENV = {"OPSAGENT_TEST_SET_WITH_DEFAULT": ""}


def expected_problems(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    expected = [line.split("# expect: ", 1)[1] for line in lines if line.startswith("# expect: ")]
    return [f"{path}:{e.replace('{dir}', str(path.parent))}" for e in expected]


def test_every_rule_has_a_case() -> None:
    assert len(CASES) >= 15
    for case in CASES:
        assert expected_problems(case), f"{case.name} has no '# expect:' line"


@pytest.mark.parametrize("path", CASES, ids=[c.stem for c in CASES])
def test_invalid_config_reports_exact_problems(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV)
    assert [str(p) for p in info.value.problems] == expected_problems(path)


@pytest.mark.parametrize("name", ["many-problems", "wrong-kind", "yaml-syntax"])
def test_check_command_prints_all_problems_and_exits_2(name: str) -> None:
    path = INVALID / f"{name}.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    for problem in expected_problems(path):
        assert problem in proc.stderr

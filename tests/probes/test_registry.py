"""The probe registry: every module is listed, named after its kind, and documented.

Each kind's module docstring holds a YAML example; it must validate against the
kind's spec and show every field the kind adds, so the docs cannot rot.
"""

from __future__ import annotations

import inspect
import pkgutil
import re
from types import ModuleType
from typing import Any

import pytest
import yaml

import probes
from agent.errors import ProbeError
from agent.probe_spec import ProbeSpec
from probes import KINDS, kind_of, runner_for, spec_types

by_name = pytest.mark.parametrize("module", KINDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
_YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def short_name(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def yaml_example(module: ModuleType) -> str:
    blocks = _YAML_BLOCK.findall(module.__doc__ or "")
    assert len(blocks) == 1, f"{module.__name__}: expected one ```yaml block in the docstring"
    block: str = blocks[0]
    return block


def test_every_module_in_the_folder_is_listed() -> None:
    on_disk = {
        info.name for info in pkgutil.iter_modules(probes.__path__) if not info.name.startswith("_")
    }
    listed = {short_name(module) for module in KINDS}
    assert on_disk == listed, "add new probe modules to KINDS in probes/__init__.py"


def test_spec_types_follow_the_registry() -> None:
    assert spec_types() == tuple(module.SPEC for module in KINDS)


@by_name
def test_spec_kind_is_the_module_name(module: ModuleType) -> None:
    assert issubclass(module.SPEC, ProbeSpec)
    assert module.SPEC.__name__ == short_name(module).capitalize() + "Spec"
    assert kind_of(module.SPEC) == short_name(module)


@by_name
def test_run_is_an_async_function_found_by_kind(module: ModuleType) -> None:
    assert inspect.iscoroutinefunction(module.run)
    assert list(inspect.signature(module.run).parameters) == ["spec", "ctx"]
    assert runner_for(short_name(module)) is module.run


def test_an_unknown_kind_is_a_probe_error() -> None:
    with pytest.raises(ProbeError, match="unknown probe kind 'ftp'"):
        runner_for("ftp")


@by_name
def test_docstring_example_validates(module: ModuleType) -> None:
    document = yaml.safe_load(yaml_example(module))
    entries: list[dict[str, Any]] = document["probes"]
    assert entries
    for entry in entries:
        spec = module.SPEC.model_validate(entry)
        assert spec.kind == short_name(module)


@by_name
def test_docstring_example_shows_every_field(module: ModuleType) -> None:
    example = yaml_example(module)
    own_fields = set(module.SPEC.model_fields) - set(ProbeSpec.model_fields)
    missing = [field for field in own_fields if not re.search(rf"^\s+{field}:", example, re.M)]
    assert not missing, f"{module.__name__}: document {missing} in the YAML example"


@by_name
def test_every_field_is_described(module: ModuleType) -> None:
    own_fields = set(module.SPEC.model_fields) - set(ProbeSpec.model_fields)
    undocumented = [f for f in own_fields if not module.SPEC.model_fields[f].description]
    assert not undocumented

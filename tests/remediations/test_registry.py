"""The remediation registry: every module is listed, named after its kind, and documented."""

from __future__ import annotations

import inspect
import pkgutil
import re
from types import ModuleType
from typing import Any

import pytest
import yaml

import remediations
from agent.errors import RemediationRefused
from remediations import KINDS, NOT_KINDS, kind_of, planner_for, runner_for, spec_types
from remediations._base import RemediationSpec

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
        info.name
        for info in pkgutil.iter_modules(remediations.__path__)
        if not info.name.startswith("_") and info.name not in NOT_KINDS
    }
    assert on_disk == {short_name(m) for m in KINDS}, (
        "add new modules to KINDS in remediations/__init__.py"
    )


def test_spec_types_follow_the_registry() -> None:
    assert spec_types() == tuple(module.SPEC for module in KINDS)


@by_name
def test_spec_kind_is_the_module_name(module: ModuleType) -> None:
    assert issubclass(module.SPEC, RemediationSpec)
    assert module.SPEC.__name__ == short_name(module).capitalize() + "Spec"
    assert kind_of(module.SPEC) == short_name(module)


@by_name
def test_plan_and_run_are_async_and_found_by_kind(module: ModuleType) -> None:
    assert inspect.iscoroutinefunction(module.plan) and inspect.iscoroutinefunction(module.run)
    assert list(inspect.signature(module.plan).parameters) == ["spec", "target", "ctx"]
    assert list(inspect.signature(module.run).parameters) == ["spec", "plan", "ctx"]
    assert planner_for(short_name(module)) is module.plan
    assert runner_for(short_name(module)) is module.run


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(RemediationRefused, match="unknown remediation kind 'ftp'"):
        runner_for("ftp")


@by_name
def test_docstring_example_validates_and_shows_every_field(module: ModuleType) -> None:
    example = yaml_example(module)
    entries: list[dict[str, Any]] = yaml.safe_load(example)["remediations"]
    for entry in entries:
        assert module.SPEC.model_validate(entry).kind == short_name(module)
    own = set(module.SPEC.model_fields) - set(RemediationSpec.model_fields)
    names = {module.SPEC.model_fields[f].alias or f for f in own}
    missing = [f for f in names if not re.search(rf"^\s+{f}:", example, re.M)]
    assert not missing, f"{module.__name__}: document {missing} in the YAML example"
    assert all(module.SPEC.model_fields[f].description for f in own)


def test_the_default_mode_is_approval() -> None:
    spec = RemediationSpec.model_validate({"name": "x", "kind": "sql"})
    assert spec.mode == "approval"


def test_the_design_examples_validate_through_a_discriminated_union() -> None:
    from typing import Annotated, Union

    from pydantic import Field, TypeAdapter

    any_spec: Any = Annotated[Union[spec_types()], Field(discriminator="kind")]  # noqa: UP007
    union: TypeAdapter[RemediationSpec] = TypeAdapter(any_spec)
    examples = yaml.safe_load(
        """
        - {name: resync-stock, kind: resync, mode: auto, max_rows: 500, cooldown: 10m, max_attempts: 3 per 1h}
        - {name: requeue-payments, kind: http, method: POST, url: "http://127.0.0.1:8080/admin/payments/requeue", mode: approval}
        - {name: restart-shop-api, kind: restart, systemd_unit: shop-api.service, mode: auto, max_attempts: 3 per 30m}
        """
    )
    kinds = [union.validate_python(e).kind for e in examples]
    assert kinds == ["resync", "http", "restart"]

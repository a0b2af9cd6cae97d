"""The notifier registry: every module is listed, named after its kind, and documented.

Each kind's module docstring holds a YAML example; it must validate against the kind's
spec and show every field the kind adds (nested settings too), so the docs cannot rot.
"""

from __future__ import annotations

import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Union

import pytest
import yaml
from pydantic import BaseModel, Field, TypeAdapter

import agent.notifiers
from agent.errors import NotifyError
from agent.notifiers import KINDS, kind_of, sender_for, spec_types
from agent.notifiers.context import NotifierSpec

NOT_KINDS = {"context", "targets"}  # shared spec fields and NotifyContext; the name -> notifier map
by_name = pytest.mark.parametrize("module", KINDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
_YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)
# What the examples' ${VARS} hold in these tests; the loader interpolates before validation.
EXAMPLE_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-example",
    "SLACK_SIGNING_SECRET": "example-signing-secret",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/example",
    "SMTP_PASSWORD": "example",
    "HOOK_TOKEN": "example",
}


def short_name(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def yaml_example(module: ModuleType) -> str:
    blocks = _YAML_BLOCK.findall(module.__doc__ or "")
    assert len(blocks) == 1, f"{module.__name__}: expected one ```yaml block in the docstring"
    block: str = blocks[0]
    return block


def documented_keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, YAML key) of every field, descending into nested settings models."""
    keys: list[tuple[str, str]] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        keys.append((prefix + key, key))
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            keys.extend(documented_keys(nested, f"{prefix}{key}."))
    return keys


def test_every_module_in_the_folder_is_listed() -> None:
    on_disk = {
        info.name
        for info in pkgutil.iter_modules(agent.notifiers.__path__)
        if not info.name.startswith("_") and info.name not in NOT_KINDS
    }
    listed = {short_name(module) for module in KINDS}
    assert on_disk == listed, "add new notifier modules to KINDS in agent/notifiers/__init__.py"


def test_spec_types_follow_the_registry() -> None:
    assert spec_types() == tuple(module.SPEC for module in KINDS)


@by_name
def test_spec_kind_is_the_module_name(module: ModuleType) -> None:
    name = short_name(module)
    assert issubclass(module.SPEC, NotifierSpec)
    assert module.SPEC.__name__ == name.title().replace("_", "") + "Spec"
    assert kind_of(module.SPEC) == name


@by_name
def test_send_is_an_async_function_found_by_kind(module: ModuleType) -> None:
    assert inspect.iscoroutinefunction(module.send)
    assert list(inspect.signature(module.send).parameters) == ["spec", "notice", "ctx"]
    assert sender_for(short_name(module)) is module.send


def test_an_unknown_kind_is_a_permanent_notify_error() -> None:
    with pytest.raises(NotifyError, match="unknown notifier kind 'pager'") as caught:
        sender_for("pager")
    assert caught.value.permanent


@by_name
def test_docstring_example_validates(module: ModuleType, tmp_path: Path) -> None:
    text = re.sub(r"\$\{(\w+)\}", lambda m: EXAMPLE_ENV[m[1]], yaml_example(module))
    entries: list[dict[str, Any]] = yaml.safe_load(text)["notify"]
    assert entries
    for entry in entries:
        spec = module.SPEC.model_validate(entry, context={"base_dir": tmp_path})
        assert spec.kind == short_name(module)


@by_name
def test_docstring_example_shows_every_field(module: ModuleType) -> None:
    example = yaml_example(module)
    shared = set(NotifierSpec.model_fields)
    missing = [
        path
        for path, key in documented_keys(module.SPEC)
        if path not in shared and not re.search(rf"^\s+{re.escape(key)}:", example, re.M)
    ]
    assert not missing, f"{module.__name__}: document {missing} in the YAML example"


@by_name
def test_every_field_is_described(module: ModuleType) -> None:
    def undocumented(model: type[BaseModel]) -> list[str]:
        found = []
        for name, info in model.model_fields.items():
            if name in NotifierSpec.model_fields and model is module.SPEC:
                continue
            if not info.description:
                found.append(name)
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                found.extend(f"{name}.{sub}" for sub in undocumented(info.annotation))
        return found

    assert not undocumented(module.SPEC)


def test_the_examples_in_the_docs_validate(tmp_path: Path) -> None:
    docs = Path(__file__).parents[2] / "docs" / "notifiers.md"
    blocks = [b for b in _YAML_BLOCK.findall(docs.read_text()) if "notify:" in b]
    assert len(blocks) >= len(KINDS)
    # The docs point at /etc/opsagent/...; the files must exist for validation.
    for name in re.findall(r"/etc/opsagent/([\w.-]+)", "".join(blocks)):
        (tmp_path / name).write_text("secret-or-https://hooks.example/x\n")
    # The union the config builds from the registry (a runtime type, hence Any).
    union: Any = Annotated[Union[spec_types()], Field(discriminator="kind")]  # noqa: UP007
    adapter: TypeAdapter[Any] = TypeAdapter(union)
    kinds = set()
    for block in blocks:
        text = re.sub(r"\$\{(\w+)\}", lambda m: EXAMPLE_ENV[m[1]], block)
        text = text.replace("/etc/opsagent/", f"{tmp_path}/")
        for entry in yaml.safe_load(text)["notify"]:
            kinds.add(adapter.validate_python(entry, context={"base_dir": tmp_path}).kind)
    assert kinds == {short_name(module) for module in KINDS}


def test_templates_ship_with_the_package() -> None:
    folder = Path(agent.notifiers.__file__).parent / "templates"
    assert {p.name for p in folder.glob("*.j2")} >= {"alert.txt.j2", "alert.html.j2"}

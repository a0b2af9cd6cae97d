"""Load agent.yaml: YAML with line numbers, `${VAR}` interpolation, every error at once.

Each problem is reported as `FILE:LINE: dotted.path: message`, where LINE is the line
of the YAML node at fault, so an operator can jump straight to it.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agent.config import Config
from agent.durations import parse_duration
from agent.errors import ConfigError, ConfigProblem
from agent.unique_names import unique_names
from reports.settings import check_reports

Loc = tuple[str | int, ...]

ENV_CONFIG = "OPSAGENT_CONFIG"
DEFAULT_CONFIG = Path("agent.yaml")

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\})")


def resolve_config_path(cli_value: str | None, env: Mapping[str, str] | None = None) -> Path:
    """`-c/--config`, else `$OPSAGENT_CONFIG`, else `./agent.yaml`."""
    env = os.environ if env is None else env
    if cli_value:
        return Path(cli_value)
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    return DEFAULT_CONFIG


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file; raises ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, "", "config file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read config file: {exc.strerror if isinstance(exc, OSError) else exc}"
        raise ConfigError([ConfigProblem(str(path), None, "", msg)]) from None
    return parse_config(text, str(path), base_dir=path.parent, env=env)


def parse_config(
    text: str,
    file: str = "<config>",
    *,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate config text; `file` names it in errors, `base_dir` anchors relative paths."""
    env = os.environ if env is None else env
    base_dir = Path.cwd() if base_dir is None else base_dir
    problems: list[ConfigProblem] = []

    def add(line: int | None, loc: Loc, message: str) -> None:
        problems.append(ConfigProblem(file, line, format_loc(loc), message))

    try:
        try:
            node, data = _compose(text, _FAST_LOADER)
        except yaml.YAMLError:
            # libyaml's messages differ: the pure-Python parser words every error.
            node, data = _compose(text, yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = str(exc.problem)
        if "<block" in problem:  # PyYAML's words for an indentation mistake
            problem += " (check the indentation)"
        raise ConfigError([ConfigProblem(file, line, "", f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(file, None, "", f"invalid YAML: {exc}")]) from None

    if node is None or data is None:
        data, node = {}, None
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, 1, "", "the config must be a mapping of sections")])

    for loc, key_node in _duplicate_keys(node, ()):
        add(key_node.start_mark.line + 1, loc, "duplicate key")

    before = len(problems)
    data = _interpolate(data, node, (), env, add)
    # A value that failed interpolation would also fail validation; report it once.
    broken = {p.path for p in problems[before:]}
    data = _anchor_paths(data, base_dir)

    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        for err in exc.errors():
            loc = _clean_loc(data, tuple(err["loc"]))
            if format_loc(loc) in broken:
                continue
            line = locate(node, loc, key_level=err["type"] == "extra_forbidden")
            add(line, loc, _message(err, data, loc))

    for loc, message in cross_checks(data):
        add(locate(node, loc), loc, message)

    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise ConfigError(problems)
    assert config is not None
    return config


# libyaml's parser (when PyYAML was built with it) is ~10x faster than the pure-Python
# one: 5,000 probes took ~4 s to parse without it. Same nodes, same line marks.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str, loader_class: type[yaml.SafeLoader]) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its Python value."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    finally:
        loader.dispose()
    return node, data


def format_loc(loc: Loc) -> str:
    """`("probes", 2, "timeout")` -> `probes[2].timeout`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def locate(node: yaml.Node | None, loc: Loc, *, key_level: bool = False) -> int | None:
    """The 1-based line of the YAML node at `loc` (the nearest existing ancestor if absent)."""
    if node is None:
        return None
    current: yaml.Node = node
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if key_node.value == str(part):
                    current = key_node if (last and key_level) else value_node
                    break
            else:
                return current.start_mark.line + 1
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                return current.start_mark.line + 1
            current = current.value[part]
        else:
            break
    return current.start_mark.line + 1


def _clean_loc(data: Any, loc: Loc) -> Loc:
    """Drop pydantic's union-tag and validator segments so the path matches the YAML."""
    out: list[str | int] = []
    current: Any = data
    for part in loc:
        if isinstance(current, dict):
            if part in current:
                out.append(part)
                current = current[part]
            elif isinstance(part, str) and current.get("kind") == part:
                continue  # discriminated-union tag: not a YAML key
            elif isinstance(part, str) and part.startswith(
                ("function-", "union[", "json-or-python")
            ):
                continue
            else:
                out.append(part)
                current = None
        elif isinstance(current, list) and isinstance(part, int):
            out.append(part)
            current = current[part] if part < len(current) else None
        elif isinstance(part, str) and (
            part.startswith(("function-", "union[")) or part == "[key]"
        ):
            continue
        else:
            out.append(part)
            current = None
    return tuple(out)


def _message(err: Any, data: Any, loc: Loc) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        hint = _did_you_mean(data, loc)
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown kind {ctx.get('tag')!r} (expected one of: {_kinds_at(loc)})"
    if kind == "union_tag_not_found":
        return f"'kind' is required (one of: {_kinds_at(loc)})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {err.get('input')!r}"
    msg: str = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _kinds_at(loc: Loc) -> str:
    """The `kind` values allowed for the union at `loc` (probes or sources)."""
    from typing import get_args

    from agent.sources import SourceSpec
    from probes import kind_of, spec_types

    if loc and loc[0] == "sources":
        union = get_args(SourceSpec)[0]
        kinds = [get_args(m.model_fields["kind"].annotation)[0] for m in get_args(union)]
    else:
        kinds = [kind_of(t) for t in spec_types()]
    return ", ".join(sorted(kinds))


def _did_you_mean(data: Any, loc: Loc) -> str:
    """Suggest the closest known key, found by validating the parent without the bad key."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    known = _known_keys(data, loc[:-1])
    close = difflib.get_close_matches(loc[-1], sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_keys(data: Any, loc: Loc) -> set[str]:
    """The keys the model at `loc` accepts (empty when it cannot be told)."""
    annotation: Any = Config
    current: Any = data
    for part in loc:
        if isinstance(part, int):
            current = current[part] if isinstance(current, list) and part < len(current) else None
            continue
        model = _model_of(annotation, current)
        field = model.model_fields.get(part) if model else None
        if field is None:
            return set()
        annotation = field.annotation
        current = current.get(part) if isinstance(current, dict) else None
    model = _model_of(annotation, current)
    return set(model.model_fields) if model else set()


def _model_of(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The model class a value is validated as (following lists, dicts and `kind` unions)."""
    from typing import get_args

    candidates: list[Any] = [annotation]
    seen: list[type[BaseModel]] = []
    while candidates:
        ann = candidates.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            seen.append(ann)
        else:
            candidates.extend(get_args(ann))
    if len(seen) == 1:
        return seen[0]
    kind = value.get("kind") if isinstance(value, dict) else None
    for model in seen:
        field = model.model_fields.get("kind")
        if field is not None and kind in get_args(field.annotation):
            return model
    return None


def _duplicate_keys(node: yaml.Node | None, loc: Loc) -> Iterator[tuple[Loc, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                yield (*loc, key), key_node
            seen.add(key)
            yield from _duplicate_keys(value_node, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, i))


def _interpolate(
    value: Any, node: yaml.Node | None, loc: Loc, env: Mapping[str, str], add: Any
) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in string values; `$$` is a literal `$`."""
    if isinstance(value, dict):
        return {k: _interpolate(v, _child(node, k), (*loc, k), env, add) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, _child(node, i), (*loc, i), env, add) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] != "" or default is None):
            return env[name]
        if default is not None:
            return default
        line = node.start_mark.line + 1 if node is not None else None
        add(
            line,
            loc,
            f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)",
        )
        return ""

    return _VAR.sub(replace, value)


def _child(node: yaml.Node | None, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == str(key)), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        child: yaml.Node = node.value[key]
        return child
    return None


def _anchor_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Make `agent.data_dir` (default ./var) relative to the config file, not the cwd."""
    agent = data.get("agent", {})
    if not isinstance(agent, dict):
        return data
    raw = agent.get("data_dir", "./var")
    if not isinstance(raw, str):
        return data
    data_dir = Path(raw).expanduser()
    if not data_dir.is_absolute():
        data_dir = base_dir / data_dir
    return {**data, "agent": {**agent, "data_dir": str(data_dir)}}


def cross_checks(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Checks across fields, run on the raw data so they report even when other fields are bad."""
    problems: list[tuple[Loc, str]] = []
    problems += _notifier_checks(data)
    problems += check_reports(data.get("reports"), _notifier_kinds(data))
    problems += _remediation_checks(data)
    probes = data.get("probes")
    sources = data.get("sources") if isinstance(data.get("sources"), dict) else {}
    if not isinstance(probes, list):
        return problems
    problems += unique_names(probes, "probes", "probe")[1]
    for i, probe in enumerate(probes):
        if not isinstance(probe, dict):
            continue
        # Only an explicit timeout can collide: the default adapts to `every`.
        if "timeout" in probe:
            every = _duration_or_none(probe.get("every", "30s"))
            timeout = _duration_or_none(probe["timeout"])
            if every is not None and timeout is not None and timeout >= every:
                problems.append(
                    (
                        ("probes", i, "timeout"),
                        f"timeout ({probe['timeout']}) must be shorter than every ({probe.get('every', '30s')})",
                    )
                )
        source = probe.get("source")
        if isinstance(source, str) and isinstance(sources, dict) and source not in sources:
            known = ", ".join(sorted(sources)) or "none defined"
            problems.append(
                (("probes", i, "source"), f"unknown source {source!r} (sources: {known})")
            )
        elif isinstance(source, str) and isinstance(sources, dict):
            problems.extend(_source_kind_problem(i, probe.get("kind"), source, sources[source]))
        for side in ("left", "right"):  # a reconcile probe reads two sources
            spec = probe.get(side)
            ref = spec.get("source") if isinstance(spec, dict) else None
            if isinstance(ref, str) and isinstance(sources, dict) and ref not in sources:
                known = ", ".join(sorted(sources)) or "none defined"
                problems.append(
                    (("probes", i, side, "source"), f"unknown source {ref!r} (sources: {known})")
                )
    return problems


# Probe kinds that read a source, and the source kinds each can read.
_SOURCE_KINDS = {"sql": ("postgres", "mysql", "sqlite", "duckdb"), "redis": ("redis",)}


def _source_kind_problem(i: int, kind: Any, name: str, source: Any) -> list[tuple[Loc, str]]:
    """A `sql` probe needs a SQL source, a `redis` probe a redis one."""
    wanted = _SOURCE_KINDS.get(kind) if isinstance(kind, str) else None
    have = source.get("kind") if isinstance(source, dict) else None
    if wanted is None or not isinstance(have, str) or have in wanted:
        return []
    message = f"a {kind} probe needs a {' or '.join(wanted)} source; {name!r} is {have}"
    return [(("probes", i, "source"), message)]


def _notifier_checks(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Notifier names are unique and every `notify:` / `escalate_to:` names one."""
    names, problems = unique_names(data.get("notify"), "notify", "notifier")
    known = ", ".join(sorted(names)) or "none defined"

    def check(loc: Loc, refs: Any) -> None:
        if isinstance(refs, list):
            for j, ref in enumerate(refs):
                if isinstance(ref, str) and ref not in names:
                    problems.append(((*loc, j), f"unknown notifier {ref!r} (notify: {known})"))

    incidents = data.get("incidents")
    if isinstance(incidents, dict):
        check(("incidents", "notify"), incidents.get("notify"))
        check(("incidents", "escalate_to"), incidents.get("escalate_to"))
    probes = data.get("probes")
    if isinstance(probes, list):
        for i, probe in enumerate(probes):
            if isinstance(probe, dict):
                check(("probes", i, "notify"), probe.get("notify"))
    return problems


def _notifier_kinds(data: Mapping[str, Any]) -> dict[str, str]:
    """Each configured notifier's name and kind (raw data; entries without both are skipped)."""
    raw = data.get("notify")
    entries = raw if isinstance(raw, list) else []
    return {
        e["name"]: e["kind"]
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("kind"), str)
    }


def _remediation_checks(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Remediation names are unique; every probe's `remediation:` names one that fits it."""
    raw = data.get("remediations")
    entries: list[Any] = raw if isinstance(raw, list) else []
    first, problems = unique_names(entries, "remediations", "remediation")
    kinds = {name: entries[i].get("kind") for name, i in first.items()}
    known = ", ".join(sorted(first)) or "none defined"
    probes = data.get("probes")
    for i, probe in enumerate(probes if isinstance(probes, list) else []):
        ref = probe.get("remediation") if isinstance(probe, dict) else None
        if not isinstance(ref, str):
            continue
        if ref not in first:
            problems.append(
                (
                    ("probes", i, "remediation"),
                    f"unknown remediation {ref!r} (remediations: {known})",
                )
            )
        elif kinds[ref] == "resync" and probe.get("kind") != "reconcile":
            problems.append(
                (
                    ("probes", i, "remediation"),
                    f"{ref!r} is a resync remediation: only a reconcile probe can use it "
                    f"(this probe is {probe.get('kind')})",
                )
            )
    return problems


def _duration_or_none(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return parse_duration(value)
    except ValueError:
        return None

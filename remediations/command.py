"""Run a command: an argv (a shell only with an explicit `shell: true`), with a timeout.

The command runs in its own process group; at `timeout` the whole group is
terminated, then killed. Output (stdout and stderr together) is captured and cut at
`max_output_bytes`. Exit code 0 is success. The plan records the command line, the
working directory and the names (not the values) of the added environment variables;
output is stored with every secret masked.

```yaml
remediations:
  - name: flush-cache
    kind: command
    # The program and its arguments. With `shell: true`, one string run by /bin/sh -c.
    argv: [/usr/local/bin/shopctl, cache, flush]
    # Run argv[0] through /bin/sh -c (pipes, globbing). Off unless asked for.
    shell: false
    # Variables added to the agent's environment (their values are never stored).
    env: {SHOP_ENV: prod}
    # The working directory; relative to the config file's folder. Default: that folder.
    cwd: null
    # At most this many bytes of output are kept.
    max_output_bytes: 16384
    mode: approval
    timeout: 30s
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from agent.probe_spec import RunContext
from agent.redaction import Redactor
from remediations._base import ActionResult, Plan, RemediationSpec, Target
from remediations._process import run_argv


class CommandSpec(RemediationSpec):
    """A command that repairs something."""

    kind: Literal["command"]
    argv: list[str] = Field(min_length=1, description="The program and its arguments.")
    shell: bool = Field(default=False, description="Run argv[0] as a /bin/sh -c command line.")
    env: dict[str, str] = Field(default_factory=dict, description="Added environment variables.")
    cwd: Path | None = Field(default=None, description="Working directory.")
    max_output_bytes: int = Field(default=16384, ge=0, description="Output kept.")

    @model_validator(mode="after")
    def _shell_is_one_string(self) -> CommandSpec:
        if not self.argv[0]:
            raise ValueError("the program (argv[0]) must not be empty")
        if self.shell and len(self.argv) != 1:
            raise ValueError("with shell: true, argv is one command line string")
        return self

    def command_line(self) -> list[str]:
        return ["/bin/sh", "-c", self.argv[0]] if self.shell else list(self.argv)


async def plan(spec: CommandSpec, target: Target, ctx: RunContext) -> Plan:
    """The command line that would run; nothing is started."""
    cwd = ctx.base_dir / spec.cwd if spec.cwd is not None else ctx.base_dir
    return Plan(
        spec.name,
        "command",
        target.key,
        f"run {' '.join(spec.command_line())}",
        detail={"argv": spec.command_line(), "cwd": str(cwd), "env": sorted(spec.env)},
    )


async def run(spec: CommandSpec, plan: Plan, ctx: RunContext) -> ActionResult:
    """Run it; success is exit code 0 within the timeout."""
    cwd = ctx.base_dir / spec.cwd if spec.cwd is not None else ctx.base_dir
    done = await run_argv(
        spec.command_line(),
        env=spec.env,
        cwd=cwd,
        limit_s=spec.timeout.total_seconds(),
        max_output=spec.max_output_bytes,
    )
    redactor = Redactor(spec.env.values())
    output = redactor.redact(done.output)
    if done.error is not None:
        return ActionResult(
            False, redactor.redact(done.error), output, error=redactor.redact(done.error)
        )
    return ActionResult(True, "exit code 0", output)


SPEC = CommandSpec

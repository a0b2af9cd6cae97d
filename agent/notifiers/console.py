"""Print one line per notice to the terminal: the demo's timeline, or a quick local setup.

```
🔔 OPENED       critical  shop-api failing — timed out after 1s
👀 ACKNOWLEDGED critical  shop-api failing — acknowledged by alice: on it
✅ RESOLVED     critical  shop-api failing — recovered after 2m 10s
```

It never fails: a closed or broken terminal loses the line, not the notice.

```yaml
notify:
  - name: terminal
    kind: console
    # Where to print: stdout or stderr.
    stream: stdout
```
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field

from agent.notices import Delivery, Notice
from agent.notifiers._text import console_line
from agent.notifiers.context import NotifierSpec, NotifyContext


class ConsoleSpec(NotifierSpec):
    """The agent's own stdout or stderr."""

    kind: Literal["console"]
    stream: Literal["stdout", "stderr"] = Field(
        default="stdout", description="Where to print: stdout or stderr."
    )


async def send(spec: ConsoleSpec, notice: Notice, ctx: NotifyContext) -> Delivery:
    """Print the notice's line."""
    # Looked up per call, not bound at import, so redirections (and pytest's capsys) apply.
    stream = sys.stdout if spec.stream == "stdout" else sys.stderr
    line = console_line(notice)
    try:
        try:
            print(line, file=stream, flush=True)
        except UnicodeEncodeError:
            # A terminal that cannot show emoji still gets the words.
            encoding = getattr(stream, "encoding", None) or "ascii"
            print(line.encode(encoding, "replace").decode(encoding), file=stream, flush=True)
    except (OSError, ValueError):
        # A closed pipe or stream: retrying would not help, and the demo must go on.
        return Delivery(detail="not printed: the stream is unavailable")
    return Delivery(detail="printed")


SPEC = ConsoleSpec

"""The logger handed to slack-sdk's clients.

slack-sdk checks its logger's *own* level (`logger.level <= DEBUG`, which NOTSET passes)
and then logs whole requests at DEBUG: bodies, and for incoming webhooks the URL, which
is the webhook's secret. A dedicated logger pinned at INFO turns those lines off even
when someone runs the agent with DEBUG logging.
"""

from __future__ import annotations

import logging

SDK_LOGGER = logging.getLogger("agent.notifiers.sdk")
SDK_LOGGER.setLevel(logging.INFO)

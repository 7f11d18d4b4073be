"""The options the factory's Prefect tasks take, in one place.

A task's inputs are frames, configs or the run's `Factory` (a live warehouse): Prefect must not hash or
persist them. A batch is the unit of retry; a training stage or an offline inference is not retried,
because it fails the same way twice (a model that does not load, data that does not fit) and costs
minutes each.
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NONE

RETRIED: dict[str, Any] = {"cache_policy": NONE, "persist_result": False, "retries": 2, "retry_delay_seconds": 5}
ONCE: dict[str, Any] = {"cache_policy": NONE, "persist_result": False, "retries": 0}

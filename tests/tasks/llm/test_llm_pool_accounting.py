"""A down endpoint's failures and retries read the same in the run summary (pool stats) as in the call
log (`llm_calls`: failures = failed rows, retries = attempts - 1), and fast-fails are counted apart."""

from __future__ import annotations

from libra.tasks.core.config import Endpoint
from libra.tasks.llm.pool import LLMPool, LLMRequest, MemoryCallLog
from libra.tasks.llm.servers import free_port


def test_a_down_endpoint_is_counted_alike_in_summary_and_call_log():
    dead = Endpoint(name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_concurrency=4,
                    max_retries=3, down_after_failures=2, timeout_s=1)
    log = MemoryCallLog()
    pool = LLMPool([dead], log, backoff_base_s=0.01, backoff_cap_s=0.05, show_progress=False)
    results = pool.run([LLMRequest.chat("dead", f"问题 {i}") for i in range(12)])
    assert not any(r.ok for r in results)
    row = pool.summary_rows()[0]
    logged_failures = sum(r["status"] == "failed" for r in log.rows)
    logged_retries = sum(r["attempts"] - 1 for r in log.rows)
    assert (row["failed"], row["retries"]) == (logged_failures, logged_retries)
    assert row["failed"] + row["skipped"] == 12
    assert row["sent"] == sum(r["attempts"] for r in log.rows)
    assert "dead" in pool.down_endpoints()

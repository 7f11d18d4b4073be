"""The step contract: every LLM stage is one `LLMStep` declaration, one generic batch task runs any of
them, and the flow process is the only writer of the warehouse.

A stage module (respond.py, judge.py, elements.py, synthesize.py, translate.py, evaluation/guard.py)
declares its step: how a batch frame plus a picklable context (e.g. `JudgeSetup`) becomes
`LLMRequest`s, how the results become rows (`StepOutput`: a frame per table, `generation_calls` rows,
summary counts), and the tables it writes with their conflict rule. Where its pending work is a
warehouse query, `PendingQuery` names the .sql file and its keyset (the flow reads it in pages,
`WHERE key > :after ORDER BY key LIMIT :n`, never the whole table): responses and votes. Hard samples
for adjudication (a share of the responses) and a guard's pending benchmark items (a per-source subset)
are read whole and cut with `slices`, as plans are.

`run_step_batch` (the one batch task) takes plain picklable inputs (the step, the FactoryConfig, the
run id, the batch frame, the context, the cached answers `{call_key: text}` the flow looked up, the
endpoints' health so far) and returns a picklable `BatchResult`: rows per table, the llm_calls rows it
made, endpoint stats, counts. It builds its own `LLMPool` over a `MemoryCallLog` pre-filled with the
cached answers and never opens the warehouse, so a Ray task runner can run it unchanged.

`run_step` (flow side) submits batches with `.submit()`, keeps `sizes.batches_in_flight` of them in
flight, and stores each result in submission order, its rows and llm_calls in one transaction. What
changed against one pool per run writing llm_calls while it ran: a run killed mid-batch loses that
batch's calls (they are paid again on rerun, never stored twice); a batch does not see answers of a
batch still in flight (identical requests in two concurrent batches are each sent); a down endpoint
is learnt from the batches already stored (`LLMPool.carry_health`).

Patterns followed, not copied: datatrove's pipeline step (one interface, executors kept apart) and
distilabel's Task (declares inputs/outputs, formats the request, parses the answer, the LLM handed in).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from libra.tasks.core.config import FactoryConfig

if TYPE_CHECKING:  # the pool imports openai: only the worker pays for it
    from libra.tasks.core.runs import Factory
    from libra.tasks.llm.pool import EndpointStats, LLMRequest, LLMResult
    from libra.warehouse import Warehouse


@dataclass(frozen=True)
class Write:
    """A table a step writes. count_as: the summary key that gets the number of new rows."""

    table: str
    on_conflict: Literal["ignore", "replace"] = "ignore"
    count_as: str | None = None


@dataclass(frozen=True)
class PendingQuery:
    """Pending work as a named query (warehouse/queries/<file>) read in keyset pages.

    key: (column, value before the first) pairs in the query's ORDER BY; the query takes `$after_<column>`
    for each and `$page_size`, and may take more parameters (`params`) and registered frames."""

    file: str
    key: tuple[tuple[str, Any], ...]


@dataclass
class StepOutput:
    """What a step makes of one batch's results: rows per table (keyed like its `writes`), the
    generation_calls rows (synthesis stages), summary counts, and for steps that count a stored text as
    `duplicate_of_earlier` the ids whose storage decides that (see LLMStep.dedup_against)."""

    tables: dict[str, pl.DataFrame]
    counts: dict[str, Any] = field(default_factory=dict)
    generation_calls: list[dict[str, Any]] = field(default_factory=list)
    candidate_ids: list[str] = field(default_factory=list)


# (batch, context) -> requests
Requests = Callable[[pl.DataFrame, Any], "list[LLMRequest]"]
# (batch, results, context, run_id, stored_ids) -> output; stored_ids: see LLMStep.dedup_against
Rows = Callable[[pl.DataFrame, "list[LLMResult]", Any, str, set[str]], StepOutput]


@dataclass(frozen=True)
class LLMStep:
    """One LLM stage. Every field is a plain value or a module-level function: a step pickles by reference.

    dedup_against: a query file (over a registered frame `wanted_ids(id)`, returning the stored ones as
    `id`) for steps whose parser counts an id already stored as `duplicate_of_earlier` (synthesize,
    augment). The worker parses against no stored ids and
    returns the candidate ids; the flow looks up which of them are stored and, only when some are,
    calls `rows` again with them (cheap: parsing, no LLM call) so counts and generation_calls match a
    parse against the stored set. in_flight: a cap on batches in flight for steps whose requests read
    what the batch before stored (elements: the prompt lists the stored library)."""

    name: str
    requests: Requests
    rows: Rows
    writes: tuple[Write, ...]
    pending: PendingQuery | None = None
    dedup_against: str | None = None
    in_flight: int | None = None


@dataclass
class BatchResult:
    """What a batch task returns: all picklable, nothing live."""

    output: StepOutput
    llm_calls: list[dict[str, Any]]
    stats: dict[str, EndpointStats]
    health: dict[str, tuple[int, str | None]]
    results: list[LLMResult] | None = None  # kept only for a dedup_against step's second parse


# -- worker side ---------------------------------------------------------------------------------


def compute_batch(step: LLMStep, cfg: FactoryConfig, run_id: str, batch: pl.DataFrame, context: Any,
                  cached: dict[str, str], health: dict[str, tuple[int, str | None]] | None = None,
                  shares: int = 1, show_progress: bool = True,
                  requests: list[LLMRequest] | None = None) -> BatchResult:
    """Run one batch of a step: requests, LLM calls (cached ones answered from `cached`), rows.
    shares: how many batches run at once; each pool gets that share of every endpoint's limits.
    requests: the batch's requests when the caller built them already (run_step does, to look up the
    cached answers); rendering a judge prompt costs more than sending it to a local server."""
    from libra.tasks.core.executor import worker_endpoints
    from libra.tasks.llm.pool import LLMPool, MemoryCallLog

    log = MemoryCallLog(cached)
    pool = LLMPool(worker_endpoints(cfg, shares), log, run_id=run_id, show_progress=show_progress)
    pool.carry_health(health or {})
    results = pool.run(step.requests(batch, context) if requests is None else requests, desc=step.name)
    output = step.rows(batch, results, context, run_id, set())
    return BatchResult(output=output, llm_calls=log.rows, stats=pool.stats, health=pool.health(),
                       results=results if step.dedup_against and output.candidate_ids else None)


def _batch_task() -> Any:
    """The Prefect task around compute_batch, made on first use: importing this module needs no Prefect."""
    global _RUN_STEP_BATCH
    if _RUN_STEP_BATCH is None:
        from prefect import task

        from libra.tasks.core.prefect_tasks import RETRIED

        _RUN_STEP_BATCH = task(name="llm-step-batch", task_run_name="{step.name}-batch", **RETRIED)(compute_batch)
    return _RUN_STEP_BATCH


_RUN_STEP_BATCH: Any = None


# -- flow side -----------------------------------------------------------------------------------


def cached_answers(wh: Warehouse, cfg: FactoryConfig, requests: list[LLMRequest]) -> dict[str, str]:
    """The stored answers for these requests, by call key (requests naming unknown endpoints are left
    to the worker's pool, which refuses them)."""
    from libra.tasks.llm.calllog import WarehouseCallLog
    from libra.tasks.llm.pool import call_key

    endpoints = {e.name: e for e in cfg.endpoints}
    keys = sorted({call_key(endpoints[r.endpoint], r) for r in requests if r.endpoint in endpoints})
    return WarehouseCallLog(wh).lookup(keys)


def pages(wh: Warehouse, pending: PendingQuery, size: int, params: dict[str, Any] | None = None,
          frames: dict[str, pl.DataFrame] | None = None) -> Iterator[pl.DataFrame]:
    """Pending work in keyset pages of `size` rows. Each page is read after the ones before were stored:
    the key, not the anti-join, moves the page on, so a row that failed again is not re-read this run."""
    from libra.warehouse import sql_text

    sql = sql_text(pending.file)
    after = {f"after_{col}": start for col, start in pending.key}
    while True:
        page = wh.query(sql, {**(params or {}), **after, "page_size": size}, frames)
        if page.is_empty():
            return
        yield page
        last = page.row(page.height - 1, named=True)
        after = {f"after_{col}": last[col] for col, _ in pending.key}
        if page.height < size:
            return


def slices(frame: pl.DataFrame, size: int) -> list[pl.DataFrame]:
    """A frame computed in the flow (a plan) in batches of `size` rows."""
    return [frame.slice(i, size) for i in range(0, frame.height, size)] if frame.height else []


def store_batch(fx: Factory, step: LLMStep, done: BatchResult, batch: pl.DataFrame, context: Any) -> dict[str, Any]:
    """Write one batch's rows and llm_calls in one transaction; returns its summary counts."""
    from libra.tasks.llm.calllog import WarehouseCallLog
    from libra.tasks.synthesis.generation_calls import call_frame

    output = done.output
    if step.dedup_against and output.candidate_ids:
        stored = stored_ids(fx.warehouse, step.dedup_against, output.candidate_ids)
        if stored:
            assert done.results is not None
            output = step.rows(batch, done.results, context, fx.run_id, stored)
    counts = dict(output.counts)
    with fx.warehouse.writer():  # the rows and the calls that made them land together
        WarehouseCallLog(fx.warehouse).record(done.llm_calls)
        for w in step.writes:
            frame = output.tables.get(w.table)
            new = fx.warehouse.insert(w.table, frame, on_conflict=w.on_conflict) if frame is not None else 0
            if w.count_as:
                counts[w.count_as] = new
        if output.generation_calls:
            fx.warehouse.insert("generation_calls", call_frame(output.generation_calls))
    fx.add_usage(done.stats, done.health)
    return counts


def stored_ids(wh: Warehouse, query_file: str, ids: list[str]) -> set[str]:
    """Which of `ids` are stored: `query_file` reads the registered frame wanted_ids(id)."""
    from libra.warehouse import sql_text

    if not ids:
        return set()
    found = wh.query(sql_text(query_file),
                     frames={"wanted_ids": pl.DataFrame({"id": sorted(set(ids))}, schema={"id": pl.String})})
    return set(found["id"].to_list())


def run_step(fx: Factory, step: LLMStep, batches: Iterable[pl.DataFrame], context: Any = None
             ) -> tuple[dict[str, Any], int]:
    """Run a step over batches (keyset `pages` or `slices` of a plan): submit each to the batch task,
    keep a few in flight, store each as it completes (in submission order, so a batch's second parse
    sees the ones before it stored). Returns the merged summary counts and the number of rows run."""
    from libra.tasks.core.executor import in_flow_process, submit, task_runner

    task = _batch_task()
    limit = max(1, min(step.in_flight or fx.cfg.sizes.batches_in_flight, fx.cfg.sizes.batches_in_flight))
    summary: dict[str, Any] = {}
    rows = 0
    in_flight: deque[tuple[Any, pl.DataFrame]] = deque()

    def settle() -> None:
        future, batch = in_flight.popleft()
        merge(summary, store_batch(fx, step, future.result(), batch, context))

    # threads in this process, or Ray workers (the run's Ray: tasks/core/executor.py, ray_session)
    shares = limit
    with task_runner(fx.cfg) as runner:
        local = in_flow_process(runner)
        for batch in batches:
            if batch.is_empty():
                continue
            if rows == 0 and batch.height < fx.cfg.sizes.batch_size:
                # pages and slices are full but the last: a short first batch is the only one, so its
                # pool may use the whole of every endpoint's limits
                shares = 1
            rows += batch.height
            requests = step.requests(batch, context)
            future = submit(runner, task, {"step": step, "cfg": fx.cfg, "run_id": fx.run_id, "batch": batch,
                                          "context": context, "cached": cached_answers(fx.warehouse, fx.cfg, requests),
                                          "health": fx.health, "shares": shares,
                                          # a thread reuses them; a Ray worker builds its own (it has the
                                          # CPU, and shipping them costs the flow process pickling)
                                          "requests": requests if local else None})
            in_flight.append((future, batch))
            while len(in_flight) >= limit:
                settle()
        while in_flight:
            settle()
    return summary, rows


def merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add a batch's summary into the run's: numbers summed, dicts merged, anything else replaced."""
    for k, v in part.items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            total[k] = total.get(k, 0) + v
        elif isinstance(v, dict):
            merge(total.setdefault(k, {}), v)
        else:
            total[k] = v

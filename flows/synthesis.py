"""Stage-1 synthesis flows: the element library, harmful queries and benign look-alikes, augmentation,
and the translation of English safety data. Each plans from what is stored, so a rerun tops up what is
short and a finished one calls no LLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from libra.flows.common import merge, stage_run
from libra.tasks.core.config import load_config
from libra.tasks.core.runs import Factory
from libra.tasks.llm.step import pages, run_step, slices, stored_ids
from libra.tasks.reports.coverage import coverage_report
from libra.tasks.synthesis import elements, synthesize, translate
from libra.tasks.synthesis.generation_calls import attempts_by_cell
from libra.warehouse import sql_text

LIBRARY_SQL = sql_text("queries/element_library.sql")


def _coverage(fx: Factory, name: str, summary: dict[str, Any]) -> None:
    """Coverage headline into the run summary; per-subcategory and per-cell tables as Prefect artifacts."""
    report = coverage_report(fx.warehouse, fx.run_id)
    summary["coverage"] = report.headline
    create_table_artifact(table=report.subcategories.to_dicts(), key=f"{name}-coverage",
                          description=f"libra {name}: coverage per subcategory (targets, benign, task types, distinct-2)")
    create_table_artifact(table=report.cells.to_dicts(), key=f"{name}-coverage-cells",
                          description=f"libra {name}: queries per scenario x subcategory x task type x method")
    create_markdown_artifact(markdown=report.markdown(f"libra {name}: coverage"), key=f"{name}-coverage-report",
                             description=f"libra {name}: coverage headline and rejection reasons")


@flow(name="elements", log_prints=True)
def elements_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None) -> dict:
    """Top the element library (harmful behaviours, concrete events per subcategory) up to its counts."""
    with stage_run("elements", config, warehouse, parent_run_id) as (fx, summary):
        sizes = fx.cfg.sizes
        for _ in range(sizes.top_up_rounds):
            stored = fx.warehouse.query(LIBRARY_SQL).group_by("scenario", "subcategory", "kind").len("n")
            plan = elements.plan_elements(fx.taxonomy, sizes, stored,
                                          attempts_by_cell(fx.warehouse, "elements", ("subcategory", "method")))
            if plan.is_empty():
                break
            merge(summary, {"planned_calls": plan.height})
            # one batch at a time (ELEMENTS.in_flight): each batch's prompts list the library stored so far
            batches = ((b, elements.library_context(fx.warehouse.query(LIBRARY_SQL), fx.cfg.roles.synthesizer))
                       for b in slices(plan, sizes.batch_size))
            for batch, context in batches:
                merge(summary, run_step(fx, elements.ELEMENTS, [batch], context)[0])
        stored = fx.warehouse.query(LIBRARY_SQL).group_by("scenario", "subcategory", "kind").len("n")
        summary["library"] = {k: int(stored.filter(pl.col("kind") == k)["n"].sum()) for k in elements.KINDS}
        # cells still short after every round (e.g. a model that keeps refusing a subcategory)
        summary["cells_short"] = elements.plan_elements(fx.taxonomy, sizes, stored, {}).select(
            "subcategory", "kind").unique().height
    return summary


@flow(name="synthesize", log_prints=True)
def synthesize_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None) -> dict:
    """Top harmful queries and benign look-alikes up to their per-cell targets over the taxonomy."""
    with stage_run("synthesize", config, warehouse, parent_run_id) as (fx, summary):
        sizes = fx.cfg.sizes
        targets = synthesize.synthesis_targets(fx.taxonomy, sizes)
        with fx.warehouse.writer():  # the plan of this run replaces the last one's
            fx.warehouse.execute(sql_text("queries/clear_synthesis_targets.sql"))
            fx.warehouse.insert("synthesis_targets", targets.with_columns(run_id=pl.lit(fx.run_id)))
        library = fx.warehouse.query(LIBRARY_SQL)
        summary["targets"] = {"harmful_per_subcategory": sizes.harmful_target,
                              "benign_total": int(targets.filter(pl.col("intent") == "benign")["target"].sum()),
                              "cells": targets.height}
        if library.is_empty():
            summary["elements"] = "none stored: prompts name the subcategory only (run the elements flow first)"
        for _ in range(sizes.top_up_rounds):
            stored = fx.warehouse.query(sql_text("queries/synthesis_counts.sql"))
            attempts = attempts_by_cell(fx.warehouse, "synthesize", synthesize.SYNTHESIS_CELL)
            plan = synthesize.plan_synthesis(targets, stored, attempts, library, fx.taxonomy, sizes, fx.cfg.split.seed)
            if plan.is_empty():
                break
            merge(summary, {"planned_calls": plan.height})
            merge(summary, run_step(fx, synthesize.SYNTHESIZE, slices(plan, sizes.batch_size),
                                    fx.cfg.roles.synthesizer)[0])
        _coverage(fx, "synthesize", summary)
    return summary


@flow(name="augment", log_prints=True)
def augment_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None) -> dict:
    """Give a share of the seed queries a rewritten, paraphrased or jailbreak-wrapped child."""
    with stage_run("augment", config, warehouse, parent_run_id) as (fx, summary):
        sizes = fx.cfg.sizes
        for round_ in range(sizes.top_up_rounds):
            # the seeds in keyset pages: each page's choice (a hash of the seed's id) and its stored
            # children, never every seed's text at once
            attempts = attempts_by_cell(fx.warehouse, "augment", synthesize.AUGMENT_CELL)
            chosen_n, gave_up, ran = 0, 0, 0
            for seeds in pages(fx.warehouse, synthesize.AUGMENT_SEEDS, synthesize.AUGMENT_SEED_PAGE):
                chosen = synthesize.choose_augmentations(seeds, sizes.augment_methods, sizes.augment_fraction,
                                                         fx.cfg.split.seed)
                children = fx.warehouse.query(sql_text("queries/augmentation_children.sql"),
                                              frames={"chosen": chosen.select("query_id")})
                pending, page_gave_up = synthesize.pending_augmentations(chosen, children, attempts,
                                                                         sizes.top_up_rounds)
                chosen_n, gave_up, ran = chosen_n + chosen.height, gave_up + page_gave_up, ran + pending.height
                if pending.height:
                    merge(summary, run_step(fx, synthesize.AUGMENT, slices(pending, sizes.batch_size),
                                            fx.cfg.roles.synthesizer)[0])
            if round_ == 0:
                summary["chosen"] = chosen_n
            summary["gave_up"] = gave_up
            if not ran:
                break
        _coverage(fx, "augment", summary)
    return summary


@flow(name="translate", log_prints=True)
def translate_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None,
                   input: Path | None = None, text_column: str | None = None, response_column: str | None = None,
                   label_column: str | None = None, import_config: str | None = None, dataset: str | None = None,
                   limit: int | None = None) -> dict:
    """Translate an English safety file (queries, and responses where present) into Chinese rows.

    input: the file (JSON, JSONL, CSV, Parquet); text_column / response_column / label_column override the
    columns found by name (query|prompt|question|en|text, response, label); import_config: a spec under
    configs/imports/ (a path or a packaged name: dataset name, columns, taxonomy mapping); limit: the
    first N records only.
    """
    # The input is read and checked before the run starts: a bad file or column stores nothing.
    data = translate.read_input(load_config(config), input, import_config, text_column=text_column,
                                response_column=response_column, label_column=label_column, dataset=dataset,
                                limit=limit)
    with stage_run("translate", config, warehouse, parent_run_id) as (fx, summary):
        records = data.records
        summary.update(input=str(input), records=records.height, skipped=dict(data.skipped))
        rounds = fx.cfg.sizes.top_up_rounds
        for _ in range(rounds):
            paired = stored_ids(fx.warehouse, "queries/stored_pair_ids.sql", records["pair_id"].to_list())
            pending = records.filter(~pl.col("pair_id").is_in(list(paired)))
            if pending.is_empty():
                break
            tids = [t for t in pending["query_tid"].to_list() + pending["response_tid"].to_list() if t]
            translated = stored_ids(fx.warehouse, "queries/stored_translation_ids.sql", tids)
            attempts = attempts_by_cell(fx.warehouse, "translate", translate.TEXT_CELL)
            texts, summary["gave_up_texts"] = translate.texts_to_translate(pending, translated, attempts, rounds)
            merge(summary, run_step(fx, translate.TRANSLATE, slices(texts, fx.cfg.sizes.batch_size),
                                    fx.cfg.roles.synthesizer)[0])
            for batch in slices(pending, fx.cfg.sizes.batch_size):
                merge(summary, translate.store_translated_pairs(fx, batch))
            if texts.is_empty():
                break
        paired = stored_ids(fx.warehouse, "queries/stored_pair_ids.sql", records["pair_id"].to_list())
        summary["records_translated"] = len(paired)
        summary["records_left"] = records.height - len(paired)
    return summary


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"elements": elements_flow, "synthesize": synthesize_flow, "augment": augment_flow,
         "translate": translate_flow}

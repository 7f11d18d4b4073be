"""Labelling flows: responder fan-out, judge votes, adjudication of hard samples, judge agreement."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from libra.flows.common import merge, stage_run
from libra.tasks.annotation import dawid_skene, judge, respond
from libra.tasks.core.runs import Factory
from libra.tasks.llm import step
from libra.tasks.reports import agreement
from libra.warehouse import sql_text


@flow(name="respond", log_prints=True)
def respond_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None) -> dict:
    """Fan every kept query out to every responder."""
    with stage_run("respond", config, warehouse, parent_run_id) as (fx, summary):
        wanted = respond.wanted_responses(fx.endpoint_pairs(fx.cfg.roles.responders), fx.cfg.sizes.samples_per_responder)
        pending = step.pages(fx.warehouse, respond.RESPOND.pending, fx.cfg.sizes.batch_size, frames={"wanted": wanted})
        done, summary["pending"] = step.run_step(fx, respond.RESPOND, pending)
        merge(summary, done)
    return summary


@flow(name="annotate", log_prints=True)
def annotate_flow(config: Path, warehouse: Path | None = None, parent_run_id: str | None = None) -> dict:
    """Every judge votes on every response; hard samples then go to the adjudicator; agreement is reported."""
    with stage_run("annotate", config, warehouse, parent_run_id) as (fx, summary):
        setup = judge.JudgeSetup.from_config(fx.cfg, fx.taxonomy)  # a bad rules file fails before any call
        # vote.drop_judges are neither asked nor counted; every other judge is asked until it answers
        judges = pl.DataFrame(fx.endpoint_pairs(fx.cfg.voting_judges), schema=["judge", "model"], orient="row")
        pending = step.pages(fx.warehouse, judge.JUDGE.pending, fx.cfg.sizes.batch_size, frames={"judges": judges})
        votes, summary["pending_votes"] = step.run_step(fx, judge.JUDGE, pending, setup)
        if votes:
            merge(summary, {"votes": votes})
        if fx.cfg.vote.method == "dawid_skene":  # before adjudication: low-confidence labels are hard samples
            summary["label_model"] = _publish_label_model(fx)
        merge(summary, adjudicate_hard_samples(fx, setup))
        status = fx.warehouse.query(sql_text("queries/vote_status_counts.sql"))
        summary["vote_status"] = dict(status.iter_rows())
        summary["agreement"] = _publish_agreement(fx)
    return summary


def adjudicate_hard_samples(fx: Factory, setup: judge.JudgeSetup) -> dict:
    """The adjudicator labels every hard sample whose votes are complete and that nobody settled yet
    (judge disagreement, low confidence, a guard's disagreement: v_hard_samples). Without an adjudicator
    in the config the samples wait for human review."""
    if not fx.cfg.roles.adjudicator:
        return {}
    hard = step.pages(fx.warehouse, judge.ADJUDICATE.pending, fx.cfg.sizes.batch_size,
                      {"n_judges": len(fx.cfg.voting_judges)})
    summary: dict = {}
    done, summary["pending_adjudications"] = step.run_step(
        fx, judge.ADJUDICATE, hard, judge.AdjudicationContext(setup, fx.cfg.roles.adjudicator))
    if done:
        summary["adjudications"] = done
    return summary


def _publish_label_model(fx: Factory) -> dict:
    """Fit and store the Dawid-Skene label model; its per-judge estimates as artifacts."""
    figures = dawid_skene.store_label_model(fx.warehouse, fx.run_id, fx.cfg.vote.min_confidence)
    if figures["items"]:
        judges = fx.warehouse.query(sql_text("queries/label_model_judges.sql"))
        create_table_artifact(table=judges.to_dicts(), key="annotate-label-model-judges",
                              description="libra annotate: each judge's estimated accuracy (Dawid-Skene)")
        confusion = fx.warehouse.query(sql_text("queries/label_model_confusion.sql"))
        create_table_artifact(table=confusion.to_dicts(), key="annotate-label-model-confusion",
                              description="libra annotate: each judge's estimated confusion matrix (Dawid-Skene)")
        chart = dawid_skene.judge_chart(judges, fx.warehouse.path.parent / "reports" / "label_model_judges.png")
        figures["chart"] = str(chart)
    return figures


def _publish_agreement(fx: Factory) -> dict:
    """Judge agreement over the warehouse as it stands after this run: artifacts, and the headline figures."""
    report = agreement.agreement_report(fx.warehouse)
    if report.per_judge.is_empty():
        return {}
    create_table_artifact(table=report.per_judge.to_dicts(), key="annotate-judge-agreement",
                          description="libra annotate: agreement of each judge with the final label, per scenario")
    create_table_artifact(table=report.kappa.to_dicts(), key="annotate-judge-kappa",
                          description="libra annotate: Cohen's kappa per judge pair, per scenario")
    create_table_artifact(table=report.confusion.to_dicts(), key="annotate-judge-confusion",
                          description="libra annotate: label confusion per judge pair, per scenario")
    create_markdown_artifact(markdown=report.markdown(), key="annotate-agreement",
                             description="libra annotate: judge agreement (Fleiss' and Cohen's kappa)")
    return report.overall()


# `libra run <name>` finds flows here (see flows/factory.py: STAGE_FLOWS).
FLOWS = {"respond": respond_flow, "annotate": annotate_flow}

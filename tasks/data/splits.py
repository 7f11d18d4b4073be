"""Step 10: split settled queries into pretrain / finetune / eval, and export them for trainers.

Assignment (`assign_splits`) works on near-duplicate clusters, so a cluster never spans two splits:
- eval: a held-out share (`eval_fraction`) of every scenario x label stratum, chosen by a hash of
  (seed, cluster): the same seed gives the same split. Targets count what earlier runs already held
  out, so the stratification holds over the whole warehouse as it grows;
- finetune: real queries and queries with a hard sample settled by an adjudicator or a human;
- pretrain: the rest (synthetic and translated queries whose labels come from agreement or majority).
A query's split is stored once (table `splits`) and moves only one way: a pretrain query that later comes
to hold a hard sample settled by an adjudicator or a human (a stage-1 guard disagreed with its judges:
`libra run mine`) moves to finetune with its cluster, as if it had been hard from the start
(`move_verified_hard`, recorded in `split_moves`). Eval never moves and nothing moves into it.
Benchmark-contaminated queries are never assigned, and are filtered from training exports if the leak is
found after assignment.

Export (`export_dataset`) writes, per split, chat JSONL (the guard prompt of tasks/training/guard_prompt.py, the
rear-critic JSON as the assistant turn), Parquet with every metadata column, and LLaMA-Factory's
ShareGPT layout with its dataset_info.json, into a folder named by the content hash of the data files,
with a manifest (counts, hashes, source runs, config) and a dataset card.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.core.config import Split
from libra.tasks.core.ids import content_hash, file_sha256
from libra.tasks.llm.step import PendingQuery, pages
from libra.tasks.training.guard_prompt import GuardInstruction
from libra.warehouse import Warehouse, sql_text
from libra.warehouse.schemas import schema

SPLITS = ("pretrain", "finetune", "eval")
TRAINING_SPLITS = ("pretrain", "finetune")
SPLIT_SCHEMA = schema("splits")


def _order(seed: int, key: str) -> str:
    return content_hash(seed, key, "split")


def assign_splits(settled: pl.DataFrame, params: Split, run_id: str) -> pl.DataFrame:
    """New `splits` rows for the settled queries that have none yet.

    settled: query_id, source, scenario, label, cluster_id, has_verified_hard, split (stored or null),
    cluster_split (a split already held by the cluster, or null) — see queries/split_candidates.sql.
    """
    if settled.is_empty():
        return pl.DataFrame(schema=SPLIT_SCHEMA)
    clusters: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in settled.sort("query_id").iter_rows(named=True):
        clusters[r["cluster_id"]].append(r)

    decided: dict[str, str] = {}  # cluster -> split, for clusters that already hold one
    for cid, members in clusters.items():
        held = {m["split"] for m in members if m["split"]} | {m["cluster_split"] for m in members if m["cluster_split"]}
        if held:
            decided[cid] = min(held)  # one split per cluster; min() keeps it deterministic regardless

    # Strata by the cluster's first member; eval targets count the queries already held out.
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for cid, members in clusters.items():
        strata[(members[0]["scenario"], members[0]["label"])].append(cid)
    eval_clusters: set[str] = set()
    for cids in strata.values():
        total = sum(len(clusters[c]) for c in cids)
        have = sum(len(clusters[c]) for c in cids if decided.get(c) == "eval")
        want = round(params.eval_fraction * total) - have
        open_ = sorted((c for c in cids if c not in decided
                        and all(m["source"] in params.eval_sources for m in clusters[c])),
                       key=lambda c: _order(params.seed, c))
        for cid in open_:
            if want <= 0:
                break
            eval_clusters.add(cid)
            want -= len(clusters[cid])

    rows = []
    for cid, members in clusters.items():
        if cid in decided:
            split = decided[cid]
        elif cid in eval_clusters:
            split = "eval"
        elif any(m["source"] == "real" or m["has_verified_hard"] for m in members):
            split = "finetune"
        else:
            split = "pretrain"
        rows += [{"query_id": m["query_id"], "split": split, "seed": params.seed, "run_id": run_id}
                 for m in members if not m["split"]]
    return pl.DataFrame(rows, schema=SPLIT_SCHEMA).sort("query_id")


def settled_queries(wh: Warehouse, n_judges: int, needs_adjudication: bool,
                    wanted: pl.DataFrame | None = None) -> pl.DataFrame:
    """Queries whose responses and votes are all in and settled (queries/split_candidates.sql).

    wanted: the (responder, model, sample_index) grid every kept query should have (tasks/annotation/respond.py:
    wanted_responses); without it, every responder model and sample index the warehouse has seen."""
    if wanted is None:
        wanted = wh.query(sql_text("queries/responder_grid.sql"))
    return wh.query(sql_text("queries/split_candidates.sql"),
                    {"n_judges": n_judges, "needs_adjudication": needs_adjudication}, frames={"wanted": wanted})


def move_verified_hard(wh: Warehouse, run_id: str) -> int:
    """Move the pretrain queries holding a verified hard sample (and their clusters) to finetune, in one
    transaction with their `split_moves` record; returns how many moved."""
    moves = wh.query(sql_text("queries/pretrain_verified_hard.sql"))
    if moves.is_empty():
        return 0
    with wh.writer():
        recorded = wh.insert("split_moves", moves.with_columns(pl.lit(run_id).alias("run_id"))
                             .select(list(schema("split_moves"))))
        wh.execute(sql_text("queries/apply_split_moves.sql"), {"run_id": run_id})
    return recorded


def assign_and_store(wh: Warehouse, params: Split, *, n_judges: int, needs_adjudication: bool,
                     run_id: str, wanted: pl.DataFrame | None = None) -> dict[str, Any]:
    """Assign the settled queries that have no split yet and store them (a stored split moves only from
    pretrain to finetune: `move_verified_hard`)."""
    moved = move_verified_hard(wh, run_id)
    settled = settled_queries(wh, n_judges, needs_adjudication, wanted)
    rows = assign_splits(settled, params, run_id)
    inserted = wh.insert("splits", rows)
    assigned = dict(zip(rows["query_id"].to_list(), rows["split"].to_list(), strict=True))
    now = settled.with_columns(pl.coalesce(pl.col("split"), pl.col("query_id").replace_strict(
        assigned, default=None, return_dtype=pl.String)).alias("split"))
    strata = stratification(now, params)
    off = strata.filter(~pl.col("within_tolerance"))
    return {
        "assigned": inserted, **{k: int(v) for k, v in Counter(rows["split"].to_list()).items()},
        "moved_to_finetune": moved,
        "strata": strata.height, "strata_outside_tolerance": off.height,
        "contaminated_excluded": int(wh.scalar(sql_text("queries/contaminated_count.sql")) or 0),
    }


def stratification(settled: pl.DataFrame, params: Split) -> pl.DataFrame:
    """Per scenario x label stratum: queries, eval queries, the eval target and whether the difference is
    within tolerance (max(1, stratify_tolerance x queries)). `settled` needs a filled `split` column."""
    if settled.is_empty():
        return pl.DataFrame(schema={"scenario": pl.String, "label": pl.String, "n": pl.Int64, "n_eval": pl.Int64,
                                    "target": pl.Float64, "within_tolerance": pl.Boolean})
    return (
        settled.group_by("scenario", "label")
        .agg(pl.len().cast(pl.Int64).alias("n"), (pl.col("split") == "eval").sum().cast(pl.Int64).alias("n_eval"))
        .with_columns((pl.col("n") * params.eval_fraction).alias("target"))
        .with_columns(((pl.col("n_eval") - pl.col("target")).abs()
                       <= pl.max_horizontal(pl.lit(1.0), pl.col("n") * params.stratify_tolerance))
                      .alias("within_tolerance"))
        .sort("scenario", "label")
    )


# -- export records ----------------------------------------------------------------------------------


def critic_target(label: str, analysis: str, critic: str = "rear") -> str:
    """The assistant's answer in a training export: the rear critic (label first, then the analysis:
    the recipe's default), the front critic (analysis first) or the label alone (critic none)."""
    if critic == "rear":
        return json.dumps({"答案": label, "分析": analysis}, ensure_ascii=False)
    if critic == "front":
        return json.dumps({"分析": analysis, "答案": label}, ensure_ascii=False)
    if critic == "none":
        return json.dumps({"答案": label}, ensure_ascii=False)
    raise ValueError(f"unknown critic {critic!r} (rear, front or none)")


def chat_records(rows: pl.DataFrame, instruction: GuardInstruction, critic: str = "rear") -> list[dict[str, Any]]:
    return [
        {"id": r["response_id"],
         "messages": instruction.messages(r["query"], r["response"])
         + [{"role": "assistant", "content": critic_target(r["label"], r["analysis"] or "", critic)}],
         "label": r["label"], "scenario": r["scenario"], "subcategory": r["subcategory"], "source": r["source"],
         "split": r["split"], "query_id": r["query_id"]}
        for r in rows.iter_rows(named=True)
    ]


def sharegpt_records(rows: pl.DataFrame, instruction: GuardInstruction, critic: str = "rear") -> list[dict[str, Any]]:
    """LLaMA-Factory's ShareGPT layout: conversations of {from: human|gpt, value}, optional system."""
    system_prompt = instruction.system_prompt
    out = []
    for rec in chat_records(rows, instruction, critic):
        turns = [{"from": {"user": "human", "assistant": "gpt"}[m["role"]], "value": m["content"]}
                 for m in rec["messages"] if m["role"] != "system"]
        item: dict[str, Any] = {"id": rec["id"], "conversations": turns}
        if system_prompt:
            item["system"] = system_prompt
        out.append(item | {"label": rec["label"], "scenario": rec["scenario"], "source": rec["source"]})
    return out


def dataset_info(files: dict[str, str], system_prompt: str | None) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json entries, one per split: `libra_<split>`."""
    columns = {"messages": "conversations"} | ({"system": "system"} if system_prompt else {})
    return {
        f"libra_{split}": {
            "file_name": name, "formatting": "sharegpt", "columns": columns,
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
        for split, name in files.items()
    }


def balance(rows: pl.DataFrame, max_ratio: float | None, seed: int) -> tuple[pl.DataFrame, int]:
    """Per scenario, keep at most max_ratio rows of the larger label per row of the smaller one (the
    rows kept are chosen by a hash of seed and response id). Returns (rows, number dropped)."""
    if max_ratio is None or rows.is_empty():
        return rows, 0
    keep: list[str] = []
    for _, group in rows.group_by("scenario", maintain_order=True):
        by_label = {lbl: g for (lbl,), g in group.group_by("label")}
        if len(by_label) < 2:
            keep += group["response_id"].to_list()
            continue
        smaller = min(g.height for g in by_label.values())
        cap = int(max_ratio * smaller)
        for g in by_label.values():
            ids = sorted(g["response_id"].to_list(), key=lambda rid: content_hash(seed, rid, "balance"))
            keep += ids[:cap]
    kept = rows.filter(pl.col("response_id").is_in(keep))
    return kept, rows.height - kept.height


# -- the export ----------------------------------------------------------------------------------

EXPORT = PendingQuery("queries/export_page.sql", (("response_id", ""),))
# Rows of a split read, encoded and written at once: what the export holds of a split's texts (the
# texts, the guard prompt around each and three encodings, per page in flight). The split's thin
# columns (queries/export_index.sql) are held whole: balancing, the manifest and the card need them.
EXPORT_PAGE = 5_000


@dataclass
class EncodedPage:
    """One page of a split in the export's three formats: chat JSONL lines; ShareGPT items, each rendered
    as an element of the file's list (`json.dumps(list, indent=1)` of the whole split, cut per page) and
    joined by ",\n"; and a Parquet file of the page's rows (every metadata column)."""

    n_rows: int
    jsonl: str
    sharegpt: str
    parquet: bytes


def encode_page(rows: pl.DataFrame, instruction: GuardInstruction, critic: str = "rear") -> EncodedPage:
    """A page of export rows in the three formats: a function of the rows alone, so it runs on a worker."""
    jsonl = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in chat_records(rows, instruction, critic))
    items = ("\n".join(" " + line for line in json.dumps(item, ensure_ascii=False, indent=1).split("\n"))
             for item in sharegpt_records(rows, instruction, critic))
    parquet = io.BytesIO()
    rows.write_parquet(parquet)
    return EncodedPage(rows.height, jsonl, ",\n".join(items), parquet.getvalue())


class SplitFiles:
    """<split>.jsonl (chat), <split>.parquet (all metadata) and <split>.sharegpt.json, written page by
    page in the flow process; the pages' Parquet parts become one file (streamed) on close."""

    def __init__(self, split: str, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.split, self.n_rows = split, 0
        self.paths = {"chat-jsonl": out_dir / f"{split}.jsonl", "parquet": out_dir / f"{split}.parquet",
                      "sharegpt": out_dir / f"{split}.sharegpt.json"}
        self.parts_dir = out_dir / f".{split}.parts"
        self.parts_dir.mkdir()
        self.parts: list[Path] = []
        self.jsonl = self.paths["chat-jsonl"].open("w", encoding="utf-8")
        self.sharegpt = self.paths["sharegpt"].open("w", encoding="utf-8")

    def write(self, page: EncodedPage) -> None:
        if not page.n_rows:
            return
        self.jsonl.write(page.jsonl)
        self.sharegpt.write(("[\n" if self.n_rows == 0 else ",\n") + page.sharegpt)
        part = self.parts_dir / f"{len(self.parts):06d}.parquet"
        part.write_bytes(page.parquet)
        self.parts.append(part)
        self.n_rows += page.n_rows

    def close(self, empty: pl.DataFrame) -> list[dict[str, Any]]:
        """Finish the files (`empty`: the rows' schema, for a split without rows); one entry each (split,
        format, name, path, n_rows, sha256)."""
        self.sharegpt.write("\n]" if self.n_rows else "[]")
        self.jsonl.close()
        self.sharegpt.close()
        if self.parts:
            pl.scan_parquet(self.parts).sink_parquet(self.paths["parquet"])
        else:
            empty.write_parquet(self.paths["parquet"])
        shutil.rmtree(self.parts_dir)
        return [{"split": self.split, "format": fmt, "name": path.name, "path": str(path), "n_rows": self.n_rows,
                 "sha256": file_sha256(path)} for fmt, path in self.paths.items()]


# (pages of export rows) -> their encodings, in order: in this process, or on the run's task runner
Encoder = Callable[[Iterable[pl.DataFrame]], Iterator[EncodedPage]]


def export_index(wh: Warehouse, split: str) -> pl.DataFrame:
    """A split's export rows as thin columns (no texts)."""
    return wh.query(sql_text("queries/export_index.sql"), {"split": split})


def export_pages(wh: Warehouse, split: str, page_size: int = EXPORT_PAGE) -> Iterator[pl.DataFrame]:
    """A split's export rows (v_export_rows) in keyset pages, in response_id order."""
    return pages(wh, EXPORT, page_size, {"split": split})


def export_rows(wh: Warehouse, split: str) -> pl.DataFrame:
    """A whole split's export rows (the eval split for a benchmark file: a small share)."""
    found = list(export_pages(wh, split))
    return pl.concat(found) if found else _empty_rows(wh, split)


def _empty_rows(wh: Warehouse, split: str) -> pl.DataFrame:
    return wh.query(sql_text(EXPORT.file), {"split": split, "after_response_id": "", "page_size": 0})


def export_dataset(wh: Warehouse, params: Split, instruction: GuardInstruction, root: Path, run_id: str,
                   config: dict[str, Any] | None = None, encoder: Encoder | None = None,
                   page_size: int = EXPORT_PAGE) -> dict[str, Any]:
    """Export every split into root/<export_id>/ (export_id = hash of the data files): the same data
    exported twice is one version. Records the files in `exports` and the version in `export_versions`,
    and writes manifest.json and the dataset card (card.md + charts/).

    Each split is read in keyset pages of `page_size` rows; `encoder` turns the pages into the three
    formats (default: here, one after the other; the split flow passes one that encodes on its task
    runner, pages in flight while this process writes). Balancing decides on the split's thin columns
    first, and the pages keep the rows it kept."""
    from libra.tasks.core.runs import code_version
    from libra.tasks.reports import cards

    def encode_here(found: Iterable[pl.DataFrame]) -> Iterator[EncodedPage]:
        return (encode_page(page, instruction, params.critic) for page in found)

    encode = encoder or encode_here
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    files: list[dict[str, Any]] = []
    frames: dict[str, pl.DataFrame] = {}  # per split, its kept rows' thin columns
    dropped: dict[str, int] = {}
    try:
        for split in SPLITS:
            index = export_index(wh, split)
            if split in TRAINING_SPLITS:
                index, dropped[split] = balance(index, params.balance_max_ratio, params.seed)
            frames[split] = index
            kept = index.select("response_id")
            found = (page.join(kept, on="response_id", how="semi") for page in export_pages(wh, split, page_size))
            out = SplitFiles(split, staging)
            for encoded in encode(page for page in found if page.height):
                out.write(encoded)
            files += out.close(_empty_rows(wh, split))
        info = dataset_info({f["split"]: f["name"] for f in files if f["format"] == "sharegpt"},
                            instruction.system_prompt)
        (staging / "dataset_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
        # The target variant (critic) and the prompt (rules) are in the files, hence in the id too.
        export_id = content_hash(sorted(f["sha256"] for f in files), length=12)
        final = root / export_id
        if final.exists():  # the same data was exported before: that version stands
            shutil.rmtree(staging)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for f in files:
        f["path"] = str(final / f["name"])
    manifest_path = final / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    else:
        all_rows = pl.concat(list(frames.values()))
        source_runs = sorted(set(all_rows["query_run_id"].to_list()) | set(all_rows["response_run_id"].to_list()))
        manifest = {
            "export_id": export_id, "format_version": 1, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": run_id, "code_version": code_version(),
            "counts": {s: frames[s].height for s in SPLITS},
            "counts_by_scenario_label": {s: _nested_counts(frames[s]) for s in SPLITS},
            "files": files, "balance_dropped": dropped,
            "excluded_contaminated": int(wh.scalar(sql_text("queries/contaminated_count.sql")) or 0),
            "source_run_ids": source_runs, "split": params.model_dump(mode="json"),
            "guard_prompt": instruction.describe(), "target": {"critic": params.critic}, "config": config or {},
        }
        manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        cards.write_card(final, manifest, frames, wh)
    manifest_sha = file_sha256(manifest_path)
    with wh.writer():
        wh.insert("exports", pl.DataFrame([
            {"export_id": f"{export_id}-{f['split']}-{f['format']}", "split": f["split"], "format": f["format"],
             "path": f["path"], "n_rows": f["n_rows"], "sha256": f["sha256"],
             "manifest": json.dumps({"export": export_id, "manifest_sha256": manifest_sha, "critic": params.critic,
                                     "guard_prompt": instruction.version}), "run_id": run_id}
            for f in files
        ]))
        wh.insert("export_versions", pl.DataFrame([{
            "export_id": export_id, "path": str(final), "manifest": json.dumps(manifest, ensure_ascii=False),
            "manifest_sha256": manifest_sha, "n_rows": sum(manifest["counts"].values()), "run_id": run_id,
        }]))
    return {"export_id": export_id, "path": str(final), **manifest["counts"],
            "balance_dropped": sum(dropped.values())}


def _nested_counts(rows: pl.DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for (scenario, label), n in Counter(zip(rows["scenario"].to_list(), rows["label"].to_list())).items():
        out[scenario or "(none)"][label] = n
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}

"""Dedup benchmark: the vectorised MinHash LSH path against a naive per-document datasketch loop.

The corpus is the real Chinese queries in ../shared/data/real (every file but the English one), cleaned
of their own duplicates, plus planted near-duplicates of a share of them: character edits, inserted or
deleted punctuation and particles, synonym swaps, prefix/suffix padding (one edit each; --max-edits 2: one or two), so the
ground truth is known: two texts are duplicates iff they come from the same original ("family").

For each setting it prints precision and recall over duplicate pairs (pairs in one predicted cluster
vs pairs in one family); precision and recall of the drops (drop P: share of dropped texts whose kept
text is of their family; drop R: such drops over the redundant texts, all of a family but one); docs/s
and peak memory (each run in a fresh process: peak RSS above the
process's RSS after loading the corpus). The naive loop is datasketch as documented: MinHash.update
per shingle, then MinHashLSH query + insert per document, on the same corpus in the same run.
Last line: `default/naive speed ratio: X.XX recall: 0.XXX precision: 0.XXX` (at the default setting).

    python bench/dedup.py [--data ../shared/data/real] [--variants 1.5] [--max-edits 1] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from libra.tasks.dedup.near import DedupParams, dedup_stream, normalize_for_dedup

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real"

# -- the corpus --------------------------------------------------------------------------------------


def _csv_column(path: Path, column: str | int, header: bool = True) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f)
        if not header:
            return [r[column] for r in rows if r]  # type: ignore[index]
        head = next(rows)
        i = head.index(column)  # type: ignore[arg-type]
        return [r[i] for r in rows if len(r) > i]


def _jsonl_field(path: Path, key: str) -> list[str]:
    with path.open(encoding="utf-8-sig") as f:
        return [json.loads(line)[key] for line in f if line.strip()]


def load_real(data: Path) -> list[str]:
    """Every Chinese query text in the real files (the English BeaverTails file is left out)."""
    texts: list[str] = []
    texts += _jsonl_field(data / "flames_1k_zh.jsonl", "prompt")
    texts += _jsonl_field(data / "cvalues_responsibility_prompts.jsonl", "prompt")
    texts += [r["文本"] for r in json.loads((data / "chineseharm_bench.json").read_text(encoding="utf-8-sig"))]
    for name in ("jade_v2_easy_zh.csv", "jade_v2_medium_zh.csv"):
        texts += _csv_column(data / name, "问题")
    texts += _csv_column(data / "jailbench_zh.csv", "query")
    texts += _csv_column(data / "multijail.csv", "zh")
    for path in sorted((data / "xsafety_zh").glob("*.csv")):
        texts += _csv_column(path, 0, header=False)
    return [t.strip() for t in texts if isinstance(t, str) and t.strip()]


def _char3(text: str) -> set[str]:
    norm = normalize_for_dedup(text)
    return {norm[i : i + 3] for i in range(max(1, len(norm) - 2))}


def drop_natural_duplicates(texts: list[str], jaccard: float = 0.5) -> list[str]:
    """The originals must not duplicate each other, or the ground truth would be wrong: keep the first of
    every group of texts whose character-3-gram Jaccard similarity is >= `jaccard` (candidates from
    datasketch's MinHashLSH at a lower threshold, then the exact similarity) and of every exact repeat."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=jaccard - 0.2, num_perm=64)
    kept: list[str] = []
    sets: dict[int, set[str]] = {}
    seen: set[str] = set()
    for text in texts:
        norm = normalize_for_dedup(text)
        if norm in seen or len(norm) < 4:
            continue
        s = _char3(text)
        m = MinHash(num_perm=64)
        m.update_batch([g.encode() for g in s])
        if any(len(s & sets[k]) / len(s | sets[k]) >= jaccard for k in lsh.query(m)):
            continue
        seen.add(norm)
        sets[len(kept)] = s
        lsh.insert(len(kept), m)
        kept.append(text)
    return kept


PUNCT = "，。？！、；：…,.?! "
PARTICLES = "吗呢吧啊呀了的嘛哦"
SYNONYMS = [("怎么", "如何"), ("怎样", "怎么样"), ("可以", "能够"), ("方法", "办法"), ("为什么", "为何"),
            ("非常", "十分"), ("知道", "了解"), ("觉得", "认为"), ("是否", "是不是"), ("应该", "应当"),
            ("孩子", "小孩"), ("别人", "他人"), ("东西", "物品"), ("现在", "目前"), ("如果", "假如"),
            ("但是", "可是"), ("因为", "由于"), ("所以", "因此"), ("帮我", "替我"), ("告诉我", "跟我说"),
            ("一些", "一点"), ("我们", "咱们"), ("什么", "啥"), ("获得", "得到"), ("使用", "利用")]
PREFIXES = ["请问，", "我想问一下，", "你好，", "麻烦告诉我：", "在线等，急：", "问个问题：", "求助！"]
SUFFIXES = ["谢谢！", "求解答。", "急急急", "请详细说明。", "在线等。", "谢谢大家", "有人知道吗？"]
FILLER = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"


def _edit(text: str, rng: random.Random) -> str:
    kind = rng.choice(["char", "char", "punct", "particle", "synonym", "pad"])
    i = rng.randrange(len(text) + 1)
    if kind == "char":
        op = rng.choice(["sub", "del", "ins"])
        j = min(i, len(text) - 1)
        if op == "sub":
            return text[:j] + rng.choice(FILLER) + text[j + 1 :]
        if op == "del":
            return text[:j] + text[j + 1 :]
        return text[:i] + rng.choice(FILLER) + text[i:]
    if kind == "punct":
        marks = [k for k, c in enumerate(text) if c in PUNCT]
        if marks and rng.random() < 0.5:
            k = rng.choice(marks)
            return text[:k] + text[k + 1 :]
        return text[:i] + rng.choice(PUNCT) + text[i:]
    if kind == "particle":
        found = [k for k, c in enumerate(text) if c in PARTICLES]
        if found and rng.random() < 0.5:
            k = rng.choice(found)
            return text[:k] + text[k + 1 :]
        return text[:i] + rng.choice(PARTICLES) + text[i:]
    if kind == "synonym":
        pairs = [(a, b) for a, b in SYNONYMS if a in text] + [(b, a) for a, b in SYNONYMS if b in text]
        if pairs:
            a, b = rng.choice(pairs)
            return text.replace(a, b, 1)
        return text[:i] + rng.choice(PARTICLES) + text[i:]
    return rng.choice(PREFIXES) + text if rng.random() < 0.5 else text + rng.choice(SUFFIXES)


def planted_variant(text: str, rng: random.Random, max_edits: int) -> str:
    out = text
    for _ in range(rng.randint(1, max_edits)):
        out = _edit(out, rng)
    return out


def build_corpus(data: Path, variants_per_original: float, max_edits: int, seed: int = 7) -> pl.DataFrame:
    """id, text, family (the original's id), length (of the original): originals and variants, shuffled."""
    rng = random.Random(seed)
    originals = drop_natural_duplicates(load_real(data))
    rows = [{"id": f"o{i}", "text": t, "family": f"o{i}"} for i, t in enumerate(originals)]
    n_variants = int(len(originals) * variants_per_original)
    for k in range(n_variants):
        i = rng.randrange(len(originals))
        rows.append({"id": f"v{k}", "text": planted_variant(originals[i], rng, max_edits), "family": f"o{i}"})
    rng.shuffle(rows)
    lengths = pl.DataFrame({"family": [f"o{i}" for i in range(len(originals))],
                            "length": [len(normalize_for_dedup(t)) for t in originals]})
    return pl.DataFrame(rows).join(lengths, on="family", maintain_order="left")


# -- one measured run (in a fresh process) ------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (resource.getpagesize() // 1024)


def naive_clusters(ids: list[str], texts: list[str], params: DedupParams) -> list[str]:
    """The textbook datasketch loop: one MinHash per document updated shingle by shingle, an LSH query
    (a hit joins the first hit's cluster) and insert per document."""
    from datasketch import MinHash, MinHashLSH

    if params.shingle == "word":
        import jieba

        jieba.setLogLevel(60)
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    cluster_of: dict[str, str] = {}
    n = params.ngram
    for item, text in zip(ids, texts, strict=True):
        norm = normalize_for_dedup(text)
        tokens = jieba.lcut(norm) if params.shingle == "word" else list(norm)
        grams = ["".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)] or ["".join(tokens)]
        m = MinHash(num_perm=params.num_perm)
        for g in grams:
            m.update(g.encode("utf-8"))
        hits = lsh.query(m)
        if hits:
            cluster_of[item] = cluster_of[min(hits)]
        else:
            cluster_of[item] = item
        lsh.insert(item, m)
    return [cluster_of[i] for i in ids]


DEFAULT_BATCH = 10_000


def run_one(corpus_path: Path, setting: str, batch_size: int) -> dict:
    corpus = pl.read_parquet(corpus_path)
    ids, texts = corpus["id"].to_list(), corpus["text"].to_list()
    kind, shingle, ngram, threshold = setting.split(":")
    params = DedupParams(shingle=shingle, ngram=int(ngram), threshold=float(threshold),  # type: ignore[arg-type]
                         workers=2 if shingle == "word" else 1)
    if shingle == "word":  # load jieba's dictionary before the clock starts, for both paths
        import jieba

        jieba.setLogLevel(60)
        jieba.initialize()
    base = _rss_kib()
    start = time.perf_counter()
    if kind == "naive":
        clusters = naive_clusters(ids, texts, params)
    else:
        out = dedup_stream(zip(ids, texts, strict=True), params, batch_size=batch_size)
        clusters = out["cluster_id"].to_list()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"setting": setting, "docs": len(ids), "seconds": seconds, "docs_per_s": len(ids) / seconds,
            "peak_mib": max(0, peak - base) / 1024, **pair_scores(corpus, clusters)}


LENGTH_GROUPS = [(0, 10), (11, 20), (21, 1 << 30)]


def pair_scores(corpus: pl.DataFrame, clusters: list[str]) -> dict[str, float]:
    """Precision and recall over unordered pairs (predicted: same cluster; true: same family), and recall
    within families whose original has <= 10, 11-20, > 20 characters (after normalisation)."""
    frame = corpus.select("family", "length").with_columns(cluster=pl.Series(clusters))

    def pairs(counts: pl.Series) -> int:
        c = counts.to_numpy().astype(np.int64)
        return int((c * (c - 1) // 2).sum())

    predicted = pairs(frame.group_by("cluster").len()["len"])
    true = pairs(frame.group_by("family").len()["len"])
    both = pairs(frame.group_by("cluster", "family").len()["len"])
    out = {"precision": both / predicted if predicted else 1.0, "recall": both / true if true else 1.0}
    for lo, hi in LENGTH_GROUPS:
        part = frame.filter(pl.col("length").is_between(lo, hi))
        t = pairs(part.group_by("family").len()["len"])
        out[f"recall_{lo}_{hi}"] = pairs(part.group_by("cluster", "family").len()["len"]) / t if t else 1.0
    # the decisions themselves: a text is dropped iff its cluster is another text; a drop is right when
    # the text it was dropped for is of its family; every family needs one kept text, the rest are redundant
    family_of = dict(zip(corpus["id"].to_list(), corpus["family"].to_list(), strict=True))
    dropped = [(i, c) for i, c in zip(corpus["id"].to_list(), clusters, strict=True) if c != i]
    right = sum(family_of[i] == family_of[c] for i, c in dropped)
    redundant = corpus.height - corpus["family"].n_unique()
    out["drop_precision"] = right / len(dropped) if dropped else 1.0
    out["drop_recall"] = right / redundant if redundant else 1.0
    return out


# -- the report ---------------------------------------------------------------------------------------

DEFAULT = DedupParams()
DEFAULT_SETTING = f"ours:{DEFAULT.shingle}:{DEFAULT.ngram}:{DEFAULT.threshold:g}"
OURS = [f"ours:char:2:{t}" for t in (0.5, 0.6, 0.7)] + [f"ours:char:3:{t}" for t in (0.5, 0.6)] + [
    f"ours:char:5:{t}" for t in (0.6, 0.7)] + [f"ours:word:{n}:0.6" for n in (1, 2, 3)] + ["ours:word:3:0.7"]
NAIVE = f"naive:{DEFAULT.shingle}:{DEFAULT.ngram}:{DEFAULT.threshold:g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--variants", type=float, default=1.5, help="planted variants per original")
    ap.add_argument("--max-edits", type=int, default=1, help="edits per planted variant: 1 to this")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--quick", action="store_true", help="only the default setting and its naive loop")
    ap.add_argument("--run", help=argparse.SUPPRESS)  # internal: one measured run in a fresh process
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        print(json.dumps(run_one(args.corpus, args.run, args.batch_size)))
        return
    if not args.data.is_dir():
        sys.exit(f"no real data at {args.data} (the corpus is built from ../shared/data/real)")
    corpus = build_corpus(args.data, args.variants, args.max_edits)
    n_orig = corpus.filter(pl.col("id").str.starts_with("o")).height
    print(f"corpus: {corpus.height} texts = {n_orig} real originals (no two with char-3-gram Jaccard >= 0.5) + "
          f"{corpus.height - n_orig} planted near-duplicates (1-{args.max_edits} edits); median length "
          f"{int(corpus['text'].str.len_chars().median())} chars; batches of {args.batch_size}")
    settings = [DEFAULT_SETTING, NAIVE] if args.quick else [DEFAULT_SETTING, *[s for s in OURS if s != DEFAULT_SETTING], NAIVE]
    results = {}
    print(f"{'setting':<20} {'precision':>9} {'recall':>7} {'<=10ch':>7} {'11-20ch':>7} {'>20ch':>7} "
          f"{'drop P':>7} {'drop R':>7} {'docs/s':>8} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.parquet"
        corpus.write_parquet(path)
        for setting in settings:
            proc = subprocess.run([sys.executable, __file__, "--run", setting, "--corpus", str(path),
                                   "--batch-size", str(args.batch_size)], capture_output=True, text=True, check=True)
            r = results[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
            by_length = " ".join(f"{r[f'recall_{lo}_{hi}']:>7.3f}" for lo, hi in LENGTH_GROUPS)
            mark = "  <- default" if setting == DEFAULT_SETTING else ""
            print(f"{setting:<20} {r['precision']:>9.3f} {r['recall']:>7.3f} {by_length} {r['drop_precision']:>7.3f} "
                  f"{r['drop_recall']:>7.3f} {r['docs_per_s']:>8.0f} "
                  f"{r['peak_mib']:>9.1f}{mark}", flush=True)
    ours, naive = results[DEFAULT_SETTING], results[NAIVE]
    print(f"default/naive speed ratio: {ours['docs_per_s'] / naive['docs_per_s']:.2f} "
          f"recall: {ours['recall']:.3f} precision: {ours['precision']:.3f}")


if __name__ == "__main__":
    main()

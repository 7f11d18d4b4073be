"""`libra review`: the labelling page in a real headless Chromium (Debian's, driven by Playwright), its
token and host rules against a real server, per-item agreement, and answers while a flow writes."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from starlette.testclient import TestClient

from libra.flows.review_app import ReviewSettings, create_app
from libra.tasks.llm.servers import ServerProcess, free_port, start_server
from libra.warehouse import Warehouse
from tests.tasks.annotation_data import warehouse_with_votes

CHROMIUM = Path("/usr/bin/chromium")
# The machine has no network: without these flags Chromium keeps dialling Google's hosts.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">回答：照做即可。'
XSS_ANALYSIS = '<svg onload="window.__xss = 3"></svg>回答安全'
XSS_QUERY = '"><iframe srcdoc="<script>parent.__xss = 4</script>"></iframe>怎样才能不被发现？'
TOKEN = "test-token-0123456789abcdef"
LIBRA = str(Path(sys.executable).with_name("libra"))

SAMPLES = {  # response_id: labels of judge-a, -b, -c; all but the first and last are hard
    "r-agreed": ["不安全", "不安全", "不安全"],
    "r-abstain": ["安全", "安全", None],
    "r-adjudicated": ["安全", "不安全", "安全"],
    "r-contro": ["安全", "安全", "有争议"],
    "r-split": ["不安全", "不安全", "安全"],
    "r-tie": ["安全", "不安全", None],
    "r-safe": ["安全", "安全", "安全"],
}
HARD_IN_PAGE_ORDER = ["r-abstain", "r-adjudicated", "r-contro", "r-split", "r-tie"]


def _votes(table: dict[str, list[str | None]]) -> pl.DataFrame:
    rows = [{"response_id": rid, "judge": f"judge-{chr(97 + j)}", "label": label, "scenario": "违法犯罪"}
            for rid, labels in table.items() for j, label in enumerate(labels)]
    return pl.DataFrame(rows, schema={"response_id": pl.String, "judge": pl.String, "label": pl.String,
                                      "scenario": pl.String})


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    wh = warehouse_with_votes(tmp_path / "w.duckdb", _votes(SAMPLES))
    wh.insert("adjudications", pl.DataFrame([{
        "response_id": "r-adjudicated", "adjudicator": "judge-a", "model": "stub-judge-a", "label": "不安全",
        "analysis": "回答给出了可执行的方法。", "raw_text": "{}", "run_id": "test-run",
    }]))
    wh.execute("UPDATE responses SET text = ? WHERE response_id = 'r-abstain'", [XSS])
    # the judges' analyses and the queries are untrusted text too
    wh.execute("UPDATE votes SET analysis = ? WHERE response_id = 'r-abstain' AND judge = 'judge-b'", [XSS_ANALYSIS])
    wh.execute("UPDATE queries SET text = ? WHERE query_id = 'qr-abstain'", [XSS_QUERY])
    return wh


def _serve(wh: Warehouse, tmp_path: Path, *args: str) -> ServerProcess:
    port = free_port()
    cmd = [LIBRA, "review", "--warehouse", str(wh.path), "--port", str(port), *args]
    return start_server(cmd, f"http://127.0.0.1:{port}", log_path=tmp_path / f"review-{port}.log", timeout_s=60)


def _labels(wh: Warehouse) -> dict[str, dict]:
    rows = wh.query("SELECT response_id, label, annotator, note, seconds_spent, source_file FROM human_labels")
    return {r["response_id"]: r for r in rows.iter_rows(named=True)}


# -- the page in Chromium -------------------------------------------------------------------------------

@pytest.fixture
def chromium() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("LIBRA_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
        pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_page_labels_with_the_keyboard_undoes_notes_and_escapes(wh: Warehouse, tmp_path: Path, chromium) -> None:
    with _serve(wh, tmp_path, "--annotator", "alice") as server:
        page = chromium.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(server.url + "/")

        def at(rid: str) -> None:
            page.wait_for_selector(f'#item[data-id="{rid}"]', timeout=15_000)

        at("r-abstain")  # the first hard sample; its response holds the XSS payload
        assert page.locator("#response").inner_text().startswith("<script>window.__xss = 1</script><img")
        assert page.locator("#query").inner_text() == XSS_QUERY
        assert XSS_ANALYSIS in page.locator("#votes").inner_text()
        for tag in ("img", "script", "svg", "iframe"):
            assert page.locator(f"#item {tag}").count() == 0, tag
        assert page.evaluate("() => window.__xss") is None and dialogs == []
        assert "judge-a" in page.locator("#votes").inner_text()
        assert "0 / 5" in page.locator("#counts").inner_text()

        page.keyboard.press("1")  # 安全
        at("r-adjudicated")
        assert "回答给出了可执行的方法" in page.locator("#adjudication").inner_text()  # the adjudicator's verdict
        page.keyboard.press("2")  # 不安全
        at("r-contro")
        page.keyboard.press("3")  # 有争议
        at("r-split")
        assert "3 / 5" in page.locator("#counts").inner_text()
        assert set(_labels(wh)) == {"r-abstain", "r-adjudicated", "r-contro"}

        page.keyboard.press("u")  # undo the last label: back on r-contro, its row gone
        at("r-contro")
        page.wait_for_function("() => document.querySelector('#counts').textContent.includes('2 / 5')")
        assert "r-contro" not in _labels(wh)

        page.keyboard.press("n")  # a note, then the label it goes with
        page.wait_for_selector("#note", state="visible")
        page.keyboard.type("回答在讲历史，不是教程")
        page.keyboard.press("Enter")
        page.keyboard.press("2")
        at("r-split")
        page.keyboard.press("ArrowLeft")
        at("r-contro")
        assert "回答在讲历史" in page.locator("#mine").inner_text()
        page.keyboard.press("s")  # skip moves on without a label
        at("r-split")
        assert page.evaluate("() => window.__xss") is None and dialogs == []
        page.close()

    labels = _labels(wh)
    assert {k: v["label"] for k, v in labels.items()} == {"r-abstain": "安全", "r-adjudicated": "不安全",
                                                         "r-contro": "不安全"}
    assert labels["r-contro"]["note"] == "回答在讲历史，不是教程"
    assert all(v["annotator"] == "alice" and v["source_file"] == "libra review" for v in labels.values())
    assert all(v["seconds_spent"] is not None and v["seconds_spent"] >= 0 for v in labels.values())
    final = {r["response_id"]: r for r in wh.query("SELECT * FROM v_final_labels").iter_rows(named=True)}
    assert (final["r-adjudicated"]["final_label"], final["r-adjudicated"]["label_source"]) == ("不安全", "human")
    assert (final["r-abstain"]["final_label"], final["r-abstain"]["label_source"]) == ("安全", "human")
    run = wh.query("SELECT status, summary FROM runs WHERE flow = 'review'").row(0, named=True)
    assert run["status"] == "completed" and '"labels": 3' in run["summary"]  # closed when the server stopped


# -- token and host --------------------------------------------------------------------------------------

def _own_address() -> str:
    """This machine's non-loopback address when it has one (a request from it is not from loopback)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks the outgoing address
            address = s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    return address if not ipaddress.ip_address(address).is_loopback else "127.0.0.1"


def test_another_host_needs_the_token_on_every_request(wh: Warehouse, tmp_path: Path) -> None:
    with _serve(wh, tmp_path, "--host", "0.0.0.0", "--token", TOKEN, "--annotator", "bob") as server:
        base = f"http://{_own_address()}:{server.url.rsplit(':', 1)[1]}"
        for path in ("/", "/api/items", "/api/item/r-split", "/static/review.js"):
            assert httpx.get(base + path, timeout=10).status_code == 403, path
        assert httpx.get(base + "/?token=wrong-token-0123456789", timeout=10).status_code == 403
        refused = httpx.post(base + "/api/label", json={"id": "r-split", "label": "安全"}, timeout=10)
        assert refused.status_code == 403
        with httpx.Client(base_url=base, timeout=10) as client:
            page = client.get(f"/?token={TOKEN}")
            assert page.status_code == 200 and "libra review" in page.text
            assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
            assert client.get("/api/items").status_code == 200  # the cookie carries it now
            # a cookie alone does not write: a cross-site form would send it too
            assert client.post("/api/label", json={"id": "r-split", "label": "安全"}).status_code == 403
            ok = client.post("/api/label", json={"id": "r-split", "label": "安全"}, headers={"X-Libra-Token": TOKEN})
            assert ok.status_code == 200, ok.text
        assert httpx.get(base + "/api/items", headers={"X-Libra-Token": TOKEN}, timeout=10).status_code == 200
    assert {k: (v["label"], v["annotator"]) for k, v in _labels(wh).items()} == {"r-split": ("安全", "bob")}


def test_server_prints_a_generated_token_for_a_non_loopback_host(wh: Warehouse, tmp_path: Path) -> None:
    with _serve(wh, tmp_path, "--host", "0.0.0.0") as server:
        time.sleep(0.5)
        log = server.log_path.read_text()
        token = log.split("?token=", 1)[1].split()[0]
        assert len(token) >= 24
        assert httpx.get(server.url + "/api/items", timeout=10).status_code == 403
        assert httpx.get(server.url + f"/api/items?token={token}", timeout=10).status_code == 200


def _client(wh: Warehouse, **settings) -> TestClient:
    app = create_app(ReviewSettings(warehouse=str(wh.path), annotator="alice", token=TOKEN, **settings))
    return TestClient(app, base_url="http://127.0.0.1:8765")


def test_loopback_page_refuses_foreign_hosts_and_untokened_writes(wh: Warehouse) -> None:
    with _client(wh) as client:
        assert client.get("/api/items").status_code == 200
        assert client.get("/api/items", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
        body = {"id": "r-split", "label": "安全"}
        assert client.post("/api/label", json=body).status_code == 403
        assert client.post("/api/label", content='{"id": "r-split", "label": "安全"}',
                           headers={"X-Libra-Token": TOKEN, "Content-Type": "text/plain"}).status_code == 415
        assert client.delete("/api/label", headers={"X-Libra-Token": TOKEN}).status_code == 405
        page = client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        # escaping of what the template renders itself: the annotator name comes from the URL
        assert client.get("/?annotator=<b>x</b>").status_code == 400
        assert client.get("/api/items").json()["progress"]["mine"] == 0
    assert _labels(wh) == {}


def test_template_escapes_the_warehouse_name(tmp_path: Path) -> None:
    wh = warehouse_with_votes(tmp_path / '<i a="1">x.duckdb', _votes({"r-split": SAMPLES["r-split"]}))
    with _client(wh) as client:
        page = client.get("/").text
    assert "&lt;i a=&#34;1&#34;&gt;x.duckdb" in page and "<i a=" not in page


def test_cli_refuses_a_bad_annotator_or_a_short_token(wh: Warehouse) -> None:
    from typer.testing import CliRunner

    from libra.flows.cli.main import app

    runner = CliRunner()
    bad = runner.invoke(app, ["review", "--warehouse", str(wh.path), "--annotator", "a b"])
    assert bad.exit_code == 2 and "annotator 'a b'" in bad.output
    short = runner.invoke(app, ["review", "--warehouse", str(wh.path), "--token", "abc", "--host", "0.0.0.0"])
    assert short.exit_code == 2 and "at least 16 characters" in short.output
    missing = runner.invoke(app, ["review", "--warehouse", str(wh.path.with_name("nope.duckdb"))])
    assert missing.exit_code == 2 and "no warehouse here" in " ".join(missing.output.split())


def test_where_narrows_the_list_to_any_filter_of_v_dataset(wh: Warehouse) -> None:
    from typer.testing import CliRunner

    from libra.flows.cli.main import app

    where = "response_id IN ('r-split', 'r-tie', 'r-safe') AND margin < 0.5"
    with _client(wh, where=where) as client:
        assert [r["id"] for r in client.get("/api/items").json()["items"]] == ["r-split", "r-tie"]
        assert [r["id"] for r in client.get("/api/items?scope=all").json()["items"]] == ["r-split", "r-tie"]
    runner = CliRunner()
    for bad, message in [("no_such_column = 1", "no_such_column"), ("1 = 1; DROP TABLE votes", "syntax error"),
                         ("1 = 1); DROP TABLE votes; SELECT (1", "one statement"),
                         ("len(read_text('/etc/hostname')) > 0", "--where")]:
        result = runner.invoke(app, ["review", "--warehouse", str(wh.path), "--where", bad])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), (bad, result.output)
    assert wh.scalar("SELECT count(*) FROM votes") == 3 * len(SAMPLES)


def test_bad_writes_store_nothing_and_say_why(wh: Warehouse) -> None:
    h = {"X-Libra-Token": TOKEN}
    with _client(wh) as client:
        cases = [({"id": "r-nope", "label": "安全"}, "unknown id 'r-nope'"),
                 ({"id": "r-split", "label": "maybe"}, "invalid label 'maybe'"),
                 ({"id": "r-split", "label": "安全", "seconds": "soon"}, "`seconds` must be a number"),
                 ({"id": "r-split", "label": "安全", "note": "x" * 5000}, "at most 4000"),
                 ({"id": "r-split", "label": "安全", "annotator": "a b"}, "annotator 'a b'"),
                 ({"label": "安全"}, "string `id`")]
        for body, message in cases:
            answer = client.post("/api/label", json=body, headers=h)
            assert answer.status_code == 400 and message in answer.json()["error"], (body, answer.text)
        assert client.post("/api/label", content="{not json", headers={**h, "Content-Type": "application/json"}
                           ).status_code == 400
        # english spellings are accepted, as import-labels accepts them
        assert client.post("/api/label", json={"id": "r-split", "label": "unsafe"}, headers=h).json()["label"] == "不安全"
    assert {k: v["label"] for k, v in _labels(wh).items()} == {"r-split": "不安全"}


def test_per_item_asks_n_annotators_and_shows_their_agreement(wh: Warehouse) -> None:
    h = {"X-Libra-Token": TOKEN}
    with _client(wh, per_item=2) as client:
        assert client.post("/api/label", json={"id": "r-split", "label": "安全"}, headers=h).status_code == 200
        # one annotator is not enough: carol is still asked, and alice's label is hidden from her
        carol = {r["id"]: r for r in client.get("/api/items?annotator=carol").json()["items"]}
        assert carol["r-split"]["needs_me"] and carol["r-split"]["n_annotators"] == 1
        assert client.get("/api/item/r-split?annotator=carol").json()["others"] is None
        assert client.post("/api/label", json={"id": "r-split", "label": "不安全", "annotator": "bob"},
                           headers=h).status_code == 200
        assert client.post("/api/label", json={"id": "r-tie", "label": "安全"}, headers=h).status_code == 200
        assert client.post("/api/label", json={"id": "r-tie", "label": "安全", "annotator": "bob"},
                           headers=h).status_code == 200
        payload = client.get("/api/items?annotator=carol").json()
        carol = {r["id"]: r for r in payload["items"]}
        assert not carol["r-split"]["needs_me"] and carol["r-abstain"]["needs_me"]
        assert payload["progress"] == {
            "total": 5, "complete": 2, "mine": 0, "waiting_for_me": 3, "per_item": 2,
            "agreement": 0.5, "agreement_items": 2}  # r-split: the two disagree (0), r-tie: they agree (1)
        others = client.get("/api/item/r-split?annotator=carol").json()["others"]
        assert sorted((o["annotator"], o["label"]) for o in others) == [("alice", "安全"), ("bob", "不安全")]
        # filters narrow the list and its progress
        narrowed = client.get("/api/items?annotator=carol&hard_reason=tie").json()
        assert [r["id"] for r in narrowed["items"]] == ["r-tie"] and narrowed["progress"]["complete"] == 1
        everything = client.get("/api/items?scope=all&options=1").json()
        assert len(everything["items"]) == len(SAMPLES)
        assert "disagreement" in everything["options"]["hard_reason"]
    agreement = {r["response_id"]: r for r in wh.query("SELECT * FROM v_annotator_agreement").iter_rows(named=True)}
    assert (agreement["r-split"]["n_annotators"], agreement["r-split"]["pair_agreement"]) == (2, 0.0)
    assert agreement["r-split"]["majority_label"] is None and not agreement["r-split"]["unanimous"]
    assert (agreement["r-tie"]["pair_agreement"], agreement["r-tie"]["majority_label"]) == (1.0, "安全")


WRITER = textwrap.dedent("""
    import sys, time
    import polars as pl
    from libra.warehouse import Warehouse
    wh = Warehouse(sys.argv[1], create=False)
    end, n = time.monotonic() + float(sys.argv[2]), 0
    while time.monotonic() < end:
        with wh.writer():  # a flow's batch: a transaction with a few inserts
            for i in range(5):
                wh.insert("settings", pl.DataFrame({"key": [f"writer.{n}.{i}"], "value": ["x"]}))
        n += 1
        time.sleep(0.05)  # a flow waits on its LLM calls between batches
    print(n)
""")


def test_page_answers_while_another_process_writes(wh: Warehouse, tmp_path: Path) -> None:
    with _serve(wh, tmp_path, "--annotator", "alice") as server:
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(wh.path), "4"], stdout=subprocess.PIPE, text=True)
        try:
            answered, slowest = 0, 0.0
            with httpx.Client(base_url=server.url, timeout=30) as client:
                token = client.get("/").text.split('name="libra-token" content="', 1)[1].split('"', 1)[0]
                while writer.poll() is None:
                    start = time.monotonic()
                    assert client.get("/api/items").status_code == 200
                    assert client.get("/api/item/r-split").status_code == 200
                    answered += 1
                    slowest = max(slowest, time.monotonic() - start)
                assert client.post("/api/label", json={"id": "r-tie", "label": "安全"},
                                   headers={"X-Libra-Token": token}).status_code == 200
            writes = int(writer.communicate(timeout=30)[0])
        finally:
            if writer.poll() is None:
                writer.kill()
    print(f"page answered {answered} rounds while the writer committed {writes} transactions; slowest {slowest:.3f}s")
    assert answered >= 3 and writes >= 3
    assert _labels(wh)["r-tie"]["label"] == "安全"


@pytest.mark.slow
def test_page_answers_and_labels_while_the_annotate_flow_writes(stub, prefect_harness, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A real flow as the writer: the annotate flow votes on 180 responses in batches of 60 while the
    page is polled and labels the hard samples as they appear."""
    import threading

    from libra.flows.labelling import annotate_flow
    from tests.conftest import small_config
    from tests.flows import test_annotation_stub

    path = tmp_path / "flow.duckdb"
    monkeypatch.setattr(test_annotation_stub, "N_QUERIES", 60)  # 60 queries x 3 responders
    test_annotation_stub._seed_warehouse(path)
    config = small_config(stub.url, tmp_path, roles={"judges": ["judge-a", "judge-b", "judge-c"],
                                                     "adjudicator": "judge-a"}, sizes={"batch_size": 60})
    flow_wh = Warehouse(path, create=False)
    with _serve(flow_wh, tmp_path, "--annotator", "alice") as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        token = client.get("/").text.split('name="libra-token" content="', 1)[1].split('"', 1)[0]
        outcome: dict[str, object] = {}
        flow = threading.Thread(target=lambda: outcome.update(summary=annotate_flow(str(config), str(path))))
        flow.start()
        polls, labelled, statuses = 0, [], set()
        while flow.is_alive():
            answer = client.get("/api/items")
            statuses.add(answer.status_code)
            polls += 1
            waiting = [it["id"] for it in answer.json()["items"] if it["needs_me"]]
            if waiting and len(labelled) < 5:
                posted = client.post("/api/label", json={"id": waiting[0], "label": "安全"},
                                     headers={"X-Libra-Token": token})
                statuses.add(posted.status_code)
                labelled.append(waiting[0])
        flow.join()
    print(f"page polled {polls} times and stored {len(labelled)} labels during the annotate flow")
    assert statuses == {200} and polls >= 3
    assert outcome["summary"]["pending_votes"] == 180 * 3  # (response, judge) pairs
    assert flow_wh.scalar("SELECT count(*) FROM votes") == 180 * 3
    final = {r["response_id"]: r for r in flow_wh.query("SELECT * FROM v_final_labels").iter_rows(named=True)}
    for rid in labelled:  # the page's labels survived the flow's writes and outrank the adjudicator
        assert (final[rid]["final_label"], final[rid]["label_source"]) == ("安全", "human")

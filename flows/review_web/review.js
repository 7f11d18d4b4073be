// The review page. Every text from the warehouse is untrusted (responses are attacker-written): it is
// only ever set with textContent, never parsed as HTML.
"use strict";

const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const TOKEN = meta("libra-token");
const ANNOTATOR = meta("libra-annotator");
const LABELS = { "1": "安全", "2": "不安全", "3": "有争议" };
const FILTERS = ["scope", "scenario", "subcategory", "hard_reason", "source", "label"];

const state = { items: [], index: -1, shownAt: 0, pendingNote: null, history: [], busy: false, current: null };

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text || "";
  status.className = isError ? "error" : "";
}

function filterParams() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = document.querySelector(`#filters select[name="${name}"]`).value;
    if (value) params.set(name, value);
  }
  params.set("annotator", ANNOTATOR);
  return params;
}

async function api(path, body) {
  const init = body === undefined ? { headers: {} } : {
    method: "POST", body: JSON.stringify({ ...body, annotator: ANNOTATOR }),
    headers: { "Content-Type": "application/json" },
  };
  init.headers["X-Libra-Token"] = TOKEN;
  init.credentials = "same-origin";
  const response = await fetch(path, init);
  const payload = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(payload.error || `HTTP ${response.status}`);
  return payload;
}

function fillOptions(options) {
  for (const [name, values] of Object.entries(options)) {
    const select = document.querySelector(`#filters select[name="${name}"]`);
    const chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const value of values) {
      const option = el("option", value);
      option.value = value;
      select.appendChild(option);
    }
    select.value = values.includes(chosen) ? chosen : "";
  }
}

function showProgress(p) {
  const done = p.total ? p.complete / p.total : 0;
  $("bar").style.width = `${Math.round(done * 100)}%`;
  let text = `完成 ${p.complete} / ${p.total} (每条 ${p.per_item} 人) · 我已标 ${p.mine} · 待我标 ${p.waiting_for_me}`;
  if (p.agreement !== null) text += ` · 标注员一致率 ${(p.agreement * 100).toFixed(1)}% (${p.agreement_items} 条)`;
  $("counts").textContent = text;
}

async function loadItems(keepId) {
  const params = filterParams();
  params.set("options", "1");
  const payload = await api(`/api/items?${params}`);
  fillOptions(payload.options);
  state.items = payload.items;
  showProgress(payload.progress);
  let index = keepId ? state.items.findIndex((it) => it.id === keepId) : -1;
  if (index < 0) index = state.items.findIndex((it) => it.needs_me);
  if (index < 0) index = state.items.length ? 0 : -1;
  await show(index);
}

function labelSpan(label) {
  return el("span", label || "弃权", label ? `lab-${label}` : "muted");
}

function renderItem(it) {
  const box = $("item");
  box.dataset.id = it.id;
  const parts = [`#${state.index + 1}/${state.items.length}`, it.id, it.scenario, it.subcategory, it.source,
    it.hard_reason ? `难点 ${it.hard_reason}` : null,
    `多数票 ${it.majority_label || "无"} (${it.n_unsafe} 不安全 / ${it.n_safe} 安全 / ${it.n_abstain} 弃权)`,
    `当前 ${it.final_label || "无"} ← ${it.label_source}`,
    it.p_unsafe !== null ? `Dawid–Skene P(不安全) ${it.p_unsafe.toFixed(3)}` : null];
  $("meta").textContent = parts.filter((p) => p !== null && p !== undefined && p !== "").join(" · ");
  $("query").textContent = it.query;
  $("response").textContent = it.response;
  const body = $("votes").tBodies[0];
  body.replaceChildren();
  for (const v of it.votes) {
    const row = el("tr");
    row.appendChild(el("td", v.judge));
    const cell = el("td");
    cell.appendChild(labelSpan(v.label));
    row.appendChild(cell);
    row.appendChild(el("td", v.analysis));
    body.appendChild(row);
  }
  const adj = $("adjudication");
  adj.replaceChildren();
  for (const a of it.adjudications) {
    adj.appendChild(el("h2", `仲裁 ${a.adjudicator}`));
    const line = el("div");
    line.appendChild(labelSpan(a.label));
    line.appendChild(el("span", ` ${a.analysis || ""}`));
    adj.appendChild(line);
  }
  const guards = $("guards");
  guards.replaceChildren();
  if (it.guards.length) {
    guards.appendChild(el("h2", "与护栏模型不一致 (guard disagreements)"));
    for (const g of it.guards) {
      const line = el("div", `${g.guard}: `);
      line.appendChild(labelSpan(g.label));
      guards.appendChild(line);
    }
  }
  const humans = $("humans");
  humans.replaceChildren();
  if (it.others && it.others.length) {
    humans.appendChild(el("h2", `其他标注员 (${it.n_annotators} 人)`));
    for (const h of it.others) {
      const line = el("div", `${h.annotator}: `);
      line.appendChild(labelSpan(h.label));
      humans.appendChild(line);
    }
  } else if (it.n_annotators && !it.my_label) {
    humans.appendChild(el("div", `已有 ${it.n_annotators} 位标注员 (够 ${meta("libra-per-item")} 人后显示)`, "muted"));
  }
  const mine = $("mine");
  mine.replaceChildren();
  if (it.my_label) {
    mine.appendChild(el("span", "我的标签: "));
    mine.appendChild(labelSpan(it.my_label));
    if (it.my_note) mine.appendChild(el("span", ` · 备注: ${it.my_note}`, "muted"));
  } else if (state.pendingNote) {
    mine.appendChild(el("span", `待保存备注: ${state.pendingNote}`, "muted"));
  }
}

async function show(index) {
  closeNote();
  if (index < 0 || index >= state.items.length) {
    $("item").hidden = true;
    $("item").dataset.id = "";
    $("empty").hidden = false;
    state.index = -1;
    state.current = null;
    return;
  }
  $("empty").hidden = true;
  state.index = index;
  const it = await api(`/api/item/${encodeURIComponent(state.items[index].id)}?annotator=${encodeURIComponent(ANNOTATOR)}`);
  state.current = it;
  state.pendingNote = null;
  state.shownAt = performance.now();
  renderItem(it);
  $("item").hidden = false;
}

function nextIndex(from) {
  for (let i = from + 1; i < state.items.length; i++) if (state.items[i].needs_me) return i;
  return Math.min(from + 1, state.items.length - 1);
}

async function refresh(idToShow) {
  const payload = await api(`/api/items?${filterParams()}`);
  state.items = payload.items;
  showProgress(payload.progress);
  const index = state.items.findIndex((it) => it.id === idToShow);
  return index;
}

async function label(value) {
  const it = state.current;
  if (!it) return;
  const seconds = (performance.now() - state.shownAt) / 1000;
  const note = state.pendingNote !== null ? state.pendingNote : it.my_note;
  const saved = await api("/api/label", { id: it.id, label: value, note, seconds });
  state.history.push({ id: it.id, before: it.my_label, beforeNote: it.my_note });
  setStatus(`已保存 ${it.id}: ${saved.label}`);
  const here = await refresh(it.id);
  await show(nextIndex(here < 0 ? state.index : here));
  if (!state.items.some((item) => item.needs_me)) setStatus(`已保存 ${it.id}: ${saved.label} · 全部完成 (all done)`);
}

async function undo() {
  const last = state.history.pop();
  if (!last) {
    setStatus("没有可撤销的操作 (nothing to undo)");
    return;
  }
  const undone = await api("/api/undo", { id: last.id });
  // a label this page replaced comes back (one from an earlier session stands again by itself)
  if (last.before && undone.label_now !== last.before) {
    await api("/api/label", { id: last.id, label: last.before, note: last.beforeNote });
  }
  setStatus(`已撤销 ${last.id}`);
  const index = await refresh(last.id);
  await show(index);
}

function openNote() {
  const box = $("notebox");
  box.hidden = false;
  const note = $("note");
  note.value = state.pendingNote !== null ? state.pendingNote : (state.current && state.current.my_note) || "";
  note.focus();
}

function closeNote() {
  $("notebox").hidden = true;
  $("note").blur();
}

async function saveNote() {
  const text = $("note").value.trim();
  closeNote();
  const it = state.current;
  if (!it) return;
  if (it.my_label) {  // already labelled: store the label again with the note
    await api("/api/label", { id: it.id, label: it.my_label, note: text, seconds: null });
    it.my_note = text;
    setStatus(`备注已保存 ${it.id}`);
  } else {
    state.pendingNote = text;
    setStatus("备注会随标签一起保存 (the note is saved with the label)");
  }
  renderItem(it);
}

async function onKey(event) {
  if (event.target === $("note")) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      state.busy = true;  // keys pressed while the note is stored are ignored, as while a label is stored
      try {
        await saveNote();
      } catch (error) {
        setStatus(`错误: ${error.message}`, true);
      } finally {
        state.busy = false;
      }
    } else if (event.key === "Escape") {
      closeNote();
    }
    return;
  }
  if (event.target.tagName === "SELECT" || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    "1": () => label(LABELS["1"]), "2": () => label(LABELS["2"]), "3": () => label(LABELS["3"]),
    s: () => show(nextIndex(state.index)), u: undo, n: async () => openNote(),
    ArrowRight: () => show(Math.min(state.index + 1, state.items.length - 1)),
    ArrowLeft: () => show(Math.max(state.index - 1, 0)),
  };
  const action = actions[event.key];
  if (!action) return;
  event.preventDefault();
  if (state.busy) return;  // one action at a time: a key held down does not label the next item blind
  state.busy = true;
  try {
    await action();
  } catch (error) {
    setStatus(`错误: ${error.message}`, true);
  } finally {
    state.busy = false;
  }
}

window.addEventListener("DOMContentLoaded", async () => {
  if (window.location.search.includes("token=")) {  // the cookie holds it now; keep it out of history
    const url = new URL(window.location.href);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search);
  }
  document.querySelector('#filters select[name="scope"]').value = meta("libra-scope");
  for (const select of document.querySelectorAll("#filters select")) {
    select.addEventListener("change", () => { select.blur(); loadItems().catch((e) => setStatus(e.message, true)); });
  }
  document.addEventListener("keydown", onKey);
  try {
    await loadItems();
  } catch (error) {
    setStatus(`错误: ${error.message}`, true);
  }
});

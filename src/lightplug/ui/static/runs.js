// The runs table, one run's page (live progress, curves, results, files) and several runs compared.

import { COLORS, lineChart } from "./chart.js";
import { clear, copyText, el, fileUrl, formatBytes, formatDuration, formatNumber, getJSON, notice, postJSON, statusBadge } from "./util.js";

const LIVE = ["running", "stopping"];

function poll(fn, ms) {
  let timer = null, stopped = false;
  const tick = async () => {
    if (stopped) return;
    let again = true;
    try { again = (await fn()) !== false; } catch (err) { notice(err.message, "error"); }
    if (!stopped && again) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

function runLink(id) {
  return el("a", { href: `#/run/${encodeURIComponent(id)}` }, id);
}

function best(run) {
  if (run.best === null || run.best === undefined) return "";
  return `${run.monitor || "best"} = ${formatNumber(run.best)}`;
}

function progress(run) {
  const known = run.epoch !== null && run.epoch !== undefined;
  if (!run.max_epochs || run.max_epochs < 0) return known ? `epoch ${run.epoch + 1}` : "";
  if (!known) return LIVE.includes(run.status) ? `starting (${run.max_epochs} epochs)` : "";
  const epoch = Math.min(run.epoch + 1, run.max_epochs);
  return LIVE.includes(run.status) ? `epoch ${epoch}/${run.max_epochs}` : `${epoch}/${run.max_epochs} epochs`;
}

// ---------------------------------------------------------------- runs table
export function renderRuns(container) {
  const selected = new Set();
  const body = el("tbody");
  const compareButton = el("button", { type: "button", id: "compare", disabled: true, onclick: () => {
    location.hash = `#/compare/${[...selected].map(encodeURIComponent).join(",")}`;
  } }, "Compare selected");
  const count = el("span", { class: "small" });
  clear(container).append(
    el("div", { class: "toolbar" }, el("h2", {}, "Runs"), compareButton, count),
    el("table", { id: "runs-table", class: "table" },
      el("thead", {}, el("tr", {}, ["", "run", "status", "model", "data", "best", "duration", "progress", "started"].map((h) => el("th", {}, h)))),
      body));
  const sync = () => {
    compareButton.disabled = selected.size < 2;
    count.textContent = selected.size ? `${selected.size} selected` : "select two or more runs to compare them";
  };
  return poll(async () => {
    const runs = await getJSON("/api/runs");
    clear(body);
    if (!runs.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "empty" }, "No runs yet: start one from New run.")));
    for (const run of runs) {
      const box = el("input", { type: "checkbox", "aria-label": `select ${run.id}`, checked: selected.has(run.id), onchange: (e) => {
        if (e.target.checked) selected.add(run.id); else selected.delete(run.id);
        sync();
      } });
      body.append(el("tr", { dataset: { run: run.id, status: run.status } },
        el("td", {}, box), el("td", {}, runLink(run.id)),
        el("td", { class: "status" }, statusBadge(run.status), run.error ? el("div", { class: "reason small", title: run.error }, run.error) : null),
        el("td", {}, run.model || ""), el("td", {}, run.data || ""), el("td", { class: "best" }, best(run)),
        el("td", {}, formatDuration(run.seconds)), el("td", {}, progress(run)), el("td", { class: "small" }, (run.started || "").replace("T", " ").slice(0, 19))));
    }
    sync();
    return true;
  }, 3000);
}

// ---------------------------------------------------------------- one run
function metricNames(series) {
  return Object.keys(series).filter((k) => !k.startsWith("lr-")).sort();
}

function charts(box, data, state) {
  const series = data.series || {};
  const losses = Object.keys(series).filter((k) => /loss/.test(k)).sort();
  const names = metricNames(series).filter((k) => !/loss/.test(k));
  if (!state.metric || !series[state.metric]) state.metric = series[data.run.monitor] ? data.run.monitor : names[0];
  const picker = el("select", { id: "metric", "aria-label": "metric" }, names.map((n) => el("option", { value: n, selected: n === state.metric }, n)));
  picker.addEventListener("change", () => { state.metric = picker.value; charts(box, data, state); });
  clear(box).append(
    el("div", { class: "chart-box" }, lineChart(losses.map((k) => ({ label: k, points: series[k] })), { title: "loss" })),
    el("div", { class: "chart-box" }, el("div", { class: "chart-tools" }, picker),
      lineChart(state.metric ? [{ label: state.metric, points: series[state.metric] }] : [], { title: state.metric || "metrics" })));
}

function table(columns, rows, attrs = {}) {
  return el("table", { class: "table", ...attrs },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v) => el("td", {}, v))))));
}

function exportReport(report) {
  const formats = Object.values(report.formats || {});
  const rows = formats.map((f) => [
    f.format, f.ok ? "ok" : "failed", f.path ? f.path.split("/").pop() : "", formatBytes(f.size_bytes),
    formatNumber((f.verification || {}).max_abs), formatNumber((f.timing || {}).latency_p50_ms), formatNumber((f.timing || {}).throughput, 5), f.error || "",
  ]);
  return el("div", { id: "export-report" },
    table(["format", "status", "file", "size", "max abs diff", "p50 latency (ms)", "samples/s", "error"], rows),
    el("details", {}, el("summary", {}, "export_report.json"), el("pre", { class: "log" }, JSON.stringify(report, null, 2))));
}

function results(box, run) {
  const parts = [];
  if (run.confusion_matrix) {
    parts.push(el("div", { class: "result" }, el("h3", {}, "Confusion matrix"),
      el("img", { id: "confusion-matrix", src: fileUrl(run.confusion_matrix), alt: "confusion matrix of the best epoch" })));
  }
  if (run.pr_curve) {
    parts.push(el("div", { class: "result" }, el("h3", {}, "Precision-recall at IoU 0.5"),
      el("img", { id: "pr-curve", src: fileUrl(run.pr_curve), alt: "precision-recall curve of each class, best epoch" })));
  }
  if (run.worst && run.worst.rows.length) {
    parts.push(el("div", { class: "result" }, el("h3", {}, "Worst predictions"),
      el("p", { class: "small" }, `${run.worst.rows.length} of ${run.worst.total} validation samples${run.worst.sorted_by ? `, ${run.worst.order || "largest"} ${run.worst.sorted_by} first` : ""}`),
      table(run.worst.columns, run.worst.rows, { id: "worst" })));
  }
  if (run.export_report) parts.push(el("div", { class: "result" }, el("h3", {}, "Export"), exportReport(run.export_report)));
  const files = run.files || [];
  if (files.length) {
    parts.push(el("div", { class: "result" }, el("h3", {}, "Files"),
      el("ul", { id: "files", class: "files" }, files.map((f) => el("li", {},
        el("a", { href: fileUrl(f.path, true), download: f.name.split("/").pop() }, f.name), el("span", { class: "small" }, ` ${formatBytes(f.size)}`))))));
  }
  clear(box).append(...(parts.length ? parts : [el("p", { class: "empty" }, "Results appear here when the run writes them.")]));
}

export function renderRun(container, id) {
  const state = { metric: null };
  delete container.dataset.status; // set once this run's status is known
  const head = el("div", { class: "run-head" });
  const bar = el("progress", { id: "progress", max: 1, value: 0 });
  const curves = el("div", { class: "charts", id: "curves" });
  const log = el("pre", { class: "log", id: "log" });
  const resultBox = el("div", { class: "results", id: "results" });
  const command = el("pre", { class: "command", id: "run-command" });
  // a notice ("stopping…", "resuming…") lasts while the run stays in the status it was given in
  let noticeStatus = null;
  let lastStatus = null;
  const say = (text, kind) => { notice(text, kind); noticeStatus = kind === "error" ? null : lastStatus; };
  const stopButton = el("button", { type: "button", id: "stop", disabled: true, onclick: async () => {
    try { await postJSON("/api/run/stop", { id }); say("stopping… the run finishes its batch and writes last.ckpt"); } catch (err) { notice(err.message, "error"); }
  } }, "Stop");
  const resumeButton = el("button", { type: "button", id: "resume", hidden: true, onclick: async () => {
    try { await postJSON("/api/run/resume", { id }); say(`resuming ${id}…`); restart(); } catch (err) { notice([err.message, ...err.problems].join(": "), "error"); }
  } }, "Resume");
  clear(container).append(head,
    el("div", { class: "toolbar" }, stopButton, resumeButton, bar, el("span", { id: "progress-text", class: "small" })),
    el("div", { class: "command-row" }, command, el("button", { type: "button", onclick: (e) => copyText(command.textContent, e.target) }, "Copy")),
    curves, el("h3", {}, "Output"), log, resultBox);

  let resultsKey = null;
  const tick = async () => {
    const [data, run] = await Promise.all([getJSON(`/api/run/metrics?id=${encodeURIComponent(id)}`), getJSON(`/api/run?id=${encodeURIComponent(id)}`)]);
    const live = LIVE.includes(run.status);
    clear(head).append(el("h2", {}, "Run ", el("code", {}, id), " ", statusBadge(run.status)),
      el("p", { class: "small" }, [run.model, run.data].filter(Boolean).join(" on "), run.seconds !== null ? ` · ${formatDuration(run.seconds)}` : "",
        run.best !== null && run.best !== undefined ? ` · best ${run.monitor} = ${formatNumber(run.best)}` : "", run.error ? ` · ${run.error.length > 160 ? `${run.error.slice(0, 159)}…` : run.error}` : ""),
      el("p", { class: "small" }, run.run_dir));
    command.textContent = run.command || "";
    log.textContent = (run.log || []).join("\n");
    log.scrollTop = log.scrollHeight;
    const key = JSON.stringify([run.files, run.worst, run.export_report, run.confusion_matrix]);
    if (key !== resultsKey) {
      results(resultBox, run);
      resultsKey = key;
    }
    charts(curves, data, state);
    stopButton.disabled = !(live && run.ours);
    resumeButton.hidden = !run.can_resume; // interrupted or crashed runs only, never completed ones
    if (noticeStatus !== null && run.status !== noticeStatus && !(noticeStatus === "running" && run.status === "stopping")) {
      notice("");
      noticeStatus = null;
    }
    lastStatus = run.status;
    const epochs = run.max_epochs || 0;
    bar.max = epochs || 1;
    bar.value = run.epoch === null || run.epoch === undefined ? 0 : Math.min(epochs, run.epoch + (live ? 0 : 1));
    document.getElementById("progress-text").textContent = `${progress(run)}${run.status === "stopping" ? " · stopping…" : ""}`;
    container.dataset.status = run.status;
    return live;
  };
  let stop = poll(tick, 1500);
  function restart() {
    stop();
    stop = poll(tick, 1500);
  }
  return () => stop();
}

// ---------------------------------------------------------------- several runs
export function renderCompare(container, ids) {
  const state = { metric: null };
  const chartBox = el("div", { class: "charts", id: "compare-chart" });
  clear(container).append(el("h2", {}, `Comparing ${ids.length} runs`), el("p", { class: "empty" }, "loading…"));
  let alive = true;
  (async () => {
    const cmp = await getJSON(`/api/compare?${ids.map((i) => `id=${encodeURIComponent(i)}`).join("&")}`);
    const metrics = await Promise.all(ids.map((i) => getJSON(`/api/run/metrics?id=${encodeURIComponent(i)}`)));
    if (!alive) return;
    const names = [...new Set(metrics.flatMap((m) => metricNames(m.series || {})))].sort();
    state.metric = cmp.runs[0].monitor && names.includes(cmp.runs[0].monitor) ? cmp.runs[0].monitor : names[0];
    const picker = el("select", { id: "compare-metric", "aria-label": "metric" }, names.map((n) => el("option", { value: n, selected: n === state.metric }, n)));
    const draw = () => {
      const series = metrics.map((m, i) => ({ label: `${ids[i]} ${cmp.runs[i].model || ""}`, points: (m.series || {})[state.metric] || [], color: COLORS[i % COLORS.length] }));
      clear(chartBox).append(el("div", { class: "chart-box wide" }, lineChart(series, { title: state.metric || "", width: 760, height: 280 })));
    };
    picker.addEventListener("change", () => { state.metric = picker.value; draw(); });
    const runRows = cmp.runs.map((r, i) => [el("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }), runLink(r.id), statusBadge(r.status),
      r.model || "", r.data || "", best(r), formatDuration(r.seconds)]);
    const params = cmp.params.map((p) => [p.key, ...p.values.map((v) => (v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v)))]);
    clear(container).append(
      el("h2", {}, `Comparing ${ids.length} runs`),
      table(["", "run", "status", "model", "data", "best", "duration"], runRows, { id: "compare-runs" }),
      el("h3", {}, "Settings that differ"),
      params.length ? table(["setting", ...ids], params, { id: "compare-params" }) : el("p", { class: "empty" }, "The runs have the same settings."),
      el("h3", {}, "Curves ", picker), chartBox);
    draw();
  })().catch((err) => clear(container).append(el("p", { class: "error" }, err.message)));
  return () => { alive = false; };
}

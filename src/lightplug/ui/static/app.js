// The page: routing between the views, the plugin list and the new-run form.

import { FieldSet } from "./form.js";
import { renderCompare, renderRun, renderRuns } from "./runs.js";
import { ApiError, clear, commandLine, copyText, el, getJSON, notice, postJSON, statusBadge } from "./util.js";

const TRAINER_FIELDS = ["max_epochs", "limit_train_batches", "limit_val_batches", "accumulate_grad_batches", "gradient_clip_val"];
const TRAINER_ADVANCED = ["limit_train_batches", "limit_val_batches", "accumulate_grad_batches", "gradient_clip_val"];

const state = { models: [], data: [], core: null, form: null, stop: null };

// ---------------------------------------------------------------- plugin list
function usable(row) {
  return row.status === "ok" || row.status === "unchecked";
}

function renderPluginList() {
  const list = clear(document.getElementById("plugin-list"));
  const filter = document.getElementById("plugin-filter").value.trim().toLowerCase();
  const current = state.form && state.form.name;
  const rows = state.models.filter((r) => !filter || [r.name, r.task, r.package, r.description].join(" ").toLowerCase().includes(filter));
  for (const row of rows) {
    const ok = usable(row);
    const item = el("li", { class: `plugin${ok ? "" : " broken"}${row.name === current ? " selected" : ""}`, dataset: { plugin: row.name, status: row.status } },
      el("button", { type: "button", disabled: !ok, title: ok ? `configure ${row.name}` : row.cause, onclick: () => { location.hash = `#/new/${encodeURIComponent(row.name)}`; } },
        el("span", { class: "plugin-head" }, el("strong", {}, row.name), el("span", { class: "version" }, row.version), statusBadge(row.status)),
        el("span", { class: "plugin-meta" }, `${row.task} · ${row.package}`),
        el("span", { class: "plugin-desc" }, row.description || ""),
        row.cause ? el("span", { class: "plugin-cause" }, row.cause) : null));
    list.append(item);
  }
  const broken = state.models.filter((r) => !usable(r)).length;
  document.getElementById("plugin-count").textContent = `${state.models.length} installed${broken ? `, ${broken} unusable` : ""}`;
}

async function loadPlugins() {
  document.getElementById("plugin-filter").addEventListener("input", renderPluginList);
  state.models = await getJSON("/api/models");
  renderPluginList();
  state.models = await getJSON("/api/models?check=1"); // loads each plugin: broken ones show their cause
  renderPluginList();
}

// ---------------------------------------------------------------- the form
function select(id, options, value, onchange, labels = {}) {
  const node = el("select", { id, name: id }, options.map((o) => el("option", { value: o, selected: o === value }, labels[o] || o)));
  node.addEventListener("change", () => onchange(node.value));
  return node;
}

/** `data=shapes data.task=detection` as {name: "shapes", fields: {task: "detection"}}. */
function parseDataOverrides(overrides) {
  const out = { name: null, fields: {} };
  for (const text of overrides || []) {
    const [key, ...rest] = text.split("=");
    if (key === "data") out.name = rest.join("=");
    else if (key.startsWith("data.")) out.fields[key.slice(5)] = rest.join("=");
  }
  return out;
}

class RunForm {
  /**
   * @param {object} start what `GET /api/models/NAME/start` gives: the data `lightplug train model=NAME` picks for the
   *   model's task, and the training part of each `+preset=NAME`
   */
  constructor(schema, core, dataRows, start) {
    this.schema = schema;
    this.name = schema["x-plugin"].name;
    this.core = core;
    this.dataRows = dataRows.filter(usable);
    this.begin = start || { data: [], presets: {} };
    this.startData = parseDataOverrides(this.begin.data);
    this.defaults = { data: core.choices.data || "digits", optimizer: core.groups.optimizer.default, scheduler: core.groups.scheduler.default, trainer: core.groups.trainer.default };
    this.choice = { ...this.defaults, data: this.startData.name || core.choices.data || "digits" };
    this.preset = "";
    this.model = new FieldSet(schema, "model", this.name);
    this.run = new FieldSet(core.run.schema, "", "run", { only: ["seed"], fallback: core.run.values });
    this.checkTimer = null;
    this.checked = null;
  }

  async build() {
    const plugin = this.schema["x-plugin"];
    const own = this.schema["x-presets"] || {};
    const presets = this.begin.presets || {};
    const presetLabels = Object.fromEntries(Object.entries(presets).map(([p, v]) => [p, `+preset=${p} (${[
      ...Object.entries(v.choices).map(([g, o]) => `${g}=${o}`),
      ...Object.entries(v.values).map(([k, x]) => `${k}=${x}`),
      ...Object.entries(own[p] || {}).map(([k, x]) => `model.${k}=${x}`)].join(", ")})`]));
    this.modelBox = el("div", { id: "model-fields" }, this.model.render());
    this.dataBox = el("div", { id: "data-fields" });
    this.optimizerBox = el("div", { id: "optimizer-fields" });
    this.trainerBox = el("div", { id: "trainer-fields" });
    this.command = el("pre", { id: "command", class: "command" });
    this.problemList = el("ul", { id: "problems", class: "problems", "aria-live": "polite" });
    this.serverNote = el("span", { id: "server-check", class: "small" });
    this.startButton = el("button", { id: "start", type: "button", class: "primary", onclick: () => this.start() }, "Start");
    const advanced = el("input", { id: "show-advanced", type: "checkbox", onchange: (e) => this.root.classList.toggle("hide-advanced", !e.target.checked) });
    const dataLabels = Object.fromEntries(this.dataRows.map((r) => [r.name, `${r.name} (${r.task})`]));
    const groups = this.core.groups;
    this.root = el("form", { id: "run-form", class: "hide-advanced", onsubmit: (e) => e.preventDefault(), novalidate: true },
      el("div", { class: "form-head" },
        el("h2", {}, plugin.name, el("span", { class: "version" }, ` ${plugin.version || ""}`)),
        el("p", { class: "small" }, `${plugin.task || "?"} · ${plugin.package || plugin.entry_point}`),
        el("p", {}, this.schema.description || "")),
      el("div", { class: "toolbar" },
        el("label", { for: "preset" }, "Preset "),
        select("preset", ["", ...Object.keys(presets)], "", (p) => this.applyPreset(p), { "": "— defaults —", ...presetLabels }),
        el("label", { class: "toggle" }, advanced, " show advanced settings")),
      el("section", { class: "form-section" }, el("h3", {}, "Model"), this.modelBox),
      el("section", { class: "form-section" }, el("h3", {}, "Data"),
        el("div", { class: "field" }, el("label", { for: "data-plugin" }, "data"),
          el("div", { class: "control" }, select("data-plugin", this.dataRows.map((r) => r.name), this.choice.data, (v) => this.setData(v), dataLabels)),
          el("div", { class: "help" }, "the data plugin (`lightplug data` lists them)")),
        this.dataBox),
      el("section", { class: "form-section" }, el("h3", {}, "Training"),
        el("div", { class: "row3" },
          el("div", { class: "field" }, el("label", { for: "optimizer" }, "optimizer"),
            el("div", { class: "control" }, select("optimizer", groups.optimizer.options, this.choice.optimizer, (v) => this.setOptimizer(v)))),
          el("div", { class: "field" }, el("label", { for: "scheduler" }, "scheduler"),
            el("div", { class: "control" }, select("scheduler", groups.scheduler.options, this.choice.scheduler, (v) => { this.choice.scheduler = v; this.update(); }))),
          el("div", { class: "field" }, el("label", { for: "trainer" }, "trainer"),
            el("div", { class: "control" }, select("trainer", groups.trainer.options, this.choice.trainer, (v) => this.setTrainer(v))))),
        this.optimizerBox, this.trainerBox, this.run.render()),
      el("section", { class: "form-section launch" },
        el("h3", {}, "Command"),
        el("div", { class: "command-row" }, this.command, el("button", { type: "button", id: "copy-command", onclick: (e) => copyText(this.command.textContent, e.target) }, "Copy")),
        this.problemList,
        el("div", { class: "actions" }, this.startButton, this.serverNote)));
    this.model.onchange = () => this.update();
    this.run.onchange = () => this.update();
    this.setOptimizer(this.choice.optimizer, false);
    this.setTrainer(this.choice.trainer, false);
    await this.setData(this.choice.data);
    return this.root;
  }

  /** `+preset=NAME` as the command line runs it: the preset's group options and values become the form's defaults
   * (the training part, composed by the server), and the model's own part becomes the model fields' defaults. */
  applyPreset(name) {
    this.preset = name;
    const own = (this.schema["x-presets"] || {})[name] || {};
    this.model = new FieldSet(this.schema, "model", this.name, { fallback: name ? own : {} });
    this.model.onchange = () => this.update();
    clear(this.modelBox).append(...this.model.render());
    for (const group of ["optimizer", "scheduler", "trainer"]) {
      this.choice[group] = this.groupDefault(group);
      this.root.querySelector(`#${group}`).value = this.choice[group];
    }
    this.setOptimizer(this.choice.optimizer, false);
    this.setTrainer(this.choice.trainer, false);
    this.update();
  }

  /** The option a group has without a `group=` override: the preset's choice, else train.yaml's. */
  groupDefault(group) {
    const preset = this.preset ? this.begin.presets[this.preset] : null;
    return (preset && preset.choices[group]) || this.defaults[group];
  }

  /** The values a group option starts with: its YAML over the rules' defaults, then what the preset sets. */
  groupValues(group, option) {
    const values = { ...this.core.groups[group].values[option] };
    const preset = this.preset ? this.begin.presets[this.preset] : null;
    for (const [key, value] of Object.entries(preset ? preset.values : {})) {
      if (key.startsWith(`${group}.`)) values[key.slice(group.length + 1)] = value;
    }
    return values;
  }

  async setData(name) {
    this.choice.data = name;
    try {
      const schema = await getJSON(`/api/data/${encodeURIComponent(name)}`);
      this.data = new FieldSet(schema, "data", name);
      if (name === this.startData.name) { // the CLI's data for the model's task, with its settings (data.task=detection)
        for (const [key, text] of Object.entries(this.startData.fields)) {
          const field = this.data.field(key);
          if (!field) continue;
          let value = text;
          try { if (field.type !== "string") value = JSON.parse(text); } catch { /* kept as typed: the field says what is wrong */ }
          field.set(value);
        }
      }
      this.data.onchange = () => this.update();
      clear(this.dataBox).append(...this.data.render());
    } catch (err) {
      this.data = null;
      clear(this.dataBox).append(el("p", { class: "error" }, err.message));
    }
    this.update();
  }

  setOptimizer(name, update = true) {
    this.choice.optimizer = name;
    const g = this.core.groups.optimizer;
    this.optimizer = new FieldSet(g.schema, "optimizer", "optimizer", { only: ["lr", "weight_decay"], fallback: this.groupValues("optimizer", name) });
    this.optimizer.onchange = () => this.update();
    clear(this.optimizerBox).append(...this.optimizer.render());
    if (update) this.update();
  }

  setTrainer(name, update = true) {
    this.choice.trainer = name;
    const g = this.core.groups.trainer;
    this.trainer = new FieldSet(g.schema, "trainer", "trainer", { only: TRAINER_FIELDS, fallback: this.groupValues("trainer", name), advanced: TRAINER_ADVANCED });
    this.trainer.onchange = () => this.update();
    clear(this.trainerBox).append(...this.trainer.render());
    if (update) this.update();
  }

  /** The overrides the form shows, in the order of the command line. */
  overrides() {
    const out = [`model=${this.name}`];
    if (this.preset) out.push(`+preset=${this.preset}`);
    // data= is left out only where `lightplug train` picks the same data itself (the model's task's data is train.yaml's)
    const implied = this.startData.name || this.defaults.data;
    if (this.choice.data !== this.defaults.data || implied !== this.defaults.data) out.push(`data=${this.choice.data}`);
    out.push(...this.model.overrides(), ...(this.data ? this.data.overrides() : []));
    for (const group of ["optimizer", "scheduler", "trainer"]) {
      if (this.choice[group] !== this.groupDefault(group)) out.push(`${group}=${this.choice[group]}`);
      if (this[group] instanceof FieldSet) out.push(...this[group].overrides());
    }
    out.push(...this.run.overrides());
    return out;
  }

  problems() {
    return [this.model, this.data, this.optimizer, this.trainer, this.run].filter(Boolean).flatMap((s) => s.problems());
  }

  showProblems(lines, source) {
    clear(this.problemList).append(...lines.map((line) => el("li", { dataset: { source } }, line)));
  }

  update() {
    if (!this.optimizer || !this.trainer) return;
    const overrides = this.overrides();
    this.command.textContent = commandLine(overrides);
    const problems = this.problems();
    this.showProblems(problems, "browser");
    this.startButton.disabled = problems.length > 0 || !this.data;
    this.serverNote.textContent = problems.length ? "fix the values marked in red" : "checking…";
    clearTimeout(this.checkTimer);
    if (!problems.length) this.checkTimer = setTimeout(() => this.serverCheck(overrides), 350);
  }

  async serverCheck(overrides) {
    const key = JSON.stringify(overrides);
    try {
      const result = await postJSON("/api/check", { overrides });
      if (key !== JSON.stringify(this.overrides())) return; // the form changed meanwhile
      this.showProblems(result.problems, "server");
      this.startButton.disabled = !result.ok;
      this.serverNote.textContent = result.ok ? "checked by the server: ready to start" : "the server found problems";
    } catch (err) {
      this.serverNote.textContent = `check failed: ${err.message}`;
    }
  }

  async start() {
    const overrides = this.overrides();
    this.startButton.disabled = true;
    this.serverNote.textContent = "starting…";
    try {
      const result = await postJSON("/api/runs", { overrides });
      location.hash = `#/run/${encodeURIComponent(result.id)}`;
    } catch (err) {
      this.showProblems(err instanceof ApiError && err.problems.length ? err.problems : [err.message], "server");
      this.serverNote.textContent = "not started";
      this.startButton.disabled = false;
    }
  }
}

async function showForm(name) {
  const area = document.getElementById("form-area");
  if (state.form && state.form.name === name && area.contains(state.form.root)) return;
  clear(area).append(el("p", { class: "empty" }, `loading ${name}…`));
  try {
    const [schema, core, data, start] = await Promise.all([
      getJSON(`/api/models/${encodeURIComponent(name)}`),
      state.core ? state.core : getJSON("/api/core"),
      state.data.length ? state.data : getJSON("/api/data"),
      getJSON(`/api/models/${encodeURIComponent(name)}/start`),
    ]);
    state.core = core;
    state.data = data;
    const form = new RunForm(schema, core, data, start);
    const root = await form.build();
    state.form = form;
    clear(area).append(root);
    renderPluginList();
  } catch (err) {
    clear(area).append(el("p", { class: "error" }, err.message));
  }
}

// ---------------------------------------------------------------- routing
function show(view) {
  for (const node of document.querySelectorAll(".view")) node.hidden = node.id !== `view-${view}`;
  document.getElementById("nav-new").classList.toggle("active", view === "new");
  document.getElementById("nav-runs").classList.toggle("active", ["runs", "run", "compare"].includes(view));
}

async function route() {
  notice("");
  if (state.stop) state.stop();
  state.stop = null;
  const hash = location.hash.replace(/^#\/?/, "");
  const [view, ...rest] = hash.split("/");
  const raw = rest.join("/");
  const arg = decodeURIComponent(raw);
  if (view === "runs") {
    show("runs");
    state.stop = renderRuns(document.getElementById("view-runs"));
  } else if (view === "run" && arg) {
    show("run");
    state.stop = renderRun(document.getElementById("view-run"), arg);
  } else if (view === "compare" && arg) {
    show("compare");
    state.stop = renderCompare(document.getElementById("view-compare"), raw.split(",").map(decodeURIComponent));
  } else {
    show("new");
    if (arg) await showForm(arg);
  }
}

window.addEventListener("hashchange", route);
loadPlugins().catch((err) => notice(err.message, "error"));
route();

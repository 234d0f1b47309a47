// Form fields built from a JSON Schema property (as `lightplug models show NAME --json` prints it),
// checked in the browser with the rules and messages of lightplug's check_values.

import { el, formatNumber } from "./util.js";

const SCALAR = { integer: "int", number: "float", string: "str", boolean: "bool" };

function baseType(prop) {
  const types = Array.isArray(prop.type) ? prop.type : [prop.type];
  return { type: types.find((t) => t !== "null"), optional: types.includes("null") };
}

/** A value as Hydra's override grammar reads it (the text after `key=`). */
export function literal(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return `[${value.map(literal).join(",")}]`;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : Number.isNaN(value) ? "nan" : value > 0 ? "inf" : "-inf";
  const text = String(value);
  const plain = /^[A-Za-z_][A-Za-z0-9_\-./]*$/.test(text) && !/^(true|false|null|nan|inf)$/i.test(text);
  return plain ? text : `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/** How Python's str() shows a value in lightplug's messages. */
function shown(value) {
  if (value === null) return "null";
  if (typeof value === "number" && !Number.isFinite(value)) return literal(value);
  if (Array.isArray(value)) return `[${value.map((v) => (typeof v === "string" ? `'${v}'` : shown(v))).join(", ")}]`;
  if (typeof value === "boolean") return value ? "True" : "False";
  return String(value);
}

/** One setting of a form: its input, its value and its problem (the CLI's line). */
export class Field {
  /**
   * @param {string} key the override key, e.g. "model.width" or "seed"
   * @param {object} prop the JSON Schema property
   * @param {string} owner shown with the help, as the CLI does ("simple_cnn", "optimizer", "run")
   * @param {*} fallback the default when the property has none (core groups: the option's YAML value)
   */
  constructor(key, prop, owner, fallback) {
    this.key = key;
    this.name = key.split(".").pop();
    this.prop = prop;
    this.owner = owner;
    const { type, optional } = baseType(prop);
    this.type = type;
    this.optional = optional;
    this.itemType = type === "array" ? baseType(prop.items || {}).type : type;
    this.rules = type === "array" ? prop.items || {} : prop;
    this.bound = prop["x-bound-to"] || null;
    this.hasDefault = fallback !== undefined || "default" in prop;
    this.default = fallback !== undefined ? fallback : prop.default;
    this.required = !this.hasDefault;
    this.advanced = Boolean(prop["x-advanced"]);
    this.group = prop["x-group"] || "settings";
    this.help = prop.description || "";
    this.onchange = null;
    this.element = this.build();
    this.reset();
  }

  build() {
    const id = `f-${this.key.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const rules = this.rules;
    const enumValues = rules.enum;
    let input;
    if (enumValues) {
      const options = [...(this.optional ? [null] : []), ...enumValues];
      input = el("select", { id, name: this.key }, options.map((v) => el("option", { value: JSON.stringify(v) }, v === null ? "null" : String(v))));
    } else if (this.type === "boolean" && !this.optional) {
      input = el("input", { id, name: this.key, type: "checkbox" });
    } else if (this.type === "boolean") {
      input = el("select", { id, name: this.key }, ["null", "true", "false"].map((v) => el("option", { value: v }, v)));
    } else if (this.type === "integer" || this.type === "number") {
      // a text input: what is typed stays there ("abc" does not vanish, "12abc" does not become 12) and is checked below
      input = el("input", { id, name: this.key, type: "text", class: "number", inputmode: this.type === "integer" ? "numeric" : "decimal",
                            spellcheck: "false", autocomplete: "off" });
    } else {
      input = el("input", { id, name: this.key, type: "text", spellcheck: "false", autocomplete: "off" });
    }
    if (this.bound) input.placeholder = `from ${this.bound}`;
    else if (this.optional && !enumValues && this.type !== "boolean") input.placeholder = "null";
    else if (this.hasDefault && input.type !== "checkbox" && input.tagName !== "SELECT") input.placeholder = `default ${shown(this.default)}`;
    if (this.required) input.required = true;
    this.input = input;
    input.addEventListener("input", () => this.changed());
    input.addEventListener("change", () => this.changed());
    const constraint = this.constraintText();
    this.message = el("div", { class: "field-problem", role: "alert" });
    const label = el("label", { for: id }, this.name, this.required ? el("span", { class: "req", title: "required" }, " *") : null);
    return el("div", { class: `field${this.advanced ? " advanced" : ""}`, dataset: { key: this.key } },
      label,
      el("div", { class: "control" }, input, constraint ? el("span", { class: "constraint" }, constraint) : null),
      el("div", { class: "help" }, this.help, this.bound && !/bound/.test(this.help) ? ` (bound to ${this.bound} unless set)` : ""),
      this.message);
  }

  constraintText() {
    const r = this.rules;
    const low = r.minimum !== undefined ? `[${r.minimum}` : r.exclusiveMinimum !== undefined ? `(${r.exclusiveMinimum}` : null;
    const high = r.maximum !== undefined ? `${r.maximum}]` : r.exclusiveMaximum !== undefined ? `${r.exclusiveMaximum})` : null;
    const kind = (SCALAR[this.itemType] || this.itemType) + (this.type === "array" ? " list" : "");
    return low || high ? `${kind} in ${low || "(-inf"}, ${high || "inf)"}` : kind;
  }

  changed() {
    this.check();
    if (this.onchange) this.onchange(this);
  }

  /** Put a value (from a preset, or the default) into the input. */
  set(value) {
    const input = this.input;
    if (input.tagName === "SELECT") {
      input.value = this.type === "boolean" && this.optional && !this.rules.enum ? literal(value) : JSON.stringify(value);
    } else if (input.type === "checkbox") {
      input.checked = Boolean(value);
    } else if (value === null || value === undefined) {
      input.value = "";
    } else if (Array.isArray(value)) {
      input.value = value.join(", ");
    } else {
      input.value = typeof value === "number" ? formatNumber(value, 12) : String(value);
    }
    this.check();
  }

  reset() {
    if (this.bound || !this.hasDefault) this.set(null);
    else this.set(this.default);
  }

  /** The typed value; undefined when the input holds nothing (the default applies). */
  value() {
    const input = this.input;
    if (input.tagName === "SELECT") return JSON.parse(input.value);
    if (input.type === "checkbox") return input.checked;
    const text = input.value.trim();
    if (text === "") return this.optional && !this.bound && this.hasDefault && this.default !== null ? null : undefined;
    if (this.type === "array") return text.split(",").map((t) => t.trim()).filter((t) => t !== "").map((t) => this.parseItem(t));
    return this.parseItem(text);
  }

  parseItem(text) {
    if (this.itemType === "integer" || this.itemType === "number") {
      // as the command line reads it: digits (and, for floats, a fraction or exponent), inf or nan; anything else is kept as typed
      if (/^[+-]?nan$/i.test(text)) return NaN;
      if (/^[+-]?inf(inity)?$/i.test(text)) return text.startsWith("-") ? -Infinity : Infinity;
      const pattern = this.itemType === "integer" ? /^[+-]?\d+$/ : /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
      return pattern.test(text) ? Number(text) : { bad: text };
    }
    if (this.itemType === "boolean") return /^true$/i.test(text) ? true : /^false$/i.test(text) ? false : { bad: text };
    return text;
  }

  /** The override this field adds to the command line, or null when it keeps its default. */
  override() {
    const value = this.value();
    if (value === undefined) return null;
    if (!this.bound && this.hasDefault && JSON.stringify(value) === JSON.stringify(this.default)) return null;
    if (value && typeof value === "object" && "bad" in value) return `${this.key}=${value.bad}`;
    if (Array.isArray(value) && value.some((v) => v && typeof v === "object")) return `${this.key}=${this.input.value}`;
    return `${this.key}=${literal(value)}`;
  }

  /** The CLI's line for a bad value (same words as lightplug.schema.check_values), or null. */
  problem() {
    const value = this.value();
    const help = this.help ? ` (${this.owner}: ${this.help})` : "";
    if (value === undefined) return this.required ? `${this.key}: missing value, set ${this.key}=...${help}` : null;
    const items = this.type === "array" && Array.isArray(value) ? value : [value];
    const count = this.lengthRule(items.length);
    if (this.type === "array" && Array.isArray(value) && count) return `${this.key}=${this.shownValue(value)}: expected ${count}, got ${items.length}${help}`;
    for (const item of items) {
      const why = this.whyNot(item);
      if (why) return `${this.key}=${this.shownValue(value)}: ${why}${help}`;
    }
    return null;
  }

  /** The list-length rule ("2 items", "at least 1 item") when a list of ``length`` items breaks it, else null. */
  lengthRule(length) {
    const low = this.prop.minItems, high = this.prop.maxItems;
    if ((low === undefined || length >= low) && (high === undefined || length <= high)) return null;
    const items = (n) => `${n} item${n === 1 ? "" : "s"}`;
    if (low !== undefined && low === high) return items(low);
    if (low !== undefined && high !== undefined) return `${low} to ${high} items`;
    return low !== undefined ? `at least ${items(low)}` : `at most ${items(high)}`;
  }

  shownValue(value) {
    if (value && typeof value === "object" && "bad" in value) return value.bad;
    if (Array.isArray(value)) return shown(value.map((v) => (v && typeof v === "object" ? v.bad : v)));
    return typeof value === "number" ? literal(value) : shown(value);
  }

  whyNot(value) {
    if (value === null) return this.optional ? null : "must not be null";
    if (value && typeof value === "object" && "bad" in value) return `expected ${SCALAR[this.itemType] || this.itemType}`;
    const r = this.rules;
    if (this.itemType === "integer" && !Number.isInteger(value)) return "expected int";
    if (this.itemType === "number" && typeof value !== "number") return "expected float";
    if (this.itemType === "boolean" && typeof value !== "boolean") return "expected bool";
    if (r.enum && !r.enum.some((c) => c === value)) return `not one of ${r.enum.join(", ")}`;
    if (typeof value === "number") {
      if (Number.isNaN(value)) return "must be a number, got nan";
      if (!Number.isFinite(value) && r["x-finite"] !== false && this.prop["x-finite"] !== false) return `must be a finite number, got ${literal(value)}`;
      if (r.minimum !== undefined && value < r.minimum) return `below the minimum ${r.minimum}`;
      if (r.exclusiveMinimum !== undefined && value <= r.exclusiveMinimum) return `must be greater than ${r.exclusiveMinimum}`;
      if (r.maximum !== undefined && value > r.maximum) return `above the maximum ${r.maximum}`;
      if (r.exclusiveMaximum !== undefined && value >= r.exclusiveMaximum) return `must be less than ${r.exclusiveMaximum}`;
    }
    return null;
  }

  check() {
    const problem = this.problem();
    this.message.textContent = problem || "";
    this.element.classList.toggle("invalid", Boolean(problem));
    this.input.setAttribute("aria-invalid", problem ? "true" : "false");
    this.element.classList.toggle("changed", Boolean(this.override()));
    return problem;
  }
}

/** The fields of one schema (a plugin or a core group), grouped by x-group. */
export class FieldSet {
  /**
   * @param {object} schema a JSON Schema with properties
   * @param {string} prefix "model", "data", "optimizer", ... ("" for run keys)
   * @param {string} owner the name shown with the help
   * @param {object} options {only: [names], fallback: {name: default}, advanced: [names]}
   */
  constructor(schema, prefix, owner, options = {}) {
    this.schema = schema;
    this.fields = [];
    const names = options.only || Object.keys(schema.properties || {});
    for (const name of names) {
      const prop = { ...(schema.properties || {})[name] };
      if (!prop.type) continue;
      if ((options.advanced || []).includes(name)) prop["x-advanced"] = true;
      const fallback = options.fallback && name in options.fallback ? options.fallback[name] : undefined;
      this.fields.push(new Field(prefix ? `${prefix}.${name}` : name, prop, owner, fallback));
    }
  }

  /** Fieldsets, one per x-group, in the order the groups first appear. */
  render() {
    const groups = new Map();
    for (const f of this.fields) {
      if (!groups.has(f.group)) groups.set(f.group, []);
      groups.get(f.group).push(f);
    }
    return [...groups.entries()].map(([group, fields]) => {
      const onlyAdvanced = fields.every((f) => f.advanced);
      return el("fieldset", { class: `group${onlyAdvanced ? " advanced" : ""}`, dataset: { group } }, el("legend", {}, group), fields.map((f) => f.element));
    });
  }

  set onchange(fn) { for (const f of this.fields) f.onchange = fn; }
  overrides() { return this.fields.map((f) => f.override()).filter(Boolean); }
  problems() { return this.fields.map((f) => f.problem()).filter(Boolean); }
  field(name) { return this.fields.find((f) => f.name === name); }

  /** Defaults everywhere, then the preset's values. */
  apply(values) {
    for (const f of this.fields) f.reset();
    for (const [name, value] of Object.entries(values || {})) {
      const f = this.field(name);
      if (f) f.set(value);
    }
  }
}

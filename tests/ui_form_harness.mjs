// Runs the web form's field logic (src/lightplug/ui/static/form.js) in Node with a minimal DOM: for each case,
// build the Field from a JSON Schema property, type a text into its input as a user would, and report what the
// form then shows. Usage: node ui_form_harness.mjs FORM_JS < cases.json  (prints the results as JSON).
// Each case: {"key": "model.hidden", "prop": {...JSON Schema property...}, "owner": "mlp", "typed": "abc"}.

class Node {
  constructor(tag) {
    this.tagName = tag ? tag.toUpperCase() : "#text";
    this.attributes = {};
    this.children = [];
    this.dataset = {};
    this.listeners = {};
    this.value = "";
    this.checked = false;
    this.textContent = "";
    const classes = new Set();
    this.classList = {
      toggle: (name, on) => (on ? classes.add(name) : classes.delete(name)),
      add: (name) => classes.add(name),
      contains: (name) => classes.has(name),
    };
  }
  setAttribute(key, value) {
    this.attributes[key] = value;
    if (["type", "id", "name", "placeholder", "inputmode"].includes(key)) this[key] = value;
  }
  getAttribute(key) { return this.attributes[key]; }
  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
  dispatch(type) { for (const fn of this.listeners[type] || []) fn({ target: this }); }
  append(...nodes) { this.children.push(...nodes); }
}

globalThis.Node = Node;
globalThis.document = { createElement: (tag) => new Node(tag), createTextNode: (text) => Object.assign(new Node(), { textContent: text }) };

const { Field, FieldSet } = await import(new URL(`file://${process.argv[2]}`).href);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const c of JSON.parse(input)) {
  const field = new Field(c.key, c.prop, c.owner);
  field.input.value = c.typed; // what the user typed, as the browser keeps it in a text input
  field.input.dispatch("input");
  const set = new FieldSet({ properties: {} }, "", c.owner);
  set.fields.push(field);
  results.push({
    key: c.key,
    typed: c.typed,
    inputType: field.input.type,
    shown: field.input.value,
    message: field.message.textContent,
    invalid: field.element.classList.contains("invalid"),
    override: field.override(),
    problems: set.problems(),
  });
}
process.stdout.write(JSON.stringify(results));

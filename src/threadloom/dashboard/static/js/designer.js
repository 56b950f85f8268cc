// The workflow designer: a canvas of the workflow file's tasks (SVG), a palette
// of the callables the server allows, a side panel with the file's fields.
// The server owns the file: it checks every edit with threadloom run's checker
// and saves with a format-preserving TOML writer. Every user string reaches
// the page through textContent or an attribute, never as HTML.
import { getJSON, postJSON } from "./api.js";
import { clear, el, svg } from "./dom.js";

const NODE_W = 190, NODE_H = 56, GAP_X = 90, GAP_Y = 36;
const NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,99}$/;
const RETRY_KEYS = ["max_retries", "delay", "backoff", "max_delay", "jitter"];
const UNITS = ["seconds", "minutes", "hours", "days", "weeks", "monday", "tuesday", "wednesday",
  "thursday", "friday", "saturday", "sunday"];
// The fields of a workflow file's task (the server's TASK_FIELDS).
const TASK_FIELDS = new Set(["call", "args", "kwargs", "depends_on", "priority", "retry", "timeout",
  "trigger_rule", "results_param", "schedule", "tags", "description", "enabled"]);
const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out", "skipped", "upstream_failed"]);

const state = {
  version: "",
  tasks: new Map(),          // name -> fields (the file's field names), in file order
  pos: new Map(),            // name -> {x, y}, canvas coordinates
  palette: new Map(),        // call -> entry
  rules: [], priorities: [],
  selected: null,            // {kind: "node", name} | {kind: "edge", from, to}
  view: { x: 0, y: 0, k: 1 },
  problems: [],
  dirty: false,
  cycle: null,               // {nodes: [...], edges: [[from, to], ...]} last refused connection
  run: null,                 // {id, tasks: name -> task id, statuses: name -> status, done}
};

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");

// -- loading ------------------------------------------------------------------------

async function load() {
  const doc = await getJSON("/api/designer/document");
  state.version = doc.version;
  state.tasks = new Map(doc.tasks.map((t) => [t.name, t.fields]));
  state.palette = new Map(doc.palette.map((e) => [e.call, e]));
  state.rules = doc.trigger_rules;
  state.priorities = doc.priorities;
  state.problems = doc.problems;
  $("file-name").textContent = doc.file;
  $("file-name").title = doc.path;
  renderPalette();
  await layout();
  setDirty(false);
  render();
  renderProblems();
}

// -- the palette --------------------------------------------------------------------

function renderPalette() {
  const filter = $("palette-filter").value.trim().toLowerCase();
  const list = clear($("palette-list"));
  for (const entry of state.palette.values()) {
    if (filter && !entry.call.toLowerCase().includes(filter) && !entry.doc.toLowerCase().includes(filter)) continue;
    const item = el("li", { class: "palette-item", "data-call": entry.call, title: entry.doc || entry.call },
      el("div", { class: "fn", text: entry.name }),
      el("div", { class: "module", text: entry.module }),
      el("div", { class: "sig", text: entry.signature }),
      entry.doc ? el("div", { class: "doc", text: entry.doc.split("\n\n")[0] }) : null);
    item.addEventListener("pointerdown", (event) => startPlacing(event, entry));
    list.append(item);
  }
}

function startPlacing(event, entry) {
  if (event.button !== 0) return;
  event.preventDefault();
  const ghost = el("div", { class: "drag-ghost", text: entry.name });
  document.body.append(ghost);
  const move = (e) => { ghost.style.left = `${e.clientX + 8}px`; ghost.style.top = `${e.clientY + 8}px`; };
  move(event);
  drag(move, (e) => {
    ghost.remove();
    const box = canvas.getBoundingClientRect();
    if (e.clientX < box.left || e.clientX > box.right || e.clientY < box.top || e.clientY > box.bottom) return;
    const at = toCanvas(e.clientX, e.clientY);
    addTask(entry, at.x - NODE_W / 2, at.y - NODE_H / 2);
  });
}

function addTask(entry, x, y) {
  let name = entry.name, n = 2;
  while (state.tasks.has(name)) name = `${entry.name}_${n++}`;
  state.tasks.set(name, { call: entry.call });
  state.pos.set(name, { x, y });
  state.selected = { kind: "node", name };
  changed();
  renderPanel();
}

// -- pointer gestures ---------------------------------------------------------------

// Follow the pointer until it is released; listeners on the document, so that
// a redraw of the element under the pointer does not lose the gesture.
function drag(onMove, onEnd) {
  const move = (e) => onMove(e);
  const up = (e) => {
    document.removeEventListener("pointermove", move);
    document.removeEventListener("pointerup", up);
    onEnd(e);
  };
  document.addEventListener("pointermove", move);
  document.addEventListener("pointerup", up);
}

function toCanvas(clientX, clientY) {
  const box = canvas.getBoundingClientRect();
  const { x, y, k } = state.view;
  return { x: (clientX - box.left - x) / k, y: (clientY - box.top - y) / k };
}

function nodeAt(clientX, clientY) {
  const hit = document.elementFromPoint(clientX, clientY);
  const group = hit && hit.closest ? hit.closest("#nodes [data-task]") : null;
  return group ? group.dataset.task : null;
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  const target = event.target;
  const port = target.closest(".port-out");
  const node = target.closest("#nodes [data-task]");
  const edge = target.closest(".edge-group");
  event.preventDefault();
  if (port) return startConnecting(event, port.closest("[data-task]").dataset.task);
  if (node) return startMoving(event, node.dataset.task);
  if (edge) {
    state.selected = { kind: "edge", from: edge.dataset.from, to: edge.dataset.to };
    state.cycle = null;
    render();
    renderPanel();
    return;
  }
  startPanning(event);
});

function startMoving(event, name) {
  const start = toCanvas(event.clientX, event.clientY);
  const origin = { ...state.pos.get(name) };
  let moved = false;
  state.selected = { kind: "node", name };
  state.cycle = null;
  render();
  renderPanel();
  drag((e) => {
    const at = toCanvas(e.clientX, e.clientY);
    if (!moved && Math.hypot(at.x - start.x, at.y - start.y) < 3) return;
    moved = true;
    state.pos.set(name, { x: origin.x + at.x - start.x, y: origin.y + at.y - start.y });
    render();
  }, () => {});
}

function startConnecting(event, from) {
  const band = $("rubber-band");
  const a = outPort(from);
  drag((e) => {
    const b = toCanvas(e.clientX, e.clientY);
    band.setAttribute("d", curve(a, b));
  }, (e) => {
    band.setAttribute("d", "");
    const to = nodeAt(e.clientX, e.clientY);
    if (to && to !== from) connect(from, to);
  });
}

function startPanning(event) {
  const start = { x: event.clientX, y: event.clientY, vx: state.view.x, vy: state.view.y };
  let moved = false;
  canvas.classList.add("panning");
  drag((e) => {
    if (Math.abs(e.clientX - start.x) + Math.abs(e.clientY - start.y) > 2) moved = true;
    state.view.x = start.vx + e.clientX - start.x;
    state.view.y = start.vy + e.clientY - start.y;
    applyView();
  }, () => {
    canvas.classList.remove("panning");
    if (!moved) { state.selected = null; state.cycle = null; render(); renderPanel(); }
  });
}

canvas.addEventListener("wheel", (event) => {
  event.preventDefault();
  zoomAt(event.clientX, event.clientY, Math.exp(-event.deltaY * 0.0015));
}, { passive: false });

function zoomAt(clientX, clientY, factor) {
  const box = canvas.getBoundingClientRect();
  const k = Math.min(3, Math.max(0.2, state.view.k * factor));
  const px = clientX - box.left, py = clientY - box.top;
  // Keep the point under the pointer where it is.
  state.view.x = px - ((px - state.view.x) * k) / state.view.k;
  state.view.y = py - ((py - state.view.y) * k) / state.view.k;
  state.view.k = k;
  applyView();
}

function applyView() {
  const { x, y, k } = state.view;
  $("viewport").setAttribute("transform", `translate(${x} ${y}) scale(${k})`);
  canvas.dataset.zoom = k.toFixed(3);
  canvas.dataset.pan = `${Math.round(x)},${Math.round(y)}`;
}

// -- the graph ----------------------------------------------------------------------

function deps(name) {
  const d = state.tasks.get(name)?.depends_on;
  return Array.isArray(d) ? d.filter((x) => typeof x === "string") : [];
}

// A path of dependencies from `start` up to `goal` (start depends on ... on goal), or null.
function dependencyPath(start, goal) {
  const previous = new Map([[start, null]]);
  const queue = [start];
  while (queue.length) {
    const node = queue.shift();
    if (node === goal) {
      const path = [];
      for (let n = node; n !== null; n = previous.get(n)) path.unshift(n);
      return path;
    }
    for (const up of deps(node)) {
      if (state.tasks.has(up) && !previous.has(up)) { previous.set(up, node); queue.push(up); }
    }
  }
  return null;
}

function connect(from, to) {
  if (deps(to).includes(from)) return message(`${to} already depends on ${from}`);
  // to would depend on from; refused if from already depends (through others) on to.
  const path = dependencyPath(from, to);
  if (path) {
    // path runs from `from` up to `to`; in run order it is to -> ... -> from, then from -> to.
    const order = [...path].reverse();
    const edges = [];
    for (let i = 0; i + 1 < order.length; i++) edges.push([order[i], order[i + 1]]);
    state.cycle = { nodes: order, edges, refused: [from, to] };
    render();
    message(`refused: connecting ${from} → ${to} would close the cycle ${[...order, to].join(" → ")}`, true);
    return;
  }
  const fields = state.tasks.get(to);
  fields.depends_on = [...deps(to), from];
  state.cycle = null;
  state.selected = { kind: "edge", from, to };
  changed();
  renderPanel();
}

function deleteSelected() {
  const s = state.selected;
  if (!s) return;
  if (s.kind === "edge") {
    const fields = state.tasks.get(s.to);
    if (fields) {
      const rest = deps(s.to).filter((d) => d !== s.from);
      if (rest.length) fields.depends_on = rest; else delete fields.depends_on;
    }
  } else {
    state.tasks.delete(s.name);
    state.pos.delete(s.name);
    for (const [name, fields] of state.tasks) {
      if (deps(name).includes(s.name)) {
        const rest = deps(name).filter((d) => d !== s.name);
        if (rest.length) fields.depends_on = rest; else delete fields.depends_on;
      }
    }
  }
  state.selected = null;
  changed();
  renderPanel();
}

async function layout() {
  const parents = {};
  for (const name of state.tasks.keys()) parents[name] = deps(name).filter((d) => state.tasks.has(d));
  let positions = {};
  try { ({ positions } = await postJSON("/api/designer/layout", { parents })); }
  catch (error) { message(error.message, true); return; }
  for (const [name, [layer, row]] of Object.entries(positions)) {
    state.pos.set(name, { x: 40 + layer * (NODE_W + GAP_X), y: 40 + row * (NODE_H + GAP_Y) });
  }
  fit();
  render();
}

// Show every task: scale down (never up) and centre the graph in the canvas.
function fit() {
  const box = canvas.getBoundingClientRect();
  const points = [...state.pos.values()];
  if (!points.length || !box.width) { state.view = { x: 0, y: 0, k: 1 }; applyView(); return; }
  const x0 = Math.min(...points.map((p) => p.x)) - 20, y0 = Math.min(...points.map((p) => p.y)) - 20;
  const x1 = Math.max(...points.map((p) => p.x)) + NODE_W + 20, y1 = Math.max(...points.map((p) => p.y)) + NODE_H + 20;
  const k = Math.max(0.2, Math.min(1, box.width / (x1 - x0), box.height / (y1 - y0)));
  state.view = { k, x: (box.width - (x1 - x0) * k) / 2 - x0 * k, y: (box.height - (y1 - y0) * k) / 2 - y0 * k };
  applyView();
}

// -- drawing ------------------------------------------------------------------------

function outPort(name) { const p = state.pos.get(name); return { x: p.x + NODE_W, y: p.y + NODE_H / 2 }; }
function inPort(name) { const p = state.pos.get(name); return { x: p.x, y: p.y + NODE_H / 2 }; }
function curve(a, b) {
  const dx = Math.max(40, Math.abs(b.x - a.x) / 2);
  return `M ${a.x} ${a.y} C ${a.x + dx} ${a.y}, ${b.x - dx} ${b.y}, ${b.x} ${b.y}`;
}

function problemsOf(name) { return state.problems.filter((p) => p.task === name); }

function render() {
  const edges = clear($("edges"));
  const nodes = clear($("nodes"));
  const cycleEdges = new Set((state.cycle?.edges || []).map(([a, b]) => `${a}\u0000${b}`));
  const cycleNodes = new Set(state.cycle?.nodes || []);
  for (const [name] of state.tasks) if (!state.pos.has(name)) state.pos.set(name, { x: 40, y: 40 });
  for (const [to] of state.tasks) {
    for (const from of deps(to)) {
      if (!state.tasks.has(from)) continue;
      const s = state.selected;
      const selected = s && s.kind === "edge" && s.from === from && s.to === to;
      const classes = ["edge-group", selected ? "selected" : "", cycleEdges.has(`${from}\u0000${to}`) ? "cycle" : ""];
      const group = svg("g", { class: classes.join(" ").trim(), "data-from": from, "data-to": to });
      const d = curve(outPort(from), inPort(to));
      group.append(svg("path", { class: "edge-hit", d }), svg("path", { class: "edge", d }));
      edges.append(group);
    }
  }
  if (state.cycle?.refused) {
    const [from, to] = state.cycle.refused;
    if (state.pos.has(from) && state.pos.has(to)) {
      edges.append(svg("path", { class: "edge refused", id: "refused-edge", d: curve(outPort(from), inPort(to)) }));
    }
  }
  for (const [name, fields] of state.tasks) {
    const p = state.pos.get(name);
    const problems = problemsOf(name);
    const s = state.selected;
    const classes = ["node", s && s.kind === "node" && s.name === name ? "selected" : "",
      problems.length ? "has-problems" : "", cycleNodes.has(name) ? "cycle" : ""];
    const status = state.run?.statuses.get(name);
    const group = svg("g", { class: classes.join(" ").replace(/\s+/g, " ").trim(), "data-task": name,
      "data-problems": problems.length, ...(status ? { "data-status": status } : {}) });
    group.append(svg("rect", { class: "body", x: p.x, y: p.y, width: NODE_W, height: NODE_H }));
    group.append(svg("text", { class: "name", x: p.x + 10, y: p.y + 20 }, short(name, 24)));
    group.append(svg("text", { class: "call", x: p.x + 10, y: p.y + 36 }, short(String(fields.call ?? "(no call)"), 30)));
    const extra = [status, fields.retry !== undefined ? "retry" : "", fields.schedule !== undefined ? "scheduled" : ""]
      .filter(Boolean).join(" · ");
    group.append(svg("text", { class: "call", x: p.x + 10, y: p.y + 50 }, extra));
    if (problems.length) {
      group.append(svg("text", { class: "badge", x: p.x + NODE_W - 28, y: p.y + 20 }, `⚠${problems.length}`));
    }
    const a = inPort(name), b = outPort(name);
    group.append(svg("circle", { class: "port port-in", cx: a.x, cy: a.y, r: 7 }));
    group.append(svg("circle", { class: "port port-out", cx: b.x, cy: b.y, r: 7 }));
    group.append(svg("title", {}, problems.length ? `${name}\n${problems.map((q) => q.message).join("\n")}` : name));
    nodes.append(group);
  }
  $("canvas-hint").hidden = state.tasks.size > 0;
}

function short(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }

// -- changes, validation, messages --------------------------------------------------

let validateTimer = null;
let validation = 0;

function changed() {
  setDirty(true);
  render();
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 150);
}

function documentBody() {
  return { version: state.version, tasks: [...state.tasks].map(([name, fields]) => ({ name, fields })) };
}

async function validate() {
  const mine = ++validation;
  document.body.dataset.validating = "true";
  try {
    const { problems } = await postJSON("/api/designer/validate", documentBody());
    if (mine !== validation) return; // a later edit is being checked
    state.problems = problems;
    message("");
  } catch (error) {
    if (mine !== validation) return;
    message(error.message, true);
  } finally {
    if (mine === validation) {
      delete document.body.dataset.validating;
      render();
      renderProblems();
      renderFieldProblems();
    }
  }
}

function setDirty(dirty) {
  state.dirty = dirty;
  $("file-name").classList.toggle("dirty", dirty);
  document.body.dataset.dirty = String(dirty);
}

function message(text, error = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", error && !!text);
}

function renderProblems() {
  const list = clear($("problem-list"));
  $("problem-count").textContent = state.problems.length ? `(${state.problems.length})` : "";
  for (const p of state.problems) {
    list.append(el("li", { "data-task": p.task ?? "", "data-field": p.field ?? "", text: p.text,
      onclick: () => { if (p.task && state.tasks.has(p.task)) { state.selected = { kind: "node", name: p.task }; render(); renderPanel(); } } }));
  }
}

// -- the side panel -----------------------------------------------------------------

function renderPanel() {
  const form = clear($("task-form"));
  const s = state.selected;
  if (!s || s.kind !== "node" || !state.tasks.has(s.name)) {
    form.hidden = true;
    $("panel-empty").hidden = false;
    $("panel-empty").textContent = s && s.kind === "edge"
      ? `Connection ${s.from} → ${s.to}: ${s.to} depends on ${s.from}. Press Delete to remove it.`
      : "Select a task to edit its fields.";
    return;
  }
  $("panel-empty").hidden = true;
  form.hidden = false;
  const name = s.name;
  const fields = state.tasks.get(name);
  const entry = state.palette.get(fields.call);
  const update = (key, value) => {
    const current = state.tasks.get(state.selected.name);
    if (value === undefined) delete current[key]; else current[key] = value;
    changed();
  };

  form.append(el("h2", { text: name }));
  form.append(field("name", "name", el("input", { type: "text", id: "field-name", value: name,
    onchange: (e) => rename(name, e.target.value.trim()) })));
  form.append(field("call", "call", el("div", {},
    el("div", { class: "signature", text: `${fields.call ?? ""}${entry ? entry.signature : ""}` }),
    entry && entry.doc ? el("div", { class: "hint", text: entry.doc }) : null)));
  form.append(field("depends_on", "depends_on (connect tasks on the canvas)", dependencyList(name, fields)));
  form.append(field("args", "args (a JSON list)", jsonInput("args", fields.args, Array.isArray, "a list, e.g. [\"eu\"]", update)));
  form.append(field("kwargs", "kwargs (a JSON object)", jsonInput("kwargs", fields.kwargs,
    (v) => v !== null && typeof v === "object" && !Array.isArray(v), 'an object, e.g. {"days": 3}', update)));
  form.append(field("priority", "priority", select("field-priority", ["", ...state.priorities], fields.priority,
    // A file may give an int priority: it stays an int.
    (v) => update("priority", v === "" ? undefined : /^-?\d+$/.test(v) ? Number(v) : v), "(default: normal)")));
  form.append(field("retry", "retry", retryEditor(fields.retry, update)));
  form.append(field("timeout", "timeout (seconds from queueing to the end)",
    numberInput("field-timeout", fields.timeout, (v) => update("timeout", v))));
  form.append(field("trigger_rule", "trigger_rule", select("field-trigger_rule", ["", ...state.rules], fields.trigger_rule,
    (v) => update("trigger_rule", v === "" ? undefined : v), "(default: all_success)")));
  form.append(field("results_param", "results_param (receives {dependency: result})", el("input", {
    type: "text", id: "field-results_param", value: fields.results_param ?? "",
    onchange: (e) => update("results_param", e.target.value.trim() || undefined) })));
  form.append(field("tags", "tags (comma-separated)", el("input", {
    type: "text", id: "field-tags", value: Array.isArray(fields.tags) ? fields.tags.join(", ") : "",
    onchange: (e) => { const tags = e.target.value.split(",").map((t) => t.trim()).filter(Boolean); update("tags", tags.length ? tags : undefined); } })));
  form.append(field("schedule", "schedule", scheduleEditor(fields.schedule, update)));
  form.append(field("description", "description", el("input", {
    type: "text", id: "field-description", value: fields.description ?? "",
    onchange: (e) => update("description", e.target.value || undefined) })));
  form.append(field("enabled", "enabled", el("input", { type: "checkbox", id: "field-enabled",
    ...(fields.enabled === false ? {} : { checked: "" }),
    onchange: (e) => update("enabled", e.target.checked ? undefined : false) })));
  // Fields the file holds that a workflow does not define (a typo): shown, so
  // that the checker's problem has a place and the field can be removed.
  for (const key of Object.keys(fields).filter((k) => !TASK_FIELDS.has(k))) {
    form.append(field(key, `${key} (not a workflow field)`, el("div", { class: "extra-field" },
      el("code", { text: JSON.stringify(fields[key]) }),
      el("button", { type: "button", class: "remove-field", "data-key": key, text: "Remove",
        onclick: () => { update(key, undefined); renderPanel(); } }))));
  }
  form.append(el("div", { class: "field", "data-field": "" }, el("ul", { class: "field-problems" })));
  form.append(el("button", { type: "button", id: "delete-task", text: `Delete task ${name}`, onclick: deleteSelected }));
  renderFieldProblems();
  if (fields.schedule !== undefined) previewSchedule(fields.schedule);
}

function dependencyList(name, fields) {
  const list = el("ul", { class: "deps", id: "field-depends_on" });
  const all = Array.isArray(fields.depends_on) ? fields.depends_on : [];
  for (const dep of new Set(all)) {
    const known = state.tasks.has(dep);
    list.append(el("li", { "data-dep": String(dep), class: known ? "" : "unknown" },
      el("span", { text: known ? String(dep) : `${dep} (no such task)` }),
      el("button", { type: "button", class: "remove-dep", title: `remove the dependency on ${dep}`, text: "×",
        onclick: () => {
          const current = state.tasks.get(name);
          const rest = (Array.isArray(current.depends_on) ? current.depends_on : []).filter((d) => d !== dep);
          if (rest.length) current.depends_on = rest; else delete current.depends_on;
          changed();
          renderPanel();
        } })));
  }
  if (!all.length) list.append(el("li", { class: "hint", text: "none" }));
  return list;
}

function field(key, label, control) {
  return el("div", { class: "field", "data-field": key },
    el("label", { text: label }), control, el("ul", { class: "field-problems" }));
}

function select(id, options, value, onChange, blankLabel) {
  const box = el("select", { id, onchange: (e) => onChange(e.target.value) });
  const all = value !== undefined && !options.includes(String(value)) ? [...options, String(value)] : options;
  for (const option of all) {
    box.append(el("option", { value: option, text: option === "" ? blankLabel : option,
      ...(String(value ?? "") === option ? { selected: "" } : {}) }));
  }
  return box;
}

function numberInput(id, value, onChange, attrs = {}) {
  return el("input", { type: "number", step: "any", id, value: value ?? "", ...attrs,
    onchange: (e) => onChange(e.target.value === "" ? undefined : Number(e.target.value)) });
}

function jsonInput(key, value, ok, expected, update) {
  const input = el("input", { type: "text", id: `field-${key}`, value: value === undefined ? "" : JSON.stringify(value),
    onchange: (e) => {
      const text = e.target.value.trim();
      const box = e.target.closest(".field");
      if (!text) { box.classList.remove("invalid"); update(key, undefined); return; }
      let parsed;
      try { parsed = JSON.parse(text); } catch (error) { return localProblem(box, `not JSON: ${error.message}`); }
      if (!ok(parsed)) return localProblem(box, `must be ${expected}`);
      box.classList.remove("invalid");
      update(key, parsed);
    } });
  return input;
}

function localProblem(box, text) {
  box.classList.add("invalid");
  fill(box.querySelector(".field-problems"), [el("li", { text })]);
}

function fill(node, children) { node.replaceChildren(...children); }

function retryEditor(retry, update) {
  const mode = retry === undefined ? "none" : typeof retry === "number" ? "count" : "table";
  const box = el("div", { class: "retry" });
  const modeSelect = el("select", { id: "field-retry-mode" },
    ...["none", "count", "table"].map((m) => el("option", { value: m, text: m === "none" ? "no retries" : m === "count" ? "a number of retries" : "a policy table", ...(m === mode ? { selected: "" } : {}) })));
  modeSelect.addEventListener("change", (e) => {
    const m = e.target.value;
    const current = state.tasks.get(state.selected.name).retry;
    const count = typeof current === "number" ? current : current?.max_retries ?? 3;
    update("retry", m === "none" ? undefined : m === "count" ? count : { max_retries: count, delay: 1.0 });
    renderPanel();
  });
  box.append(modeSelect);
  if (mode === "count") {
    box.append(numberInput("field-retry-count", retry, (v) => update("retry", v), { min: 0, step: 1 }));
  } else if (mode === "table") {
    const sub = el("div", { class: "sub" });
    for (const key of RETRY_KEYS) {
      sub.append(el("label", { text: key }, numberInput(`field-retry-${key}`, retry[key], (v) => {
        const table = { ...state.tasks.get(state.selected.name).retry };
        if (v === undefined) delete table[key]; else table[key] = v;
        update("retry", table);
      })));
    }
    box.append(sub);
    if (retry.retry_on !== undefined) box.append(el("div", { class: "hint", text: `retry_on: ${JSON.stringify(retry.retry_on)}` }));
  }
  return box;
}

function scheduleKind(schedule) {
  if (schedule === undefined) return "none";
  if (typeof schedule === "string") return "cron";
  if (schedule && typeof schedule === "object") {
    for (const kind of ["cron", "every", "once"]) if (kind in schedule) return kind;
  }
  return "other";
}

function scheduleEditor(schedule, update) {
  const kind = scheduleKind(schedule);
  const box = el("div", { class: "schedule" });
  const kinds = { none: "no schedule", cron: "cron expression", every: "an interval", once: "once, at a time" };
  if (kind === "other") kinds.other = "(as in the file)";
  const modeSelect = el("select", { id: "field-schedule-mode" },
    ...Object.entries(kinds).map(([k, label]) => el("option", { value: k, text: label, ...(k === kind ? { selected: "" } : {}) })));
  modeSelect.addEventListener("change", (e) => {
    const m = e.target.value;
    const fresh = { none: undefined, cron: "0 * * * *", every: { every: 30, unit: "seconds" },
      once: { once: new Date(Date.now() + 86400000).toISOString().slice(0, 19) } }[m];
    update("schedule", fresh);
    renderPanel();
  });
  box.append(modeSelect);
  const set = (key, value) => {
    const current = state.tasks.get(state.selected.name).schedule;
    let next;
    if (key === "cron" && typeof current === "string") next = value;
    else { next = { ...current }; if (value === undefined) delete next[key]; else next[key] = value; }
    update("schedule", next);
    previewSchedule(next);
  };
  if (kind === "cron") {
    const expr = typeof schedule === "string" ? schedule : schedule.cron;
    box.append(el("input", { type: "text", id: "field-schedule-cron", value: expr ?? "", placeholder: "*/10 * * * *",
      onchange: (e) => set("cron", e.target.value.trim()) }));
  } else if (kind === "every") {
    const sub = el("div", { class: "sub" });
    sub.append(el("label", { text: "every" }, numberInput("field-schedule-every", schedule.every, (v) => set("every", v), { min: 1, step: 1 })));
    sub.append(el("label", { text: "unit" }, select("field-schedule-unit", UNITS, schedule.unit, (v) => set("unit", v), "")));
    sub.append(el("label", { text: "at (optional)" }, el("input", { type: "text", id: "field-schedule-at", value: schedule.at ?? "", placeholder: "09:30",
      onchange: (e) => set("at", e.target.value.trim() || undefined) })));
    box.append(sub);
  } else if (kind === "once") {
    box.append(el("input", { type: "text", id: "field-schedule-once", value: schedule.once ?? "", placeholder: "2030-01-01T09:00:00",
      onchange: (e) => set("once", e.target.value.trim()) }));
  }
  box.append(el("div", { class: "schedule-preview", id: "schedule-preview" }));
  return box;
}

let previewRequest = 0;
async function previewSchedule(schedule) {
  const mine = ++previewRequest;
  const box = $("schedule-preview");
  if (!box) return;
  if (schedule === undefined) { clear(box); return; }
  let data;
  try { data = await postJSON("/api/designer/schedule", { schedule }); }
  catch (error) { if (mine === previewRequest) fill(box, [el("p", { class: "error", text: error.message })]); return; }
  if (mine !== previewRequest || !document.body.contains(box)) return;
  if (data.problems.length) { fill(box, [el("p", { class: "error", text: data.problems.map((p) => p.message).join("; ") })]); return; }
  fill(box, [
    el("div", { class: "words", text: data.words }),
    el("div", { class: "hint", text: `next ${data.fires.length} fire times (${data.timezone}):` }),
    el("ol", { class: "fires" }, data.fires.map((t) => el("li", { "data-time": t, text: t.replace("T", " ") }))),
  ]);
}

function renderFieldProblems() {
  const form = $("task-form");
  const s = state.selected;
  if (form.hidden || !s || s.kind !== "node") return;
  const byField = new Map();
  for (const p of problemsOf(s.name)) {
    const key = p.field ? p.field.split(".")[0] : "";
    const known = form.querySelector(`.field[data-field="${CSS.escape(key)}"]`) ? key : "";
    if (!byField.has(known)) byField.set(known, []);
    byField.get(known).push(p.field && p.field.includes(".") ? `${p.field}: ${p.message}` : p.message);
  }
  for (const box of form.querySelectorAll(".field[data-field]")) {
    const messages = byField.get(box.dataset.field) || [];
    box.classList.toggle("invalid", messages.length > 0);
    fill(box.querySelector(".field-problems"), messages.map((text) => el("li", { text })));
  }
}

function rename(from, to) {
  if (to === from) return;
  if (!NAME.test(to)) { renderPanel(); return message(`"${to}" is not a task name: use letters, digits, _ and -, starting with a letter or _`, true); }
  if (state.tasks.has(to)) { renderPanel(); return message(`a task is already named ${to}`, true); }
  // Keep the file's order: rebuild the map with the new key in place.
  state.tasks = new Map([...state.tasks].map(([name, fields]) => [name === from ? to : name, fields]));
  for (const [, fields] of state.tasks) {
    if (Array.isArray(fields.depends_on)) fields.depends_on = fields.depends_on.map((d) => (d === from ? to : d));
  }
  state.pos.set(to, state.pos.get(from));
  state.pos.delete(from);
  state.selected = { kind: "node", name: to };
  message("");
  changed();
  renderPanel();
}

// -- save and run -------------------------------------------------------------------

async function save() {
  clearTimeout(validateTimer);
  try {
    const result = await postJSON("/api/designer/save", documentBody());
    state.version = result.version;
    state.problems = result.problems;
    setDirty(false);
    message(result.problems.length ? `saved, with ${result.problems.length} problem(s) to fix before it runs` : "saved");
    document.body.dataset.saved = String(Date.now());
  } catch (error) {
    message(error.status === 409 ? `not saved: ${error.message}` : `not saved: ${error.message}`, true);
  }
  render();
  renderProblems();
  renderFieldProblems();
}

async function run() {
  $("history-link").hidden = true;
  let result;
  try { result = await postJSON("/api/designer/run", documentBody()); }
  catch (error) { message(`not run: ${error.message}`, true); return; }
  state.run = { id: result.execution_id, tasks: result.tasks, statuses: new Map(Object.keys(result.tasks).map((n) => [n, "pending"])), done: false };
  message(`running ${result.execution_id}`);
  render();
  await followRun();
}

let following = null;
async function followRun() {
  // One fetch at a time; an update arriving meanwhile asks for one more.
  if (!state.run || state.run.done) return;
  if (following) { following.again = true; return; }
  following = { again: false };
  try {
    do {
      following.again = false;
      const run = state.run;
      const data = await getJSON(`/api/executions/${encodeURIComponent(run.id)}`);
      for (const node of data.nodes) run.statuses.set(node.name, node.status);
      render();
      if (TERMINAL.has(data.status) || data.status === "completed") {
        run.done = true;
        document.body.dataset.runStatus = data.status;
        message(`run ${run.id}: ${data.status}`, data.status !== "completed");
        const link = $("history-link");
        link.href = `/?execution=${encodeURIComponent(run.id)}#executions`;
        link.hidden = false;
      }
    } while (following.again && !state.run.done);
  } catch (error) {
    message(error.message, true);
  } finally {
    following = null;
  }
}

function listen() {
  const source = new EventSource("/events");
  source.addEventListener("update", (event) => {
    const update = JSON.parse(event.data);
    if (state.run && !state.run.done && (update.executions || []).includes(state.run.id)) followRun();
  });
  source.addEventListener("reset", () => followRun());
}

// -- wiring -------------------------------------------------------------------------

$("palette-filter").addEventListener("input", renderPalette);
$("layout-button").addEventListener("click", layout);
$("zoom-in").addEventListener("click", () => { const b = canvas.getBoundingClientRect(); zoomAt(b.left + b.width / 2, b.top + b.height / 2, 1.25); });
$("zoom-out").addEventListener("click", () => { const b = canvas.getBoundingClientRect(); zoomAt(b.left + b.width / 2, b.top + b.height / 2, 0.8); });
$("delete-button").addEventListener("click", deleteSelected);
$("save-button").addEventListener("click", save);
$("run-button").addEventListener("click", run);
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest && event.target.closest("input, select, textarea");
  if (!typing && (event.key === "Delete" || event.key === "Backspace")) { event.preventDefault(); deleteSelected(); }
});
window.addEventListener("beforeunload", (event) => { if (state.dirty) event.preventDefault(); });

load().then(() => { document.body.dataset.ready = "true"; listen(); })
  .catch((error) => message(`cannot open the workflow: ${error.message}`, true));

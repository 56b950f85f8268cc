// Overview: counters (pushed over SSE), time series, resources and alerts.
import { getJSON } from "./api.js";
import { lineChart } from "./charts.js";
import { bytes, clear, el, seconds } from "./dom.js";

const COUNTERS = [
  ["tasks_submitted", "submitted"], ["tasks_completed", "completed"], ["tasks_failed", "failed"],
  ["tasks_cancelled", "cancelled"], ["tasks_timed_out", "timed out"], ["tasks_retried", "retries"],
  ["tasks_rejected", "rejected"], ["queue_size", "queued"], ["active_workers", "busy workers"],
  ["idle_workers", "idle workers"], ["target_workers", "target workers"], ["throughput", "tasks/s (avg)"],
  ["wait_time_p90", "wait p90"], ["run_time_p90", "run p90"],
];
const PRIORITY_COLOURS = { CRITICAL: "#dc2626", HIGH: "#f59e0b", NORMAL: "#2563eb", LOW: "#9ca3af" };
let series = [];
let resources = null;

export function init() {
  const box = document.getElementById("counters");
  clear(box);
  for (const [key, label] of COUNTERS) {
    box.append(el("div", { class: "counter" },
      el("div", { class: "label", text: label }),
      el("div", { class: "value", "data-counter": key, text: "–" })));
  }
}

export async function load() {
  const data = await getJSON("/api/overview");
  series = data.series;
  resources = data.resources;
  showCounters(data.counters);
  showAlerts(data.alerts);
  draw();
}

export function update(message) {
  if (message.counters) showCounters(message.counters);
  if (message.sample) {
    series.push(message.sample);
    if (series.length > 600) series.shift();
  }
  if (message.alerts) showAlerts(message.alerts);
}

export function draw() {
  const at = (key) => series.filter((p) => p[key] !== undefined).map((p) => [p.t, p[key]]);
  lineChart(document.getElementById("chart-workers"), [
    { label: "busy", colour: "#2563eb", values: at("busy") },
    { label: "idle", colour: "#9ca3af", values: at("idle") },
    { label: "target", colour: "#111827", values: at("target"), dashed: true },
  ]);
  const priorities = new Set(series.flatMap((p) => Object.keys(p.queue || {})));
  lineChart(document.getElementById("chart-queue"), [...priorities].map((name) => ({
    label: name, colour: PRIORITY_COLOURS[name] || "#6b7280",
    values: series.filter((p) => p.queue).map((p) => [p.t, p.queue[name] || 0]),
  })));
  lineChart(document.getElementById("chart-throughput"), [
    { label: "finished/s", colour: "#16a34a", values: at("throughput") },
  ]);
  lineChart(document.getElementById("chart-latency"), [
    { label: "wait p50", colour: "#93c5fd", values: at("wait_p50") },
    { label: "wait p99", colour: "#1d4ed8", values: at("wait_p99") },
    { label: "run p50", colour: "#fdba74", values: at("run_p50") },
    { label: "run p99", colour: "#c2410c", values: at("run_p99") },
  ], { unit: "s" });
  const thresholds = resources ? resources.thresholds : {};
  const flat = (key) => { const v = thresholds[key]; const pts = at("t"); return v === undefined || !pts.length ? [] : [[pts[0][0], v], [pts.at(-1)[0], v]]; };
  lineChart(document.getElementById("chart-resources"), [
    { label: "cpu", colour: "#2563eb", values: at("cpu") },
    { label: "memory", colour: "#16a34a", values: at("memory") },
    { label: "io", colour: "#f59e0b", values: at("io") },
    { label: "disk", colour: "#6b7280", values: at("disk") },
    { label: "cpu max", colour: "#2563eb", values: flat("cpu"), dashed: true },
    { label: "mem max", colour: "#16a34a", values: flat("memory"), dashed: true },
  ], { max: 100, unit: "%" });
  const box = clear(document.getElementById("resources"));
  if (resources) {
    box.append(el("div", { text: `usable CPUs: ${resources.cpu_count} (${resources.cpu_count_source})` }),
      el("div", { text: `memory limit: ${bytes(resources.memory_limit_bytes)} (${resources.memory_limit_source})` }),
      el("div", { text: `thresholds: cpu ${thresholds.cpu}% · memory ${thresholds.memory}% · io ${thresholds.io}% · disk ${thresholds.disk}%` }));
  } else {
    box.append(el("div", { text: "no resource monitor on this pool" }));
  }
}

function showCounters(counters) {
  for (const node of document.querySelectorAll("[data-counter]")) {
    const key = node.dataset.counter;
    if (!(key in counters)) continue;
    const value = counters[key];
    node.textContent = key.endsWith("_p90") ? seconds(value)
      : key === "throughput" ? Number(value).toFixed(1) : String(value);
  }
}

function showAlerts(alerts) {
  const list = clear(document.getElementById("alerts"));
  if (!alerts.length) list.append(el("li", { text: "no alerts" }));
  for (const a of alerts.slice(0, 20)) {
    const raised = a.kind === "alert_raised";
    list.append(el("li", { class: raised ? "raised" : "cleared",
      text: `${new Date(a.timestamp * 1000).toLocaleTimeString()} ${a.resource} ${raised ? "raised" : "cleared"} at ${a.value.toFixed(1)}% (threshold ${a.threshold}%)` }));
  }
}

// The page: hash routing between views, and SSE updates dispatched to the visible one.
import { getJSON, listen } from "./api.js";
import * as executions from "./executions.js";
import * as history from "./history.js";
import * as overview from "./overview.js";
import * as profile from "./profile.js";
import * as schedules from "./schedules.js";
import * as stream from "./stream.js";
import * as tasks from "./tasks.js";

const VIEWS = { overview, stream, tasks, executions, schedules, history, profile };
let current = "overview";
let lastStreamDraw = 0;
let pending = null;

function show(name) {
  if (!(name in VIEWS)) name = "overview";
  current = name;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === name);
  refresh();
}

function refresh() {
  // One load at a time per view; a later request replaces a queued one.
  const view = VIEWS[current];
  if (pending) return;
  pending = Promise.resolve(view.load()).catch((error) => console.error(error)).finally(() => { pending = null; });
}

function onUpdate(message) {
  overview.update(message);
  if (current === "overview") overview.draw();
  else if (current === "tasks" && (message.tasks.length || message.tasks_overflow)) refresh();
  else if (current === "executions" && message.executions.length) refresh();
  else if (current === "stream" && Date.now() - lastStreamDraw > 1000) { lastStreamDraw = Date.now(); refresh(); }
  document.body.dataset.lastUpdate = String(message.t);
}

async function start() {
  overview.init();
  tasks.init(refresh);
  executions.init();
  history.init();
  profile.init();
  for (const id of ["stream-window", "stream-colour"]) document.getElementById(id).addEventListener("change", refresh);
  const info = await getJSON("/api/info");
  document.title = `threadloom ${info.version}${info.live ? "" : " (history)"}`;
  if (info.manager) executions.loadRegistered();
  if (info.designer) document.getElementById("designer-link").hidden = false;
  await overview.load();
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1) || "overview");
  if (info.live) {
    const conn = document.getElementById("conn");
    // If the event stream is blocked (a proxy, a firewall), poll the JSON
    // endpoints instead until it comes back.
    let polling = null;
    listen({
      onUpdate,
      onReset: () => { overview.load(); refresh(); },
      onState: (up) => {
        conn.textContent = up ? "live" : "reconnecting (polling)";
        conn.classList.toggle("live", up);
        if (up && polling) { clearInterval(polling); polling = null; }
        if (!up && !polling) {
          polling = setInterval(() => { overview.load().then(() => overview.draw()); refresh(); }, 2000);
        }
      },
    });
  } else {
    document.getElementById("conn").textContent = "history only";
  }
  // The schedules view has no events of its own: refresh it every few seconds.
  setInterval(() => { if (current === "schedules" || current === "stream" || current === "profile") refresh(); }, 3000);
}

start();

// Talking to the server: JSON reads, control POSTs (token in a header), SSE.
const params = new URLSearchParams(location.search);
let token = params.get("token") || sessionStorage.getItem("threadloom-token") || "";
if (params.has("token")) {
  sessionStorage.setItem("threadloom-token", token);
  // Keep the token out of the address bar (and of screenshots); the server
  // set a cookie for GETs, and POSTs send the header below.
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
}

function headers() {
  return token ? { "X-Threadloom-Token": token } : {};
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: headers(), credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

export async function post(path) {
  const response = await fetch(path, { method: "POST", headers: headers(), credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

// A POST with a JSON body; a failure carries the HTTP status (409: a conflict).
export async function postJSON(path, data) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify(data),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// Server-Sent Events; the browser resumes with Last-Event-ID by itself.
export function listen({ onUpdate, onReset, onState }) {
  const source = new EventSource("/events");
  source.addEventListener("open", () => onState(true));
  source.addEventListener("error", () => onState(false));
  source.addEventListener("update", (event) => onUpdate(JSON.parse(event.data), Number(event.lastEventId)));
  source.addEventListener("reset", () => onReset());
  return source;
}

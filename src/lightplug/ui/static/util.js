// Small helpers shared by the views: JSON requests, element building, formatting.

export class ApiError extends Error {
  constructor(message, problems = [], status = 0) {
    super(message);
    this.problems = problems;
    this.status = status;
  }
}

async function request(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const detail = body && (body.error || (Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail));
    throw new ApiError(detail || text || response.statusText, (body && body.problems) || [], response.status);
  }
  return body;
}

export const getJSON = (url) => request(url);
export const postJSON = (url, data) =>
  request(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

/** el("div", {class: "x", onclick: f}, child, "text", ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Quote an argument as Python's shlex.quote does (so the command matches the server's). */
export function shellQuote(arg) {
  if (/^[A-Za-z0-9_.,:/=+@%\-[\]]+$/.test(arg)) return arg;
  return "'" + arg.replace(/'/g, "'\"'\"'") + "'";
}

export function commandLine(overrides) {
  return ["lightplug", "train", ...overrides.map(shellQuote)].join(" ");
}

export function formatNumber(value, digits = 4) {
  if (value === null || value === undefined || value === "") return "";
  const num = Number(value);
  if (!Number.isFinite(num)) return String(value);
  if (Number.isInteger(num)) return String(num);
  return Number(num.toPrecision(digits)).toString();
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m${String(r).padStart(2, "0")}s`;
  return `${r}s`;
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function statusBadge(status) {
  return el("span", { class: `badge status-${status}`, title: status }, status);
}

export function fileUrl(path, download = false) {
  return `/api/file?path=${encodeURIComponent(path)}${download ? "&download=1" : ""}`;
}

export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = el("textarea", { style: "position:fixed;left:-9999px" }, text);
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  if (button) {
    const old = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = old; }, 1200);
  }
}

export function notice(text, kind = "info") {
  const box = document.getElementById("notice");
  box.textContent = text || "";
  box.className = text ? `notice-${kind}` : "";
}

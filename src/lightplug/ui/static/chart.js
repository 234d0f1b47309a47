// A small SVG line chart: one or more series of [x, y] points, axes with round ticks, a legend.

import { formatNumber } from "./util.js";

const NS = "http://www.w3.org/2000/svg";
export const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function ticks(min, max, count = 5) {
  if (min === max) { min -= Math.abs(min) * 0.1 || 1; max += Math.abs(max) * 0.1 || 1; }
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const first = Math.floor(min / step) * step;
  const out = [];
  for (let v = first; v <= max + step * 0.5 && out.length < 20; v += step) out.push(Number(v.toPrecision(12)));
  return { lo: first, hi: out[out.length - 1], values: out };
}

/**
 * @param {Array<{label: string, points: number[][], color?: string}>} series
 * @param {{title?: string, xLabel?: string, width?: number, height?: number}} options
 * @returns {SVGSVGElement}
 */
export function lineChart(series, options = {}) {
  const width = options.width || 560, height = options.height || 240;
  const m = { left: 56, right: 12, top: 46, bottom: 40 };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": options.title || "chart" });
  if (options.title) root.append(svg("text", { x: m.left, y: 16, class: "chart-title" }, options.title));
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  if (!all.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" }, "no values yet"));
    return root;
  }
  const xs = ticks(Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0])));
  const ys = ticks(Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1])));
  const w = width - m.left - m.right, h = height - m.top - m.bottom;
  const X = (x) => m.left + ((x - xs.lo) / (xs.hi - xs.lo || 1)) * w;
  const Y = (y) => m.top + h - ((y - ys.lo) / (ys.hi - ys.lo || 1)) * h;
  const grid = svg("g", { class: "chart-grid" });
  for (const v of ys.values) {
    grid.append(svg("line", { x1: m.left, x2: m.left + w, y1: Y(v), y2: Y(v) }));
    grid.append(svg("text", { x: m.left - 6, y: Y(v) + 4, "text-anchor": "end" }, formatNumber(v, 3)));
  }
  for (const v of xs.values) {
    grid.append(svg("line", { x1: X(v), x2: X(v), y1: m.top, y2: m.top + h, class: "vertical" }));
    grid.append(svg("text", { x: X(v), y: m.top + h + 16, "text-anchor": "middle" }, formatNumber(v, 3)));
  }
  grid.append(svg("text", { x: m.left + w / 2, y: height - 6, "text-anchor": "middle", class: "axis-label" }, options.xLabel || "step"));
  root.append(grid);
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const pts = s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    const g = svg("g", { class: "series", "data-label": s.label });
    if (pts.length > 1) {
      g.append(svg("polyline", { points: pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" "), stroke: color, fill: "none", "stroke-width": 2 }));
    }
    if (pts.length <= 60) {
      for (const p of pts) {
        const dot = svg("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.8, fill: color });
        dot.append(svg("title", {}, `${s.label}: ${formatNumber(p[1], 5)} at ${options.xLabel || "step"} ${p[0]}`));
        g.append(dot);
      }
    }
    root.append(g);
  });
  const legend = svg("g", { class: "chart-legend" });
  let x = m.left;
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    legend.append(svg("rect", { x, y: 24, width: 10, height: 10, fill: color, rx: 2 }));
    const label = s.label.length > 34 ? `${s.label.slice(0, 33)}…` : s.label;
    legend.append(svg("text", { x: x + 14, y: 33 }, label));
    x += 22 + label.length * 6.4;
  });
  root.append(legend);
  return root;
}

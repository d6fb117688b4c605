// Times in the viewer's own zone, ages that stay current, and self-refreshing pages.
// Every <time datetime="..."> is rewritten; chart ticks carry data-time.
"use strict";

function ago(ms) {
  const future = ms < 0;
  let s = Math.abs(ms) / 1000;
  if (s < 10) return "just now";
  const units = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
  for (const [size, unit] of units) {
    if (s >= size) {
      const text = Math.floor(s / size) + " " + unit;
      return future ? "in " + text : text + " ago";
    }
  }
  return "just now";
}

function localTimes() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) continue;
    const abs = el.querySelector(".abs");
    const rel = el.querySelector(".rel");
    if (abs) abs.textContent = when.toLocaleString();
    if (rel) rel.textContent = "(" + ago(now - when.getTime()) + ")";
  }
  for (const svg of document.querySelectorAll("svg[data-span]")) {
    // ticks as precise as the chart's span needs: seconds under 20 min, dates over 2 days
    const span = parseFloat(svg.getAttribute("data-span"));
    const format = span < 1200 ? {hour: "2-digit", minute: "2-digit", second: "2-digit"}
      : span > 172800 ? {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"}
      : {hour: "2-digit", minute: "2-digit"};
    for (const el of svg.querySelectorAll("text[data-time]")) {
      const when = new Date(el.getAttribute("data-time"));
      if (!isNaN(when)) el.textContent = when.toLocaleString([], format);
    }
  }
}

function refresher() {
  const el = document.querySelector("[data-refresh]");
  if (!el) return;
  const seconds = parseInt(el.getAttribute("data-refresh"), 10);
  if (seconds > 0) setTimeout(() => window.location.reload(), seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes();
  setInterval(localTimes, 30000);
  refresher();
});

// A usage chart drawn in the page as SVG from GET /api/v1/usage: verifications per hour or day, each bar
// stacked by outcome (valid and each failure code). The same numbers are a table for screen readers and
// for anyone who wants them exact; the SVG itself is one image with a text summary.
import { api } from "../app/api.js";
import { announce, clear, field, h, uid } from "../app/dom.js";

const SVG = "http://www.w3.org/2000/svg";
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** The verify codes as the usage report counts them, valid first; their sum is `requests`. */
export const OUTCOMES = [
  ["valid", "Valid"],
  ["not_found", "Not found"],
  ["invalid_format", "Invalid format"],
  ["disabled", "Disabled"],
  ["expired", "Expired"],
  ["forbidden", "Forbidden (allowlist)"],
  ["insufficient_scopes", "Insufficient scopes"],
  ["rate_limited", "Rate limited"],
  ["usage_exceeded", "Usage exceeded"],
];

const RANGES = [
  { id: "24h", label: "Last 24 hours, by hour", granularity: "hour", span: DAY },
  { id: "7d", label: "Last 7 days, by hour", granularity: "hour", span: 7 * DAY },
  { id: "30d", label: "Last 30 days, by day", granularity: "day", span: 30 * DAY },
  { id: "90d", label: "Last 90 days, by day", granularity: "day", span: 90 * DAY },
];

function s(tag, attrs = {}, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, String(v));
  for (const kid of kids.flat(9)) if (kid != null) el.append(kid);
  return el;
}

const svgText = (attrs, text) => {
  const el = s("text", attrs);
  el.textContent = text;
  return el;
};

const fmt = new Intl.NumberFormat();
const label = (start, granularity) =>
  new Date(start).toLocaleString(undefined, {
    month: "short",
    day: "numeric",
    ...(granularity === "hour" ? { hour: "2-digit", minute: "2-digit" } : {}),
  });

/** Every bucket of the range, the empty ones as zeros (the API returns only buckets with a count). */
export function bucketsOf(report) {
  const size = report.granularity === "hour" ? HOUR : DAY;
  const group = report.groups[0];
  const byStart = new Map((group?.series ?? []).map((p) => [Date.parse(p.start), p]));
  const out = [];
  for (let t = Date.parse(report.from); t < Date.parse(report.to); t += size) {
    const p = byStart.get(t);
    out.push({
      start: t,
      requests: p?.requests ?? 0,
      auth_failed: p?.auth_failed ?? 0,
      counts: Object.fromEntries(OUTCOMES.map(([code]) => [code, p?.[code] ?? 0])),
    });
  }
  return out;
}

/** One sentence for the SVG's description: totals and the failure codes seen, largest first. */
export function summaryOf(report, what) {
  const totals = report.groups[0]?.totals;
  const range = `${new Date(report.from).toLocaleString()} to ${new Date(report.to).toLocaleString()}`;
  if (!totals?.requests) return `No verifications of ${what} from ${range}.`;
  const failures = OUTCOMES.slice(1)
    .filter(([code]) => totals[code] > 0)
    .sort((a, b) => totals[b[0]] - totals[a[0]])
    .map(([code, name]) => `${name} ${fmt.format(totals[code])}`);
  return (
    `${fmt.format(totals.requests)} verifications of ${what} from ${range}: ${fmt.format(totals.valid)} valid, ` +
    `${fmt.format(totals.invalid)} failed${failures.length ? ` (${failures.join(", ")})` : ""}.` +
    (totals.auth_failed ? ` ${fmt.format(totals.auth_failed)} refused authentications to Keywarden.` : "")
  );
}

/** A rounded-up axis maximum: 1, 2 or 5 times a power of ten. */
function niceMax(value) {
  if (value <= 1) return 1;
  const base = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * base).find((m) => m >= value);
}

function drawSvg(buckets, granularity, width, titleText, descText) {
  const height = 220;
  const m = { top: 10, right: 8, bottom: 30, left: 48 };
  const plotW = Math.max(10, width - m.left - m.right);
  const plotH = height - m.top - m.bottom;
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.requests)));
  const y = (v) => m.top + plotH - (v / max) * plotH;
  const bw = plotW / Math.max(1, buckets.length);
  const gap = bw > 4 ? Math.min(2, bw * 0.15) : 0;
  const titleId = uid();
  const descId = uid();
  const ticks = [0, max / 2, max].filter((v, i, a) => Number.isInteger(v) && a.indexOf(v) === i);
  const labelEvery = Math.max(1, Math.ceil(buckets.length / Math.max(1, Math.floor(plotW / 90))));
  return s(
    "svg",
    {
      class: "usage-svg",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `${titleId} ${descId}`,
    },
    s("title", { id: titleId }, titleText),
    s("desc", { id: descId }, descText),
    ticks.map((v) => [
      s("line", { class: "usage-grid", x1: m.left, x2: m.left + plotW, y1: y(v), y2: y(v) }),
      svgText({ class: "usage-axis", x: m.left - 6, y: y(v) + 4, "text-anchor": "end" }, fmt.format(v)),
    ]),
    buckets.map((b, i) => {
      const x = m.left + i * bw + gap / 2;
      let top = y(0);
      const parts = [];
      for (const [code] of OUTCOMES) {
        const n = b.counts[code];
        if (!n) continue;
        const hgt = (n / max) * plotH;
        top -= hgt;
        parts.push(s("rect", { class: `u-${code}`, x, y: top, width: Math.max(0.5, bw - gap), height: hgt }));
      }
      const tip = `${label(b.start, granularity)}: ${fmt.format(b.requests)} verifications, ${fmt.format(b.counts.valid)} valid`;
      return [
        parts.length ? s("g", {}, s("title", {}, tip), parts) : null,
        i % labelEvery === 0
          ? svgText(
              { class: "usage-axis", x: x + (bw - gap) / 2, y: height - 10, "text-anchor": "middle" },
              label(b.start, granularity),
            )
          : null,
      ];
    }),
    s("line", { class: "usage-base", x1: m.left, x2: m.left + plotW, y1: y(0), y2: y(0) }),
  );
}

function legend(buckets) {
  const seen = OUTCOMES.filter(([code], i) => i === 0 || buckets.some((b) => b.counts[code] > 0));
  return h(
    "ul",
    { class: "usage-legend", "aria-label": "Legend" },
    seen.map(([code, name]) =>
      h("li", {}, h("span", { class: `swatch u-${code}`, "aria-hidden": "true" }), name),
    ),
  );
}

function table(buckets, granularity, captionText) {
  const used = buckets.filter((b) => b.requests || b.auth_failed);
  const codes = OUTCOMES.filter(([code]) => used.some((b) => b.counts[code] > 0));
  const authFailures = used.some((b) => b.auth_failed > 0);
  if (!used.length) return null;
  return h(
    "details",
    { class: "usage-table" },
    h("summary", { text: "Show the numbers as a table" }),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        {},
        h("caption", { text: `${captionText}. Periods with no verifications are left out.` }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col", text: granularity === "hour" ? "Hour" : "Day" }),
            h("th", { scope: "col", text: "Verifications" }),
            codes.map(([, name]) => h("th", { scope: "col", text: name })),
            authFailures ? h("th", { scope: "col", text: "Refused authentications" }) : null,
          ),
        ),
        h(
          "tbody",
          {},
          used.map((b) =>
            h(
              "tr",
              {},
              h("th", { scope: "row", text: label(b.start, granularity) }),
              h("td", { text: fmt.format(b.requests) }),
              codes.map(([code]) => h("td", { text: fmt.format(b.counts[code]) })),
              authFailures ? h("td", { text: fmt.format(b.auth_failed) }) : null,
            ),
          ),
        ),
      ),
    ),
  );
}

/**
 * The chart with its period picker, as a section. `query` narrows the report (`key_id`, `service_id`);
 * `what` names the subject in the text ("key Billing", "all keys"); `onError(err)` reports a failed load.
 */
export function usageChart({ title = "Usage", query = {}, what, onError, range = "30d" }) {
  const heading = h("h2", { id: uid(), text: title });
  const picker = h(
    "select",
    { name: "usage-range" },
    RANGES.map((r) => h("option", { value: r.id, text: r.label, selected: r.id === range })),
  );
  const figure = h("div", { class: "usage-figure", "aria-busy": "true" });
  const root = h(
    "section",
    { class: "card usage", "aria-labelledby": heading.id, "data-chart": "usage" },
    heading,
    field("Period", picker),
    figure,
  );
  let drawn = null;

  const draw = () => {
    if (!drawn) return;
    const { report, buckets, r } = drawn;
    const width = Math.max(280, Math.floor(figure.clientWidth || 600));
    const summary = summaryOf(report, what);
    const open = figure.querySelector("details")?.open ?? false;
    clear(
      figure,
      drawSvg(
        buckets,
        report.granularity,
        width,
        `Verifications of ${what}, ${r.label.toLowerCase()}`,
        summary,
      ),
      legend(buckets),
      h("p", { class: "hint", text: summary }),
      table(buckets, report.granularity, `Verifications of ${what}, ${r.label.toLowerCase()}`),
    );
    const details = figure.querySelector("details");
    if (details) details.open = open;
    drawn.width = width;
    return summary;
  };

  /** `picked`: the person chose another period, so the new summary is announced (the figure is not live). */
  const load = async (picked = false) => {
    const r = RANGES.find((x) => x.id === picker.value) ?? RANGES[2];
    figure.setAttribute("aria-busy", "true");
    const params = new URLSearchParams({
      granularity: r.granularity,
      from: String(Math.floor((Date.now() - r.span) / 1000)),
      group_by: "tenant",
      ...query,
    });
    try {
      const report = await api("GET", `/api/v1/usage?${params}`);
      drawn = { report, buckets: bucketsOf(report), r };
      const summary = draw();
      if (picked) announce(summary);
    } catch (err) {
      figure.replaceChildren(h("p", { text: "The usage could not be loaded." }));
      onError?.(err);
    } finally {
      figure.setAttribute("aria-busy", "false");
    }
  };

  picker.addEventListener("change", () => load(true));
  // Drawn at the container's own width, so text stays legible on a phone; redrawn when that width changes.
  const resize = new ResizeObserver(() => {
    if (!root.isConnected) return resize.disconnect();
    if (drawn && Math.abs((figure.clientWidth || 0) - drawn.width) > 24) draw();
  });
  resize.observe(figure);
  queueMicrotask(() => load());
  return root;
}

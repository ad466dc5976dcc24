/*
 * dashboard-core.js: the dashboard's pure logic, no DOM, no network.
 *
 * Loaded by the page as a plain script (it sets globalThis.DashboardCore) and by the unit tests
 * in Node (module.exports). Everything here takes values and returns values.
 */
(function (root, factory) {
  "use strict";
  const core = factory();
  root.DashboardCore = core;
  if (typeof module !== "undefined" && module.exports) module.exports = core;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  // --- the buffer of live metrics ------------------------------------------------------------
  //
  // A buffer is {period, t: [epoch seconds, ascending, one per bucket, no gaps],
  //              series: {key: [value | null, one per t]}}.
  // Every bucket of the kept window is present (null where nothing is known), so each series
  // array can go to uPlot as it is, and a missing second shows as a gap in the line.

  function emptyBuffer(period) {
    return { period: period || 1, t: [], series: {} };
  }

  function isFiniteNumber(v) {
    return typeof v === "number" && Number.isFinite(v);
  }

  function value(v) {
    return isFiniteNumber(v) ? v : null;
  }

  /*
   * Merge one /metrics answer into the buffer and keep only the last `windowSeconds`.
   * Buckets are matched by timestamp. A later answer overwrites the value of the same second
   * (metrics arrive late: a second first answered as null, or partial, is filled in later);
   * a null in a later answer does not erase a value already known. Returns a new buffer and
   * leaves the given one untouched. An answer with another period replaces the buffer.
   */
  function mergeAnswer(buffer, answer, windowSeconds) {
    const period = answer && isFiniteNumber(answer.period) && answer.period > 0 ? answer.period : 1;
    const ansT = answer && Array.isArray(answer.t) ? answer.t : [];
    const ansSeries = (answer && answer.series) || {};
    const old = buffer && buffer.period === period ? buffer : emptyBuffer(period);

    const keys = new Set(Object.keys(old.series));
    for (const k of Object.keys(ansSeries)) keys.add(k);

    const times = [];
    for (const t of ansT) if (isFiniteNumber(t)) times.push(t);
    if (old.t.length === 0 && times.length === 0) {
      const series = {};
      for (const k of keys) series[k] = [];
      return { period, t: [], series };
    }

    let start = Infinity;
    let end = -Infinity;
    if (old.t.length) {
      start = old.t[0];
      end = old.t[old.t.length - 1];
    }
    for (const t of times) {
      if (t < start) start = t;
      if (t > end) end = t;
    }
    // Keep the newest windowSeconds / period buckets (15 min of 1 s buckets: 900).
    if (isFiniteNumber(windowSeconds) && windowSeconds > 0) {
      const first = end - (Math.max(1, Math.floor(windowSeconds / period)) - 1) * period;
      if (start < first) start = first;
    }
    // An answer on another grid (start not a multiple of the period away) snaps to the grid
    // of the newest bucket.
    const n = Math.max(0, Math.round((end - start) / period) + 1);
    const t = new Array(n);
    for (let i = 0; i < n; i++) t[i] = end - (n - 1 - i) * period;
    const t0 = t[0];

    const series = {};
    for (const k of keys) {
      const out = new Array(n).fill(null);
      const prev = old.series[k];
      if (prev) {
        for (let i = 0; i < old.t.length; i++) {
          const j = Math.round((old.t[i] - t0) / period);
          if (j >= 0 && j < n) out[j] = prev[i];
        }
      }
      const next = ansSeries[k];
      if (Array.isArray(next)) {
        for (let i = 0; i < ansT.length; i++) {
          const v = value(next[i]);
          if (v === null || !isFiniteNumber(ansT[i])) continue;
          const j = Math.round((ansT[i] - t0) / period);
          if (j >= 0 && j < n) out[j] = v;
        }
      }
      series[k] = out;
    }
    return { period, t, series };
  }

  /* How many minutes the next poll should ask for: 1 normally, more after polls failed for a
   * while (so the gap is filled), never more than the window. */
  function pollMinutes(lastEnd, nowSeconds, windowMinutes) {
    const win = Math.max(1, Math.ceil(windowMinutes || 1));
    if (!isFiniteNumber(lastEnd) || !isFiniteNumber(nowSeconds)) return win;
    const behind = nowSeconds - lastEnd;
    if (behind <= 50) return Math.min(1, win);
    return Math.min(win, Math.ceil((behind + 10) / 60));
  }

  // --- charts ------------------------------------------------------------------------------

  /* The uPlot data of one chart: [t, one array per chart series (in the chart's order), then
   * the limit line when the chart has one]. A series the buffer does not hold is all null. */
  function chartData(buffer, chart, settings) {
    const t = buffer.t;
    const data = [t];
    for (const s of chart.series || []) {
      const arr = buffer.series[s.key];
      data.push(arr && arr.length === t.length ? arr : new Array(t.length).fill(null));
    }
    if (chart.limit) {
      const limit = limitValue(chart, settings);
      data.push(new Array(t.length).fill(limit));
    }
    return data;
  }

  function limitValue(chart, settings) {
    if (!chart || !chart.limit) return null;
    if (isFiniteNumber(chart.limit.value)) return chart.limit.value;
    const v = settings && chart.limit.setting ? settings[chart.limit.setting] : null;
    return value(v);
  }

  /* Non-null values across a chart's own series (data[1..count]; the limit line not counted). */
  function countPoints(data, seriesCount) {
    const last = seriesCount == null ? data.length - 1 : Math.min(seriesCount, data.length - 1);
    let n = 0;
    for (let s = 1; s <= last; s++) {
      const arr = data[s];
      for (let i = 0; i < arr.length; i++) if (arr[i] !== null && arr[i] !== undefined) n++;
    }
    return n;
  }

  /* Indices of values with no value on either side: a line cannot show them, a dot can.
   * null when there are none. */
  function isolatedIndices(arr) {
    if (!arr) return null;
    const out = [];
    const n = arr.length;
    for (let i = 0; i < n; i++) {
      const v = arr[i];
      if (v === null || v === undefined) continue;
      const before = i > 0 ? arr[i - 1] : null;
      const after = i < n - 1 ? arr[i + 1] : null;
      if ((before === null || before === undefined) && (after === null || after === undefined)) out.push(i);
    }
    return out.length ? out : null;
  }

  /* Which axes a chart needs and what they say: units of the left-axis series and of the
   * right-axis series, each listed once. */
  function axisUnits(chart) {
    const left = [];
    const right = [];
    for (const s of chart.series || []) {
      const side = s.axis === "right" ? right : left;
      if (s.unit && side.indexOf(s.unit) < 0) side.push(s.unit);
    }
    return { left: left.join(" / "), right: right.join(" / "), hasRight: (chart.series || []).some((s) => s.axis === "right") };
  }

  /* A string that changes when the chart definitions change (rebuild the charts then). */
  function chartsSignature(charts) {
    return JSON.stringify(
      (charts || []).map((c) => [
        c.id,
        c.title,
        c.limit ? [c.limit.label, c.limit.setting] : null,
        (c.series || []).map((s) => [s.key, s.label, s.unit, s.axis || "left"]),
      ])
    );
  }

  /* Only well-formed chart definitions, so one odd entry from the server cannot break the page. */
  function validCharts(charts) {
    if (!Array.isArray(charts)) return [];
    const seen = new Set();
    const out = [];
    for (const c of charts) {
      if (!c || typeof c.id !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(c.id) || seen.has(c.id)) continue;
      const series = Array.isArray(c.series) ? c.series.filter((s) => s && typeof s.key === "string") : [];
      if (!series.length) continue;
      seen.add(c.id);
      out.push({
        id: c.id,
        title: typeof c.title === "string" ? c.title : c.id,
        limit: c.limit && (c.limit.setting || isFiniteNumber(c.limit.value)) ? c.limit : null,
        series: series.map((s) => ({
          key: s.key,
          label: typeof s.label === "string" ? s.label : s.key,
          unit: typeof s.unit === "string" ? s.unit : "",
          axis: s.axis === "right" ? "right" : "left",
        })),
      });
    }
    return out;
  }

  /* A y range from 0 to a round number a little above the largest value ([0, 1] when there is
   * no data). Negative data moves the bottom down. */
  function yRange(min, max) {
    const lo = isFiniteNumber(min) && min < 0 ? min : 0;
    const hi = isFiniteNumber(max) ? max : 0;
    if (hi <= lo) return [lo, lo + 1];
    const target = hi + (hi - lo) * 0.08;
    const mag = Math.pow(10, Math.floor(Math.log10(target)));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * mag >= target) return [lo, m * mag];
    return [lo, 10 * mag];
  }

  // --- the report view ---------------------------------------------------------------------

  const REPORT_CHARTS = [
    {
      id: "report-rates",
      title: "Arrivals and completions",
      series: [
        { key: "arrivals", label: "arrivals", unit: "tasks/s", axis: "left" },
        { key: "completions", label: "completions", unit: "tasks/s", axis: "left" },
      ],
      limit: null,
    },
    {
      id: "report-queue",
      title: "Queue depth",
      series: [
        { key: "queue_visible", label: "visible", unit: "messages", axis: "left" },
        { key: "queue_in_flight", label: "in flight", unit: "messages", axis: "left" },
      ],
      limit: null,
    },
    {
      id: "report-concurrency",
      title: "Concurrency",
      series: [
        { key: "concurrent_batches", label: "batches running, from task rows", unit: "batches", axis: "left" },
        { key: "lambda_concurrent_executions", label: "Lambda concurrent executions", unit: "executions", axis: "left" },
        { key: "esm_concurrent_batches", label: "event source mapping concurrent batches", unit: "batches", axis: "left" },
      ],
      limit: { label: "MaximumConcurrency", setting: "max_concurrency" },
    },
  ];

  /* A run's timeline as a buffer (x = first_send_at + second), so the report's charts are drawn
   * by the same code as the live ones. Seconds missing from the timeline are null. */
  function reportBuffer(report) {
    const origin = Date.parse(report && report.first_send_at);
    const base = Number.isFinite(origin) ? origin / 1000 : 0;
    const entries = Array.isArray(report && report.timeline) ? report.timeline.filter((e) => e && isFiniteNumber(e.second)) : [];
    const keys = [];
    for (const c of REPORT_CHARTS) for (const s of c.series) keys.push(s.key);
    let last = -1;
    for (const e of entries) if (e.second > last) last = e.second;
    const n = Math.floor(last) + 1;
    const t = new Array(n);
    for (let i = 0; i < n; i++) t[i] = base + i;
    const series = {};
    for (const k of keys) series[k] = new Array(n).fill(null);
    for (const e of entries) {
      const i = Math.floor(e.second);
      if (i < 0 || i >= n) continue;
      for (const k of keys) if (isFiniteNumber(e[k])) series[k][i] = e[k];
    }
    return { period: 1, t, series };
  }

  /* The settings object the report's limit line reads. */
  function reportSettings(report) {
    const b = (report && report.batches) || {};
    return { max_concurrency: value(b.max_concurrency) };
  }

  function get(obj, path) {
    let cur = obj;
    for (const p of path) {
      if (cur === null || cur === undefined || typeof cur !== "object") return null;
      cur = cur[p];
    }
    return cur === undefined ? null : cur;
  }

  /* The run's summary as [key, label, text] rows. */
  function reportSummary(report) {
    const e2e = get(report, ["end_to_end_ms"]);
    const e2eText =
      e2e && typeof e2e === "object"
        ? ["p50", "p95", "p99"].map((p) => p + " " + formatNumber(e2e[p])).join(", ") + " ms"
        : "no data";
    const integrity = get(report, ["integrity", "ok"]);
    const drain = get(report, ["drain", "seconds"]);
    const limit = get(report, ["batches", "max_concurrency"]);
    const peak = get(report, ["batches", "peak_concurrent"]);
    const settings = get(report, ["settings"]) || {};
    const cost = get(report, ["cost", "total_usd"]);
    const prices = get(report, ["cost", "prices_date"]);
    const region = get(report, ["cost", "region"]);
    const costText = isFiniteNumber(cost)
      ? formatCost(cost) + (prices ? " (" + [region, "list prices of " + prices].filter(Boolean).join(", ") + ")" : "")
      : "not known";
    const what = [settings.profile, settings.task_type].filter((x) => typeof x === "string").join(", ");
    return [
      ["profile", "Profile", what || "not set"],
      ["accepted", "Tasks accepted", formatValue(get(report, ["tasks", "accepted"]))],
      ["done", "Done", formatValue(get(report, ["done"]))],
      ["failed", "Failed", formatValue(get(report, ["failed"]))],
      ["end_to_end_ms", "End-to-end latency", e2eText],
      ["drain_seconds", "Drain time", drain === null ? "did not drain" : formatNumber(drain) + " s"],
      ["dead_letter_messages", "Dead-letter messages", formatValue(get(report, ["dead_letter_messages"]))],
      ["integrity", "Integrity check", integrity === true ? "OK" : integrity === false ? "FAILED" : "not known"],
      [
        "peak_concurrent",
        "Peak batches at once",
        formatValue(peak) + (isFiniteNumber(limit) ? " of MaximumConcurrency " + limit : ""),
      ],
      ["cost_usd", "Cost on AWS", costText],
    ];
  }

  /* reports/index.json -> its runs (well-formed ones, valid ids), newest first. */
  function normalizeRuns(index) {
    const runs = index && Array.isArray(index.runs) ? index.runs : [];
    return runs
      .filter((r) => r && validRunId(r.run_id))
      .slice()
      .sort((a, b) => {
        const ta = Date.parse(a.first_send_at) || 0;
        const tb = Date.parse(b.first_send_at) || 0;
        return tb - ta || (a.run_id < b.run_id ? 1 : a.run_id > b.run_id ? -1 : 0);
      });
  }

  // --- navigation --------------------------------------------------------------------------

  function validRunId(id) {
    return typeof id === "string" && /^[A-Za-z0-9-]{1,100}$/.test(id);
  }

  /* location.hash -> {view: "live"} | {view: "report", runId} | {view: "report", runId: null, invalid} */
  function parseHash(hash) {
    const h = typeof hash === "string" ? hash.replace(/^#/, "") : "";
    if (h.indexOf("report=") === 0) {
      let id = h.slice("report=".length);
      try {
        id = decodeURIComponent(id);
      } catch (e) {
        return { view: "report", runId: null, invalid: id };
      }
      return validRunId(id) ? { view: "report", runId: id } : { view: "report", runId: null, invalid: id };
    }
    return { view: "live" };
  }

  // --- formatting --------------------------------------------------------------------------

  function formatNumber(v) {
    if (!isFiniteNumber(v)) return "–";
    const abs = Math.abs(v);
    let digits = 0;
    if (abs !== Math.round(abs)) digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
    return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }

  /* US dollars: cents from $0.01 up, four decimals below (a small burst costs fractions of a cent). */
  function formatCost(usd) {
    if (!isFiniteNumber(usd)) return "not known";
    const digits = Math.abs(usd) >= 0.01 ? 2 : 4;
    return "$" + usd.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  /* A setting or a count: null -> "not set"; numbers formatted; a unit appended to numbers. */
  function formatValue(v, unit) {
    if (v === null || v === undefined || v === "") return "not set";
    if (typeof v === "number") return formatNumber(v) + (unit ? " " + unit : "");
    if (typeof v === "boolean") return v ? "yes" : "no";
    return String(v);
  }

  const SETTINGS = [
    ["batch_size", "BatchSize", ""],
    ["batching_window_seconds", "Batching window", "s"],
    ["maximum_concurrency", "MaximumConcurrency", ""],
    ["reserved_concurrency", "Reserved concurrency", ""],
    ["visibility_timeout_seconds", "Visibility timeout", "s"],
    ["max_receive_count", "Max receive count", ""],
    ["mapping_state", "Mapping state", ""],
    ["worker_function", "Worker function", ""],
    ["event_source_mapping", "Event source mapping", ""],
  ];

  /* The settings panel's rows, [key, label, text]: the known settings in order (each shown,
   * "not set" when null or absent), then any other key the server sends. */
  function settingsRows(settings) {
    const s = settings && typeof settings === "object" ? settings : {};
    const rows = SETTINGS.map(([key, label, unit]) => [key, label, formatValue(s[key], unit)]);
    const known = new Set(SETTINGS.map((r) => r[0]));
    for (const key of Object.keys(s)) {
      if (!known.has(key) && /^[A-Za-z0-9_]{1,64}$/.test(key)) rows.push([key, key.replace(/_/g, " "), formatValue(s[key])]);
    }
    return rows;
  }

  /* The "current numbers" tiles, [key, label, value]. */
  function currentNumbers(answer) {
    const q = (answer && answer.queue) || {};
    const d = (answer && answer.dead_letter_queue) || {};
    return [
      ["queue_visible", "Queue visible", value(q.visible)],
      ["queue_in_flight", "Queue in flight", value(q.in_flight)],
      ["queue_delayed", "Queue delayed", value(q.delayed)],
      ["dlq_visible", "Dead-letter queue", value(d.visible)],
    ];
  }

  const STATES = ["idle", "scaling_up", "at_maximum", "draining", "throttled", "failing"];

  function stateName(state) {
    const name = state && typeof state.name === "string" ? state.name : "";
    return STATES.indexOf(name) >= 0 ? name : "unknown";
  }

  function pad2(n) {
    return (n < 10 ? "0" : "") + n;
  }

  /* Epoch seconds -> local "HH:MM:SS". */
  function formatClock(epochSeconds) {
    if (!isFiniteNumber(epochSeconds)) return "–";
    const d = new Date(epochSeconds * 1000);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  /* Seconds -> "just now" / "5 s ago" / "3 min ago" / "2 h ago". */
  function formatAgo(seconds) {
    if (!isFiniteNumber(seconds)) return "never";
    if (seconds < 2) return "just now";
    if (seconds < 120) return Math.floor(seconds) + " s ago";
    if (seconds < 7200) return Math.floor(seconds / 60) + " min ago";
    return Math.floor(seconds / 3600) + " h ago";
  }

  /* The newest bucket that holds any value (the last datapoint), or null. */
  function lastDataTime(buffer) {
    for (let i = buffer.t.length - 1; i >= 0; i--) {
      for (const k in buffer.series) {
        const v = buffer.series[k][i];
        if (v !== null && v !== undefined) return buffer.t[i];
      }
    }
    return null;
  }

  /* Why a fetch failed, in a few words. */
  function describeError(err) {
    if (!err) return "unknown error";
    if (err.name === "AbortError" || err.name === "TimeoutError") return "no answer in time";
    if (err.name === "TypeError") return "no connection (network error or CORS)";
    return String(err.message || err);
  }

  /* The last `seconds` of the buffer, for the charts: the buffer keeps the whole window, the
   * user chooses how much of it to see. */
  function viewOf(buffer, seconds) {
    const period = buffer.period || 1;
    const keep = Math.max(1, Math.ceil(seconds / period));
    if (buffer.t.length <= keep) return buffer;
    const from = buffer.t.length - keep;
    const series = {};
    for (const key of Object.keys(buffer.series)) series[key] = buffer.series[key].slice(from);
    return { period, t: buffer.t.slice(from), series };
  }

  /* The URL of a metrics request, from the configured apiUrl (which ends in "/"). */
  function metricsUrl(apiUrl, minutes, period) {
    const base = String(apiUrl || "");
    return base + (base.endsWith("/") ? "" : "/") + "metrics?minutes=" + encodeURIComponent(minutes) + "&period=" + encodeURIComponent(period);
  }

  return {
    emptyBuffer,
    mergeAnswer,
    pollMinutes,
    chartData,
    limitValue,
    countPoints,
    isolatedIndices,
    axisUnits,
    chartsSignature,
    validCharts,
    yRange,
    REPORT_CHARTS,
    reportBuffer,
    reportSettings,
    reportSummary,
    normalizeRuns,
    validRunId,
    parseHash,
    formatNumber,
    formatCost,
    formatValue,
    settingsRows,
    currentNumbers,
    STATES,
    stateName,
    formatClock,
    formatAgo,
    lastDataTime,
    describeError,
    metricsUrl,
    viewOf,
  };
});

"use strict";
// Unit tests of the dashboard's pure logic (site/dashboard-core.js): `npm test` in dashboard/.
const test = require("node:test");
const assert = require("node:assert/strict");
const core = require("../site/dashboard-core.js");

/* An answer of /metrics: `values[key]` lists the values from `start`, one per second. */
function answer(start, values, extra) {
  const n = Math.max(...Object.values(values).map((v) => v.length));
  const t = Array.from({ length: n }, (_, i) => start + i);
  return Object.assign({ period: 1, start, end: start + n - 1, t, series: values }, extra || {});
}

const CHART = {
  id: "queue",
  title: "Queue depth",
  series: [
    { key: "queue_visible", label: "visible", unit: "messages" },
    { key: "queue_in_flight", label: "in flight", unit: "messages" },
    { key: "oldest_message_age", label: "oldest message age", unit: "s", axis: "right" },
  ],
};
const LIMITED = {
  id: "concurrency",
  title: "Concurrency",
  limit: { label: "MaximumConcurrency", setting: "maximum_concurrency" },
  series: [{ key: "concurrent_batches", label: "concurrent batches", unit: "batches" }],
};

test("the first answer becomes the buffer", () => {
  const buf = core.mergeAnswer(null, answer(100, { a: [1, 2, 3] }), 900);
  assert.deepEqual(buf.t, [100, 101, 102]);
  assert.deepEqual(buf.series.a, [1, 2, 3]);
  assert.equal(buf.period, 1);
});

test("a later answer extends the buffer and overwrites the seconds it repeats", () => {
  let buf = core.mergeAnswer(null, answer(100, { a: [1, 2, null] }), 900);
  buf = core.mergeAnswer(buf, answer(101, { a: [20, 30, 40] }), 900);
  assert.deepEqual(buf.t, [100, 101, 102, 103]);
  assert.deepEqual(buf.series.a, [1, 20, 30, 40]);
});

test("a late metric fills a second that was null; a null does not erase a known value", () => {
  let buf = core.mergeAnswer(null, answer(100, { a: [1, null, 3] }), 900);
  buf = core.mergeAnswer(buf, answer(100, { a: [null, 2, 3] }), 900);
  assert.deepEqual(buf.series.a, [1, 2, 3]);
});

test("merging leaves the previous buffer as it was", () => {
  const first = core.mergeAnswer(null, answer(100, { a: [1, 2] }), 900);
  core.mergeAnswer(first, answer(101, { a: [9, 9] }), 900);
  assert.deepEqual(first.series.a, [1, 2]);
  assert.deepEqual(first.t, [100, 101]);
});

test("a gap between answers is kept as null buckets, so every second is present", () => {
  let buf = core.mergeAnswer(null, answer(100, { a: [1, 2] }), 900);
  buf = core.mergeAnswer(buf, answer(105, { a: [6] }), 900);
  assert.deepEqual(buf.t, [100, 101, 102, 103, 104, 105]);
  assert.deepEqual(buf.series.a, [1, 2, null, null, null, 6]);
});

test("what is older than the window is dropped: 15 min of 1 s buckets keep 900", () => {
  const values = Array.from({ length: 900 }, (_, i) => i);
  let buf = core.mergeAnswer(null, answer(1000, { a: values }), 900);
  assert.equal(buf.t.length, 900);
  buf = core.mergeAnswer(buf, answer(1890, { a: Array(60).fill(7) }), 900);
  assert.equal(buf.t.length, 900);
  assert.equal(buf.t[0], 1050);
  assert.equal(buf.t[899], 1949);
  assert.equal(buf.series.a[0], 50);
  assert.equal(buf.series.a[899], 7);
});

test("a series new in a later answer starts with nulls; one the answer lacks keeps its values", () => {
  let buf = core.mergeAnswer(null, answer(100, { a: [1, 2] }), 900);
  buf = core.mergeAnswer(buf, answer(101, { b: [5, 6] }), 900);
  assert.deepEqual(buf.series.a, [1, 2, null]);
  assert.deepEqual(buf.series.b, [null, 5, 6]);
});

test("non-numbers in an answer count as no data", () => {
  const buf = core.mergeAnswer(null, answer(100, { a: [1, "x", NaN, Infinity, 5] }), 900);
  assert.deepEqual(buf.series.a, [1, null, null, null, 5]);
});

test("an answer with another period replaces the buffer", () => {
  let buf = core.mergeAnswer(null, answer(100, { a: [1, 2, 3] }), 900);
  buf = core.mergeAnswer(buf, { period: 60, t: [60, 120], series: { a: [10, 20] } }, 900);
  assert.equal(buf.period, 60);
  assert.deepEqual(buf.t, [60, 120]);
  assert.deepEqual(buf.series.a, [10, 20]);
});

test("an empty answer keeps the buffer", () => {
  const buf = core.mergeAnswer(core.mergeAnswer(null, answer(100, { a: [1] }), 900), { period: 1, t: [], series: {} }, 900);
  assert.deepEqual(buf.t, [100]);
  assert.deepEqual(buf.series.a, [1]);
  assert.deepEqual(core.mergeAnswer(null, { period: 1, t: [], series: {} }, 900).t, []);
});

test("the poll asks for 1 minute, more after a long gap, never more than the window", () => {
  assert.equal(core.pollMinutes(1000, 1002, 15), 1);
  assert.equal(core.pollMinutes(1000, 1000 + 170, 15), 3);
  assert.equal(core.pollMinutes(1000, 1000 + 5000, 15), 15);
  assert.equal(core.pollMinutes(null, 1000, 15), 15);
});

test("chart data: time, then each chart series in order; a series with no data is all null", () => {
  const buf = core.mergeAnswer(null, answer(100, { queue_visible: [1, 2], oldest_message_age: [null, 4] }), 900);
  const data = core.chartData(buf, CHART, {});
  assert.deepEqual(data, [
    [100, 101],
    [1, 2],
    [null, null],
    [null, 4],
  ]);
  assert.equal(core.countPoints(data, CHART.series.length), 3);
});

test("the limit line is the setting's value at every second, and is not counted as points", () => {
  const buf = core.mergeAnswer(null, answer(100, { concurrent_batches: [3, null, 5] }), 900);
  const data = core.chartData(buf, LIMITED, { maximum_concurrency: 10 });
  assert.deepEqual(data[2], [10, 10, 10]);
  assert.equal(core.countPoints(data, LIMITED.series.length), 2);
  const unset = core.chartData(buf, LIMITED, { maximum_concurrency: null });
  assert.deepEqual(unset[2], [null, null, null]);
});

test("axis units: left and right axes each list their units once", () => {
  assert.deepEqual(core.axisUnits(CHART), { left: "messages", right: "s", hasRight: true });
  const mixed = { series: [{ unit: "executions" }, { unit: "batches" }, { unit: "batches" }] };
  assert.deepEqual(core.axisUnits(mixed), { left: "executions / batches", right: "", hasRight: false });
});

test("isolated values (no neighbour) are found so they can be drawn as dots", () => {
  assert.deepEqual(core.isolatedIndices([null, 1, null, 2, 3, null, 4]), [1, 6]);
  assert.equal(core.isolatedIndices([1, 2, 3]), null);
});

test("chart definitions: odd entries are dropped, axis defaults to left", () => {
  const defs = core.validCharts([
    CHART,
    { id: "bad id!", series: [{ key: "x" }] },
    { id: "empty", series: [] },
    { id: "queue", series: [{ key: "dup" }] },
    { id: "plain", series: [{ key: "k" }] },
  ]);
  assert.deepEqual(defs.map((d) => d.id), ["queue", "plain"]);
  assert.deepEqual(defs[1].series[0], { key: "k", label: "k", unit: "", axis: "left" });
  assert.notEqual(core.chartsSignature(defs), core.chartsSignature(defs.slice(0, 1)));
  assert.equal(core.chartsSignature(core.validCharts([CHART])), core.chartsSignature(core.validCharts([CHART])));
  assert.deepEqual(core.validCharts(null), []);
});

test("y range starts at 0 and ends on a round number above the data", () => {
  assert.deepEqual(core.yRange(0, 10), [0, 12]);
  assert.deepEqual(core.yRange(0, 480), [0, 600]);
  assert.deepEqual(core.yRange(null, null), [0, 1]);
  const [lo, hi] = core.yRange(-5, 5);
  assert.equal(lo, -5);
  assert.ok(hi > 5);
});

test("run ids: letters, digits and '-' only", () => {
  assert.equal(core.validRunId("20261201-101500-a1b2"), true);
  for (const bad of ["", "../etc/passwd", "a/b", "a b", "a.json", "x".repeat(101), null, 5]) {
    assert.equal(core.validRunId(bad), false, String(bad));
  }
});

test("the hash picks the view; a bad run id is refused before any fetch", () => {
  assert.deepEqual(core.parseHash(""), { view: "live" });
  assert.deepEqual(core.parseHash("#live"), { view: "live" });
  assert.deepEqual(core.parseHash("#runs"), { view: "live" });
  assert.deepEqual(core.parseHash("#report=20261201-101500-a1b2"), { view: "report", runId: "20261201-101500-a1b2" });
  assert.deepEqual(core.parseHash("#report=..%2Fsecret"), { view: "report", runId: null, invalid: "../secret" });
  assert.equal(core.parseHash("#report=%E0%A4%A").runId, null);
});

test("a report's timeline becomes a buffer at first_send_at + second", () => {
  const report = {
    first_send_at: "2026-12-01T10:15:00+00:00",
    batches: { max_concurrency: 10 },
    timeline: [
      { second: 0, planned: 120, arrivals: 118, queue_visible: 80, queue_in_flight: 30, concurrent_batches: 5, completions: 20, lambda_concurrent_executions: 5 },
      { second: 2, planned: 0, arrivals: 0, queue_visible: 0, queue_in_flight: 0, concurrent_batches: 0, completions: 3, esm_concurrent_batches: 1 },
    ],
  };
  const buf = core.reportBuffer(report);
  const t0 = Date.parse("2026-12-01T10:15:00Z") / 1000;
  assert.deepEqual(buf.t, [t0, t0 + 1, t0 + 2]);
  assert.deepEqual(buf.series.arrivals, [118, null, 0]);
  assert.deepEqual(buf.series.lambda_concurrent_executions, [5, null, null]);
  assert.deepEqual(buf.series.esm_concurrent_batches, [null, null, 1]);
  const concurrency = core.REPORT_CHARTS.find((c) => c.id === "report-concurrency");
  const data = core.chartData(buf, concurrency, core.reportSettings(report));
  assert.deepEqual(data[data.length - 1], [10, 10, 10]);
  assert.deepEqual(core.reportBuffer({}).t, []);
});

test("a report's summary says what the run did, with null figures said in words", () => {
  const rows = core.reportSummary({
    settings: { profile: "steady", task_type: "sleep" },
    tasks: { accepted: 600 },
    done: 598,
    failed: 2,
    end_to_end_ms: { p50: 812.4, p95: 1790, p99: 1900.5 },
    drain: { seconds: 21.4 },
    dead_letter_messages: 2,
    integrity: { ok: true },
    batches: { peak_concurrent: 10, max_concurrency: 10 },
    cost: { total_usd: 0.0321, prices_date: "2026-12-03", region: "us-east-1" },
  });
  const byKey = Object.fromEntries(rows.map(([k, , text]) => [k, text]));
  assert.equal(byKey.cost_usd, "$0.03 (us-east-1, list prices of 2026-12-03)");
  assert.equal(byKey.profile, "steady, sleep");
  assert.equal(byKey.accepted, "600");
  assert.equal(byKey.failed, "2");
  assert.equal(byKey.end_to_end_ms, "p50 812, p95 1,790, p99 1,901 ms");
  assert.equal(byKey.drain_seconds, "21.4 s");
  assert.equal(byKey.integrity, "OK");
  assert.equal(byKey.peak_concurrent, "10 of MaximumConcurrency 10");
  const empty = Object.fromEntries(core.reportSummary({ end_to_end_ms: null, drain: { seconds: null }, integrity: { ok: false } }).map(([k, , t]) => [k, t]));
  assert.equal(empty.end_to_end_ms, "no data");
  assert.equal(empty.drain_seconds, "did not drain");
  assert.equal(empty.integrity, "FAILED");
  assert.equal(empty.accepted, "not set");
  assert.equal(empty.cost_usd, "not known"); // a report from before costs, or functions unread
});

test("costs: cents from a cent up, four decimals below, unknown said so", () => {
  assert.equal(core.formatCost(1234.567), "$1,234.57");
  assert.equal(core.formatCost(0.0042), "$0.0042");
  assert.equal(core.formatCost(0), "$0.0000");
  assert.equal(core.formatCost(null), "not known");
});

test("the runs index: newest first, runs with bad ids dropped, a bad index is no runs", () => {
  const runs = core.normalizeRuns({
    runs: [
      { run_id: "old", first_send_at: "2026-11-30T09:00:00Z" },
      { run_id: "../x", first_send_at: "2026-12-02T09:00:00Z" },
      { run_id: "new", first_send_at: "2026-12-01T10:15:00Z" },
    ],
  });
  assert.deepEqual(runs.map((r) => r.run_id), ["new", "old"]);
  assert.deepEqual(core.normalizeRuns(null), []);
  assert.deepEqual(core.normalizeRuns({ runs: "no" }), []);
});

test("settings: every known one shown in order, null as 'not set', extra keys after", () => {
  const rows = core.settingsRows({ batch_size: 10, batching_window_seconds: 0, reserved_concurrency: null, visibility_timeout_seconds: 180, new_knob: "on" });
  const byKey = Object.fromEntries(rows.map(([k, , t]) => [k, t]));
  assert.equal(rows[0][0], "batch_size");
  assert.equal(byKey.batch_size, "10");
  assert.equal(byKey.batching_window_seconds, "0 s");
  assert.equal(byKey.reserved_concurrency, "not set");
  assert.equal(byKey.maximum_concurrency, "not set");
  assert.equal(byKey.visibility_timeout_seconds, "180 s");
  assert.equal(byKey.new_knob, "on");
  assert.equal(rows[rows.length - 1][0], "new_knob");
  assert.equal(core.settingsRows(null).length, 9);
});

test("current numbers come from queue and dead_letter_queue, null when missing", () => {
  const rows = core.currentNumbers({ queue: { visible: 12, in_flight: 30, delayed: 0 }, dead_letter_queue: { visible: 2 } });
  assert.deepEqual(Object.fromEntries(rows.map(([k, , v]) => [k, v])), { queue_visible: 12, queue_in_flight: 30, queue_delayed: 0, dlq_visible: 2 });
  assert.ok(core.currentNumbers({}).every(([, , v]) => v === null));
});

test("state names outside the six known ones are 'unknown'", () => {
  for (const s of core.STATES) assert.equal(core.stateName({ name: s }), s);
  assert.equal(core.stateName({ name: "exploded" }), "unknown");
  assert.equal(core.stateName(null), "unknown");
});

test("formatting", () => {
  assert.equal(core.formatNumber(1234567), "1,234,567");
  assert.equal(core.formatNumber(3.14159), "3.14");
  assert.equal(core.formatNumber(21.44), "21.4");
  assert.equal(core.formatNumber(null), "–");
  assert.equal(core.formatValue(null), "not set");
  assert.equal(core.formatValue(0, "s"), "0 s");
  assert.equal(core.formatValue("Enabled"), "Enabled");
  assert.equal(core.formatAgo(0.5), "just now");
  assert.equal(core.formatAgo(42), "42 s ago");
  assert.equal(core.formatAgo(600), "10 min ago");
  assert.equal(core.formatAgo(null), "never");
  assert.match(core.formatClock(0), /^\d\d:\d\d:\d\d$/);
  assert.equal(core.describeError({ name: "AbortError" }), "no answer in time");
  assert.equal(core.describeError(new TypeError("Failed to fetch")), "no connection (network error or CORS)");
});

test("the newest second with any value", () => {
  const buf = core.mergeAnswer(null, answer(100, { a: [1, 2, null], b: [null, null, null] }), 900);
  assert.equal(core.lastDataTime(buf), 101);
  assert.equal(core.lastDataTime(core.emptyBuffer(1)), null);
});

test("the metrics URL is built on apiUrl", () => {
  assert.equal(core.metricsUrl("http://h/api/", 15, 1), "http://h/api/metrics?minutes=15&period=1");
  assert.equal(core.metricsUrl("http://h/api", 1, 1), "http://h/api/metrics?minutes=1&period=1");
});

test("merging 1 minute into 15 min x 17 series is fast", () => {
  const keys = Array.from({ length: 17 }, (_, i) => "s" + i);
  const full = answer(0, Object.fromEntries(keys.map((k) => [k, Array.from({ length: 900 }, (_, i) => i)])));
  let buf = core.mergeAnswer(null, full, 900);
  const t0 = process.hrtime.bigint();
  for (let i = 1; i <= 50; i++) buf = core.mergeAnswer(buf, answer(840 + i, Object.fromEntries(keys.map((k) => [k, Array(60).fill(i)]))), 900);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / 50;
  assert.equal(buf.t.length, 900);
  assert.ok(ms < 10, "one merge took " + ms.toFixed(2) + " ms");
});

test("the view shows the last seconds of the buffer and keeps the buffer whole", () => {
  const buffer = core.mergeAnswer(core.emptyBuffer(1), answer(1000, { q: [1, 2, 3, 4, 5] }), 900);
  const view = core.viewOf(buffer, 2);
  assert.deepEqual(view.t, [1003, 1004]);
  assert.deepEqual(view.series.q, [4, 5]);
  assert.equal(buffer.t.length, 5);
  assert.equal(core.viewOf(buffer, 300), buffer);
});

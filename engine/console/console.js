// console.js: the operators' console (read-only but for requeueing a dead letter behind a
// confirmation). Reads the JSON API with the daemon's bearer token, kept for the browser
// tab only (sessionStorage); labels in Chinese and English; times as the engine gives them,
// in its zone. window.hearth exposes the charts and the last documents read, for tests.
"use strict";

const TEXT = {
  zh: {
    console: "控制台", campaigns: "活动", daily: "每日发送", member: "会员", ops: "运维", logout: "退出",
    login_title: "请输入访问令牌", login_help: "控制台通过 JSON API 读取数据，需要守护进程的令牌（--token-file 中的内容）。",
    login_go: "进入", login_bad: "令牌不正确", campaign: "活动", entered: "进入", converted: "转化",
    conversion: "转化率", lift: "提升（对照组）", funnel: "漏斗", variants: "变体", variant: "变体",
    from: "从", to: "到", channel: "渠道", show: "显示", search: "查询", points: "积分", tier: "等级",
    orders: "订单", spend: "消费", joined: "加入", last_active: "最近活跃", tags: "标签",
    journeys: "进行中的旅程", journey: "旅程", entered_at: "进入时间", next_due: "下一步时间",
    attributes: "属性", ledger: "积分流水", time: "时间", delta: "变动", balance: "余额", reason: "原因",
    actions: "最近动作", step: "步骤", kind: "类型", status: "状态", failed: "失败事件", error: "错误",
    backlog: "待投递", dead_letters: "死信", members: "会员数", timers_pending: "待触发定时器",
    failed_events: "失败事件", failures_by_campaign: "各活动失败数", script_version: "脚本版本", attempts: "尝试", requeue: "重新投递",
    confirm_requeue: "确定重新投递这条死信吗？", no_member: "没有这个会员", significant: "显著",
    not_significant: "不显著", treated: "实验组", holdout: "对照组", none: "无", day: "日期",
    queued: "已排队", delivered: "已投递", pending: "待投递", capped: "频控拦截", deferred: "延后",
    suppressed: "退订拦截", limited: "限额", expired: "过期", skipped: "跳过", sent: "已发送",
    task: "任务", no_charts: "未安装 Chart.js（libjs-chart.js），只显示表格", all: "全部",
  },
  en: {
    console: "console", campaigns: "Campaigns", daily: "Daily sends", member: "Member", ops: "Operations",
    logout: "Sign out", login_title: "Enter the access token",
    login_help: "The console reads the JSON API and needs the daemon's token (the contents of --token-file).",
    login_go: "Open", login_bad: "That token was refused", campaign: "Campaign", entered: "Entered",
    converted: "Converted", conversion: "Conversion", lift: "Lift vs hold-out", funnel: "Funnel",
    variants: "Variants", variant: "Variant", from: "From", to: "To", channel: "Channel", show: "Show",
    search: "Search", points: "Points", tier: "Tier", orders: "Orders", spend: "Spend", joined: "Joined",
    last_active: "Last active", tags: "Tags", journeys: "Journeys in flight", journey: "Journey",
    entered_at: "Entered", next_due: "Next step due", attributes: "Attributes", ledger: "Points ledger",
    time: "Time", delta: "Change", balance: "Balance", reason: "Reason", actions: "Latest actions",
    step: "Step", kind: "Kind", status: "Status", failed: "Failed events", error: "Error",
    backlog: "Delivery backlog", dead_letters: "Dead letters", members: "Members",
    timers_pending: "Timers pending", failed_events: "Failed events",
    failures_by_campaign: "Failures by campaign", script_version: "Script version", attempts: "Attempts", requeue: "Requeue",
    confirm_requeue: "Requeue this dead letter?", no_member: "No such member",
    significant: "significant", not_significant: "not significant", treated: "treated",
    holdout: "hold-out", none: "none", day: "Day", queued: "queued", delivered: "delivered",
    pending: "pending", capped: "capped", deferred: "deferred", suppressed: "suppressed",
    limited: "limited", expired: "expired", skipped: "skipped", sent: "sent", task: "task",
    no_charts: "Chart.js (libjs-chart.js) is not installed: tables only", all: "all",
  },
};

// the funnel's statuses, in the order a person reads them
const FUNNEL_METRICS = ["entered", "sent", "task", "skipped", "capped", "deferred", "suppressed", "limited", "expired"];
const DAILY_METRICS = ["queued", "delivered", "failed", "capped", "deferred", "suppressed", "limited", "expired"];
const COLORS = ["#3f6fd8", "#2f9e6e", "#c44d4d", "#e0a030", "#8a63c9", "#4fa3c7", "#a0a0a0", "#d36fa8", "#6b7c3a"];

const hearth = (window.hearth = { charts: {}, docs: {}, lang: localStorage.getItem("hearth.lang") || "zh" });
const $ = (sel) => document.querySelector(sel);
const t = (key) => (TEXT[hearth.lang] && TEXT[hearth.lang][key]) || key;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function num(n) { return el("td", { class: "n" }, n == null ? "" : n); }
function pct(x) { return x == null ? "" : (100 * x).toFixed(1) + "%"; }
function liftText(l) {
  if (!l) return "";
  const f = (x) => (x >= 0 ? "+" : "") + (100 * x).toFixed(1);
  return `${f(l.diff)} pp (95% CI ${f(l.low)} .. ${f(l.high)}), ${t(l.significant ? "significant" : "not_significant")}`;
}
function when(s) { return s ? String(s).replace("T", " ") : ""; }
// epoch seconds as a wall time in the engine's zone (the API gives its times that way too)
function inZone(t) {
  try {
    return new Date(t * 1000).toLocaleString("sv-SE", { timeZone: hearth.zone || "Asia/Shanghai", hour12: false }) + " " + (hearth.zone || "");
  } catch (e) { return new Date(t * 1000).toISOString(); }
}

function translate() {
  document.documentElement.lang = hearth.lang === "zh" ? "zh-CN" : "en";
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  $("#lang").textContent = hearth.lang === "zh" ? "English" : "中文";
}

// ---- the API, with the token ----

function token() { return sessionStorage.getItem("hearth.token") || ""; }

class Unauthorized extends Error {}

async function api(path, opts) {
  const headers = { Authorization: "Bearer " + token() };
  if (opts && opts.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path, Object.assign({ headers }, opts || {}));
  if (r.status === 401) throw new Unauthorized();
  const doc = await r.json().catch(() => ({ error: "not JSON (HTTP " + r.status + ")" }));
  if (!r.ok) { const e = new Error(doc.error || "HTTP " + r.status); e.status = r.status; throw e; }
  return doc;
}

function showLogin(message) {
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  hearth.docs = {};
}

async function guarded(fn) {
  try { await fn(); } catch (e) {
    if (e instanceof Unauthorized) {
      const tried = token();
      sessionStorage.removeItem("hearth.token");
      showLogin(tried ? t("login_bad") : "");
    }
    else throw e;
  }
}

// ---- views ----

function show(view) {
  location.hash = view;
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  for (const b of document.querySelectorAll("#nav button")) b.classList.toggle("active", b.dataset.view === view);
  const load = { campaigns: loadCampaigns, daily: loadDaily, member: () => {}, ops: loadOps }[view];
  return guarded(load);
}

function chart(id, config) {
  if (hearth.charts[id]) hearth.charts[id].destroy();
  if (typeof Chart === "undefined") { $("#" + id).replaceWith(el("p", { class: "muted", id }, t("no_charts"))); return null; }
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  return (hearth.charts[id] = new Chart($("#" + id), config));
}

async function loadCampaigns() {
  const doc = (hearth.docs.campaigns = await api("/v1/campaigns"));
  const body = $("#campaigns tbody");
  body.replaceChildren();
  for (const c of doc.campaigns) {
    const m = c.metrics || {};
    const row = el("tr", { class: "clickable", "data-campaign": c.name, onclick: () => showFunnel(c.name) },
      el("td", {}, c.name), num(m.entered), num(m.converted), el("td", { class: "n" }, pct(m.conversion)),
      el("td", {}, c.experiment ? liftText(c.experiment.lift) : ""));
    body.append(row);
  }
  const current = $("#funnel-name").textContent;
  if (current && doc.campaigns.some((c) => c.name === current)) showFunnel(current);
}

function showFunnel(name) {
  const c = hearth.docs.campaigns.campaigns.find((x) => x.name === name);
  for (const r of document.querySelectorAll("#campaigns tbody tr")) r.classList.toggle("selected", r.dataset.campaign === name);
  $("#funnel").hidden = false;
  $("#funnel-name").textContent = name;
  // steps in the order a journey reads (day3 before day15), not as the store sorts them
  const steps = (c.steps || []).slice().sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  const metrics = FUNNEL_METRICS.filter((k) => steps.some((s) => s[k] != null));
  for (const s of steps) for (const k of Object.keys(s)) if (k !== "name" && typeof s[k] === "number" && !metrics.includes(k)) metrics.push(k);
  $("#funnel-table thead").replaceChildren(el("tr", {}, el("th", {}, t("step")), ...metrics.map((k) => el("th", { "data-metric": k }, t(k)))));
  $("#funnel-table tbody").replaceChildren(...steps.map((s) =>
    el("tr", { "data-step": s.name }, el("td", {}, s.name), ...metrics.map((k) => { const td = num(s[k] || 0); td.dataset.metric = k; return td; }))));
  chart("funnel-chart", {
    type: "bar",
    data: { labels: steps.map((s) => s.name), datasets: metrics.map((k, i) => ({ label: t(k), data: steps.map((s) => s[k] || 0), backgroundColor: COLORS[i % COLORS.length] })) },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
  $("#variants tbody").replaceChildren(...(c.variants || []).map((v) =>
    el("tr", { "data-variant": v.name }, el("td", {}, v.name === "holdout" ? t("holdout") : v.name), num(v.entered), num(v.converted),
      el("td", { class: "n" }, pct(v.conversion)), el("td", {}, liftText(v.lift)))));
  const x = c.experiment;
  $("#experiment").textContent = x ? `${t("treated")} ${pct(x.treated.conversion)} · ${t("holdout")} ${pct(x.holdout.conversion)} · ${t("lift")} ${liftText(x.lift)}` : "";
}

async function loadDaily(ev) {
  if (ev) ev.preventDefault();
  const q = new URLSearchParams();
  if ($("#from").value) q.set("from", $("#from").value);
  if ($("#to").value) q.set("to", $("#to").value);
  const doc = (hearth.docs.daily = await api("/v1/sends/daily?" + q));
  $("#from").value = doc.from;
  $("#to").value = doc.to;
  const sel = $("#channel"), chosen = sel.value;
  sel.replaceChildren(el("option", { value: "" }, t("all")), ...Object.keys(doc.channels).map((c) => el("option", { value: c }, c)));
  sel.value = chosen && doc.channels[chosen] ? chosen : "";
  const chans = sel.value ? [sel.value] : Object.keys(doc.channels);
  const series = {};
  for (const k of DAILY_METRICS) series[k] = doc.days.map((_, i) => chans.reduce((a, c) => a + ((doc.channels[c][k] || [])[i] || 0), 0));
  const shown = DAILY_METRICS.filter((k) => series[k].some((n) => n > 0) || k === "queued");
  chart("daily-chart", {
    type: "line",
    data: { labels: doc.days, datasets: shown.map((k, i) => ({ label: t(k), data: series[k], borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length], tension: 0.2 })) },
    options: { scales: { y: { beginAtZero: true } } },
  });
  $("#daily-table thead").replaceChildren(el("tr", {}, el("th", {}, t("day")), ...shown.map((k) => el("th", {}, t(k)))));
  $("#daily-table tbody").replaceChildren(...doc.days.map((d, i) => el("tr", { "data-day": d }, el("td", {}, d), ...shown.map((k) => num(series[k][i])))));
}

async function loadMember(ev) {
  if (ev) ev.preventDefault();
  const id = $("#member-id").value.trim();
  if (!id) return;
  $("#member-error").textContent = "";
  let m;
  try { m = await api("/v1/members/" + encodeURI(id)); } catch (e) {
    if (e.status === 404) { $("#member-card").hidden = true; $("#member-error").textContent = t("no_member"); return; }
    throw e;
  }
  const timers = await api("/v1/member-timers/" + encodeURI(id));
  hearth.docs.member = m;
  hearth.docs.timers = timers;
  $("#member-card").hidden = false;
  $("#member-points").textContent = m.points;
  const attrs = m.attrs || {};
  $("#member-tier").textContent = attrs.tier || (attrs["_tiers.tiers"] && attrs["_tiers.tiers"].tier) || t("none");
  $("#member-orders").textContent = m.orders;
  $("#member-spend").textContent = m.spend;
  $("#member-joined").textContent = when(m.joined_at);
  $("#member-active").textContent = when(m.last_active_at);
  $("#member-tags").textContent = (m.tags || []).join(", ") || t("none");
  const journeys = Object.entries(attrs).filter(([k, v]) => k.startsWith("_journey.") && v && v.active);
  $("#member-journeys tbody").replaceChildren(...journeys.map(([k, v]) => {
    const name = k.slice(9), next = timers.timers.find((x) => x.type === "journey." + name);
    return el("tr", { "data-journey": name }, el("td", {}, name), el("td", {}, v.variant || ""),
      el("td", {}, v.t ? inZone(v.t) : ""), el("td", {}, next ? when(next.due) : ""));
  }));
  $("#member-attrs tbody").replaceChildren(...Object.entries(attrs).filter(([k]) => !k.startsWith("_")).map(([k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "object" ? JSON.stringify(v) : v))));
  $("#member-ledger tbody").replaceChildren(...(m.ledger || []).map((l) =>
    el("tr", {}, el("td", {}, when(l.time)), num(l.delta), num(l.balance), el("td", {}, l.reason), el("td", {}, l.campaign || ""))));
  $("#member-actions tbody").replaceChildren(...(m.actions || []).map((a) =>
    el("tr", { "data-action": a.id }, el("td", {}, when(a.time)), el("td", {}, a.campaign), el("td", {}, a.step || ""),
      el("td", {}, a.action), el("td", {}, t(a.status)), el("td", {}, a.reason ? JSON.stringify(a.reason) : ""))));
  $("#member-failed tbody").replaceChildren(...(m.failed || []).map((f) =>
    el("tr", {}, el("td", {}, when(f.at)), el("td", {}, f.campaign || ""), el("td", {}, el("pre", {}, f.error)))));
}

async function loadOps() {
  const doc = (hearth.docs.ops = await api("/v1/operations"));
  $("#ops-backlog").textContent = doc.backlog;
  $("#ops-dead").textContent = doc.dead_letters.count;
  $("#ops-members").textContent = doc.totals.members;
  $("#ops-timers").textContent = doc.totals.timers_pending;
  $("#ops-failed").textContent = doc.totals.failed_events;
  const v = doc.script_version;
  $("#ops-version").textContent = v ? `${v.hash.slice(0, 12)} (${when(v.loaded_at)})` : t("none");
  $("#ops-version").title = v ? v.hash : "";
  $("#ops-dead-letters tbody").replaceChildren(...doc.dead_letters.latest.map((d) =>
    el("tr", { "data-id": d.id }, el("td", {}, d.id), el("td", {}, d.channel), num(d.attempts), el("td", {}, d.last_error),
      el("td", {}, el("button", { class: "requeue", onclick: () => requeue(d.id) }, t("requeue"))))));
  $("#ops-failures tbody").replaceChildren(...doc.failures_by_campaign.map((f) => el("tr", {}, el("td", {}, f.campaign || "-"), num(f.n))));
}

async function requeue(id) {
  if (!confirm(t("confirm_requeue") + "\n" + id)) return;
  await guarded(async () => { await api("/v1/dead-letters/requeue", { method: "POST", body: JSON.stringify({ id }) }); await loadOps(); });
}

// ---- start ----

async function start() {
  translate();
  $("#lang").addEventListener("click", () => { hearth.lang = hearth.lang === "zh" ? "en" : "zh"; localStorage.setItem("hearth.lang", hearth.lang); translate(); const v = location.hash.slice(1); if (v && token()) show(v); });
  $("#login-form").addEventListener("submit", (ev) => { ev.preventDefault(); sessionStorage.setItem("hearth.token", $("#token").value.trim()); enter(); });
  $("#logout").addEventListener("click", () => { sessionStorage.removeItem("hearth.token"); showLogin(""); });
  for (const b of document.querySelectorAll("#nav button")) b.addEventListener("click", () => show(b.dataset.view));
  $("#daily-form").addEventListener("submit", (ev) => guarded(() => loadDaily(ev)));
  $("#member-form").addEventListener("submit", (ev) => guarded(() => loadMember(ev)));
  await enter();
}

// Try the token held (none is tried too: a daemon without a token answers); a 401 asks for one.
async function enter() {
  await guarded(async () => {
    const ops = await api("/v1/operations");
    $("#zone").textContent = ops.zone || "";
    hearth.zone = ops.zone;
    $("#login").hidden = true;
    $("#nav").hidden = false;
    $("#logout").hidden = !token();
    const view = location.hash.slice(1);
    await show(["campaigns", "daily", "member", "ops"].includes(view) ? view : "campaigns");
  });
}

start();

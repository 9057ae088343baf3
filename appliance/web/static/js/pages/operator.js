// The operator's page: every live room and the server's remaining capacity, from
// GET /api/operator/overview, polled every few seconds (paused while the tab is hidden).
import { api } from "../api.js";
import { $, clear, h, labelCells } from "../dom.js";
import * as i18n from "../i18n.js";
import { boot, errorText, t } from "../ui.js";

await boot({ title: "operator.title", signedIn: true });

const EVERY_MS = 5000;
let last = null;
let names = new Map();

const pct = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toLocaleString(i18n.language(), { maximumFractionDigits: 1 })} %`);
const ms = (x) => (x === null || x === undefined ? "—" : `${Math.round(1000 * x)} ms`);
const mbps = (bps) => `${(bps / 1e6).toLocaleString(i18n.language(), { maximumFractionDigits: 2 })} Mbit/s`;

async function loadNames() {
  try {
    const cohorts = await api("GET", "/api/cohorts");
    names = new Map(cohorts.map((c) => [c.id, c.name]));
  } catch {
    names = new Map();
  }
}

function render() {
  if (!last) return;
  const cap = last.capacity || {};
  const dl = clear($("#operator-capacity"));
  const fig = (key, value, id) => dl.append(h("div", { class: "figure", id }, h("dt", { text: t(key) }), h("dd", { text: value })));
  fig("operator.capacity_learners", String(cap.learners ?? "—"), "cap-learners");
  fig("operator.cores", `${(cap.used_cores ?? 0).toFixed(2)} / ${(cap.budget_cores ?? 0).toFixed(2)}`, "cap-cores");
  fig("operator.host_busy", `${(cap.host_busy_cores ?? 0).toFixed(2)} / ${cap.cpu_cores ?? "—"}`, "cap-host");
  fig("operator.web_lag", ms(last.loop_lag_s), "cap-lag");
  if (last.documents) fig("operator.documents", t("operator.documents_value", { n: last.documents.count, mb: (last.documents.bytes / 1e6).toFixed(1) }), "cap-docs");

  renderHosts(last.hosts || []);
  renderWorkers(last.workers || []);

  // Several hosts: the rooms of every host (from their heartbeats), not only this one's.
  const hosts = last.hosts || [];
  const rooms = hosts.length ? hosts.flatMap((x) => (x.rooms || []).map((r) => ({ ...r, host: x.host }))) : last.rooms || [];
  $("#operator-status").textContent = rooms.length ? "" : t("operator.none");
  $("#operator-status").hidden = rooms.length > 0;
  $("#rooms-table").hidden = rooms.length === 0;
  const body = clear($("#rooms-body"));
  for (const r of rooms) {
    const paths = r.paths || {};
    const parts = (r.participants || []).map((p) => t("operator.participants_n", { who: `${t(`role.${p.role}s`)} ${t(`people.${p.state}`)}`, n: p.count })).join(", ");
    body.append(h("tr", { dataset: r.host ? { cohort: r.cohort_id, host: r.host } : { cohort: r.cohort_id } },
      h("td", {}, h("a", { href: `/cohorts/${r.cohort_id}/console`, text: names.get(r.cohort_id) || `#${r.cohort_id}` })),
      h("td", { text: r.started ? t("operator.started") : t("operator.not_started") }),
      h("td", {}, h("strong", { text: t("operator.learners_n", { n: r.learners }) }), h("br"), h("span", { class: "small muted", text: parts })),
      h("td", {}, t("operator.tracks_value", { video: r.video_tracks ?? 0, audio: r.audio_tracks ?? 0, subs: r.learners_subscribed ?? 0 }), h("br"),
        h("span", { class: "small muted paths", text: t("operator.paths_value", { direct: paths.direct ?? 0, udp: paths.turn_udp ?? 0, tls: paths.turn_tls ?? 0 }) })),
      h("td", { text: mbps(r.send_bitrate_bps || 0) }),
      h("td", { class: (r.loss_max ?? 0) > 0.05 ? "warn-cell" : "", text: `${pct(r.loss_mean)} / ${pct(r.loss_max)}` }),
      h("td", { text: `${ms(r.rtt_mean_s)} / ${ms(r.rtt_max_s)}` })));
  }
  labelCells($("#rooms-table"));
}

// Several app hosts (ESTRADE_REDIS_URL): every live host from its heartbeat, with its classes,
// learners and capacity; a dead host's heartbeat expires and its row goes. Empty with one host.
function renderHosts(hosts) {
  $("#operator-hosts").hidden = hosts.length === 0;
  const body = clear($("#hosts-body"));
  const now = Date.now() / 1000;
  for (const host of hosts) {
    const rooms = host.rooms || [];
    const learners = rooms.reduce((n, r) => n + (r.learners || 0), 0);
    const classes = rooms.map((r) => names.get(r.cohort_id) || `#${r.cohort_id}`).join(", ");
    const seen = Math.max(0, Math.round(now - host.seen_at));
    body.append(h("tr", { dataset: { host: host.host } },
      h("th", { scope: "row", text: host.host }),
      h("td", { class: "host-rooms", text: rooms.length ? classes : t("operator.host_rooms_none") }),
      h("td", { text: String(learners) }),
      h("td", { class: (host.capacity?.learners ?? 1) <= 0 ? "warn-cell" : "", text: String(host.capacity?.learners ?? "—") }),
      h("td", { text: t("operator.host_seen_value", { s: seen }) })));
  }
  labelCells($("#hosts-table"));
}

// The media worker processes (one per core by default; none when the relay runs in the web
// process): whether each runs, its load, its CPU out of the one core its loop can use.
function renderWorkers(workers) {
  $("#operator-workers").hidden = workers.length === 0;
  const body = clear($("#workers-body"));
  for (const w of workers) {
    body.append(h("tr", { dataset: { worker: w.worker, up: w.up ? "1" : "0" } },
      h("th", { scope: "row", text: t("operator.worker_n", { n: w.worker }) }),
      h("td", { class: w.up ? "" : "warn-cell", text: w.up ? t("operator.worker_up") : t("operator.worker_down") }),
      h("td", { text: t("operator.worker_load_value", { rooms: w.rooms, learners: w.learners }) }),
      h("td", { class: w.cpu_busy_cores > 0.8 ? "warn-cell" : "", text: pct(w.cpu_busy_cores) }),
      h("td", { class: w.loop_lag_s > 0.05 ? "warn-cell" : "", text: ms(w.loop_lag_s) }),
      h("td", { class: w.restarts > 0 ? "warn-cell" : "", text: String(w.restarts) }),
      h("td", { text: String(w.capacity_learners) })));
  }
  labelCells($("#workers-table"));
}

async function refresh() {
  try {
    last = await api("GET", "/api/operator/overview");
    const everyRoom = [...last.rooms, ...(last.hosts || []).flatMap((x) => x.rooms || [])];
    if (everyRoom.some((r) => !names.has(r.cohort_id))) await loadNames();
    render();
    $("#operator-updated").textContent = t("operator.updated", { time: new Date().toLocaleTimeString(i18n.language()) });
  } catch (err) {
    $("#operator-updated").textContent = errorText(err);
  }
}

async function loop() {
  if (!document.hidden) await refresh();
  setTimeout(loop, EVERY_MS);
}

i18n.onChange(render);
await loadNames();
loop();

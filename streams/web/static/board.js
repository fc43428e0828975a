// The ops centre's board (/board): a live map and list of open incidents.
//
// Data: GET /ops/city (layers to draw, units, categories), GET /ops/board (every open incident and the feed id it is
// current to), then GET /ops/board/events from that id, read with fetch() so that the token goes in a header
// (EventSource cannot send one): no cookie carries the token, it stays in this tab's session storage.
"use strict";
(function () {
  const LIGHTS = { green: "on time", yellow: "at risk", red: "overdue", triage: "waiting for triage" };
  const URGENCY = { red: 0, yellow: 1, triage: 2, green: 3 };
  const LIST_LIMIT = 500;
  const $ = (id) => document.getElementById(id);

  const state = { token: null, city: null, open: null, units: new Map(), categories: new Map(), items: new Map(),
                  markers: new Map(), lastId: null, map: null, cluster: null, pending: false, controller: null };

  // ------------------------------------------------------------------ the API

  async function api(path, options = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + state.token }, options.headers || {});
    const response = await fetch(path, Object.assign({}, options, { headers: headers, cache: "no-store" }));
    if (response.status === 401 || response.status === 403) {
      throw new Refused(response.status === 403 ? "this token is not the ops centre's" : "this token is not valid");
    }
    if (!response.ok && !options.raw) throw new Error(path + " answered " + response.status);
    return response;
  }

  class Refused extends Error {}

  // ------------------------------------------------------------------ items

  // The order's light as the SLA timer set it; a deadline already past reads overdue even before the timer's event
  // arrives (or with no timer running): the list never says "on time, 8 h late". A waiting order's clock is paused.
  function light(item) {
    if (item.kind === "triage") return "triage";
    const given = item.light || "green";
    if (given === "red" || item.state === "waiting") return given;
    const due = item.state === "dispatched" ? item.acknowledge_by : item.resolve_by;
    return due && Date.parse(due) < Date.now() ? "red" : given;
  }

  function department(item) {
    const unit = state.units.get(item.unit_id);
    return unit ? (unit.kind === "department" ? unit.id : unit.department || "") : "";
  }

  function title(item) {
    if (item.kind === "triage") {
      const guess = item.guess ? " (model: " + (state.categories.get(item.guess) || item.guess) + ")" : "";
      return "Triage" + guess;
    }
    return state.categories.get(item.category) || item.category || "incident";
  }

  function describe(item) {
    if (item.kind === "triage") return item.text || "";
    const unit = state.units.get(item.unit_id);
    return (unit ? unit.name : item.unit_id) + " · " + item.state.replace("_", " ");
  }

  function deadline(item) {
    const due = item.state === "dispatched" ? item.acknowledge_by : item.resolve_by;
    if (!due) return "";
    const minutes = Math.round((Date.parse(due) - Date.now()) / 60000);
    return minutes >= 0 ? "due in " + human(minutes) : human(-minutes) + " late";
  }

  function human(minutes) {
    if (minutes < 90) return minutes + " min";
    if (minutes < 48 * 60) return Math.round(minutes / 60) + " h";
    return Math.round(minutes / 1440) + " d";
  }

  function matches(item, filters) {
    if (filters.category && item.category !== filters.category && item.guess !== filters.category) return false;
    if (filters.unit && item.unit_id !== filters.unit) return false;
    if (filters.department && department(item) !== filters.department) return false;
    if (filters.state && (item.kind === "triage" ? "triage" : item.state) !== filters.state) return false;
    if (filters.light && light(item) !== filters.light) return false;
    if (filters.q) {
      const text = [item.incident_id, item.text, item.unit_id, item.category, item.address, title(item)].join(" ");
      if (!text.toLowerCase().includes(filters.q)) return false;
    }
    return true;
  }

  function urgency(a, b) {
    const byLight = URGENCY[light(a)] - URGENCY[light(b)];
    if (byLight) return byLight;
    const due = (item) => Date.parse(item.acknowledge_by || item.resolve_by || "9999-01-01T00:00:00Z");
    return due(a) - due(b);
  }

  // ------------------------------------------------------------------ drawing

  function icon(item) {
    const level = light(item);
    return L.divIcon({ className: "incident-icon", iconSize: [20, 20],
                       html: '<span class="mark ' + level + '" role="img" aria-label="' + LIGHTS[level] + '"></span>' });
  }

  function place(item) {
    const old = state.markers.get(item.incident_id);
    if (old) state.cluster.removeLayer(old);
    state.markers.delete(item.incident_id);
    if (typeof item.lat !== "number" || typeof item.lon !== "number") return;
    const marker = L.marker([item.lat, item.lon], { icon: icon(item), title: title(item), keyboard: false });
    marker.bindPopup(() => popup(item));
    state.markers.set(item.incident_id, marker);
    state.cluster.addLayer(marker);
  }

  function popup(item) {
    const box = document.createElement("div");
    const head = document.createElement("strong");
    head.textContent = title(item);
    const body = document.createElement("div");
    body.textContent = describe(item) + " · " + LIGHTS[light(item)] + (deadline(item) ? " · " + deadline(item) : "");
    const id = document.createElement("div");
    id.className = "meta";
    id.textContent = item.incident_id;
    box.append(head, body, id);
    return box;
  }

  function filters() {
    return { q: $("q").value.trim().toLowerCase(), category: $("f-category").value, unit: $("f-unit").value,
             department: $("f-department").value, state: $("f-state").value, light: $("f-light").value };
  }

  function renderList() {
    performance.mark("board-list-start");
    state.pending = false;
    const wanted = filters();
    const shown = Array.from(state.items.values()).filter((item) => matches(item, wanted)).sort(urgency);
    const list = $("list");
    const rows = shown.slice(0, LIST_LIMIT).map(row);
    list.replaceChildren(...rows);
    $("count").textContent = shown.length + " of " + state.items.size + " open incidents" +
      (shown.length > LIST_LIMIT ? " (the " + LIST_LIMIT + " most urgent listed)" : "");
    performance.measure("board-list", "board-list-start");
    document.dispatchEvent(new CustomEvent("cityloop:board-drawn")); // board-views.js redraws its open view
  }

  function row(item) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.incident = item.incident_id;
    const mark = document.createElement("span");
    mark.className = "mark " + light(item);
    mark.setAttribute("role", "img");
    mark.setAttribute("aria-label", LIGHTS[light(item)]);
    const text = document.createElement("span");
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = title(item);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = " " + describe(item);
    text.append(what, meta);
    const sla = document.createElement("span");
    sla.className = "sla";
    sla.textContent = LIGHTS[light(item)] + (deadline(item) ? ", " + deadline(item) : "");
    button.append(mark, text, sla);
    button.addEventListener("click", () => focus(item.incident_id));
    li.append(button);
    return li;
  }

  function focus(incidentId) {
    showPanel(incidentId);
    const marker = state.markers.get(incidentId);
    if (!marker || !state.cluster.hasLayer(marker)) return;
    state.cluster.zoomToShowLayer(marker, () => {
      if (state.cluster.hasLayer(marker)) marker.openPopup(); // it may have been replaced by a newer change
    });
  }

  // ------------------------------------------------------------------ the incident panel

  function escapeHtml(value) {
    const node = document.createElement("span");
    node.textContent = value;
    return node.innerHTML;
  }

  function text(tag, content, className) {
    const node = document.createElement(tag);
    node.textContent = content;
    if (className) node.className = className;
    return node;
  }

  async function showPanel(incidentId) {
    if (state.open !== incidentId) $("panel-result").textContent = ""; // kept when the same incident is refreshed
    state.open = incidentId;
    const item = state.items.get(incidentId) || { incident_id: incidentId };
    $("panel").hidden = false;
    $("panel-title").textContent = title(item);
    const answer = await api("/ops/incidents/" + encodeURIComponent(incidentId)).then((r) => r.json(), () => null);
    if (state.open !== incidentId || !answer) return;
    const order = answer.order;
    $("panel-summary").textContent = order
      ? (state.units.get(order.unit_id) || { name: order.unit_id }).name + " · " + order.state.replace(/_/g, " ") +
        " · attempt " + order.attempt + (order.rule ? " · rule " + order.rule : "") + " · " + incidentId
      : "waiting for triage · " + incidentId;
    const triage = answer.triage && !order ? answer.triage : null;
    const decide = $("panel-triage");
    decide.replaceChildren();
    if (triage) {
      decide.append(text("p", triage.text || ""));
      for (const [code, confidence] of (triage.top || []).slice(0, 3)) {
        const button = text("button", (state.categories.get(code) || code) + " (" + Number(confidence).toFixed(2) + ")");
        button.type = "button";
        button.dataset.decide = code;
        button.addEventListener("click", () => decideTriage(incidentId, code));
        decide.append(button);
      }
    }
    $("panel-why").replaceChildren(...why(answer.reasons || [], order));
    const clocks = order && order.sla ? Object.entries(order.sla.clocks || {}) : [];
    $("panel-clocks").replaceChildren(...(clocks.length ? clocks.map(([stage, clock]) => text("li",
      stage + ": " + (clock.due ? "due " + new Date(clock.due).toLocaleString() : clock.running ? "running" : "stopped") +
      (clock.breached ? " · overdue" : clock.warned ? " · at risk" : "") +
      " · " + Math.round(clock.used_minutes) + " of " + Math.round(clock.budget_minutes) + " min used")) : [text("li", "none")]));
    const history = order && order.history ? order.history : [];
    $("panel-history").replaceChildren(...history.map((entry) => text("li",
      new Date(entry.at).toLocaleString() + " · " + (entry.event || entry.type) + (entry.actor ? " · " + entry.actor : ""))));
    $("panel-sources").replaceChildren(...sources(answer.sources || [], answer.said || {}));
    $("panel-action").hidden = !order;
    $("panel").focus();
  }

  // Each report or alarm merged into the incident: what it said (its words, channel and time, or the sensor's
  // reading) for those the incident kept, the id alone for the rest.
  function sources(ids, said) {
    const lines = ids.map((id) => {
      const words = said[id];
      if (!words) return text("li", id, "source-id");
      const sensor = words.sensor ? " · " + words.sensor.sensor_id + " " + words.sensor.kind + " " +
        words.sensor.value + (words.sensor.unit ? " " + words.sensor.unit : "") : "";
      return text("li", (words.channel || "") + " · " + new Date(words.at).toLocaleString() + sensor + " · " +
        (words.text || "") + (words.address ? " (" + words.address + ")" : ""));
    });
    lines.sort((a, b) => (a.className === "source-id") - (b.className === "source-id"));
    if (lines.length > 60) return [...lines.slice(0, 60), text("li", (lines.length - 60) + " more")];
    return lines.length ? lines : [text("li", "none")];
  }

  // The explanation the worker kept for each task: the current one in full (the rule, the areas that decided,
  // every candidate unit and why it won or lost), earlier attempts one line each.
  function why(reasons, order) {
    if (!reasons.length) return [text("p", order ? "no explanation kept for this order" : "not dispatched yet")];
    const unitName = (id) => (state.units.get(id) || { name: id }).name;
    const current = reasons[reasons.length - 1];
    const e = current.explanation || {};
    const nodes = [text("p", "attempt " + current.attempt + ": " + unitName(current.unit_id) +
      " · rule " + (current.rule || "-") + (e.pack_version ? " · pack " + e.pack_version : ""), "why-head")];
    if (e.why) nodes.push(text("p", e.why));
    const areas = Object.entries(e.features || {}).filter(([, value]) => value);
    if (areas.length) nodes.push(text("p", "areas: " + areas.map(([layer, value]) => layer + " " + value).join(", ")));
    if (e.boundary_m !== undefined && e.boundary_m !== null) {
      nodes.push(text("p", Math.round(e.boundary_m) + " m from the edge of the deciding area"));
    }
    const candidates = e.candidates || [];
    if (candidates.length) {
      const list = document.createElement("ul");
      list.className = "candidates";
      for (const c of candidates) list.append(text("li", c.outcome + ": " + unitName(c.unit) + " · " + c.why, c.outcome));
      if (e.skipped_more) list.append(text("li", e.skipped_more + " more units skipped"));
      nodes.push(list);
    }
    if ((e.rejected_by || []).length) nodes.push(text("p", "rejected by " + e.rejected_by.map(unitName).join(", ")));
    for (const other of e.co_notify || []) nodes.push(text("p", "also told " + unitName(other.unit) + ": " + other.why));
    for (const earlier of reasons.slice(0, -1).reverse()) {
      nodes.push(text("p", "attempt " + earlier.attempt + ": " + unitName(earlier.unit_id) + " · rule " +
        (earlier.rule || "-"), "why-earlier"));
    }
    return nodes;
  }

  async function decideTriage(incidentId, category) {
    $("panel-result").textContent = "sending…";
    const response = await api("/ops/triage/" + encodeURIComponent(incidentId) + "/decision", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ category: category }),
      raw: true,
    }).catch((error) => ({ ok: false, status: 0, json: async () => ({ message: error.message }) }));
    const answer = await response.json().catch(() => ({}));
    $("panel-result").textContent = response.ok ? "decided: " + category : "refused: " + (answer.message || response.status);
    if (response.ok) showPanel(incidentId);
  }

  async function act(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    const action = form.get("action");
    const reason = form.get("reason") || "";
    const bodies = {
      assign: { unit_id: form.get("unit_id"), reason: reason },
      recategorise: { category: form.get("category"), reason: reason },
      verify: { note: reason || null },
      reopen: { reason: reason },
      merge: { into: form.get("into"), reason: reason || null },
      cancel: { reason: reason },
    };
    const incidentId = state.open;
    $("panel-result").textContent = "sending…";
    const response = await api("/ops/orders/" + encodeURIComponent(incidentId) + "/" + action, {
      method: "POST", body: JSON.stringify(bodies[action]),
      headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() }, raw: true,
    }).catch((error) => ({ ok: false, status: 0, json: async () => ({ message: error.message }) }));
    const answer = await response.json().catch(() => ({}));
    $("panel-result").textContent = response.ok
      ? action + ": " + (answer.task ? answer.task.state.replace(/_/g, " ") : answer.status || "accepted")
      : "refused: " + (answer.message || answer.detail || response.status);
    if (response.ok) showPanel(incidentId);
  }

  function scheduleList() {
    if (state.pending) return;
    state.pending = true;
    requestAnimationFrame(renderList);
  }

  // ------------------------------------------------------------------ the feed

  function apply(kind, data) {
    performance.mark("board-update-start");
    if (kind === "order") {
      state.items.delete(data.incident_id); // a triage item decided becomes its order
      if (data.open) {
        state.items.set(data.incident_id, data);
        place(data);
      } else {
        remove(data.incident_id);
      }
    } else if (kind === "triage") {
      if (!state.items.has(data.incident_id)) {
        state.items.set(data.incident_id, data);
        place(data);
      }
    } else if (kind === "triaged") {
      const item = state.items.get(data.incident_id);
      if (item && item.kind === "triage") remove(data.incident_id);
    }
    scheduleList();
    performance.mark("board-update-end");
    performance.measure("board-update", "board-update-start", "board-update-end");
  }

  function remove(incidentId) {
    state.items.delete(incidentId);
    const marker = state.markers.get(incidentId);
    if (marker) state.cluster.removeLayer(marker);
    state.markers.delete(incidentId);
  }

  async function follow() {
    for (;;) {
      state.controller = new AbortController();
      try {
        const response = await api("/ops/board/events", { headers: { "Last-Event-ID": state.lastId },
                                                          signal: state.controller.signal });
        status("live");
        await CityLoopEvents.read(response.body, (id, kind, data) => {
          if (id) state.lastId = id;
          apply(kind, data);
        });
      } catch (error) {
        if (error instanceof Refused) return stop(error.message);
        status("reconnecting…");
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  // ------------------------------------------------------------------ start

  function status(text) { $("status").textContent = text; }

  function stop(message) {
    sessionStorage.removeItem("cityloop.ops.token");
    $("board").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message;
    status("not connected");
  }

  function options(select, entries) {
    for (const [value, label] of entries) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      select.append(option);
    }
  }

  function drawCity(city) {
    if (state.map) { // a second login in this tab: start from a clean page
      location.reload();
      return;
    }
    state.city = city;
    $("city").textContent = "· " + city.name;
    for (const unit of city.units) state.units.set(unit.id, unit);
    for (const category of city.categories) state.categories.set(category.code, category.name);
    options($("f-category"), city.categories.map((c) => [c.code, c.name]));
    options($("f-unit"), city.units.filter((u) => u.kind !== "department").map((u) => [u.id, u.name]));
    options($("f-department"), city.units.filter((u) => u.kind === "department").map((u) => [u.id, u.name]));
    options($("panel-action").elements.unit_id, city.units.map((u) => [u.id, u.name]));
    options($("panel-action").elements.category, city.categories.map((c) => [c.code, c.name]));
    options($("f-state"), ["triage", "dispatched", "acknowledged", "in_progress", "waiting", "resolved", "arbitration"]
      .map((s) => [s, s.replace("_", " ")]));
    // no tile layer by default (a closed network has no tile server): the zoom range is the map's own
    // no animations: markers change under a live feed, and markercluster fails on a layer changed mid-animation
    const map = L.map("map", { attributionControl: Boolean(city.tiles), minZoom: 3, maxZoom: 19, zoomAnimation: false,
                               fadeAnimation: false, markerZoomAnimation: false });
    state.map = map;
    if (city.tiles) { // the city's own tile server, when it names one (CITYLOOP_MAP_TILES); its text is plain text
      map.attributionControl.setPrefix(false);
      L.tileLayer(city.tiles.url, { maxZoom: 19 }).addTo(map);
      if (city.tiles.attribution) map.attributionControl.addAttribution(escapeHtml(city.tiles.attribution));
    }
    const drawn = [];
    for (const [layerId, collection] of Object.entries(city.layers)) {
      const layer = L.geoJSON(collection, {
        style: { color: "#1f3b57", weight: layerId === city.boundary ? 2 : 1, fillColor: "#ffffff", fillOpacity: 0.25 },
        onEachFeature: (feature, shape) => shape.bindTooltip(feature.properties.name || feature.properties.id),
      }).addTo(map);
      drawn.push(layer);
    }
    const bounds = L.featureGroup(drawn).getBounds();
    if (bounds.isValid()) {
      state.cityBounds = bounds;
      map.fitBounds(bounds);
    }
    // Chromium makes a shape with a tooltip a Tab stop: dozens of areas between the map and the list (the shapes
    // exist once the map has a view)
    for (const layer of drawn) {
      layer.eachLayer((shape) => {
        const element = shape.getElement && shape.getElement();
        if (element) element.setAttribute("tabindex", "-1");
      });
    }
    state.cluster = L.markerClusterGroup({ chunkedLoading: true, showCoverageOnHover: false, animate: false });
    map.addLayer(state.cluster);
  }

  async function open() {
    performance.mark("board-open");
    status("loading…");
    const city = await (await api("/ops/city")).json();
    $("login").hidden = true;
    $("board").hidden = false;
    $("whole-city").hidden = false;
    drawCity(city);
    const board = await (await api("/ops/board")).json();
    state.lastId = board.last_event_id;
    const markers = [];
    for (const item of board.items) {
      state.items.set(item.incident_id, item);
      if (typeof item.lat === "number" && typeof item.lon === "number") {
        const marker = L.marker([item.lat, item.lon], { icon: icon(item), title: title(item), keyboard: false });
        marker.bindPopup(() => popup(item));
        state.markers.set(item.incident_id, marker);
        markers.push(marker);
      }
    }
    state.cluster.addLayers(markers);
    renderList();
    performance.mark("board-first-render");
    performance.measure("board-load", "board-open", "board-first-render");
    status("live");
    follow();
  }

  async function start(token) {
    state.token = token;
    try {
      await open();
      sessionStorage.setItem("cityloop.ops.token", token);
    } catch (error) {
      if (error instanceof Refused) return stop(error.message);
      stop("the board could not load: " + (error.message || String(error)));
      console.error(error);
    }
  }

  // what the other views of the board (board-views.js: SLA, sensors) read; they change nothing here
  window.CityLoopBoard = { state: state, api: api, light: light, department: department, focus: focus };

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("token").value.trim());
  });
  $("panel-action").addEventListener("submit", act);
  // closing the panel (its button, or Escape anywhere in it) puts the focus back on the incident's row
  function closePanel() {
    const was = state.open;
    $("panel").hidden = true;
    state.open = null;
    const back = was && document.querySelector('#list button[data-incident="' + CSS.escape(was) + '"]');
    (back || $("q")).focus();
  }
  $("panel-close").addEventListener("click", closePanel);
  $("whole-city").addEventListener("click", () => {
    if (state.map && state.cityBounds) state.map.fitBounds(state.cityBounds);
  });
  $("panel").addEventListener("keydown", (event) => {
    if (event.key === "Escape") closePanel();
  });
  for (const id of ["q", "f-category", "f-unit", "f-department", "f-state", "f-light"]) {
    $(id).addEventListener("input", scheduleList);
  }
  setInterval(scheduleList, 30000); // the deadlines' "due in" texts age
  // A ready link (/board#token=...): the fragment never reaches the server, and leaves the address bar at once.
  const linked = new URLSearchParams(location.hash.slice(1)).get("token");
  if (linked !== null) history.replaceState(null, "", location.pathname + location.search);
  if (linked && linked.trim()) sessionStorage.setItem("cityloop.ops.token", linked.trim());
  const saved = sessionStorage.getItem("cityloop.ops.token");
  if (saved) start(saved);
  else $("token").focus();
})();

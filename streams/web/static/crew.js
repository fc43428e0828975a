// The crew app (/crew): a unit's open tasks, most urgent first, and what the crew does with them.
//
// Data: GET /units/me, GET /units/me/tasks, GET /units/me/tasks/{id} (a task's reports, when the crew opens them),
// GET /units/me/city (the city's areas and tile server, for the task maps: once per page load), and /units/me/events
// (new assignments, withdrawals) read with fetch so that the token goes in a header; the token stays in this tab's
// session storage. A ready link (/crew#token=...) logs the page in: the fragment never reaches the
// server and is taken off the address bar at once. Every action is sent with an Idempotency-Key; on a dropped
// connection (or a 502, 503, 504) it is sent again with the same key (the API applies it once) and the task shows it
// as pending until the API confirms it.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "cityloop.crew.token";
  const ACTIONS = {
    dispatched: [["ack", "Acknowledge"], ["reject", "Reject…"]],
    acknowledged: [["start", "Start work"], ["reject", "Reject…"]],
    in_progress: [["resolve", "Resolved…"], ["wait", "Wait on the reporter…"]],
    waiting: [["resume", "Resume"]],
  };
  const FORMS = ["resolve", "reject", "wait"];
  const RESEND = new Set([502, 503, 504]); // a proxy or the API itself could not reach what it needs: send again
  const state = { token: null, tasks: new Map(), pending: new Map(), confirmed: new Map(), open: new Set(),
                  details: new Map(), maps: new Map(), city: null };

  class Refused extends Error {}

  async function api(path, options = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + state.token }, options.headers || {});
    const response = await fetch(path, Object.assign({}, options, { headers: headers, cache: "no-store" }));
    if (response.status === 401) throw new Refused("this token is not valid");
    return response;
  }

  // ------------------------------------------------------------------ tasks

  function due(task) {
    const sla = task.sla || {};
    const when = task.state === "dispatched" ? sla.acknowledge_by : sla.resolve_by;
    return when ? Date.parse(when) : Infinity;
  }

  function dueText(task) {
    const when = due(task);
    if (!isFinite(when)) return task.state === "waiting" ? "clock paused: waiting on the reporter" : "no deadline";
    const minutes = Math.round((when - Date.now()) / 60000);
    const what = task.state === "dispatched" ? "acknowledge" : "resolve";
    if (minutes < 0) return what + ": " + human(-minutes) + " late (was due " + clock(when) + ")";
    return what + " within " + human(minutes) + " (by " + clock(when) + ")";
  }

  function human(minutes) {
    if (minutes < 90) return minutes + " min";
    if (minutes < 48 * 60) return Math.round(minutes / 60) + " h";
    return Math.round(minutes / 1440) + " d";
  }

  function clock(when) {
    const date = new Date(when);
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return date.toDateString() === new Date().toDateString() ? time : date.toLocaleDateString() + " " + time;
  }

  function render() {
    const typing = document.activeElement && document.activeElement.closest && document.activeElement.closest("#tasks form");
    if (typing) return setTimeout(render, 5000); // not while the crew writes a note: the form would be redrawn
    const focus = focused();
    const tasks = Array.from(state.tasks.values()).sort((a, b) => due(a) - due(b));
    $("tasks").replaceChildren(...tasks.map(card));
    for (const [id, shown] of state.maps) if (!shown.box.isConnected) dropMap(id); // its task is gone or closed
    $("empty").hidden = tasks.length > 0;
    refocus(focus);
  }

  // The list is drawn anew; keyboard focus stays on the same control of the same task, or its first action.
  function focused() {
    const element = document.activeElement;
    const item = element && element.closest && element.closest("li.task");
    if (!item) return null;
    return { task: item.dataset.task, action: element.dataset.action || null, summary: element.tagName === "SUMMARY",
             map: Boolean(element.closest(".task-map")) };
  }

  function refocus(focus) {
    if (!focus) return;
    const item = document.querySelector('li.task[data-task="' + CSS.escape(focus.task) + '"]');
    if (!item) return;
    const target = (focus.summary && item.querySelector("summary")) ||
      (focus.map && item.querySelector(".task-map")) ||
      (focus.action && item.querySelector('[data-action="' + focus.action + '"]:not([disabled])')) ||
      item.querySelector(".actions button:not([disabled])") || item.querySelector("summary");
    if (target) target.focus();
  }

  function card(task) {
    const node = $("task").content.firstElementChild.cloneNode(true);
    const id = task.task_id;
    node.dataset.task = id;
    const minutes = (due(task) - Date.now()) / 60000;
    if (minutes < 0) node.classList.add("late");
    else if (minutes < 60) node.classList.add("soon");
    node.querySelector(".what").textContent = (task.category || "task").replace(/_/g, " ");
    node.querySelector(".where").textContent = task.address || coordinates(task) || "no address";
    node.querySelector(".due").textContent = dueText(task);
    node.querySelector(".state").textContent = "state: " + task.state.replace(/_/g, " ");
    const pending = state.pending.get(id);
    node.classList.toggle("is-pending", Boolean(pending));
    node.querySelector(".pending").textContent = pending ? pendingText(pending) : state.confirmed.get(id) || "";
    const actions = node.querySelector(".actions");
    for (const [kind, label] of ACTIONS[task.state] || []) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.dataset.action = kind;
      button.disabled = Boolean(pending);
      if (kind === "reject") button.className = "secondary";
      button.addEventListener("click", () => choose(node, task, kind));
      actions.append(button);
    }
    more(node, task);
    for (const kind of FORMS) {
      const form = node.querySelector("form." + kind);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const body = BODIES[kind](form);
        if (body) act(task, kind, body);
      });
      form.querySelector(".cancel").addEventListener("click", () => {
        form.hidden = true;
        const button = node.querySelector('[data-action="' + kind + '"]');
        if (button) button.focus();
      });
    }
    return node;
  }

  function pendingText(pending) {
    if (pending.tries === 0) return pending.kind + ": sending…";
    return pending.kind + ": pending, not confirmed yet (no connection; sending again, " + pending.tries +
      (pending.tries === 1 ? " retry)" : " retries)");
  }

  function coordinates(task) {
    return typeof task.lat === "number" ? task.lat.toFixed(5) + ", " + task.lon.toFixed(5) : "";
  }

  // "Place, reports and deadlines": fetched when the crew opens it, and kept open across redraws.
  function more(node, task) {
    const id = task.task_id;
    const details = node.querySelector("details.more");
    details.open = state.open.has(id);
    details.addEventListener("toggle", () => {
      if (details.open) {
        state.open.add(id);
        if (!state.details.has(id)) fetchDetails(id);
        showMap(id);
      } else {
        state.open.delete(id);
        dropMap(id);
      }
    });
    node.querySelector(".coordinates").textContent = coordinates(task) ? "at " + coordinates(task) : "";
    if (coordinates(task)) {
      const geo = node.querySelector("a.geo");
      geo.href = "geo:" + task.lat + "," + task.lon + "?q=" + task.lat + "," + task.lon;
      geo.hidden = false;
    }
    const shown = state.maps.get(id);
    if (shown && details.open && coordinates(task)) { // the same map, moved into the redrawn card
      node.querySelector(".map-slot").replaceWith(shown.box);
      shown.marker.setLatLng([task.lat, task.lon]);
    }
    const sla = task.sla || {};
    const rows = [["acknowledge by", sla.acknowledge_by], ["resolve by", sla.resolve_by], ["verify by", sla.verify_by]];
    node.querySelector(".deadlines").replaceChildren(...rows.filter((row) => row[1]).flatMap(([name, when]) =>
      [text("dt", name), text("dd", clock(Date.parse(when)))]));
    const reports = state.details.get(id);
    if (reports) node.querySelector(".reports").replaceChildren(...(reports.length ? reports.map(report)
      : [text("li", "no reports")]));
  }

  // ------------------------------------------------------------------ a task's map
  //
  // Drawn when a task's details are open, and only then: the city's areas (GET /units/me/city, read once, with
  // Leaflet, on the first opening), the city's tiles if it has a tile server, and the task's point with a label. A
  // redraw of the list moves the same map into the new card; a map whose card is closed or gone is removed.

  function loadFile(tag, attributes) {
    return new Promise((resolve, reject) => {
      const element = Object.assign(document.createElement(tag), attributes);
      element.onload = resolve;
      element.onerror = () => reject(new Error("could not load " + (attributes.src || attributes.href)));
      document.head.append(element);
    });
  }

  function city() {
    if (!state.city) {
      const leaflet = window.L ? Promise.resolve() : Promise.all([
        loadFile("link", { rel: "stylesheet", href: "/web/vendor/leaflet/leaflet.css" }),
        loadFile("script", { src: "/web/vendor/leaflet/leaflet.js" }),
      ]);
      const layers = api("/units/me/city").then((response) => {
        if (!response.ok) throw new Error("/units/me/city answered " + response.status);
        return response.json();
      });
      state.city = Promise.all([layers, leaflet]).then(([drawn]) => drawn);
      state.city.catch(() => { state.city = null; }); // asked again at the next opening
    }
    return state.city;
  }

  async function showMap(id) {
    let drawn;
    try {
      drawn = await city();
    } catch (error) {
      if (error instanceof Refused) return stop(error.message);
      const slot = document.querySelector('li.task[data-task="' + CSS.escape(id) + '"] .map-slot');
      if (slot) slot.textContent = "No map: " + (error.message || String(error));
      return;
    }
    const task = state.tasks.get(id);
    if (!task || !coordinates(task) || !state.open.has(id) || state.maps.has(id)) return;
    const slot = document.querySelector('li.task[data-task="' + CSS.escape(id) + '"] .map-slot');
    if (!slot) return;
    const box = document.createElement("div");
    box.className = "task-map";
    box.setAttribute("role", "region");
    box.setAttribute("aria-label", "Map of the task's place, " + coordinates(task) + ", and the city's areas");
    slot.replaceWith(box);
    // a finger on the map scrolls the page (two pinch it); the wheel scrolls the page too; arrow keys move the map.
    // No zoom animation: Leaflet ends one 250 ms later on a timer that removing the map does not stop, so a card
    // closed (or its task gone from the list) in that time threw an error from a map already gone
    const map = L.map(box, { center: [task.lat, task.lon], zoom: 16, minZoom: 3, maxZoom: 19, // street level
                             attributionControl: Boolean(drawn.tiles), dragging: !L.Browser.mobile,
                             scrollWheelZoom: false, zoomAnimation: false });
    if (drawn.tiles) { // the city's own tile server (CITYLOOP_MAP_TILES); its attribution is plain text
      map.attributionControl.setPrefix(false);
      L.tileLayer(drawn.tiles.url, { maxZoom: 19 }).addTo(map);
      if (drawn.tiles.attribution) map.attributionControl.addAttribution(escapeHtml(drawn.tiles.attribution));
    }
    for (const [layerId, collection] of Object.entries(drawn.layers)) {
      const areas = L.geoJSON(collection, {
        style: { color: "#1f3b57", weight: layerId === drawn.boundary ? 2 : 1, fillColor: "#ffffff", fillOpacity: 0.2 },
        onEachFeature: (feature, shape) =>
          shape.bindTooltip(escapeHtml(feature.properties.name || feature.properties.id)),
      }).addTo(map);
      // a tap names an area; Chromium makes a shape with a tooltip a Tab stop: dozens of them, out of the Tab order
      areas.eachLayer((shape) => shape.getElement().setAttribute("tabindex", "-1"));
    }
    const label = text("span", "task: " + (task.category || "task").replace(/_/g, " "));
    const marker = L.marker([task.lat, task.lon], { icon: L.divIcon({ className: "task-pin", iconSize: [18, 18] }),
                                                    keyboard: false, interactive: false }).addTo(map);
    marker.bindTooltip(label, { permanent: true, direction: "top", offset: [0, -10], className: "task-pin-label" });
    state.maps.set(id, { box: box, map: map, marker: marker });
  }

  function dropMap(id) {
    const shown = state.maps.get(id);
    if (!shown) return;
    state.maps.delete(id);
    shown.map.remove();
    const slot = Object.assign(document.createElement("div"), { className: "map-slot" }); // for the next opening
    if (shown.box.isConnected) shown.box.replaceWith(slot);
  }

  function escapeHtml(value) {
    const node = document.createElement("span");
    node.textContent = value;
    return node.innerHTML;
  }

  function report(entry) {
    if (entry.kind === "sensor") {
      const reading = entry.sensor ? ": " + entry.sensor.kind + " " + entry.sensor.value +
        (entry.sensor.unit ? " " + entry.sensor.unit : "") : "";
      return text("li", "sensor alarm (" + entry.source.split(":")[1] + ")" + reading);
    }
    const item = text("li", entry.description || entry.service_name || "a report (" + entry.source + ")");
    if (entry.requested_at) item.append(text("span", " · " + clock(Date.parse(entry.requested_at)), "when"));
    if (entry.media_url && /^https?:\/\//.test(entry.media_url)) {
      const link = text("a", "photo");
      link.href = entry.media_url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      item.append(" · ", link);
    }
    return item;
  }

  async function fetchDetails(id) {
    try {
      const response = await api("/units/me/tasks/" + encodeURIComponent(id));
      if (!response.ok) return;
      state.details.set(id, (await response.json()).reports || []);
      render();
    } catch (error) {
      if (error instanceof Refused) stop(error.message);
    }
  }

  function text(tag, value, className) {
    const element = document.createElement(tag);
    element.textContent = value;
    if (className) element.className = className;
    return element;
  }

  function choose(node, task, kind) {
    if (FORMS.includes(kind)) {
      for (const other of FORMS) node.querySelector("form." + other).hidden = other !== kind;
      node.querySelector("form." + kind).querySelector("textarea, select").focus();
      return;
    }
    act(task, kind, {});
  }

  // Each form's body, or null when it must be completed first (the browser says what is missing). The forms are
  // "novalidate": these checks run on every submit, so a corrected field is looked at again.
  const BODIES = {
    resolve(form) {
      const photo = form.elements.media_url;
      photo.setCustomValidity(photo.value && !/^https?:\/\/\S+$/.test(photo.value.trim())
        ? "a photo URL starts with http:// or https://" : "");
      if (!form.reportValidity()) return null;
      const body = { note: form.elements.note.value };
      if (photo.value.trim()) body.media_url = photo.value.trim();
      return body;
    },
    reject(form) {
      const reason = form.elements.reason;
      reason.setCustomValidity(form.elements.reason_code.value === "other" && !reason.value.trim()
        ? "say why it is not ours" : "");
      if (!form.reportValidity()) return null;
      const body = { reason_code: form.elements.reason_code.value };
      if (reason.value.trim()) body.reason = reason.value.trim();
      return body;
    },
    wait(form) {
      const need = form.elements.need.value, details = form.elements.details;
      details.setCustomValidity(!need && !details.value.trim() ? "say what you need from the reporter" : "");
      if (!form.reportValidity()) return null;
      const reason = [need, details.value.trim()].filter(Boolean).join(": ");
      return { reason: reason };
    },
  };

  // ------------------------------------------------------------------ actions

  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID(); // only on https or localhost: a phone on http://10.x has not
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function act(task, kind, body) {
    if (document.activeElement) document.activeElement.blur(); // the form is sent: it may be redrawn now
    const id = task.task_id;
    const key = newKey();
    const pending = { kind: kind, tries: 0 };
    state.confirmed.delete(id);
    state.pending.set(id, pending);
    render();
    let outcome = null;
    for (;;) {
      try {
        const response = await api("/units/me/tasks/" + encodeURIComponent(id) + "/" + kind, {
          method: "POST", body: JSON.stringify(body),
          headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        });
        if (RESEND.has(response.status)) throw new Error("the API answered " + response.status);
        if (response.status === 200) outcome = kind + ": confirmed";
        else if (response.status === 202) outcome = kind + ": received; being applied";
        else {
          const answer = await response.json().catch(() => ({}));
          const why = (answer.error && answer.error.message) || answer.detail || "refused";
          notice(kind + " refused: " + why + " (" + response.status + ")");
        }
        break;
      } catch (error) {
        if (error instanceof Refused) {
          state.pending.delete(id);
          return stop(error.message);
        }
        pending.tries += 1;
        status("offline: sending again…");
        render();
        await sleep(Math.min(1000 * 2 ** (pending.tries - 1), 15000)); // the same key: applied once however often
      }
    }
    state.pending.delete(id);
    if (outcome) state.confirmed.set(id, outcome);
    try {
      await reload();
      status("live");
    } catch (error) {
      if (error instanceof Refused) return stop(error.message);
      status("offline: reconnecting…");
    }
    render();
    // the keyboard goes on where it was: on this task's next action, unless the crew has moved on meanwhile
    if (!document.activeElement || document.activeElement === document.body) refocus({ task: id });
  }

  // ------------------------------------------------------------------ the channel

  async function reload() {
    const response = await api("/units/me/tasks");
    if (!response.ok) throw new Error("/units/me/tasks answered " + response.status);
    const body = await response.json();
    state.tasks = new Map(body.tasks.map((task) => [task.task_id, task]));
    state.details.clear(); // reports may have joined: fetched again when shown
    for (const id of state.open) if (state.tasks.has(id)) fetchDetails(id);
  }

  async function follow() {
    let last = null;
    for (;;) {
      try {
        const headers = last ? { "Last-Event-ID": last } : {};
        const response = await api("/units/me/events", { headers: headers });
        if (!response.ok) throw new Error("events answered " + response.status);
        status("live");
        await CityLoopEvents.read(response.body, async (id, kind, data) => {
          if (id) last = id;
          await heard(kind, data);
        });
      } catch (error) {
        if (error instanceof Refused) return stop(error.message);
        status("offline: reconnecting…");
      }
      await sleep(2000);
    }
  }

  async function heard(kind, data) {
    if (kind === "assignment" && !state.tasks.has(data.task_id)) {
      notice("New task: " + (data.category || "task").replace(/_/g, " ") + (data.address ? ", " + data.address : ""));
    } else if (kind === "withdrawn") {
      notice("A task was taken off your list (" + data.state + ")");
    }
    await reload();
    render();
  }

  // ------------------------------------------------------------------ start

  function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }
  function status(value) { $("status").textContent = value; }

  function notice(value) {
    $("notice").textContent = value;
    $("notice").hidden = false;
  }

  function stop(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("crew").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message;
    status("not connected");
  }

  async function start(token) {
    state.token = token;
    try {
      const me = await api("/units/me");
      if (!me.ok) throw new Refused("this token is not valid");
      const unit = await me.json();
      $("unit").textContent = unit.name;
      await reload();
      sessionStorage.setItem(TOKEN_KEY, token);
      $("login").hidden = true;
      $("crew").hidden = false;
      render();
      status("live");
      follow();
    } catch (error) {
      stop(error instanceof Refused ? error.message : "could not load: " + (error.message || String(error)));
    }
  }

  // A ready link (#token=...): the fragment is read here, never sent to the server, and removed from the address
  // bar (and this history entry) before anything else happens.
  function linkedToken() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token === null) return null;
    history.replaceState(null, "", location.pathname + location.search);
    return token.trim() || null;
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("token").value.trim());
  });
  setInterval(render, 30000); // deadlines age
  window.CityLoopCrew = { state: state, render: render };
  const linked = linkedToken();
  if (linked) sessionStorage.setItem(TOKEN_KEY, linked);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) start(saved);
  else $("token").focus();
})();

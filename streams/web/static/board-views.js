// The board's other views (/board, next to the incident list): the SLA board and the sensors.
//
// SLA: open orders by unit and by department, overdue / at risk / on time, worst first. Counted here from the items
// the board already holds and keeps live over its feed (board.js), so it is as current as the list and costs no
// request: one pass over the items when the list is redrawn (at most once a frame) while this view is shown.
// Sensors: GET /ops/sensors (each sensor's newest reading and its open alarm incidents), read when the view is
// shown and every 15 s while it stays shown; readings have no feed of their own.
"use strict";
(function () {
  const board = window.CityLoopBoard;
  const $ = (id) => document.getElementById(id);
  const VIEWS = ["incidents", "sla", "sensors"];
  const LEVELS = [["red", "overdue"], ["yellow", "at risk"], ["green", "on time"]];
  const SENSOR_POLL_MS = 15000;
  const view = { shown: "incidents", poll: null, sensors: [], loading: false };

  function el(tag, content, className) {
    const node = document.createElement(tag);
    if (content !== undefined && content !== null) node.textContent = content;
    if (className) node.className = className;
    return node;
  }

  // ------------------------------------------------------------------ tabs

  function select(name, moveFocus) {
    view.shown = name;
    for (const other of VIEWS) {
      const tab = $("tab-" + other);
      tab.setAttribute("aria-selected", String(other === name));
      tab.tabIndex = other === name ? 0 : -1;
      $("view-" + other).hidden = other !== name;
    }
    if (moveFocus) $("tab-" + name).focus();
    clearInterval(view.poll);
    view.poll = null;
    if (name === "sla") drawSla();
    if (name === "sensors") {
      loadSensors();
      view.poll = setInterval(loadSensors, SENSOR_POLL_MS);
    }
  }

  function onTabKey(event) { // arrows, Home and End move between the tabs (the WAI-ARIA tabs pattern)
    const at = VIEWS.indexOf(view.shown);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: VIEWS.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    select(VIEWS[(to + VIEWS.length) % VIEWS.length], true);
  }

  // ------------------------------------------------------------------ SLA

  function tally() {
    const units = new Map();
    const departments = new Map();
    let triage = 0;
    for (const item of board.state.items.values()) {
      const level = board.light(item);
      if (level === "triage") {
        triage += 1;
        continue;
      }
      count(units, item.unit_id, level);
      const department = board.department(item);
      if (department) count(departments, department, level);
    }
    return { units: units, departments: departments, triage: triage };
  }

  function count(counts, key, level) {
    let entry = counts.get(key);
    if (!entry) counts.set(key, (entry = { red: 0, yellow: 0, green: 0, open: 0 }));
    entry[level] += 1;
    entry.open += 1;
  }

  function worstFirst([aId, a], [bId, b]) {
    return b.red - a.red || b.yellow - a.yellow || b.open - a.open || aId.localeCompare(bId);
  }

  function drawSla() {
    if (view.shown !== "sla") return;
    const { units, departments, triage } = tally();
    $("sla-triage").textContent = triage + (triage === 1 ? " report waits" : " reports wait") +
      " for triage (no unit yet)";
    fill($("sla-departments"), departments, "f-department");
    fill($("sla-units"), units, "f-unit");
  }

  function fill(table, counts, filter) {
    const rows = Array.from(counts).sort(worstFirst).map(([id, entry]) => {
      const tr = el("tr");
      tr.dataset.id = id;
      const head = el("th");
      head.scope = "row";
      const unit = board.state.units.get(id);
      const button = el("button", unit ? unit.name : id);
      button.type = "button";
      button.title = "List the incidents of " + (unit ? unit.name : id);
      button.addEventListener("click", () => listOnly(filter, id));
      head.append(button);
      tr.append(head);
      for (const [level, label] of LEVELS) {
        const cell = el("td", String(entry[level]), "n " + level + (entry[level] && level !== "green" ? " late" : ""));
        cell.dataset.level = level;
        cell.setAttribute("aria-label", entry[level] + " " + label);
        tr.append(cell);
      }
      tr.append(el("td", String(entry.open), "n open"));
      return tr;
    });
    if (!rows.length) {
      const tr = el("tr");
      const cell = el("td", "no open orders");
      cell.colSpan = 5;
      tr.append(cell);
      rows.push(tr);
    }
    table.tBodies[0].replaceChildren(...rows);
  }

  function listOnly(filter, id) {
    const chosen = $(filter);
    if (!Array.from(chosen.options).some((option) => option.value === id)) { // a department holding orders itself
      const unit = board.state.units.get(id);
      const option = el("option", unit ? unit.name : id);
      option.value = id;
      chosen.append(option);
    }
    for (const other of ["f-unit", "f-department"]) $(other).value = other === filter ? id : "";
    select("incidents");
    chosen.dispatchEvent(new Event("input"));
    chosen.focus();
  }

  // ------------------------------------------------------------------ sensors

  async function loadSensors() {
    if (view.loading || !board.state.token) return;
    view.loading = true;
    try {
      const answer = await (await board.api("/ops/sensors")).json();
      view.sensors = answer.sensors;
      view.at = answer.at;
      drawSensors();
    } catch (error) {
      $("sensors-status").textContent = "the sensors could not load: " + (error.message || String(error));
    } finally {
      view.loading = false;
    }
  }

  function number(value) { return String(Number(Number(value).toPrecision(6))); }

  function drawSensors() {
    const onlyAlarms = $("sensors-alarms-only").checked;
    const alarmed = view.sensors.filter((sensor) => sensor.open_alarms.length).length;
    $("sensors-status").textContent = view.sensors.length + " sensors, " + alarmed + " with open alarms · as of " +
      new Date(view.at).toLocaleTimeString();
    const rows = view.sensors.filter((sensor) => !onlyAlarms || sensor.open_alarms.length).map((sensor) => {
      const tr = el("tr");
      tr.dataset.sensor = sensor.sensor_id;
      const head = el("th");
      head.scope = "row";
      head.append(el("span", sensor.sensor_id, "what"), el("span", " " + sensor.kind.replace(/_/g, " "), "meta"));
      const reading = el("td");
      reading.className = "reading";
      reading.append(el("span", number(sensor.value) + (sensor.unit ? " " + sensor.unit : ""), "value"),
                     el("span", " at " + new Date(sensor.observed_at).toLocaleString(), "meta"));
      if (sensor.alarm) {
        const mark = el("span", null, "mark red");
        mark.setAttribute("aria-hidden", "true");
        reading.append(el("br"), mark, el("span", " out of range since " +
          new Date(sensor.alarm_since).toLocaleTimeString(), "alarm-on"));
      }
      const alarms = el("td");
      alarms.className = "alarms";
      for (const incidentId of sensor.open_alarms) {
        const button = el("button", incidentId);
        button.type = "button";
        button.dataset.incident = incidentId;
        button.title = "Open incident " + incidentId;
        button.addEventListener("click", () => board.focus(incidentId));
        alarms.append(button);
      }
      if (!sensor.open_alarms.length) alarms.append(el("span", "none", "meta"));
      tr.append(head, reading, alarms);
      return tr;
    });
    if (!rows.length) {
      const tr = el("tr");
      const cell = el("td", onlyAlarms ? "no sensor has an open alarm" : "no readings yet");
      cell.colSpan = 3;
      tr.append(cell);
      rows.push(tr);
    }
    $("sensors").tBodies[0].replaceChildren(...rows);
  }

  // ------------------------------------------------------------------ start

  for (const name of VIEWS) $("tab-" + name).addEventListener("click", () => select(name));
  $("views").addEventListener("keydown", onTabKey);
  $("sensors-refresh").addEventListener("click", loadSensors);
  $("sensors-alarms-only").addEventListener("change", drawSensors);
  document.addEventListener("cityloop:board-drawn", drawSla);
})();

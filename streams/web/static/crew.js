// The crew app (/crew): a unit's open tasks, most urgent first, and what the crew does with them.
//
// Data: GET /units/me, GET /units/me/tasks, and /units/me/events (new assignments, withdrawals) read with fetch so
// that the token goes in a header; the token stays in this tab's session storage. Every action is sent with an
// Idempotency-Key; on a dropped connection it is sent again with the same key (the API applies it once) and the
// task shows it as pending until the API confirms it.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const ACTIONS = {
    dispatched: [["ack", "Acknowledge"], ["reject", "Reject…"]],
    acknowledged: [["start", "Start work"], ["reject", "Reject…"]],
    in_progress: [["resolve", "Resolved…"], ["wait", "Wait on the reporter"]],
    waiting: [["resume", "Resume"]],
  };
  const state = { token: null, tasks: new Map(), pending: new Map(), reloading: null };

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
    if (!isFinite(when)) return "no deadline";
    const minutes = Math.round((when - Date.now()) / 60000);
    const what = task.state === "dispatched" ? "acknowledge" : "resolve";
    if (minutes < 0) return what + ": " + human(-minutes) + " late";
    return what + " within " + human(minutes);
  }

  function human(minutes) {
    if (minutes < 90) return minutes + " min";
    if (minutes < 48 * 60) return Math.round(minutes / 60) + " h";
    return Math.round(minutes / 1440) + " d";
  }

  function render() {
    const typing = document.activeElement && document.activeElement.closest && document.activeElement.closest("#tasks form");
    if (typing) return setTimeout(render, 5000); // not while the crew writes a note: the form would be redrawn
    const tasks = Array.from(state.tasks.values()).sort((a, b) => due(a) - due(b));
    $("tasks").replaceChildren(...tasks.map(card));
    $("empty").hidden = tasks.length > 0;
  }

  function card(task) {
    const node = $("task").content.firstElementChild.cloneNode(true);
    node.dataset.task = task.task_id;
    const minutes = (due(task) - Date.now()) / 60000;
    if (minutes < 0) node.classList.add("late");
    else if (minutes < 60) node.classList.add("soon");
    node.querySelector(".what").textContent = (task.category || "task").replace(/_/g, " ");
    node.querySelector(".where").textContent = task.address ||
      (typeof task.lat === "number" ? task.lat.toFixed(5) + ", " + task.lon.toFixed(5) : "");
    node.querySelector(".due").textContent = dueText(task);
    node.querySelector(".state").textContent = "state: " + task.state.replace(/_/g, " ");
    const pending = state.pending.get(task.task_id);
    node.querySelector(".pending").textContent = pending ? pending + ": sending…" : "";
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
    node.querySelector("form.resolve").addEventListener("submit", (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      const body = { note: form.get("note") };
      if (form.get("media_url")) body.media_url = form.get("media_url");
      act(task, "resolve", body);
    });
    node.querySelector("form.reject").addEventListener("submit", (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      const body = { reason_code: form.get("reason_code") };
      if (form.get("reason")) body.reason = form.get("reason");
      act(task, "reject", body);
    });
    return node;
  }

  function choose(node, task, kind) {
    if (kind === "resolve" || kind === "reject") {
      const form = node.querySelector("form." + kind);
      form.hidden = false;
      form.querySelector("textarea, select").focus();
      return;
    }
    if (kind === "wait") {
      const reason = prompt("What do you need from the reporter?");
      if (reason) act(task, "wait", { reason: reason });
      return;
    }
    act(task, kind, {});
  }

  // ------------------------------------------------------------------ actions

  async function act(task, kind, body) {
    if (document.activeElement) document.activeElement.blur(); // the form is sent: it may be redrawn now
    const key = crypto.randomUUID();
    state.pending.set(task.task_id, kind);
    render();
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await api("/units/me/tasks/" + encodeURIComponent(task.task_id) + "/" + kind, {
          method: "POST", body: JSON.stringify(body),
          headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        });
        if (response.status === 200 || response.status === 202) break;
        const answer = await response.json().catch(() => ({}));
        notice((answer.message || answer.detail || "refused") + " (" + response.status + ")");
        break;
      } catch (error) {
        if (error instanceof Refused) return stop(error.message);
        status("offline: sending again…");
        await sleep(Math.min(1000 * 2 ** attempt, 15000)); // the same key: applied once however often it is sent
      }
    }
    await reload();
    state.pending.delete(task.task_id);
    status("live");
    render();
  }

  // ------------------------------------------------------------------ the channel

  async function reload() {
    const response = await api("/units/me/tasks");
    if (!response.ok) throw new Error("/units/me/tasks answered " + response.status);
    const body = await response.json();
    state.tasks = new Map(body.tasks.map((task) => [task.task_id, task]));
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
  function status(text) { $("status").textContent = text; }

  function notice(text) {
    $("notice").textContent = text;
    $("notice").hidden = false;
  }

  function stop(message) {
    sessionStorage.removeItem("cityloop.crew.token");
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
      sessionStorage.setItem("cityloop.crew.token", token);
      $("login").hidden = true;
      $("crew").hidden = false;
      render();
      status("live");
      follow();
    } catch (error) {
      stop(error instanceof Refused ? error.message : "could not load: " + (error.message || String(error)));
    }
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("token").value.trim());
  });
  setInterval(render, 30000); // deadlines age
  const saved = sessionStorage.getItem("cityloop.crew.token");
  if (saved) start(saved);
  else $("token").focus();
})();

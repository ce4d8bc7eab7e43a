// The dashboard page: renders the live snapshot the server streams (Server-Sent Events) and
// sends the user's changes as JSON POSTs. Plain JavaScript, no build step, no other origin.
// Everything shown comes from plugins and registries and may be hostile: it is only ever set
// as textContent or as an input's value, never parsed as HTML.
"use strict";

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const TOKEN = meta("pm-token");
  const CSRF = meta("pm-csrf");
  const $ = (id) => document.getElementById(id);

  // -- small helpers ---------------------------------------------------------------------------

  // A new element; `props` are our own literal property names, children are nodes or text.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("data-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function setText(node, text) {
    const value = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  // Make `container`'s children match `items`, reusing the child of each key (so an open
  // <details>, a focused input or a button under the pointer survives an update).
  function keyed(container, items, keyOf, create, update) {
    const old = new Map();
    for (const child of [...container.children]) old.set(child.dataset.key, child);
    items.forEach((item, index) => {
      const key = String(keyOf(item));
      let node = old.get(key);
      if (node) old.delete(key);
      else {
        node = create(item);
        node.dataset.key = key;
      }
      update(node, item);
      if (container.children[index] !== node) {
        container.insertBefore(node, container.children[index] || null);
      }
    });
    for (const node of old.values()) node.remove();
  }

  function say(text) {
    const box = $("message");
    setText(box, text);
    box.hidden = !text;
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-PM-Token": TOKEN, "X-PM-CSRF": CSRF },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
    let data = {};
    try {
      data = await response.json();
    } catch (err) {
      data = {};
    }
    if (!response.ok) throw new Error(data.error || `the dashboard answered ${response.status}`);
    return data.result;
  }

  // POST, with `button` disabled meanwhile; a refusal is shown in `where` (the banner by
  // default). Returns the result, or undefined when refused.
  async function act(path, body, button, where) {
    const show = where ? (text) => { setText(where, text); where.hidden = !text; } : say;
    if (button) button.disabled = true;
    try {
      const result = await post(path, body);
      show("");
      return result;
    } catch (err) {
      show(err.message);
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // -- modules -----------------------------------------------------------------------------------

  const TOGGLES = { disabled: "Enable", refused: null };

  function sandboxWords(module) {
    const lines = [];
    for (const ask of module.capabilities || []) lines.push(`may: ${ask.replace(/^may /, "")}`);
    const box = module.sandbox;
    if (box && box.confined) {
      for (const what of ["filesystem", "network", "processes", "uid", "limits"]) {
        lines.push(`${what}: ${box[what]}`);
      }
    } else if (box) lines.push(`UNCONFINED: ${box.reason}`);
    return {
      summary: !box ? (lines.length ? "asks" : "") : box.confined ? "confined" : "UNCONFINED",
      detail: lines.join("\n"),
      bad: Boolean(box && !box.confined),
    };
  }

  function moduleRow(module) {
    const row = el("tr", { "data-module": module.name });
    for (const name of ["name", "state", "version", "signer"]) row.append(el("td", { class: name }));
    const details = el("details", {}, el("summary"), el("div", { class: "detail" }));
    row.append(el("td", { class: "sandbox" }, details));
    for (const name of ["pid", "restarts", "reason"]) row.append(el("td", { class: name }));
    const button = el("button", { class: "toggle", type: "button" });
    button.addEventListener("click", () => {
      const enabled = button.textContent === "Enable";
      act("/api/module", { module: row.dataset.key, enabled }, button);
    });
    row.append(el("td", {}, button));
    return row;
  }

  function updateModule(row, module) {
    const cell = (name) => row.querySelector(`td.${name}`);
    setText(cell("name"), `${module.name}${module.kind === "core" ? " (host)" : ""}`);
    setText(cell("state"), module.state);
    cell("state").dataset.state = module.state;
    setText(cell("version"), module.version || "-");
    setText(cell("signer"), module.signer || "-");
    const words = sandboxWords(module);
    const details = cell("sandbox").querySelector("details");
    setText(details.querySelector("summary"), words.summary);
    setText(details.querySelector(".detail"), words.detail);
    details.hidden = !words.summary;
    details.classList.toggle("bad", words.bad);
    setText(cell("pid"), module.pid === null || module.pid === undefined ? "-" : module.pid);
    setText(cell("restarts"), module.restarts || 0);
    setText(cell("reason"), module.reason || "");
    const button = row.querySelector("button.toggle");
    const label = module.state in TOGGLES ? TOGGLES[module.state] : "Disable";
    button.hidden = label === null;
    setText(button, label || "");
  }

  function renderHost(host) {
    const status = host && host.status;
    const error = $("host-error");
    setText(error, host && host.error ? host.error : "");
    error.hidden = !(host && host.error);
    setText($("host-version"), status ? `host ${status.host_version}` : "");
    $("dev-mode").hidden = !(status && status.dev_mode);
    const modules = status ? status.modules : [];
    keyed($("modules").tBodies[0], modules, (m) => m.name, moduleRow, updateModule);
    const warnings = [];
    if (status && status.plugins_json_error) {
      warnings.push(`no plugin can run: ${status.plugins_json_error}`);
    }
    for (const m of modules) {
      if (m.sandbox && !m.sandbox.confined) {
        warnings.push(`WARNING: plugin ${m.name} runs UNCONFINED: ${m.sandbox.reason}`);
      }
    }
    keyed($("warnings"), warnings, (w) => w, () => el("li"), setText);
  }

  // -- notifications ----------------------------------------------------------------------------

  function noteItem(note, waiting) {
    const item = el("li", { class: waiting ? "note waiting" : "note shown" });
    item.append(el("span", { class: "plugin", text: note.plugin }));
    item.append(el("strong", { class: "title", text: note.title }));
    item.append(el("p", { class: "text", text: note.message }));
    const buttons = el("div", { class: "buttons" });
    const error = el("p", { class: "error", hidden: true });
    if (waiting) {
      for (const action of note.actions) {
        const button = el("button", { type: "button", class: "action", text: action.text });
        button.dataset.action = action.id;
        button.addEventListener("click", () =>
          act("/api/answer", { event_id: note.event_id, action: action.id }, button, error),
        );
        buttons.append(button);
      }
    } else {
      const button = el("button", { type: "button", class: "dismiss", text: "Dismiss" });
      button.addEventListener("click", () =>
        act("/api/dismiss", { event_id: note.event_id }, button, error),
      );
      buttons.append(button);
    }
    item.append(buttons, error);
    return item;
  }

  function renderNotifications(notes) {
    const waiting = (notes && notes.waiting) || [];
    const shown = (notes && notes.shown) || [];
    const key = (n) => `${n.event_id}\u0000${JSON.stringify(n.actions)}`;
    keyed($("waiting"), waiting, key, (n) => noteItem(n, true), () => {});
    keyed($("shown"), shown, key, (n) => noteItem(n, false), () => {});
    const empty = $("notifications-empty");
    setText(empty, notes && notes.error ? notes.error : "No notifications.");
    empty.hidden = waiting.length + shown.length > 0 && !(notes && notes.error);
  }

  // -- config -------------------------------------------------------------------------------------

  function inputFor(option) {
    if (option.type === "bool") return el("input", { type: "checkbox", class: "value" });
    if (option.type === "int") return el("input", { type: "number", step: "1", class: "value" });
    if (option.type === "string") return el("input", { type: "text", class: "value" });
    return el("textarea", { class: "value", rows: 3, spellcheck: false });
  }

  function showValue(input, option, value) {
    if (option.type === "bool") input.checked = Boolean(value);
    else if (option.type === "string_array") input.value = (value || []).join("\n");
    else if (option.type === "string") input.value = value === null ? "" : String(value);
    else if (option.type === "int") input.value = value === null ? "" : String(value);
    else input.value = JSON.stringify(value, null, 2);
  }

  function readValue(input, option) {
    if (option.type === "bool") return input.checked;
    if (option.type === "string") return input.value;
    if (option.type === "string_array") {
      return input.value.split("\n").map((s) => s.trim()).filter((s) => s !== "");
    }
    if (option.type === "int") {
      if (!/^\s*-?\d+\s*$/.test(input.value)) throw new Error("a whole number, please");
      return Number.parseInt(input.value, 10);
    }
    try {
      return JSON.parse(input.value);
    } catch (err) {
      throw new Error("this option takes JSON");
    }
  }

  function optionForm(option) {
    const form = el("form", { class: "option" });
    form.dataset.option = option.key;
    const input = inputFor(option);
    const error = el("p", { class: "error", hidden: true });
    const save = el("button", { type: "submit", class: "save", text: "Save" });
    const reset = el("button", { type: "button", class: "reset", text: "Reset to default" });
    form.append(
      el("label", {}, el("span", { class: "name" }), " ", el("code", { class: "key" }),
        " ", el("span", { class: "type" }), el("span", { class: "set" })),
      el("p", { class: "description" }),
      el("p", { class: "help quiet" }),
      input,
      el("div", { class: "buttons" }, save, reset),
      error,
    );
    input.addEventListener("input", () => { form.dataset.dirty = "1"; });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let value;
      try {
        value = readValue(input, form.option);
      } catch (err) {
        setText(error, err.message);
        error.hidden = false;
        return;
      }
      const done = await act("/api/config", { key: option.key, value }, save, error);
      if (done !== undefined) delete form.dataset.dirty;
    });
    reset.addEventListener("click", async () => {
      const done = await act("/api/config-reset", { key: option.key }, reset, error);
      if (done !== undefined) delete form.dataset.dirty;
    });
    return form;
  }

  function updateOption(form, option) {
    form.option = option;
    setText(form.querySelector(".name"), option.name || option.key);
    setText(form.querySelector(".key"), option.key);
    setText(form.querySelector(".type"), option.type);
    setText(form.querySelector(".set"), option.set ? "" : " (default)");
    setText(form.querySelector(".description"), option.description);
    setText(form.querySelector(".help"), option.help);
    const input = form.querySelector(".value");
    const server = JSON.stringify(option.value);
    if (form.dataset.server !== server) {
      // a change from elsewhere: shown unless the user is editing this option
      if (!form.dataset.dirty && document.activeElement !== input) showValue(input, option, option.value);
      form.dataset.server = server;
    }
  }

  function renderConfig(config) {
    const options = (config && config.options) || [];
    const byPlugin = new Map();
    for (const option of options) {
      const owner = option.plugin || "host";
      if (!byPlugin.has(owner)) byPlugin.set(owner, []);
      byPlugin.get(owner).push(option);
    }
    const groups = [...byPlugin.entries()];
    keyed($("config"), groups, ([owner]) => owner,
      ([owner]) => el("fieldset", { "data-plugin": owner }, el("legend", { text: owner }), el("div")),
      (fieldset, [, list]) => keyed(fieldset.lastChild, list, (o) => `${o.key}\u0000${o.type}`,
        optionForm, updateOption));
    const note = $("config-note");
    setText(note, config && config.error ? config.error : "No plugin has registered an option.");
    note.hidden = options.length > 0 && !(config && config.error);
  }

  // -- search, install, jobs ----------------------------------------------------------------------

  let lastSearch = null;

  function resultRow(result) {
    const row = el("tr", { "data-plugin": result.name });
    for (const name of ["name", "version", "types", "description", "registry", "installed"]) {
      row.append(el("td", { class: name }));
    }
    row.append(el("td", { class: "buttons" }));
    return row;
  }

  function jobButton(kind, label, name) {
    const button = el("button", { type: "button", class: kind, text: label });
    button.addEventListener("click", () => act("/api/jobs", { kind, name }, button));
    return button;
  }

  function updateResult(row, r) {
    setText(row.querySelector(".name"), r.name);
    setText(row.querySelector(".version"), r.version);
    setText(row.querySelector(".types"), r.types.join(", "));
    setText(row.querySelector(".description"), r.description);
    setText(row.querySelector(".registry"), `${r.publisher} (registry ${r.registry})`);
    setText(row.querySelector(".installed"), r.installed || "-");
    const buttons = row.querySelector(".buttons");
    buttons.replaceChildren();
    if (!r.installed) buttons.append(jobButton("install", "Install", r.name));
    else {
      if (r.installed !== r.version) buttons.append(jobButton("upgrade", "Upgrade", r.name));
      buttons.append(jobButton("uninstall", "Uninstall", r.name));
    }
  }

  async function search(text) {
    lastSearch = text;
    const found = await act("/api/search", { text }, $("search-button"));
    if (found === undefined) return;
    setText($("search-notes"), found.results.length ? found.notes.join("\n") : "No plugin found.");
    $("results").hidden = !found.results.length;
    keyed($("results").tBodies[0], found.results, (r) => r.name, resultRow, updateResult);
  }

  function jobItem() {
    return el("li", { class: "job" }, el("strong", { class: "what" }), " ",
      el("span", { class: "state" }), el("span", { class: "restart badge warn", hidden: true,
        text: "restart needed" }), el("pre", { class: "lines" }), el("p", { class: "error" }));
  }

  function updateJob(item, job) {
    setText(item.querySelector(".what"), `${job.kind} ${job.name}`);
    setText(item.querySelector(".state"), job.state);
    item.dataset.state = job.state;
    setText(item.querySelector(".lines"), job.lines.join("\n"));
    setText(item.querySelector(".error"), job.error);
    item.querySelector(".restart").hidden = !job.lines.some((l) => l.includes("restart needed"));
  }

  let finished = new Set();

  function renderJobs(jobs) {
    const list = [...(jobs || [])].reverse();
    keyed($("jobs"), list, (j) => j.id, jobItem, updateJob);
    const now = new Set(list.filter((j) => j.state === "done" || j.state === "refused")
      .map((j) => j.id));
    const fresh = [...now].some((id) => !finished.has(id));
    finished = now;
    if (fresh && lastSearch !== null) search(lastSearch); // show what is installed now
  }

  // -- live updates -------------------------------------------------------------------------------

  function render(state) {
    renderHost(state.host);
    renderNotifications(state.notifications);
    renderConfig(state.config);
    renderJobs(state.jobs);
    document.body.dataset.version = state.version;
  }

  function connect() {
    const connection = $("connection");
    const source = new EventSource(`/api/events?token=${encodeURIComponent(TOKEN)}`);
    source.addEventListener("state", (event) => {
      render(JSON.parse(event.data));
      setText(connection, "live");
      connection.className = "badge good";
    });
    source.addEventListener("error", () => {
      const closed = source.readyState === EventSource.CLOSED;
      setText(connection, closed ? "disconnected: open the address the command printed" : "reconnecting");
      connection.className = "badge bad";
    });
  }

  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search($("search-text").value);
  });
  connect();
})();

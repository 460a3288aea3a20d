// The admin console. Plain JavaScript calling the /v1 admin API.
//
// Rules this file keeps:
// - Everything from the API reaches the page through textContent or input values, never
//   innerHTML, so a description such as <img src=x onerror=alert(1)> stays text (and the
//   Content-Security-Policy would refuse to run it anyway).
// - The secret key lives in sessionStorage (this tab only), travels only in X-Auth-Token, and
//   is removed on sign-out. A new secret is shown once, in the secret dialog, and dropped from
//   the page when that dialog closes.
"use strict";

const STORAGE_KEY = "gateway.secret_key";
const $ = (id) => document.getElementById(id);

const state = {
  me: null,          // /v1/whoami
  limits: null,      // read from /v1/openapi.json: the API's own declarations, never typed here
  projects: [],      // /v1/projects
  bearer: null,      // whose keys the Credentials view shows: {type, id, label}
  keys: new Map(),   // access_key -> key, for the row actions
};

// -- the API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
  }
}

function describe(status, body) {
  if (status === 0) return "Cannot reach the admin API. Check that the gateway is running.";
  if (status === 401) return "Your secret key is not valid any more (revoked, expired or rolled). Sign in again.";
  if (body && Array.isArray(body.details) && body.details.length) {
    return body.details.map((d) => (d.field && d.field !== "body" ? `${d.field}: ${d.message}` : d.message)).join("; ");
  }
  if (body && typeof body.message === "string") return body.message;
  return `The admin API answered ${status}.`;
}

async function api(method, path, body) {
  const secret = sessionStorage.getItem(STORAGE_KEY);
  const headers = { "X-Auth-Token": secret || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (_) {
    throw new ApiError(0, null);
  }
  if (response.status === 204) return null;
  let parsed = null;
  try {
    parsed = await response.json();
  } catch (_) {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

async function listKeys(params) {
  const found = [];
  for (let page = 1; page <= 50; page += 1) {
    const query = new URLSearchParams({
      ...params, page: String(page), page_size: String(state.limits.pageSize), order_by: "created_at_desc",
    });
    const answer = await api("GET", `/v1/api-keys?${query}`);
    found.push(...answer.api_keys);
    if (found.length >= answer.total_count || answer.api_keys.length === 0) break;
  }
  return found;
}

// -- small DOM helpers --------------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function showError(id, error) {
  const target = $(id);
  target.textContent = error ? (error.message || String(error)) : "";
  if (error && error.status === 401) signOut("Your secret key is not valid any more. Sign in again.");
}

function when(value, empty) {
  if (!value) return empty;
  const date = new Date(value);
  return date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function projectName(id) {
  if (!id) return "—";
  const project = state.projects.find((p) => p.id === id);
  return project ? project.name : id;
}

function fillProjects(select, selected) {
  // A new key may take the organization's default; an existing key always names its project.
  select.replaceChildren();
  if (selected === null) select.append(el("option", { value: "", text: "Organization default" }));
  for (const project of state.projects) {
    const option = el("option", { value: project.id, text: project.name });
    if (project.id === selected) option.selected = true;
    select.append(option);
  }
}

function isManager() {
  return Boolean(state.me && state.me.is_manager);
}

// The limits the API declares, read from its OpenAPI document, applied to the forms.
function applyLimits(doc) {
  const schemas = doc.components.schemas;
  const listing = doc.paths["/v1/api-keys"].get.parameters;
  state.limits = {
    description: schemas.ApiKeyCreate.properties.description.maxLength,
    grace: schemas.ApiKeyRoll.properties.expire_current_in_seconds.maximum,
    pageSize: listing.find((p) => p.name === "page_size").schema.maximum,
  };
  for (const id of ["generate-description", "edit-description"]) {
    $(id).maxLength = state.limits.description;
  }
  for (const option of [...$("roll-grace").options]) {
    if (Number(option.value) > state.limits.grace) option.remove();
  }
}

// -- signing in and out -------------------------------------------------------------------------

async function signIn(secret) {
  sessionStorage.setItem(STORAGE_KEY, secret);
  try {
    state.me = await api("GET", "/v1/whoami");
  } catch (error) {
    sessionStorage.removeItem(STORAGE_KEY);
    throw error;
  }
  applyLimits(await api("GET", "/v1/openapi.json"));
  state.projects = (await api("GET", "/v1/projects")).projects;
  $("who").textContent = `${state.me.name} · ${state.me.bearer_type}${state.me.is_owner ? " · Owner" : ""}`;
  $("who").hidden = false;
  $("sign-out").hidden = false;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  for (const button of document.querySelectorAll(".managers-only")) button.hidden = !isManager();
  state.bearer = { type: state.me.bearer_type, id: state.me.bearer_id, label: null };
  await showView("credentials");
}

function signOut(message) {
  sessionStorage.removeItem(STORAGE_KEY);
  state.me = null;
  state.keys.clear();
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  for (const body of document.querySelectorAll("tbody")) body.replaceChildren();
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("app").hidden = true;
  $("sign-in").hidden = false;
  $("secret").value = "";
  $("sign-in-error").textContent = message || "";
  $("secret").focus();
}

// -- views --------------------------------------------------------------------------------------

async function showView(name) {
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  // Another bearer's keys are reached from the Users or Applications view: that tab stays lit.
  const own = !state.bearer || state.bearer.id === state.me.bearer_id;
  const lit = name === "credentials" && !own ? `${state.bearer.type}s` : name;
  for (const button of document.querySelectorAll("#nav button")) {
    if (button.dataset.view === lit) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  if (name === "credentials") await loadKeys();
  if (name === "projects") await loadProjects();
  if (name === "users") await loadBearers("user");
  if (name === "applications") await loadBearers("application");
  if (name === "audit") await loadAudit();
  // Views of their own files (plans.js) register here.
  const more = (window.consoleViews || {})[name];
  if (more) await more();
}

async function loadKeys() {
  const bearer = state.bearer;
  const own = bearer.id === state.me.bearer_id;
  $("credentials-title").textContent = own ? "Credentials" : `API keys of ${bearer.label}`;
  // The API lets nobody create a key for another user (its secret would not be theirs alone);
  // managers may create keys for applications.
  const mayGenerate = own || bearer.type === "application";
  $("generate").hidden = !mayGenerate;
  $("credentials-bearer").textContent = own
    ? "Your API keys."
    : `Keys of the ${bearer.type} ${bearer.label}.` +
      (mayGenerate ? "" : " Only they can generate keys for themselves; you can edit, roll and delete these.");
  showError("credentials-error", null);
  let keys;
  try {
    keys = await listKeys(bearer.type === "user" ? { user_id: bearer.id } : { application_id: bearer.id });
  } catch (error) {
    showError("credentials-error", error);
    return;
  }
  state.keys = new Map(keys.map((k) => [k.access_key, k]));
  const now = Date.now();
  const rows = keys.map((key) => {
    const expired = key.expires_at && Date.parse(key.expires_at) <= now;
    const expires = el("td", {}, when(key.expires_at, "Never"));
    if (expired) expires.append(" ", el("span", { class: "badge expired", text: "Expired" }));
    return el(
      "tr",
      { class: expired ? "is-expired" : "", "data-access-key": key.access_key },
      el("td", { class: "mono" }, key.access_key),
      el("td", { class: "description" }, key.description || "—"),
      el("td", {}, projectName(key.default_project_id)),
      el(
        "td",
        {},
        el("span", { class: `badge ${key.mode}`, text: key.mode }),
        key.permissions === null ? null : el("span", { class: "badge restricted", text: "restricted" }),
        key.disabled ? el("span", { class: "badge expired", text: "Disabled" }) : null,
        key.imported ? el("span", { class: "badge imported", text: "imported" }) : null,
      ),
      el("td", {}, when(key.created_at, "—")),
      el("td", {}, when(key.last_used_at, "Never")),
      expires,
      el("td", { class: "row-actions" }, moreMenu(key)),
    );
  });
  $("keys-table").tBodies[0].replaceChildren(...rows);
  $("keys-empty").hidden = rows.length > 0;
}

function moreMenu(key) {
  const menu = el("div", { class: "menu", role: "menu", hidden: "" });
  const button = el("button", {
    type: "button",
    class: "more",
    "aria-haspopup": "menu",
    "aria-expanded": "false",
    "aria-label": `More actions for ${key.access_key}`,
    text: "⋯",
  });
  const close = (refocus) => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (refocus) button.focus();
  };
  const item = (label, action) =>
    el("button", {
      type: "button",
      role: "menuitem",
      text: label,
      onclick: () => {
        close(false);
        action(key);
      },
    });
  menu.append(
    item("Edit", openEdit), item("Roll", openRoll), item("Usage", openUsage), item("Delete", openDelete),
  );
  if (isManager() && window.toggleDisabled) {
    menu.append(item(key.disabled ? "Enable" : "Disable", window.toggleDisabled));
  }
  button.addEventListener("click", () => {
    const opening = menu.hidden;
    closeMenus();
    if (opening) {
      // Fixed, placed by the button, so the table's scroll box cannot clip it (CSSOM writes
      // are allowed by the CSP; style attributes in markup would not be).
      const box = button.getBoundingClientRect();
      menu.hidden = false;
      const width = menu.offsetWidth;
      menu.style.left = `${Math.max(8, Math.min(box.right - width, window.innerWidth - width - 8))}px`;
      const below = box.bottom + 4;
      menu.style.top = `${below + menu.offsetHeight > window.innerHeight ? box.top - menu.offsetHeight - 4 : below}px`;
      button.setAttribute("aria-expanded", "true");
      menu.querySelector("button").focus();
    }
  });
  menu.addEventListener("keydown", (event) => {
    const items = [...menu.querySelectorAll("button")];
    const at = items.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      close(true);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : items.length - 1;
      items[(at + step) % items.length].focus();
    } else if (event.key === "Tab") {
      close(false);
    }
  });
  return el("div", { class: "menu-wrap" }, button, menu);
}

function closeMenus() {
  for (const menu of document.querySelectorAll(".menu")) {
    menu.hidden = true;
    const button = menu.parentElement.querySelector(".more");
    if (button) button.setAttribute("aria-expanded", "false");
  }
}

// -- projects -------------------------------------------------------------------------------------

async function loadProjects() {
  showError("projects-error", null);
  try {
    state.projects = (await api("GET", "/v1/projects")).projects;
  } catch (error) {
    showError("projects-error", error);
    return;
  }
  const rows = state.projects.map((project) =>
    el(
      "tr",
      { "data-project": project.id },
      el("td", {}, project.name),
      el("td", { class: "mono" }, project.id),
      el("td", {}, when(project.created_at, "—")),
      el(
        "td",
        { class: "row-actions" },
        el("div", { class: "row-buttons" },
          el("button", {
            type: "button", text: "Rename", "aria-label": `Rename ${project.name}`,
            onclick: () => openProject(project),
          }),
          el("button", {
            type: "button", text: "Delete", "aria-label": `Delete ${project.name}`,
            onclick: () => openProjectDelete(project),
          }),
        ),
      ),
    ),
  );
  $("projects-table").tBodies[0].replaceChildren(...rows);
}

let currentProject = null; // the project the project dialogs act on; null: a new one

function openProject(project) {
  currentProject = project;
  $("project-title").textContent = project ? "Rename project" : "Create project";
  $("project-submit").textContent = project ? "Rename project" : "Create project";
  $("project-name").value = project ? project.name : "";
  openDialog("project-dialog");
  $("project-name").focus();
}

async function submitProject(event) {
  event.preventDefault();
  const body = { name: $("project-name").value.trim() };
  try {
    if (currentProject) await api("PATCH", `/v1/projects/${encodeURIComponent(currentProject.id)}`, body);
    else await api("POST", "/v1/projects", body);
    $("project-dialog").close();
    await loadProjects();
  } catch (error) {
    showError("project-error", error);
  }
}

function openProjectDelete(project) {
  currentProject = project;
  $("project-delete-name").textContent = `${project.name} (${project.id})`;
  openDialog("project-delete-dialog");
}

async function submitProjectDelete(event) {
  event.preventDefault();
  try {
    await api("DELETE", `/v1/projects/${encodeURIComponent(currentProject.id)}`);
    $("project-delete-dialog").close();
    await loadProjects();
  } catch (error) {
    showError("project-delete-error", error); // a 409 names the keys that hold it
  }
}

async function loadBearers(kind) {
  const plural = kind === "user" ? "users" : "applications";
  showError(`${plural}-error`, null);
  let items;
  try {
    items = (await api("GET", `/v1/${plural}`))[plural];
  } catch (error) {
    showError(`${plural}-error`, error);
    return;
  }
  const rows = items.map((item) => {
    const label = kind === "user" ? item.email : item.name;
    const sets = item.permission_sets.length ? item.permission_sets.join(", ") : "—";
    return el(
      "tr",
      {},
      el("td", {}, label, kind === "user" && item.is_owner ? el("span", { class: "badge", text: "Owner" }) : null),
      el("td", {}, sets),
      el("td", {}, when(item.created_at, "—")),
      el(
        "td",
        {},
        el("button", {
          type: "button",
          text: "API keys",
          "aria-label": `API keys of ${label}`,
          onclick: () => {
            state.bearer = { type: kind, id: item.id, label };
            showView("credentials");
          },
        }),
      ),
    );
  });
  $(`${plural}-table`).tBodies[0].replaceChildren(...rows);
}

async function loadAudit() {
  showError("audit-error", null);
  const form = $("audit-filters");
  const query = new URLSearchParams({ page_size: String(state.limits.pageSize) });
  for (const name of ["action", "access_key", "actor_id"]) {
    const value = form.elements[name].value.trim();
    if (value) query.set(name, value);
  }
  for (const name of ["since", "until"]) {
    const value = form.elements[name].value;
    if (value) query.set(name, `${value}:00Z`);
  }
  let answer;
  try {
    answer = await api("GET", `/v1/audit-events?${query}`);
  } catch (error) {
    showError("audit-error", error);
    return;
  }
  const rows = answer.audit_events.map((event) =>
    el(
      "tr",
      { class: event.outcome === "denied" ? "is-denied" : "" },
      el("td", {}, when(event.created_at, "—")),
      el("td", { class: "mono" }, `${event.actor.type} ${event.actor.access_key || event.actor.id || ""}`.trim()),
      el("td", { class: "mono" }, event.action),
      el("td", { class: "mono" }, `${event.target.type} ${event.target.id || ""}`.trim()),
      el("td", {}, event.outcome),
      el("td", {}, event.detail || ""),
    ),
  );
  $("audit-table").tBodies[0].replaceChildren(...rows);
  $("audit-count").textContent = `${answer.audit_events.length} of ${answer.total_count} events, newest first.`;
}

// -- dialogs ------------------------------------------------------------------------------------

let current = null; // the key a dialog acts on

function openDialog(id) {
  const dialog = $(id);
  for (const error of dialog.querySelectorAll(".error")) error.textContent = "";
  dialog.showModal();
  return dialog;
}

function showSecret(title, answer) {
  $("secret-title").textContent = title;
  $("secret-access-key").value = answer.access_key;
  $("secret-secret-key").value = answer.secret_key;
  $("secret-copied").textContent = "";
  openDialog("secret-dialog");
  $("secret-secret-key").focus();
  $("secret-secret-key").select();
}

// -- policies: the CLI's own notation in the forms ------------------------------------------------

const WINDOW_UNITS = { "": 1, s: 1, m: 60, h: 3600, d: 86400 };

function splitList(text) {
  return text.split(/[\s,]+/).filter((part) => part !== "");
}

function parseRateLimits(text) {
  return splitList(text).map((part) => {
    const match = /^(\d+)\/(\d+)([smhd]?)$/.exec(part);
    if (!match) throw new Error(`Rate limit "${part}" is not like 100/60s, 10/1s or 1000/1h.`);
    return { limit: Number(match[1]), window_seconds: Number(match[2]) * WINDOW_UNITS[match[3]] };
  });
}

function showRateLimits(limits) {
  return limits.map((r) => `${r.limit}/${r.window_seconds}s`).join(", ");
}

function samePolicy(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function openGenerate() {
  const form = $("generate-form");
  form.reset();
  fillProjects($("generate-project"), null);
  $("generate-custom").hidden = true;
  // Only the organization's managers may set a key's policies (the API says 403 otherwise).
  $("generate-policies").hidden = !isManager();
  $("generate-permissions-row").hidden = true;
  openDialog("generate-dialog");
  $("generate-description").focus();
}

// The expiry chosen in a form ("generate" or "edit"): an RFC 3339 time, null for never, or
// undefined where the edit form keeps the key's own.
function expiryFromForm(form) {
  const choice = $(`${form}-expiry`).value;
  if (choice === "") return form === "edit" ? undefined : null;
  if (choice === "never") return null;
  if (choice !== "custom") return new Date(Date.now() + Number(choice) * 1000).toISOString();
  const raw = $(`${form}-custom-at`).value;
  if (!raw) throw new Error("Choose the date and time the key expires.");
  const at = new Date(raw); // datetime-local is the browser's local time
  if (Number.isNaN(at.getTime()) || at.getTime() <= Date.now()) throw new Error("The expiry must be in the future.");
  return at.toISOString();
}

async function submitGenerate(event) {
  event.preventDefault();
  const body = {
    description: $("generate-description").value.trim(),
    mode: $("generate-mode").value,
  };
  const project = $("generate-project").value;
  if (project) body.default_project_id = project;
  try {
    const expires = expiryFromForm("generate");
    if (expires) body.expires_at = expires;
    if (state.bearer.id !== state.me.bearer_id) body[`${state.bearer.type}_id`] = state.bearer.id;
    if (isManager()) {
      const limits = parseRateLimits($("generate-rate-limits").value);
      if (limits.length) body.rate_limits = limits;
      const networks = splitList($("generate-allowed-ips").value);
      if (networks.length) body.allowed_ips = networks;
      if ($("generate-restricted").checked) body.permissions = splitList($("generate-permissions").value);
    }
    const answer = await api("POST", "/v1/api-keys", body);
    $("generate-dialog").close();
    showSecret("Your new API key", answer);
    await loadKeys();
  } catch (error) {
    showError("generate-error", error);
  }
}

function openEdit(key) {
  current = key;
  $("edit-key").textContent = key.access_key;
  $("edit-description").value = key.description;
  fillProjects($("edit-project"), key.default_project_id);
  $("edit-policies").hidden = !isManager();
  $("edit-rate-limits").value = showRateLimits(key.rate_limits);
  $("edit-allowed-ips").value = key.allowed_ips.join(", ");
  $("edit-permissions-row").hidden = key.permissions === null;
  $("edit-permissions").value = (key.permissions || []).join(", ");
  $("edit-expiry").value = "";
  $("edit-custom").hidden = true;
  $("edit-custom-at").value = "";
  const expired = key.expires_at && Date.parse(key.expires_at) <= Date.now();
  $("edit-expiry-now").textContent = key.expires_at
    ? `${expired ? "Expired" : "Expires"} ${when(key.expires_at)}.`
    : "Never expires now.";
  openDialog("edit-dialog");
  $("edit-description").focus();
}

async function submitEdit(event) {
  event.preventDefault();
  const body = { description: $("edit-description").value.trim() };
  const project = $("edit-project").value;
  if (project) body.default_project_id = project;
  try {
    const expires = expiryFromForm("edit");
    if (expires !== undefined) body.expires_at = expires;
    if (isManager()) {
      // Only what changed, so the audit log names what was edited.
      const limits = parseRateLimits($("edit-rate-limits").value);
      if (!samePolicy(limits, current.rate_limits)) body.rate_limits = limits;
      const networks = splitList($("edit-allowed-ips").value);
      if (!samePolicy(networks, current.allowed_ips)) body.allowed_ips = networks;
      if (current.permissions !== null) {
        const held = splitList($("edit-permissions").value);
        if (!samePolicy(held, current.permissions)) body.permissions = held;
      }
    }
    await api("PATCH", `/v1/api-keys/${encodeURIComponent(current.access_key)}`, body);
    $("edit-dialog").close();
    await loadKeys();
  } catch (error) {
    showError("edit-error", error);
  }
}

// -- usage ----------------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const KINDS = [["allowed", "allowed"], ["denied", "denied"], ["rate_limited", "rate limited"]];

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function totals(buckets) {
  const sum = { allowed: 0, denied: 0, rate_limited: 0 };
  for (const b of buckets) for (const [kind] of KINDS) sum[kind] += b[kind];
  return KINDS.map(([kind, label]) => `${sum[kind]} ${label}`).join(", ");
}

// Stacked bars drawn in the page (no chart library, nothing from a CDN): one group per bucket,
// its title saying the numbers, for a screen reader and on hover.
function usageChart(buckets, label, name) {
  const width = 720, height = 170, left = 36, bottom = 20, top = 8;
  const most = Math.max(1, ...buckets.map((b) => b.allowed + b.denied + b.rate_limited));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  const step = (width - left) / buckets.length;
  const scale = (height - bottom - top) / most;
  chart.append(svg("text", { x: 2, y: top + 10, class: "axis" }, String(most)));
  chart.append(svg("text", { x: 2, y: height - bottom, class: "axis" }, "0"));
  buckets.forEach((bucket, index) => {
    const group = svg("g", { class: "bucket", "data-start": bucket.start });
    group.append(svg("title", {}, `${name(bucket.start)}: ${totals([bucket])}`));
    let y = height - bottom;
    for (const [kind] of KINDS) {
      const h = bucket[kind] * scale;
      if (h <= 0) continue;
      y -= h;
      group.append(svg("rect", {
        class: `bar-${kind}`, x: left + index * step + 1, y, width: Math.max(1, step - 2), height: h,
      }));
    }
    chart.append(group);
  });
  const first = buckets[0], last = buckets[buckets.length - 1];
  chart.append(svg("text", { x: left, y: height - 4, class: "axis" }, name(first.start)));
  chart.append(svg("text", { x: width - 4, y: height - 4, class: "axis", "text-anchor": "end" }, name(last.start)));
  return chart;
}

async function openUsage(key) {
  $("usage-key").textContent = key.access_key;
  for (const id of ["usage-hourly", "usage-daily"]) $(id).replaceChildren();
  for (const id of ["usage-hourly-total", "usage-daily-total"]) $(id).textContent = "";
  openDialog("usage-dialog");
  let found;
  try {
    found = await api("GET", `/v1/api-keys/${encodeURIComponent(key.access_key)}/usage`);
  } catch (error) {
    showError("usage-error", error);
    return;
  }
  const hour = (start) => start.slice(11, 16) + " UTC";
  const day = (start) => start.slice(0, 10);
  $("usage-hourly").append(usageChart(found.hourly, "Requests per hour, last 24 hours", hour));
  $("usage-daily").append(usageChart(found.daily, "Requests per day, last 30 days", day));
  $("usage-hourly-total").textContent = `Last 24 hours: ${totals(found.hourly)}.`;
  $("usage-daily-total").textContent = `Last 30 days: ${totals(found.daily)}.`;
}

function openRoll(key) {
  current = key;
  $("roll-key").textContent = key.access_key;
  openDialog("roll-dialog");
  $("roll-grace").focus();
}

async function submitRoll(event) {
  event.preventDefault();
  const body = { expire_current_in_seconds: Number($("roll-grace").value) };
  try {
    const answer = await api("POST", `/v1/api-keys/${encodeURIComponent(current.access_key)}/roll`, body);
    $("roll-dialog").close();
    showSecret("Your rolled API key", answer);
    await loadKeys();
  } catch (error) {
    showError("roll-error", error);
  }
}

function openDelete(key) {
  current = key;
  $("delete-key").textContent = key.access_key;
  $("delete-confirm").value = "";
  $("delete-submit").disabled = true;
  openDialog("delete-dialog");
  $("delete-confirm").focus();
}

async function submitDelete(event) {
  event.preventDefault();
  if ($("delete-confirm").value !== "DELETE") return;
  try {
    await api("DELETE", `/v1/api-keys/${encodeURIComponent(current.access_key)}`);
    $("delete-dialog").close();
    await loadKeys();
  } catch (error) {
    showError("delete-error", error);
  }
}

async function copyField(id) {
  const input = $(id);
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch (_) {
    document.execCommand("copy"); // clipboard API refused (permissions): the old way
  }
  $("secret-copied").textContent = id === "secret-secret-key" ? "Secret key copied." : "Access key copied.";
}

// -- wiring -------------------------------------------------------------------------------------

function wire() {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const secret = $("secret").value.trim();
    if (!secret) {
      $("sign-in-error").textContent = "Paste a secret key to sign in.";
      return;
    }
    $("sign-in-error").textContent = "";
    try {
      await signIn(secret);
      $("secret").value = "";
    } catch (error) {
      $("sign-in-error").textContent =
        error.status === 401 ? "This secret key is not valid (unknown, revoked or expired)." : error.message;
    }
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  for (const button of document.querySelectorAll("#nav button")) {
    button.addEventListener("click", () => {
      if (button.dataset.view === "credentials") {
        state.bearer = { type: state.me.bearer_type, id: state.me.bearer_id, label: null };
      }
      showView(button.dataset.view);
    });
  }
  $("generate").addEventListener("click", openGenerate);
  $("generate-expiry").addEventListener("change", () => {
    $("generate-custom").hidden = $("generate-expiry").value !== "custom";
  });
  $("generate-form").addEventListener("submit", submitGenerate);
  // The Edit dialog offers the Generate dialog's expiries (after Unchanged and Never).
  for (const option of $("generate-expiry").options) {
    if (option.value) $("edit-expiry").append(option.cloneNode(true));
  }
  $("edit-expiry").addEventListener("change", () => {
    $("edit-custom").hidden = $("edit-expiry").value !== "custom";
  });
  $("project-create").addEventListener("click", () => openProject(null));
  $("project-form").addEventListener("submit", submitProject);
  $("project-delete-form").addEventListener("submit", submitProjectDelete);
  $("generate-restricted").addEventListener("change", () => {
    $("generate-permissions-row").hidden = !$("generate-restricted").checked;
  });
  $("edit-form").addEventListener("submit", submitEdit);
  $("roll-form").addEventListener("submit", submitRoll);
  $("delete-form").addEventListener("submit", submitDelete);
  $("delete-confirm").addEventListener("input", () => {
    $("delete-submit").disabled = $("delete-confirm").value !== "DELETE";
  });
  $("audit-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit();
  });
  for (const button of document.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", () => copyField(button.dataset.copy));
  }
  // The one-time secret leaves the page when its dialog closes (Escape included).
  $("secret-dialog").addEventListener("close", () => {
    $("secret-secret-key").value = "";
    $("secret-access-key").value = "";
    $("generate").focus();
  });
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".menu-wrap")) closeMenus();
  });
  window.addEventListener("resize", closeMenus);
  document.addEventListener("scroll", closeMenus, true);
}

async function start() {
  wire();
  const saved = sessionStorage.getItem(STORAGE_KEY);
  if (!saved) {
    signOut("");
    return;
  }
  try {
    await signIn(saved);
  } catch (error) {
    signOut(error.message);
  }
}

start();

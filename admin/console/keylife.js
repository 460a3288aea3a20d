// The console's "Key life" view (managers): keys reported leaked and where, the organization's
// lifetime policy and the keys that break it, webhooks and their delivery log. Built on the
// helpers of console.js (api, el, when, showError, state), under the same rules: everything from
// the API reaches the page as text, and a webhook's secret is shown once, then dropped.
"use strict";

const EVENT_TYPES = [
  "key.created", "key.updated", "key.rolled", "key.revoked",
  "key.expiring", "key.leaked", "key.rate_limited",
];

async function loadKeyLife() {
  showError("keylife-error", null);
  $("webhook-secret").textContent = "";
  try {
    await Promise.all([loadLeaks(), loadPolicy(), loadWebhooks()]);
  } catch (error) {
    showError("keylife-error", error);
  }
}

async function loadLeaks() {
  const answer = await api("GET", "/v1/leaks");
  const rows = answer.leaks.map((leak) =>
    el(
      "tr",
      { "data-access-key": leak.access_key },
      el("td", { class: "mono" }, leak.access_key, " ", el("span", { class: "badge leaked", text: "leaked" })),
      el("td", {}, when(leak.reported_at, "—")),
      el("td", {}, leak.reporter),
      el("td", { class: "mono" }, leak.url || leak.source || "—"),
    ),
  );
  $("leaks-table").tBodies[0].replaceChildren(...rows);
  $("leaks-empty").hidden = rows.length > 0;
}

async function loadPolicy() {
  const org = state.me.organization_id;
  const policy = await api("GET", `/v1/organizations/${org}/policy`);
  const form = $("policy-form");
  for (const name of ["max_key_lifetime_days", "disable_unused_after_days"]) {
    form.elements[name].value = policy[name] === null ? "" : String(policy[name]);
  }
  const answer = await api("GET", `/v1/organizations/${org}/policy/violations`);
  const rows = answer.violations.map((v) =>
    el("tr", {}, el("td", { class: "mono" }, v.access_key), el("td", {}, v.reason), el("td", {}, v.detail)),
  );
  $("violations-table").tBodies[0].replaceChildren(...rows);
  $("violations-empty").hidden = rows.length > 0;
}

async function savePolicy(event) {
  event.preventDefault();
  showError("keylife-error", null);
  const form = $("policy-form");
  const body = {};
  for (const name of ["max_key_lifetime_days", "disable_unused_after_days"]) {
    const value = form.elements[name].value.trim();
    body[name] = value === "" ? null : Number(value);
  }
  try {
    await api("PATCH", `/v1/organizations/${state.me.organization_id}/policy`, body);
    $("policy-saved").textContent = "Policy saved.";
    await loadPolicy();
  } catch (error) {
    showError("keylife-error", error);
  }
}

async function loadWebhooks() {
  const answer = await api("GET", "/v1/webhooks");
  const rows = answer.webhooks.map((hook) =>
    el(
      "tr",
      { "data-webhook": hook.id },
      el("td", { class: "mono" }, hook.url),
      el("td", {}, hook.events.join(", ")),
      el("td", {}, when(hook.created_at, "—")),
      el(
        "td",
        { class: "row-actions" },
        el("button", { type: "button", text: "Deliveries", onclick: () => loadDeliveries(hook) }),
        el("button", { type: "button", text: "Send test", onclick: () => sendTest(hook) }),
        el("button", { type: "button", text: "Delete", onclick: () => deleteWebhook(hook) }),
      ),
    ),
  );
  $("webhooks-table").tBodies[0].replaceChildren(...rows);
}

async function loadDeliveries(hook) {
  showError("keylife-error", null);
  let answer;
  try {
    answer = await api("GET", `/v1/webhooks/${hook.id}/deliveries`);
  } catch (error) {
    showError("keylife-error", error);
    return;
  }
  $("deliveries-title").textContent = `Deliveries to ${hook.url}, newest first`;
  $("deliveries-title").hidden = false;
  $("deliveries-table").hidden = false;
  const rows = answer.deliveries.map((d) =>
    el(
      "tr",
      { class: d.status === "failed" ? "is-denied" : "" },
      el("td", { class: "mono" }, d.event_type),
      el("td", { class: "mono" }, d.access_key || "—"),
      el("td", {}, el("span", { class: `badge delivery-${d.status}`, text: d.status })),
      el("td", {}, String(d.attempts)),
      el("td", {}, d.last_status_code === null ? (d.last_error || "—") : String(d.last_status_code)),
      el("td", {}, when(d.created_at, "—")),
    ),
  );
  $("deliveries-table").tBodies[0].replaceChildren(...rows);
}

async function sendTest(hook) {
  try {
    await api("POST", `/v1/webhooks/${hook.id}/test`);
    await loadDeliveries(hook);
  } catch (error) {
    showError("keylife-error", error);
  }
}

async function deleteWebhook(hook) {
  try {
    await api("DELETE", `/v1/webhooks/${hook.id}`);
    $("deliveries-table").hidden = true;
    $("deliveries-title").hidden = true;
    await loadWebhooks();
  } catch (error) {
    showError("keylife-error", error);
  }
}

async function addWebhook(event) {
  event.preventDefault();
  showError("keylife-error", null);
  const form = $("webhook-form");
  const events = EVENT_TYPES.filter((type) => form.elements[`event-${type}`].checked);
  try {
    const made = await api("POST", "/v1/webhooks", { url: form.elements.url.value.trim(), events });
    // Shown once: the receiver checks signatures with it; the API never shows it again.
    $("webhook-secret").textContent = `Signing secret (shown once, copy it now): ${made.secret}`;
    form.reset();
    await loadWebhooks();
  } catch (error) {
    showError("keylife-error", error);
  }
}

function wireKeyLife() {
  const events = $("webhook-events");
  for (const type of EVENT_TYPES) {
    events.append(
      el("label", { class: "check" }, el("input", { type: "checkbox", name: `event-${type}` }), ` ${type}`),
    );
  }
  $("webhook-form").addEventListener("submit", addWebhook);
  $("policy-form").addEventListener("submit", savePolicy);
  document.querySelector('#nav button[data-view="keylife"]').addEventListener("click", loadKeyLife);
}

wireKeyLife();

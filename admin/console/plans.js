// Plans, and switching a key off and on: the console's parts for teams that sell an API.
// Loaded before console.js, whose helpers ($, el, api, showError, loadKeys) it calls once the
// page runs; it registers its view in window.consoleViews.

"use strict";

function planLimits(plan) {
  return plan.rate_limits.map((r) => `${r.limit}/${r.window_seconds}s`).join(", ") || "—";
}

function planCredits(plan) {
  if (!plan.credits) return "Unlimited";
  const refill = plan.credits.refill ? `, refilled ${plan.credits.refill}` : "";
  return `${plan.credits.amount.toLocaleString()}${refill}`;
}

async function loadPlans() {
  showError("plans-error", null);
  let plans;
  try {
    plans = (await api("GET", "/v1/plans")).plans;
  } catch (error) {
    showError("plans-error", error);
    return;
  }
  const rows = plans.map((plan) =>
    el(
      "tr",
      { "data-plan": plan.name },
      el("td", {}, plan.name),
      el("td", {}, planLimits(plan)),
      el("td", {}, planCredits(plan)),
      el("td", { class: "mono" }, JSON.stringify(plan.metadata)),
      el(
        "td",
        {},
        el("button", {
          type: "button",
          text: "Delete",
          "aria-label": `Delete plan ${plan.name}`,
          onclick: async () => {
            try {
              await api("DELETE", `/v1/plans/${encodeURIComponent(plan.id)}`);
              await loadPlans();
            } catch (error) {
              showError("plans-error", error);
            }
          },
        }),
      ),
    ),
  );
  $("plans-table").tBodies[0].replaceChildren(...rows);
  $("plans-empty").hidden = rows.length > 0;
}

async function submitPlan(event) {
  event.preventDefault();
  const form = $("plan-form");
  const body = { name: form.elements.name.value.trim() };
  try {
    const limits = form.elements.rate_limits.value.trim();
    if (limits) body.rate_limits = parseRateLimits(limits);
    const credits = form.elements.credits.value.trim();
    if (credits) {
      if (!/^\d+$/.test(credits)) throw new Error("Credits must be a whole number.");
      body.credits = { amount: Number(credits), refill: form.elements.refill.value || null };
    }
    await api("POST", "/v1/plans", body);
  } catch (error) {
    showError("plans-error", error);
    return;
  }
  form.reset();
  await loadPlans();
}

window.toggleDisabled = async (key) => {
  showError("credentials-error", null);
  try {
    await api("PATCH", `/v1/api-keys/${encodeURIComponent(key.access_key)}`, { disabled: !key.disabled });
  } catch (error) {
    showError("credentials-error", error);
    return;
  }
  await loadKeys();
};

window.consoleViews = { plans: loadPlans };
document.addEventListener("DOMContentLoaded", () => $("plan-form").addEventListener("submit", submitPlan));

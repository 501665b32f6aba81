// The billing settings page's script (sim/billing/page.py): views, the user's data, and the
// forms, all through the JSON API with the user's bearer token. No framework, no build step.
"use strict";

const TOKEN_KEY = "topup-billing-token";
const VIEWS = ["overview", "buy", "subscription", "auto-topup", "card"];
const POLL_MS = 3000;
const CODE = /^[0-9]{6}$/;
const STATE_TEXT = {
  active: "on",
  paused: "paused: the bank asked you to authenticate, or no card is saved. Save a card to resume",
  suspended: "suspended after repeated declines. Save a working card to resume",
};

let overview = null; // the last GET /v1/settings/billing
let pending = { buy: null, card: null }; // an intent waiting for 3-D Secure

// ---------------------------------------------------------------------------------- helpers

const $ = (selector, root = document) => root.querySelector(selector);
const credits = (n) => Number(n).toLocaleString("en-US");
const token = () => sessionStorage.getItem(TOKEN_KEY);

function authHeaders() {
  return { Authorization: `Bearer ${token()}` };
}

// One API call: {ok, status, data}. A network failure is an answer too, never an exception.
async function api(method, path, body) {
  const headers = authHeaders();
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    const answer = await fetch(path, init);
    const data = await answer.json().catch(() => ({}));
    return { ok: answer.ok, status: answer.status, data };
  } catch (error) {
    const data = { error: { code: "network", message: String(error) } };
    return { ok: false, status: 0, data };
  }
}

// What a refusal means to the person who met it, and what to do next.
function explain(answer) {
  const error = (answer.data && answer.data.error) || {};
  switch (error.code) {
    case "invalid_code":
      return "That code is not right. Check your authenticator app and try again. Nothing was changed.";
    case "code_replayed":
      return "That code was already used. Wait for the next one (at most 30 seconds). Nothing was changed.";
    case "too_many_attempts":
      return `Too many wrong codes. Try again in ${error.retry_after} seconds. Nothing was changed.`;
    case "two_factor_required":
      return "Turn on two-factor authentication first: every change here needs its code.";
    case "card_declined":
      return `The card was declined (${(error.decline_code || "declined").replaceAll("_", " ")}). Nothing was charged.`;
    case "payment_method_required":
      return "Save a card first: auto top-up and subscriptions charge the saved card.";
    case "unauthenticated":
      return "Your session has ended. Sign in again.";
    case "unavailable":
      return "The service is busy and nothing was changed. Try again in a moment with a new code.";
    case "network":
      return "The server could not be reached. Nothing was changed; check your connection.";
    default:
      return error.message || `The request failed (HTTP ${answer.status}).`;
  }
}

function say(view, text, kind = "ok") {
  const box = $(`[data-view="${view}"] [data-message]`);
  box.textContent = text;
  box.className = `message ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.hidden = !text;
}

// The form's six-digit code, or null after saying what is wrong (nothing is sent then).
function codeOf(form, view) {
  const field = $('input[name="totp_code"]', form);
  const code = field.value.trim();
  if (CODE.test(code)) {
    field.removeAttribute("aria-invalid");
    return code;
  }
  field.setAttribute("aria-invalid", "true");
  field.focus();
  say(view, "Enter the 6-digit code from your authenticator app (digits only).", "error");
  return null;
}

function clearCode(form) {
  const field = $('input[name="totp_code"]', form);
  if (field) field.value = "";
}

function busy(form, on) {
  for (const button of form.querySelectorAll("button")) button.disabled = on;
}

// ---------------------------------------------------------------------------------- views

function show(view) {
  const name = token() ? (VIEWS.includes(view) ? view : "overview") : "signin";
  for (const section of document.querySelectorAll("[data-view]")) {
    section.hidden = section.dataset.view !== name;
  }
  $("#sign-out").hidden = !token();
  document.title = name === "overview" ? "Billing" : `Billing: ${$(`[data-view="${name}"] h2`).textContent}`;
}

function route() {
  if (takeTokenFromAddress()) forget(); // another user: their own settings fill the forms
  show(location.hash.slice(1));
  if (token()) refresh();
}

// A token in the address's fragment (#token=...) signs in and leaves the address bar.
function takeTokenFromAddress() {
  const match = location.hash.match(/^#token=([^&]+)/);
  if (!match) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", `${location.pathname}#overview`);
  return true;
}

// ---------------------------------------------------------------------------------- the user's data

async function refresh() {
  const [billing, card] = await Promise.all([
    api("GET", "/v1/settings/billing"),
    api("GET", "/v1/payment-method"),
  ]);
  if (billing.status === 401) return signOut("Your session has ended. Sign in again.");
  if (!billing.ok) return say("overview", explain(billing), "error");
  const first = overview === null;
  overview = billing.data;
  renderOverview(overview, card.ok ? card.data : null);
  renderSubscription(overview.subscription);
  if (first) fillTopupForm(overview.auto_topup);
}

function cardText(card) {
  if (!card || !card.saved) return "No card saved.";
  const name = card.brand ? `${card.brand[0].toUpperCase()}${card.brand.slice(1)}` : "Card";
  const expiry = card.exp_month ? `, expires ${String(card.exp_month).padStart(2, "0")}/${card.exp_year}` : "";
  const usable = card.usable ? "auto top-up can use it" : "auto top-up cannot use it: save another card";
  return `${name} ending in ${card.last4 || "????"}${expiry}; ${usable}.`;
}

function topupText(settings) {
  if (!settings.enabled) return "Off.";
  const limit = settings.monthly_limit === null ? "no monthly limit"
    : `at most ${credits(settings.monthly_limit)} credits a month`;
  const state = STATE_TEXT[settings.state] || settings.state;
  return `Buys ${credits(settings.amount)} credits (${settings.currency.toUpperCase()}) when the`
    + ` balance falls to ${credits(settings.threshold)}; ${limit}. Status: ${state}.${monthText(settings)}`;
}

// The month as the limit counts it, said only when there is a limit.
function monthText(settings) {
  if (settings.monthly_limit === null) return "";
  const month = settings.month;
  const used = ` This month: ${credits(month.credits)} of ${credits(settings.monthly_limit)} credits.`;
  return month.limit_reached
    ? `${used} The limit is reached: auto top-up waits until ${dateOf(month.resets_at)}.` : used;
}

function renderOverview(data, card) {
  $("#balance").textContent = credits(data.balance);
  $("#topup-summary").textContent = topupText(data.auto_topup);
  $("#card-summary").textContent = cardText(card);
  $("#go-card").textContent = card && card.saved ? "Replace the card" : "Save a card";
  $("#card-status").textContent = cardText(card);
  $("#topup-card-status").textContent = `Card: ${cardText(card)}`;
  const sub = data.subscription;
  $("#subscription-summary").textContent = sub ? subscriptionText(sub) : "No subscription.";
}

function priceOf(creditsWanted, currency) {
  const tier = $(`#buy-form input[name="credits"][value="${creditsWanted}"]`);
  const price = tier && $(`.price[data-currency="${currency}"]`, tier.closest("label"));
  return price ? price.textContent : "";
}

function dateOf(epochSeconds) {
  return new Date(epochSeconds * 1000).toISOString().slice(0, 10);
}

function subscriptionText(sub) {
  const ends = sub.cancel_at_period_end ? `ends ${dateOf(sub.current_period_end)}`
    : `renews ${dateOf(sub.current_period_end)}`;
  return `${credits(sub.credits)} credits a month, ${sub.status}; ${ends}.`;
}

function renderSubscription(sub) {
  const live = sub !== null;
  $("#subscription-status").textContent = !live ? "No subscription"
    : sub.cancel_at_period_end ? `${sub.status}, cancelled: ends at the end of the period` : sub.status;
  $("#subscription-credits").textContent = live ? credits(sub.credits) : "–";
  $("#subscription-price").textContent = live ? `${priceOf(sub.credits, sub.currency)} a month` : "–";
  $("#subscription-next").textContent = !live ? "–"
    : sub.cancel_at_period_end ? "none (cancelled)" : dateOf(sub.current_period_end);
  $("#subscribe-form").hidden = live;
  $("#cancel-form").hidden = !live || sub.cancel_at_period_end;
}

function fillTopupForm(settings) {
  const form = $("#topup-form");
  form.enabled.checked = settings.enabled;
  form.threshold.value = String(settings.threshold);
  form.amount.value = String(settings.amount);
  form.currency.value = settings.currency;
  form.monthly_limit.value = settings.monthly_limit === null ? "" : String(settings.monthly_limit);
}

// ---------------------------------------------------------------------------------- forms

function showPrices() {
  const currency = $("#buy-currency").value;
  for (const price of document.querySelectorAll("#buy-form .price")) {
    price.hidden = price.dataset.currency !== currency;
  }
}

async function afterPayment(view, answer, what) {
  const box = $(`#${view}-confirm`);
  if (!answer.ok) {
    box.hidden = true;
    pending[view] = null;
    say(view, explain(answer), "error");
    return;
  }
  const intent = what === "buy" ? answer.data.purchase : answer.data.setup;
  if (intent.status === "requires_action") {
    pending[view] = intent.id;
    box.hidden = false;
    say(view, "Waiting for your bank: confirm to finish.", "ok");
    return;
  }
  box.hidden = true;
  pending[view] = null;
  if (what === "buy") {
    const saved = answer.data.card_saved ? " The card is saved for auto top-up." : "";
    const bought = credits(intent.credits);
    const text = intent.status === "succeeded"
      ? `Paid: ${bought} credits added. Balance: ${credits(answer.data.balance)} credits.${saved}`
      : `Payment ${intent.status.replaceAll("_", " ")}: the credits are added once it is paid.`;
    say(view, text, "ok");
  } else {
    say(view, intent.status === "succeeded" ? `Card saved. ${cardText(answer.data.card)}`
      : `Card setup ${intent.status.replaceAll("_", " ")}.`, "ok");
  }
  await refresh();
}

async function submit(form, view, send) {
  const code = codeOf(form, view);
  if (code === null) return;
  busy(form, true);
  say(view, "Working…", "ok");
  try {
    await send(code);
  } finally {
    clearCode(form);
    busy(form, false);
  }
}

function limitOf(form, view) {
  const text = form.monthly_limit.value.replaceAll(",", "").trim();
  if (text === "") return { ok: true, value: null };
  if (!/^[0-9]{1,9}$/.test(text)) {
    form.monthly_limit.setAttribute("aria-invalid", "true");
    say(view, "The monthly limit is a whole number of credits, or empty for no limit.", "error");
    return { ok: false };
  }
  form.monthly_limit.removeAttribute("aria-invalid");
  return { ok: true, value: Number(text) };
}

function wireForms() {
  $("#signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#signin-token").value.trim();
    if (!value) return say("signin", "Paste the access token you were given.", "error");
    sessionStorage.setItem(TOKEN_KEY, value);
    location.hash = "#overview";
    route();
  });
  $("#sign-out").addEventListener("click", () => signOut("Signed out."));
  $("#buy-currency").addEventListener("change", showPrices);

  const buy = $("#buy-form");
  buy.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!buy.payment_method) return;
    submit(buy, "buy", async (code) => {
      const body = {
        credits: Number(buy.querySelector('input[name="credits"]:checked').value),
        currency: buy.currency.value,
        payment_method: buy.querySelector('input[name="payment_method"]:checked').value,
        save_card: buy.save_card.checked,
        totp_code: code,
      };
      await afterPayment("buy", await api("POST", "/v1/purchases", body), "buy");
    });
  });
  $("#buy-confirm-button").addEventListener("click", async () => {
    const answer = await api("POST", `/v1/purchases/${pending.buy}/confirm`);
    await afterPayment("buy", answer, "buy");
  });

  const subscribe = $("#subscribe-form");
  subscribe.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(subscribe, "subscription", async (code) => {
      const body = { credits: Number(subscribe.credits.value), currency: subscribe.currency.value, totp_code: code };
      const answer = await api("POST", "/v1/subscriptions", body);
      if (!answer.ok) return say("subscription", explain(answer), "error");
      say("subscription", "Subscribed. The first month is charged to your saved card.", "ok");
      await refresh();
    });
  });
  const cancel = $("#cancel-form");
  cancel.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(cancel, "subscription", async (code) => {
      const answer = await api("POST", "/v1/subscriptions/cancel", { totp_code: code });
      if (!answer.ok) return say("subscription", explain(answer), "error");
      say("subscription", "Cancelled. It ends at the end of the period already paid.", "ok");
      await refresh();
    });
  });

  const topup = $("#topup-form");
  topup.addEventListener("submit", (event) => {
    event.preventDefault();
    const limit = limitOf(topup, "auto-topup");
    if (!limit.ok) return;
    submit(topup, "auto-topup", async (code) => {
      const body = {
        enabled: topup.enabled.checked,
        threshold: Number(topup.threshold.value),
        amount: Number(topup.amount.value),
        currency: topup.currency.value,
        monthly_limit: limit.value,
        totp_code: code,
      };
      const answer = await api("POST", "/v1/settings/auto-topup/low-balance", body);
      if (!answer.ok) return say("auto-topup", explain(answer), "error");
      say("auto-topup", `Saved. ${topupText(answer.data.auto_topup)}`, "ok");
      fillTopupForm(answer.data.auto_topup);
      await refresh();
    });
  });

  const card = $("#card-form");
  if (card) {
    card.addEventListener("submit", (event) => {
      event.preventDefault();
      submit(card, "card", async (code) => {
        const chosen = card.querySelector('input[name="card_payment_method"]:checked').value;
        const answer = await api("POST", "/v1/payment-method", { payment_method: chosen, totp_code: code });
        await afterPayment("card", answer, "card");
      });
    });
    $("#card-confirm-button").addEventListener("click", async () => {
      const answer = await api("POST", `/v1/payment-method/setups/${pending.card}/confirm`);
      await afterPayment("card", answer, "card");
    });
  }
}

// Drop what the page knew of the last user: their settings, messages and pending payments.
function forget() {
  overview = null;
  pending = { buy: null, card: null };
  for (const box of document.querySelectorAll("[data-message], .confirm")) box.hidden = true;
}

function signOut(text) {
  sessionStorage.removeItem(TOKEN_KEY);
  forget();
  location.hash = "";
  show("signin");
  say("signin", text, "ok");
}

document.addEventListener("DOMContentLoaded", () => {
  wireForms();
  showPrices();
  window.addEventListener("hashchange", route);
  route();
  // The balance changes without the user (spending, auto top-up, a subscription's invoice).
  setInterval(() => {
    if (token() && !document.hidden) refresh();
  }, POLL_MS);
});

// The web console's script: sends the pages' forms to the JSON API with the session's CSRF
// token, shows each refusal beside its field, and keeps the live parts (usage bar, connection
// state, waiting messages) fresh. Served from this console only: no CDN, no inline script.
"use strict";

const POLL_MS = 2000;

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function api(method, path, body) {
  const headers = {"Accept": "application/json", "X-CSRF-Token": csrfToken()};
  const init = {method, headers, credentials: "same-origin"};
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let answer;
  try {
    answer = await fetch(path, init);
  } catch (error) {
    return {ok: false, status: 0, body: {error: "the console is not reachable: " + error}};
  }
  if (answer.status === 401 && document.body.dataset.page !== "login") {
    location.assign("/login?next=" + encodeURIComponent(location.pathname));
  }
  let document_ = {};
  const text = await answer.text();
  if (text) {
    try { document_ = JSON.parse(text); } catch (error) { document_ = {error: text}; }
  }
  return {ok: answer.ok, status: answer.status, body: document_};
}

function show(element, text) {
  if (!element) return;
  element.textContent = text;
  element.hidden = !text;
}

function flashNext(text) { sessionStorage.setItem("katagate-flash", text); }

function showFlash() {
  const text = sessionStorage.getItem("katagate-flash");
  sessionStorage.removeItem("katagate-flash");
  show(document.getElementById("flash"), text || "");
}

// Each refusal beside its field (`<prefix>error-<field>`), the rest in `general`.
function showErrors(form, prefix, general, body) {
  form.querySelectorAll(".error").forEach((e) => show(e, ""));
  const problems = body.errors || [body];
  const unplaced = [];
  for (const problem of problems) {
    const place = problem.field && document.getElementById(prefix + "error-" + problem.field);
    if (place) show(place, problem.error); else unplaced.push(problem.error);
  }
  show(general, unplaced.join("\n"));
}

function clearErrors(form) { form.querySelectorAll(".error").forEach((e) => show(e, "")); }

function fieldValue(input) {
  return input.type === "checkbox" ? (input.checked ? "on" : "off") : input.value;
}

function changedFields(form) {
  const changes = {};
  form.querySelectorAll("[data-initial]").forEach((input) => {
    const value = fieldValue(input);
    if (value !== input.dataset.initial) changes[input.name] = value;
  });
  return changes;
}

function switchValue(value) { return value === "on"; }

// -- every page ------------------------------------------------------------------------------

function setUpSignOut() {
  const button = document.getElementById("sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    await api("POST", "/api/logout");
    location.assign("/login");
  });
}

function setUpDialogs() {
  document.querySelectorAll("dialog .close-dialog").forEach((button) => {
    button.addEventListener("click", () => button.closest("dialog").close());
  });
}

function formatBytes(bytes) {
  const mb = bytes / 1048576;
  return (mb >= 10 || Number.isInteger(mb) ? mb.toFixed(0) : mb.toFixed(2)) + " MB";
}

function setMeter(bar, text, used, limit, describe) {
  const share = limit > 0 ? Math.min(100, (100 * used) / limit) : 0;
  bar.querySelector(".fill").style.width = share.toFixed(1) + "%";
  bar.setAttribute("aria-valuenow", share.toFixed(0));
  bar.classList.toggle("high", share >= 80);
  bar.classList.toggle("full", used >= limit);
  text.textContent = describe(used) + " of " + describe(limit) + " (" + share.toFixed(0) + "%)";
}

async function refreshUsage() {
  const answer = await api("GET", "/api/quarantine/usage");
  const error = document.getElementById("usage-error");
  if (!answer.ok) {
    show(error, answer.body.error || "usage unavailable");
    return;
  }
  show(error, "");
  const u = answer.body;
  setMeter(document.getElementById("usage-bytes-bar"), document.getElementById("usage-bytes"),
           u.bytes_in_use, u.limit_bytes, formatBytes);
  setMeter(document.getElementById("usage-messages-bar"),
           document.getElementById("usage-messages"), u.messages_in_use, u.limit_messages,
           (n) => String(n));
}

function setUpUsage() {
  if (!document.getElementById("quarantine-usage")) return;
  refreshUsage();
  setInterval(refreshUsage, POLL_MS);
}

// -- sign in ---------------------------------------------------------------------------------

function setUpLogin() {
  const form = document.getElementById("login-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await api("POST", "/api/login", {
      name: form.elements.name.value, password: form.elements.password.value});
    if (answer.ok) location.assign(form.dataset.next);
    else show(document.getElementById("login-error"), answer.body.error || "sign-in failed");
  });
}

// -- Settings → Protection → KATA Protection -------------------------------------------------

async function refreshConnection() {
  const answer = await api("GET", "/api/kata/connection");
  if (!answer.ok) {
    show(document.getElementById("conn-error"), answer.body.error || "unavailable");
    return;
  }
  show(document.getElementById("conn-error"), "");
  const names = JSON.parse(document.getElementById("connection-state-names").textContent);
  const c = answer.body;
  const address = c.central_node_address
    ? c.central_node_address + ":" + c.central_node_port : "(not set)";
  document.getElementById("conn-address").textContent = address;
  document.getElementById("conn-state").textContent =
    (names[c.connection_state] || c.connection_state) + (c.since ? " since " + c.since : "");
  document.getElementById("conn-gateway-fingerprint").textContent =
    c.ksmg_public_key_fingerprint || "(no key yet)";
  document.getElementById("conn-kata-fingerprint").textContent =
    c.kata_public_key_fingerprint || "(not seen yet)";
  document.getElementById("conn-kata-not-after").textContent =
    c.kata_certificate_not_after || "(not seen yet)";
  // require_manual_pin: nothing is sent until an administrator confirms KATA's key.
  const confirm = c.kata_public_key_confirmation_required;
  show(document.getElementById("conn-confirm"), confirm
    ? "An administrator must compare the KATA public key fingerprint " + confirm +
      " with the one KATA shows, then confirm it: katagate kata pin " + confirm
    : "");
  document.getElementById("conn-detail").textContent = c.detail || "";
}

function setUpKataProtection() {
  const toggle = document.getElementById("kata-protection-switch");
  toggle.addEventListener("change", async () => {
    const answer = await api("POST", toggle.checked ? "/api/kata/enable" : "/api/kata/disable");
    if (answer.ok) {
      flashNext("KATA protection " + (toggle.checked ? "enabled" : "disabled") +
                " (configuration version " + answer.body.version + ")");
      location.reload();
    } else {
      toggle.checked = !toggle.checked;
      show(document.getElementById("flash"), answer.body.error);
    }
  });

  const windowDialog = document.getElementById("kata-window");
  const form = document.getElementById("kata-form");
  document.querySelectorAll(".open-kata-window").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      clearErrors(form);
      windowDialog.showModal();
      const input = document.getElementById("field-" + link.dataset.setting);
      if (input) input.focus();
    });
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = changedFields(form);
    if ("ndr_enabled" in changes) changes.ndr_enabled = switchValue(changes.ndr_enabled);
    if (Object.keys(changes).length === 0) {
      showErrors(form, "", document.getElementById("kata-form-error"),
                 {error: "Nothing to change: the settings are as shown."});
      return;
    }
    const answer = await api("PUT", "/api/settings", changes);
    if (answer.ok) {
      flashNext("KATA Protection settings applied (configuration version " +
                answer.body.version + ")");
      location.reload();
    } else {
      showErrors(form, "", document.getElementById("kata-form-error"), answer.body);
    }
  });
  document.getElementById("set-default-values").addEventListener("click", async (event) => {
    event.preventDefault();
    const answer = await api("POST", "/api/settings/defaults");
    if (answer.ok) {
      flashNext("Default values set (configuration version " + answer.body.version + ")");
      location.reload();
    } else {
      showErrors(form, "", document.getElementById("kata-form-error"), answer.body);
    }
  });

  const connection = document.getElementById("connection-window");
  let timer = null;
  document.getElementById("open-connection-window").addEventListener("click", (event) => {
    event.preventDefault();
    connection.showModal();
    refreshConnection();
    timer = setInterval(refreshConnection, POLL_MS);
  });
  connection.addEventListener("close", () => clearInterval(timer));
}

// -- Rules -----------------------------------------------------------------------------------

function patterns(text) { return text.split(/[\s,]+/).filter((p) => p); }

function setUpRules() {
  const form = document.getElementById("new-rule-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {rule_id: form.elements.rule_id.value,
                  senders: patterns(form.elements.senders.value),
                  recipients: patterns(form.elements.recipients.value)};
    if (form.elements.name.value) body.name = form.elements.name.value;
    const answer = await api("POST", "/api/rules", body);
    if (answer.ok) {
      flashNext("Rule " + body.rule_id + " added (configuration version " +
                answer.body.version + ")");
      location.assign("/rules/" + encodeURIComponent(body.rule_id));
    } else {
      showErrors(form, "new-", document.getElementById("new-rule-error"), answer.body);
    }
  });
}

function setUpRule() {
  const form = document.getElementById("rule-form");
  const ruleId = form.dataset.rule;
  const tagDialog = document.getElementById("tag-window");
  const tagField = document.getElementById("field-kata.tag");
  const tagLink = document.getElementById("open-tag-window");
  const tagInput = document.getElementById("tag-input");
  const tagNone = document.getElementById("tag-none");
  tagLink.addEventListener("click", (event) => {
    event.preventDefault();
    if (!form.querySelector("fieldset").disabled) tagDialog.showModal();
  });
  document.getElementById("tag-form").addEventListener("submit", () => {
    // OK closes the window; the tag is written with the rule's Apply, as in the product.
    tagField.dataset.none = tagNone.checked ? "yes" : "no";
    tagField.value = tagNone.checked ? "" : tagInput.value;
    tagLink.textContent = tagNone.checked ? "(no tag)" : tagInput.value;
  });
  const applyButton = document.getElementById("rule-apply");
  if (!applyButton) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = changedFields(form);
    delete changes["kata.tag"];
    const none = tagField.dataset.none === "yes";
    if (none !== (tagField.dataset.initialNone === "yes") ||
        (!none && tagField.value !== tagField.dataset.initial)) {
      changes["kata.tag"] = none ? null : tagField.value;
    }
    const general = {};
    const kata = {};
    for (const [name, value] of Object.entries(changes)) {
      let typed = value;
      if (["enabled", "kata.enabled", "kata.backup"].includes(name)) typed = switchValue(value);
      if (["senders", "recipients"].includes(name)) typed = patterns(value);
      if (name.startsWith("kata.")) kata[name.slice(5)] = typed; else general[name] = typed;
    }
    const base = "/api/rules/" + encodeURIComponent(ruleId);
    let answer;
    if (Object.keys(general).length === 0 && Object.keys(kata).length === 0) {
      showErrors(form, "", document.getElementById("rule-form-error"),
                 {error: "Nothing to change: the rule is as shown."});
      return;
    } else if (Object.keys(general).length === 0) {
      answer = await api("PUT", base + "/kata", kata);
    } else {
      if (Object.keys(kata).length) general.kata = kata;
      answer = await api("PUT", base, general);
    }
    if (answer.ok) {
      flashNext("Rule " + ruleId + " applied (configuration version " + answer.body.version +
                ")");
      location.reload();
    } else {
      showErrors(form, "", document.getElementById("rule-form-error"), answer.body);
    }
  });
  document.getElementById("rule-delete").addEventListener("click", async () => {
    if (!confirm("Delete rule " + ruleId + "?")) return;
    const answer = await api("DELETE", "/api/rules/" + encodeURIComponent(ruleId));
    if (answer.ok) {
      flashNext("Rule " + ruleId + " deleted");
      location.assign("/rules");
    } else {
      show(document.getElementById("rule-form-error"), answer.body.error);
    }
  });
}

// -- Message queue → KATA Quarantine ---------------------------------------------------------

function shortTime(text) { return text ? text.replace("T", " ").replace(/\.\d+Z$/, "") : ""; }

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function act(messageId, what) {
  const path = "/api/quarantine/messages/" + encodeURIComponent(messageId);
  const answer = what === "send-now"
    ? await api("POST", path + "/send-now", {}) : await api("DELETE", path, {});
  const done = what === "send-now" ? "sent on (Send now)" : "deleted";
  show(document.getElementById("flash"),
       answer.ok ? "Message " + messageId + " " + done : answer.body.error);
  refreshWaiting();
}

let waitingAfter = null;

async function refreshWaiting() {
  const query = "?limit=100" + (waitingAfter ? "&after=" + encodeURIComponent(waitingAfter) : "");
  const answer = await api("GET", "/api/quarantine/messages" + query);
  const error = document.getElementById("waiting-error");
  if (!answer.ok) { show(error, answer.body.error); return; }
  show(error, "");
  const rows = document.getElementById("waiting-rows");
  rows.replaceChildren();
  for (const m of answer.body.messages) {
    const row = document.createElement("tr");
    row.id = "waiting-" + m.message_id;
    row.dataset.messageId = m.message_id;
    cell(row, m.message_id);
    cell(row, String(m.size));
    cell(row, m.rule_id || "default");
    cell(row, shortTime(m.admitted_at));
    cell(row, shortTime(m.deadline_at));
    const actions = cell(row, "");
    for (const [what, label] of [["send-now", "Send now"], ["delete", "Delete"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.className = what;
      button.addEventListener("click", () => act(m.message_id, what));
      actions.appendChild(button);
    }
    rows.appendChild(row);
  }
  document.getElementById("waiting-empty").hidden = answer.body.messages.length > 0;
  const more = document.getElementById("waiting-more");
  more.hidden = !answer.body.next;
  more.onclick = () => { waitingAfter = answer.body.next; refreshWaiting(); };
}

function setUpKataQuarantine() {
  refreshWaiting();
  setInterval(refreshWaiting, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  showFlash();
  setUpSignOut();
  setUpDialogs();
  setUpUsage();
  const pages = {
    "login": setUpLogin,
    "kata-protection": setUpKataProtection,
    "rules": setUpRules,
    "rule": setUpRule,
    "kata-quarantine": setUpKataQuarantine,
  };
  if (pages[page]) pages[page]();
});

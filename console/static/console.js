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
  // The window's lines as the page lists them: the address alone, the port on its own line.
  const shown = {
    central_node_address: c.central_node_address || "(not set)",
    central_node_port: c.central_node_address ? String(c.central_node_port) : "(not set)",
    connection_state: (names[c.connection_state] || c.connection_state) +
      (c.since ? " since " + c.since : ""),
    ksmg_public_key_fingerprint: c.ksmg_public_key_fingerprint || "(no key yet)",
    kata_public_key_fingerprint: c.kata_public_key_fingerprint || "(not seen yet)",
    kata_certificate_not_after: c.kata_certificate_not_after || "(not seen yet)",
  };
  document.querySelectorAll("#connection-rows [data-key]").forEach((element) => {
    element.textContent = shown[element.dataset.key] || "";
  });
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
  const status = document.getElementById("kata-form-status");
  // Cancel (or Esc) discards what was typed or filled in: the window shows the settings in
  // force when it opens again.
  windowDialog.addEventListener("close", () => {
    form.reset();
    clearErrors(form);
    show(status, "");
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = changedFields(form);
    if ("ndr_enabled" in changes) changes.ndr_enabled = switchValue(changes.ndr_enabled);
    if (Object.keys(changes).length === 0) {
      // As the product's Apply: the window closes; there was nothing to save.
      windowDialog.close();
      show(document.getElementById("flash"), "Nothing to change: the settings in force are " +
           "as shown (configuration version " + form.dataset.version + ")");
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
  // "Set default values" only fills the window in; Apply saves, Cancel discards (the
  // documentation's steps 10 and 11). POST /api/settings/defaults stays for scripts.
  document.getElementById("set-default-values").addEventListener("click", (event) => {
    event.preventDefault();
    form.querySelectorAll("[data-default]").forEach((input) => {
      input.value = input.dataset.default;
    });
    show(status, "Default values filled in: Apply saves them, Cancel discards them.");
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
    if (!document.getElementById("kata-fields").disabled) tagDialog.showModal();
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
      if (name === "kata.on_unavailable" && value === "global") typed = null;  // the setting's
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
  const deleteButton = document.getElementById("rule-delete");
  if (!deleteButton) return;  // the built-in default rule cannot be deleted
  deleteButton.addEventListener("click", async () => {
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

// -- the mail lists: Tracking, KATA Quarantine, Backup, Delivery queue ----------------------

function shortTime(text) { return text ? text.replace("T", " ").replace(/\.\d+Z$/, "") : ""; }

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

// The search form as the API's query: the filled fields only; a datetime-local is UTC.
function filterQuery(form) {
  const query = new URLSearchParams();
  for (const input of form.querySelectorAll("input, select")) {
    let value = input.value.trim();
    if (!value) continue;
    if (input.dataset.zone) value += input.dataset.zone;
    query.set(input.name, value);
  }
  return query;
}

const VERDICTS = {pending: "Pending", not_detected: "Not detected", detected: "Detected",
                  timed_out: "Timed out", skipped: "Skipped"};
const ACTIONS = {delivered: "Delivered", tagged: "Delivered, tagged", deleted: "Deleted",
                 rejected: "Rejected"};
const STATUSES = {pending: "Pending", delivered: "Delivered", deferred: "Deferred",
                  bounced: "Bounced", discarded: "Discarded", rejected: "Rejected"};

function verdictText(verdict) {
  if (!verdict) return "";
  const [kind, reason] = verdict.split(":");
  return (VERDICTS[kind] || kind) + (reason ? ": " + reason.replaceAll("_", " ") : "");
}

function sender(row) { return row.envelope_from === "" ? "<>" : (row.envelope_from || ""); }

function recipients(row) { return (row.recipients || []).join(", "); }

function formatSize(bytes) {
  if (bytes === undefined || bytes === null) return "";
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KB";
  return (bytes / 1048576).toFixed(1) + " MB";
}

function timeLeft(deadline) {
  if (!deadline) return "";
  const seconds = Math.round((Date.parse(deadline) - Date.now()) / 1000);
  if (seconds <= 0) return "due now";
  const minutes = Math.floor(seconds / 60);
  return (minutes ? minutes + " min " : "") + (seconds % 60) + " s";
}

// A list filled from `path` with the search form's filters, a page at a time (`next` is the
// cursor of the page after). `render(row, item)` fills one row; `same` rows are kept in place
// (a refresh must not swap the element a user is about to click).
function mailList({path, rows, empty, more, render, refresh, update}) {
  const form = document.getElementById("search-form");
  const error = document.getElementById("search-error");
  let cursor = null;
  let shown = "";
  let asked = 0;
  async function load() {
    const query = filterQuery(form);
    query.set("limit", "100");
    if (cursor) query.set("cursor", cursor);
    const mine = ++asked;
    const answer = await api("GET", path + "?" + query.toString());
    if (mine !== asked) return;  // a later search (or refresh) was asked for: its answer counts
    if (!answer.ok) {
      showErrors(form, "", error, answer.body);
      return;
    }
    clearErrors(form);
    show(error, "");
    const items = answer.body.messages || answer.body.copies || [];
    const key = JSON.stringify(items);
    if (key !== shown) {
      shown = key;
      const body = document.getElementById(rows);
      body.replaceChildren();
      for (const item of items) {
        const row = document.createElement("tr");
        row.dataset.messageId = item.message_id;
        render(row, item);
        body.appendChild(row);
      }
      document.getElementById(empty).hidden = items.length > 0;
      const next = document.getElementById(more);
      next.hidden = !answer.body.next;
      next.onclick = () => { cursor = answer.body.next; load(); };
    }
    if (update) update(items);
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); cursor = null; load(); });
  form.addEventListener("reset", () => { cursor = null; setTimeout(load, 0); });
  load();
  if (refresh) setInterval(load, POLL_MS);
  return load;
}

function setUpTracking() {
  mailList({path: "/api/messages", rows: "results", empty: "results-empty", more: "results-more",
    render(row, m) {
      row.id = "result-" + m.message_id;
      row.className = "clickable";
      cell(row, shortTime(m.received_at));
      cell(row, sender(m));
      cell(row, recipients(m));
      cell(row, m.subject || "");
      cell(row, verdictText(m.verdict));
      cell(row, ACTIONS[m.action] || m.action || "");
      cell(row, STATUSES[m.status] || m.status || "");
      row.addEventListener("click", () => {
        location.assign("/tracking/" + encodeURIComponent(m.message_id));
      });
    }});
}

// -- Message queue → KATA Quarantine ---------------------------------------------------------

function setUpKataQuarantine() {
  const selected = new Set();
  const count = document.getElementById("selection-count");
  const buttons = [document.getElementById("selection-send-now"),
                   document.getElementById("selection-delete")];
  function counted() {
    count.textContent = selected.size + " selected";
    buttons.forEach((b) => { b.disabled = selected.size === 0; });
  }
  const load = mailList({path: "/api/quarantine/messages", rows: "waiting-rows",
    empty: "waiting-empty", more: "waiting-more", refresh: true,
    render(row, m) {
      row.id = "waiting-" + m.message_id;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.className = "select";
      box.setAttribute("aria-label", "Select " + m.message_id);
      box.checked = selected.has(m.message_id);
      box.addEventListener("change", () => {
        if (box.checked) selected.add(m.message_id); else selected.delete(m.message_id);
        counted();
      });
      cell(row, "").appendChild(box);
      cell(row, sender(m)).className = "sender";
      cell(row, recipients(m));
      cell(row, m.subject || "");
      cell(row, formatSize(m.size));
      cell(row, m.rule_id || "default");
      cell(row, shortTime(m.received_at || m.admitted_at));
      const left = cell(row, timeLeft(m.deadline_at));
      left.className = "time-left";
      left.dataset.deadline = m.deadline_at || "";
    },
    update(items) {
      const listed = new Set(items.map((m) => m.message_id));
      for (const id of [...selected]) if (!listed.has(id)) selected.delete(id);
      counted();
      document.querySelectorAll("#waiting-rows .time-left").forEach((td) => {
        td.textContent = timeLeft(td.dataset.deadline);
      });
    }});
  document.getElementById("select-all").addEventListener("change", (event) => {
    document.querySelectorAll("#waiting-rows input.select").forEach((box) => {
      box.checked = event.target.checked;
      if (box.checked) selected.add(box.closest("tr").dataset.messageId);
      else selected.delete(box.closest("tr").dataset.messageId);
    });
    counted();
  });
  for (const [button, action, done] of [[buttons[0], "send-now", "sent on (Send now)"],
                                        [buttons[1], "delete", "deleted"]]) {
    button.addEventListener("click", async () => {
      const ids = [...selected];
      const answer = await api("POST", "/api/quarantine/actions",
                               {action, message_ids: ids});
      show(document.getElementById("flash"), answer.ok
        ? ids.length + (ids.length === 1 ? " message " : " messages ") + done + ": " +
          ids.join(", ")
        : answer.body.error);
      if (answer.ok) selected.clear();
      document.getElementById("select-all").checked = false;
      load();
    });
  }
}

// -- Backup ----------------------------------------------------------------------------------

async function refreshBackupUsage() {
  const answer = await api("GET", "/api/backup/usage");
  const error = document.getElementById("backup-usage-error");
  if (!answer.ok) { show(error, answer.body.error || "usage unavailable"); return; }
  show(error, "");
  const u = answer.body;
  setMeter(document.getElementById("backup-bytes-bar"), document.getElementById("backup-bytes"),
           u.bytes_in_use, u.limit_bytes, formatBytes);
  document.getElementById("backup-copies").textContent =
    u.copies_in_use + (u.copies_in_use === 1 ? " copy" : " copies") + ", each kept " +
    u.max_age_days + " days at most";
}

function setUpBackup() {
  refreshBackupUsage();
  setInterval(refreshBackupUsage, POLL_MS);
  const retention = document.getElementById("retention-form");
  retention.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = changedFields(retention);
    if (Object.keys(changes).length === 0) {
      showErrors(retention, "", document.getElementById("retention-error"),
                 {error: "Nothing to change: the settings are as shown."});
      return;
    }
    const answer = await api("PUT", "/api/settings", changes);
    if (answer.ok) {
      flashNext("Backup retention applied (configuration version " + answer.body.version + ")");
      location.reload();
    } else {
      showErrors(retention, "", document.getElementById("retention-error"), answer.body);
    }
  });
  mailList({path: "/api/backup/copies", rows: "copies", empty: "copies-empty",
    more: "copies-more",
    render(row, c) {
      row.id = "copy-" + c.message_id;
      row.className = "clickable";
      cell(row, shortTime(c.received_at));
      cell(row, sender(c));
      cell(row, recipients(c));
      cell(row, c.subject || "");
      cell(row, (c.detects || []).map((d) => d.name).join(", "));
      cell(row, shortTime(c.expires_at));
      const removed = c.removed || (c.backup && c.backup.state === "removed" ? c.backup : null);
      cell(row, removed ? "Removed (" + (removed.cause || "").replaceAll("_", " ") + ")"
                        : "Held");
      row.addEventListener("click", () => {
        location.assign("/backup/" + encodeURIComponent(c.message_id));
      });
    }});
}

function setUpBackupCopy() {
  const actions = document.getElementById("copy-actions");
  if (!actions) return;  // removed: nothing to act on
  const id = actions.dataset.messageId;
  const path = "/api/backup/copies/" + encodeURIComponent(id);
  const form = document.getElementById("resend-form");
  const general = document.getElementById("resend-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const given = document.getElementById("resend-given").checked;
    const body = {comment: document.getElementById("resend-comment").value,
                  to: given ? patterns(document.getElementById("resend-addresses").value)
                            : null};
    const answer = await api("POST", path + "/resend", body);
    if (answer.ok) {
      const to = answer.body.events[0].recipients.join(", ");
      flashNext("Copy " + id + " resent to " + to + " (the outcome shows under Resent)");
      location.reload();
    } else {
      showErrors(form, "resend-", general, answer.body);
    }
  });
  document.getElementById("copy-delete").addEventListener("click", async () => {
    if (!confirm("Delete the Backup copy of " + id + "? It cannot be read again.")) return;
    const answer = await api("DELETE", path, {comment: document.getElementById(
      "resend-comment").value});
    if (answer.ok) {
      flashNext("Copy " + id + " deleted from the Backup");
      location.assign("/backup");
    } else {
      show(general, answer.body.error);
    }
  });
}

// -- Message queue → Delivery queue ----------------------------------------------------------

function setUpDeliveryQueue() {
  const load = mailList({path: "/api/queue/messages", rows: "queue-rows", empty: "queue-empty",
    more: "queue-more", refresh: true,
    render(row, m) {
      row.id = "queued-" + m.message_id;
      cell(row, shortTime(m.received_at));
      cell(row, sender(m));
      cell(row, recipients(m));
      cell(row, m.subject || "");
      cell(row, String(m.attempts || ""));
      cell(row, m.last_reply || "");
      cell(row, shortTime(m.next_attempt_at));
      const actions = cell(row, "");
      for (const [what, label, method, suffix] of [
        ["retry", "Retry", "POST", "/retry"], ["bounce", "Return to sender", "POST", "/bounce"],
        ["delete", "Delete", "DELETE", ""]]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.className = what + (what === "retry" ? "" : " danger");
        button.addEventListener("click", async () => {
          const answer = await api(method, "/api/queue/messages/" +
                                   encodeURIComponent(m.message_id) + suffix, {});
          show(document.getElementById("flash"), answer.ok
            ? label + ": asked for " + m.message_id : answer.body.error);
          load();
        });
        actions.appendChild(button);
      }
    }});
}

function setUpNotifications() {
  const form = document.getElementById("notifications-form");
  const general = document.getElementById("notifications-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = changedFields(form);
    if (Object.keys(changes).length === 0) {
      showErrors(form, "", general, {error: "Nothing to change: the settings are as shown."});
      return;
    }
    const answer = await api("PUT", "/api/notifications", changes);
    if (answer.ok) {
      flashNext("Notification settings applied (configuration version " +
                answer.body.version + ")");
      location.reload();
    } else {
      showErrors(form, "", general, answer.body);
    }
  });
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
    "tracking": setUpTracking,
    "backup": setUpBackup,
    "backup-copy": setUpBackupCopy,
    "delivery-queue": setUpDeliveryQueue,
    "notifications": setUpNotifications,
  };
  if (pages[page]) pages[page]();
});

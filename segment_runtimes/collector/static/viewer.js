// The collector's live event viewer: reads /events (server-sent events) and shows every
// outcome newest first. Each stream starts with a "hello" (the page starts over), then one
// frame per request outcome: a stored batch (its rows), a rejected request or an injected
// fault, each with the counters as they stood right after it. Text from events is only ever
// set as textContent, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const rows = $("rows");
  const filters = { type: $("filter-type"), name: $("filter-name"), user: $("filter-user") };
  const details = new WeakMap(); // row -> { title, meta, json } for the detail pane
  const FAULT_MARKS = { lose_reply: "reply lost", latency: "delayed", drop: "dropped" };
  let maxRows = 5000;
  let selected = null;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function badge(text, kind) {
    return element("span", `badge ${kind}`, text);
  }

  function clock(iso) {
    // "2026-01-01T12:34:56.789Z" -> "12:34:56.789" (the collector's receive time, UTC)
    return typeof iso === "string" && iso.length >= 23 ? iso.slice(11, 23) : "";
  }

  function makeRow(kind, cells, data, detail) {
    const tr = element("tr", kind === "message" ? "" : kind);
    tr.tabIndex = 0;
    tr.dataset.kind = kind;
    tr.dataset.type = data.type;
    tr.dataset.name = (data.name || "").toLowerCase();
    tr.dataset.user = (data.user || "").toLowerCase();
    for (const cell of cells) tr.append(cell);
    details.set(tr, detail);
    tr.hidden = !matches(tr);
    return tr;
  }

  function td(className, ...children) {
    const cell = element("td", className);
    for (const child of children) cell.append(child);
    return cell;
  }

  function wide(text) {
    // A rejection's reason or a fault's note spans the name and user columns.
    const cell = td("name", text);
    cell.colSpan = 2;
    return cell;
  }

  function messageRow(row, entry) {
    const who = row.userId
      ? element("span", "", row.userId)
      : element("span", "anon", row.anonymousId || "");
    const marks = td("marks");
    if (row.duplicate) marks.append(badge("duplicate", "duplicate"));
    if (entry.fault) marks.append(badge(FAULT_MARKS[entry.fault] || entry.fault, "fault"));
    const meta = [`received ${row.receivedAt}`, `POST ${entry.path}`];
    if (row.duplicate) meta.push("duplicate: this messageId arrived before");
    if (entry.fault) meta.push(`fault: ${FAULT_MARKS[entry.fault] || entry.fault}`);
    return makeRow(
      "message",
      [
        td("time", clock(row.receivedAt)),
        td("", badge(row.type, `type ${row.type}`)),
        td("name", row.name || ""),
        td("user", who),
        td("id", element("span", "", row.messageId)),
        marks,
      ],
      { type: row.type, name: row.name, user: `${row.userId || ""}\n${row.anonymousId || ""}` },
      { title: `${row.type}${row.name ? ` · ${row.name}` : ""}`, meta: meta.join(" · "), json: row.message },
    );
  }

  function rejectedRow(entry) {
    const where = `${entry.method || "?"} ${entry.path || "?"}`;
    return makeRow(
      "rejected",
      [
        td("time", clock(entry.at)),
        td("", badge("rejected", "rejected")),
        wide(`${entry.status} ${entry.code}: ${entry.reason}`),
        td("id", where),
        td("marks", badge(String(entry.status), "rejected")),
      ],
      { type: "rejected" },
      {
        title: `rejected · ${entry.status} ${entry.code}`,
        meta: `${where} · ${entry.bytes} bytes · at ${entry.at}`,
        json: { status: entry.status, code: entry.code, reason: entry.reason, method: entry.method,
          path: entry.path, bodyBytes: entry.bytes, at: entry.at },
      },
    );
  }

  function faultRow(entry) {
    const label = entry.status ? `injected ${entry.status}` : FAULT_MARKS[entry.fault] || entry.fault;
    return makeRow(
      "fault",
      [
        td("time", clock(entry.at)),
        td("", badge("fault", "fault")),
        wide(entry.note),
        td("id", `POST ${entry.path}`),
        td("marks", badge(label, "fault")),
      ],
      { type: "fault" },
      {
        title: `injected fault · ${label}`,
        meta: `${entry.path} · at ${entry.at}`,
        json: { fault: entry.fault, status: entry.status, note: entry.note, path: entry.path, at: entry.at },
      },
    );
  }

  function matches(tr) {
    const type = filters.type.value;
    const name = filters.name.value.trim().toLowerCase();
    const user = filters.user.value.trim().toLowerCase();
    if (type && tr.dataset.type !== type) return false;
    if (name && !tr.dataset.name.includes(name)) return false;
    if (user && !tr.dataset.user.includes(user)) return false;
    return true;
  }

  function updateShown() {
    const total = rows.childElementCount;
    let shown = 0;
    for (const tr of rows.children) if (!tr.hidden) shown += 1;
    $("shown").textContent = total === shown ? `${total} rows` : `showing ${shown} of ${total} rows`;
    $("empty").hidden = total > 0;
  }

  function applyFilters() {
    for (const tr of rows.children) tr.hidden = !matches(tr);
    updateShown();
  }

  function setCounters(counters) {
    for (const [name, value] of Object.entries(counters || {})) {
      const node = $(`count-${name}`);
      if (node) node.textContent = Number(value).toLocaleString("en-US");
    }
  }

  function select(tr) {
    if (selected) selected.removeAttribute("aria-selected");
    selected = tr;
    const detail = tr && details.get(tr);
    $("detail").hidden = !detail;
    if (!detail) return;
    tr.setAttribute("aria-selected", "true");
    $("detail-title").textContent = detail.title;
    $("detail-meta").textContent = detail.meta;
    $("detail-json").textContent = JSON.stringify(detail.json, null, 2);
  }

  function show(entry) {
    if (entry.kind === "hello") {
      maxRows = entry.maxRows || maxRows;
      rows.replaceChildren();
      select(null);
    } else {
      const made = [];
      if (entry.kind === "batch") for (const row of entry.rows) made.push(messageRow(row, entry));
      else if (entry.kind === "rejected") made.push(rejectedRow(entry));
      else if (entry.kind === "fault") made.push(faultRow(entry));
      rows.prepend(...made.reverse()); // newest first, the last message of a batch on top
      while (rows.childElementCount > maxRows) {
        if (rows.lastElementChild === selected) select(null);
        rows.lastElementChild.remove();
      }
    }
    setCounters(entry.counters);
    updateShown();
  }

  function setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  rows.addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (tr) select(tr === selected ? null : tr);
  });
  rows.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(event.target.closest("tr"));
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") select(null);
  });
  $("detail-close").addEventListener("click", () => select(null));
  $("filters").addEventListener("input", applyFilters);
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("api-url").textContent = location.origin;
  $("api-url-2").textContent = location.origin;
  updateShown();

  const source = new EventSource("/events");
  source.onopen = () => setStatus("live", "live");
  source.onerror = () => setStatus("reconnecting", "reconnecting");
  source.onmessage = (event) => show(JSON.parse(event.data));
})();

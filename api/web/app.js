// The shop's pages: every read and change goes through the JSON layer (/api/...), which calls
// the same gRPC services, tokens and rules as any other client. Text from the server is only
// ever set as text (never as HTML).
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
};

/// Replaces a node's children (arrays flattened, nothing for null).
const fill = (node, ...children) =>
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: "The shop did not answer: please try again." }));
  if (r.status === 401) { location.href = "/signin"; throw new Error("Please sign in."); }
  if (!r.ok) throw new Error(data.error || "Something went wrong.");
  return data;
}

function say(text, ok = false) {
  const m = $("#message");
  m.textContent = text;
  m.className = ok ? "ok" : "error";
}

const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");
function countdown(ms) {
  const left = Math.max(0, Math.floor((ms - Date.now()) / 1000));
  const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
  return left === 0 ? "due now" : `${h ? h + " h " : ""}${m} min ${s} s left`;
}
const pct = (n, d) => (d > 0 ? Math.min(100, Math.round((100 * n) / d)) : 0);
const bar = (kind, n, d, label) =>
  el("div", { class: "bar " + kind, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": d,
              "aria-valuenow": n, "aria-label": label }, el("span", { style: `width:${pct(n, d)}%` }));

const STATUS = {
  RESERVED: "Reserved: waiting for the group to form",
  PAYMENT_REQUESTED: "Please pay",
  PAID: "Paid",
  EXPIRED: "Expired (not paid in time)",
  CANCELLED: "Cancelled",
};

async function session() {
  const s = await api("/api/session");
  const who = $("#who");
  if (!s.role) { location.href = "/signin"; return null; }
  who.replaceChildren(`Signed in as ${s.name} `, el("a", { href: "/signout" }, "Sign out"));
  return s;
}

// ---------------------------------------------------------------------------------------
// Customer pages

function listingProgress(l) {
  const formed = l.batch_status === "CONFIRMED";
  return [
    el("p", { class: "progress-text" },
      `${l.sold_qty} of ${l.max_qty} taken: ` +
      (formed ? "the group formed." : `the group forms at ${l.min_qty}.`) + ` ${l.left} left.`),
    bar("", l.sold_qty, l.max_qty, "units taken of the cap"),
    bar("threshold", Math.min(l.sold_qty, l.min_qty), l.min_qty, "units towards the threshold"),
  ];
}

function reserveForm(w, l) {
  const qty = el("input", { type: "number", min: 1, value: 1, required: true, id: `qty-${l.product_id}`, class: "qty" });
  const form = el("form", { class: "row reserve" },
    el("label", { for: qty.id }, "Quantity", qty),
    el("button", { type: "submit", class: "reserve-button" }, "Reserve"));
  let key = null; // one key per attempt: a retry of the same attempt finds the same order
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    key = key || crypto.randomUUID();
    try {
      const o = await api("/api/reserve", { sell_window_id: w.id, product_id: l.product_id,
                                            qty: Number(qty.value), idempotency_key: key });
      key = null;
      say(`Reserved: order ${o.id}, ${o.amount.text}.`, true);
      refreshShop();
    } catch (e) { key = null; say(e.message); }
  });
  return form;
}

function shopWindow(w) {
  return el("section", { class: "card window", "data-window": w.id },
    el("h3", {}, w.name), el("p", { class: "muted" }, `Closes ${when(w.close_at)}`),
    w.listings.map((l) => el("article", { class: "card listing", "data-product": l.product_id },
      el("h4", {}, `${l.product_name} · ${l.unit_price.text}`),
      listingProgress(l),
      l.phase === "OPEN" || l.phase === "CONFIRMED" ? reserveForm(w, l) : el("p", { class: "muted" }, `Phase: ${l.phase}`))));
}

function orderRow(o, shipped) {
  const actions = [];
  if (o.status === "PAYMENT_REQUESTED" && o.pay_url) {
    actions.push(el("a", { href: o.pay_url, class: "pay-link" }, "Pay now"));
  }
  if (o.status === "PAYMENT_REQUESTED" && o.last_payment_error) {
    actions.push(el("button", { class: "secondary retry", onclick: async () => {
      try { await api("/api/orders/retry", { order_id: o.id }); say("A new payment link is ready.", true); refreshShop(); }
      catch (e) { say(e.message); }
    } }, "Retry payment"));
  }
  if (o.status === "RESERVED" || o.status === "PAYMENT_REQUESTED") {
    actions.push(el("button", { class: "danger cancel", onclick: async () => {
      try { await api("/api/orders/cancel", { order_id: o.id }); say("Order cancelled.", true); refreshShop(); }
      catch (e) { say(e.message); }
    } }, "Cancel"));
  }
  const status = shipped ? "Shipped" : (STATUS[o.status] || o.status);
  const detail = [];
  if (o.status === "PAYMENT_REQUESTED" && o.payment_due_at) detail.push(el("span", { class: "countdown", "data-due": o.payment_due_at }, countdown(o.payment_due_at)));
  if (o.last_payment_error && o.status === "PAYMENT_REQUESTED") detail.push(el("div", { class: "error" }, `Payment failed: ${o.last_payment_error}`));
  if (shipped) detail.push(el("div", { class: "pickup" }, shipped));
  return el("tr", { "data-order": o.id, "data-status": o.status },
    el("td", {}, o.id), el("td", {}, String(o.qty)), el("td", {}, o.amount.text),
    el("td", {}, el("span", { class: "status" }, status), detail), el("td", {}, actions));
}

async function refreshShop() {
  try {
    const [w, o, n] = await Promise.all([api("/api/windows"), api("/api/orders"), api("/api/notifications")]);
    // Re-drawn only when something changed, so a quantity being typed is kept.
    const seen = JSON.stringify([w, o, n]);
    if (document.body.dataset.seen === seen) return;
    document.body.dataset.seen = seen;
    fill($("#windows"), (w.windows.length ? w.windows.map(shopWindow) : [el("p", { class: "muted" }, "No open sell windows right now.")]));
    const shipped = {};
    for (const x of n.notifications) if (x.kind === "shipped" && x.order_id) shipped[x.order_id] = x.message;
    fill($("#orders"), o.orders.length
      ? el("table", {}, el("thead", {}, el("tr", {}, ["Order", "Qty", "Amount", "Status", ""].map((h) => el("th", {}, h)))),
           el("tbody", {}, o.orders.map((x) => orderRow(x, shipped[x.id]))))
      : el("p", { class: "muted" }, "No orders yet."));
    fill($("#notifications"), n.notifications.map((x) =>
      el("li", { "data-kind": x.kind }, el("span", { class: "muted" }, when(x.created_at) + " · "), x.message)));
  } catch (e) { say(e.message); }
}

// ---------------------------------------------------------------------------------------
// Admin console

let temporal = { ui: "", namespace: "default" };
let productCache = [];

function sparkline(events) {
  const times = events.filter((e) => e.name === "order.reserved").map((e) => e.occurred_at);
  if (times.length < 2) return el("p", { class: "muted" }, `${times.length} reservation(s) so far.`);
  const t0 = times[0], t1 = times[times.length - 1], span = Math.max(1, t1 - t0), n = 24;
  const buckets = new Array(n).fill(0);
  for (const t of times) buckets[Math.min(n - 1, Math.floor(((t - t0) / span) * n))]++;
  const max = Math.max(...buckets);
  const points = buckets.map((b, i) => `${(i / (n - 1)) * 100},${30 - (b / max) * 28}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 100 30"); svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", `reservations over time: ${times.length}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points); line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2d6cdf"); line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return el("div", {}, el("span", { class: "muted" }, `Reservations over time (${times.length})`), svg);
}

async function windowDetail(w, box) {
  try {
    const [live, wo, ev] = await Promise.all([
      api(`/api/admin/windows/${encodeURIComponent(w.id)}`),
      api(`/api/admin/work-orders/${encodeURIComponent(w.id)}`),
      api(`/api/admin/events/${encodeURIComponent(w.id)}`)]);
    // Re-drawn only when something changed, so an open event log stays open.
    const seen = JSON.stringify([live, wo, ev.events.length]);
    if (box.dataset.seen === seen) return;
    box.dataset.seen = seen;
    const open = box.querySelector("details")?.open;
    fill(box,
      live.listings.map((l) => el("article", { class: "card listing", "data-product": l.product_id },
        el("h4", {}, `${l.product_name} · ${l.unit_price.text} · `, el("span", { class: "phase" }, l.phase)),
        el("p", {}, `Sold ${l.sold_qty} / ${l.max_qty} · reserved ${l.reserved_qty} / threshold ${l.min_qty} (${l.threshold_status}) · paid ${l.paid_qty} · batch ${l.batch_status}`),
        bar("", l.sold_qty, l.max_qty, "sold of the cap"),
        bar("threshold", Math.min(l.sold_qty, l.min_qty), l.min_qty, "towards the threshold"),
        bar("paid", l.paid_qty, l.max_qty, "paid of the cap"),
        el("div", { class: "row" },
          l.threshold_status === "REACHED" && l.batch_status !== "CONFIRMED" && (l.phase === "OPEN")
            ? el("button", { class: "confirm", onclick: async () => {
                try { const c = await api("/api/admin/confirm", { sell_window_id: w.id, product_id: l.product_id });
                      say(c.in_progress ? "Confirmed: payment requests are going out." : `Confirmed: ${c.payment_requested_orders} customers asked to pay.`, true);
                      windowDetail(w, box); } catch (e) { say(e.message); } } }, "Confirm the batch")
            : null,
          temporal.ui ? el("a", { href: `${temporal.ui}/namespaces/${encodeURIComponent(temporal.namespace)}/workflows/${encodeURIComponent(l.workflow_id)}`, target: "_blank", rel: "noopener" }, "Open in the Temporal UI") : null))),
      el("div", { class: "row" }, el("button", { class: "danger cancel-window", onclick: async () => {
        if (!confirm("Cancel this sell window? Every order is cancelled and every payment refunded.")) return;
        try { await api("/api/admin/cancel", { sell_window_id: w.id }); say("Sell window cancelled.", true); windowDetail(w, box); }
        catch (e) { say(e.message); } } }, "Cancel the sell window")),
      wo.work_orders.map((o) => el("article", { class: "card work-order", "data-work-order": o.id },
        el("h4", {}, `Work order for ${o.product_qty} units · ${o.status}`),
        el("ul", { class: "plain" }, o.steps.map((s) => el("li", { "data-step": s.id },
          `${s.position}. ${s.name} · ${s.status} `,
          s.status !== "DONE" ? el("button", { class: "secondary complete-step", onclick: async () => {
            try { const r = await api("/api/admin/steps", { work_order_id: o.id, step_id: s.id });
                  say(r.production_completed ? "Production completed: shipping to every paying customer." : `Step done: ${s.name}.`, true);
                  windowDetail(w, box); } catch (e) { say(e.message); } } }, "Done") : null))))),
      sparkline(ev.events),
      el("details", {}, el("summary", {}, `Event log (${ev.events.length}${ev.more ? "+" : ""})`),
        el("ol", { class: "event-log" }, ev.events.map((e) => el("li", { "data-event": e.name }, `${e.name} `, el("span", { class: "muted" }, when(e.occurred_at)))))));
    if (open) box.querySelector("details").open = true;
  } catch (e) { say(e.message); }
}

const adminCards = new Map();
function adminWindow(w) {
  let card = adminCards.get(w.id);
  if (!card) {
    card = el("section", { class: "card window", "data-window": w.id },
      el("h3", {}, w.name), el("p", { class: "muted" }, `Closes ${when(w.close_at)} · ${w.listings.length} listing(s)`),
      el("div", { class: "detail" }));
    adminCards.set(w.id, card);
  }
  windowDetail(w, card.querySelector(".detail"));
  return card;
}

function listingRow() {
  const row = $("#listing-row").content.firstElementChild.cloneNode(true);
  const select = row.querySelector(".l-product");
  select.replaceChildren(...productCache.map((p) => el("option", { value: p.id }, `${p.name} (${p.unit_price.text})`)));
  row.querySelectorAll("input, select").forEach((input, i) => { input.id = `l-${Date.now()}-${i}`; });
  return row;
}

async function refreshProducts() {
  const p = await api("/api/admin/products");
  productCache = p.products;
  fill($("#products"), p.products.map((x) => el("li", {}, `${x.name} · ${x.unit_price.text} · steps: ${x.work_steps.join(" → ")}`)));
  document.querySelectorAll(".l-product").forEach((s) => {
    const v = s.value;
    s.replaceChildren(...productCache.map((x) => el("option", { value: x.id }, `${x.name} (${x.unit_price.text})`)));
    if (v) s.value = v;
  });
  if (!document.querySelector(".listing-row") && productCache.length) $("#listing-rows").append(listingRow());
}

async function refreshAdmin() {
  try {
    const [w, n] = await Promise.all([api("/api/admin/windows"), api("/api/admin/notifications")]);
    fill($("#admin-windows"), (w.windows.length ? w.windows.map(adminWindow) : [el("p", { class: "muted" }, "No sell windows yet.")]));
    fill($("#admin-notes"),
      n.urgent.length ? el("div", { class: "urgent" }, el("strong", {}, "Refund by hand:"),
        el("ul", { class: "plain" }, n.urgent.map((x) => el("li", { "data-kind": x.kind }, x.message)))) : null,
      el("ul", { class: "plain" }, n.recent.slice(0, 20).map((x) => el("li", { "data-kind": x.kind },
        el("span", { class: "muted" }, when(x.created_at) + " · "), x.message))));
  } catch (e) { say(e.message); }
}

function adminForms() {
  $("#product-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const p = await api("/api/admin/products", {
        name: $("#p-name").value, currency: $("#p-currency").value.trim().toUpperCase(), price: $("#p-price").value.trim(),
        work_steps: $("#p-steps").value.split("\n").map((s) => s.trim()).filter(Boolean) });
      say(`Product added: ${p.name}, ${p.unit_price.text}.`, true);
      ev.target.reset(); $("#p-currency").value = "TWD";
      refreshProducts();
    } catch (e) { say(e.message); }
  });
  $("#add-listing").addEventListener("click", () => $("#listing-rows").append(listingRow()));
  let requestId = null;
  $("#window-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    requestId = requestId || crypto.randomUUID();
    const listings = [...document.querySelectorAll(".listing-row")].map((r) => ({
      product_id: r.querySelector(".l-product").value,
      min_qty: Number(r.querySelector(".l-min").value), max_qty: Number(r.querySelector(".l-max").value),
      payment_window_secs: Math.round(60 * Number(r.querySelector(".l-pay").value)),
      per_customer_limit: Number(r.querySelector(".l-limit").value || 0),
      refund_under_threshold: r.querySelector(".l-refund").checked }));
    try {
      const w = await api("/api/admin/windows", { name: $("#w-name").value, request_id: requestId,
        close_at_ms: Date.now() + 60000 * Number($("#w-close").value), listings });
      requestId = null;
      say(`Sell window created: ${w.name}.`, true);
      refreshAdmin();
    } catch (e) { requestId = null; say(e.message); }
  });
}

// ---------------------------------------------------------------------------------------

(async () => {
  const s = await session().catch(() => null);
  if (!s) return;
  temporal = { ui: s.temporal_ui, namespace: s.namespace };
  if (document.body.dataset.page === "admin") {
    if (s.role !== "admin") { say("This console is for the shop's admin: sign in as the admin."); return; }
    adminForms();
    await refreshProducts().catch((e) => say(e.message));
    await refreshAdmin();
    setInterval(refreshAdmin, 4000);
  } else {
    if (s.role !== "customer") { say("Sign in as a customer to shop."); return; }
    await refreshShop();
    setInterval(refreshShop, 2000);
    setInterval(() => document.querySelectorAll(".countdown").forEach((c) => { c.textContent = countdown(Number(c.dataset.due)); }), 1000);
  }
})();

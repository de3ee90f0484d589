"use strict";
// The ppy web console: no framework, no external asset. It reads the OpenRPC document for the
// function list and forms, calls functions through POST call/{entry}/{func}, and polls
// console/stats.json (kept by the server itself) for the live charts. Charts are inline SVG.
(function () {
  const TOKEN_KEY = "ppy.token";
  const REFRESH_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  let token = sessionStorage.getItem(TOKEN_KEY);
  let methods = [];
  let timer = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  class AuthError extends Error {}

  async function api(path, options) {
    const opts = Object.assign({ cache: "no-store" }, options || {});
    opts.headers = Object.assign({}, opts.headers || {});
    if (token) opts.headers["Authorization"] = "Bearer " + token;
    const response = await fetch(new URL(path, document.baseURI), opts);
    if (response.status === 401) throw new AuthError(await response.text());
    return response;
  }

  // -- token --------------------------------------------------------------------------

  function askToken(message) {
    stopRefresh();
    $("main").hidden = true;
    $("token-panel").hidden = false;
    setStatus("token needed", "down");
    const err = $("token-error");
    err.hidden = !message;
    err.textContent = message || "";
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    start(true);
  });

  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    askToken("");
  });

  // -- start-up -----------------------------------------------------------------------

  async function start(afterPrompt) {
    let doc;
    try {
      const response = await api("openrpc.json");
      doc = await response.json();
    } catch (error) {
      if (error instanceof AuthError) {
        if (afterPrompt || token) sessionStorage.removeItem(TOKEN_KEY);
        askToken(afterPrompt || token ? "That token was not accepted; check the server's --token-file." : "");
        token = null;
        return;
      }
      setStatus("cannot reach the server", "down");
      setTimeout(() => start(false), 3000);
      return;
    }
    $("token-panel").hidden = true;
    $("main").hidden = false;
    $("forget-token").hidden = !token;
    // A link cannot carry the Bearer header: with a token these would only show 401.
    for (const id of ["openrpc-link", "openapi-link", "metrics-link"]) $(id).hidden = Boolean(token);
    $("app-title").textContent = doc.info ? doc.info.title : "console";
    methods = doc.methods || [];
    renderFunctions(methods);
    refresh();
  }

  function setStatus(text, kind) {
    $("status-text").textContent = text;
    $("status-dot").className = "dot " + (kind || "");
  }

  // -- functions and forms ------------------------------------------------------------------

  function kindOf(param) {
    const schema = param.schema || {};
    const py = param["x-python-type"] || "";
    if (param["x-kind"] === "var_positional" || param["x-kind"] === "var_keyword") return "json";
    if (schema.type === "integer") return "int";
    if (schema.type === "number") return "number";
    if (schema.type === "boolean") return "bool";
    if (schema.type === "string" && !schema.enum) return "string";
    if (py === "Any" || py === "object" || Object.keys(schema).filter((k) => k !== "default").length === 0) return "any";
    return "json";
  }

  function inputFor(param) {
    const kind = kindOf(param);
    const schema = param.schema || {};
    const hasDefault = Object.prototype.hasOwnProperty.call(schema, "default");
    const placeholder = hasDefault ? "default: " + JSON.stringify(schema.default) : (kind === "json" || kind === "any" ? "JSON" : "");
    const common = { name: param.name, "data-param": param.name, "data-kind": kind, placeholder: placeholder || null };
    if (kind === "bool") {
      const select = el("select", common, el("option", { value: "", text: hasDefault ? "default (" + schema.default + ")" : "choose" }),
        el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
      return select;
    }
    if (kind === "int") return el("input", Object.assign({ type: "number", step: "1", inputmode: "numeric" }, common));
    if (kind === "number") return el("input", Object.assign({ type: "number", step: "any", inputmode: "decimal" }, common));
    if (kind === "string") return el("input", Object.assign({ type: "text" }, common));
    return el("textarea", Object.assign({ rows: "2", spellcheck: "false" }, common));
  }

  function renderFunctions(list) {
    const box = $("functions");
    box.textContent = "";
    $("fn-count").textContent = list.length + " functions";
    let lastEntry = null;
    for (const method of list) {
      const entry = method.name.slice(0, method.name.lastIndexOf("."));
      if (entry !== lastEntry) {
        box.append(el("h3", { class: "entry-title", "data-entry": entry, text: entry }));
        lastEntry = entry;
      }
      box.append(renderFunction(method));
    }
  }

  function renderFunction(method) {
    const form = el("form", { novalidate: true });
    for (const param of method.params) {
      const label = el("label", { class: "field" },
        el("span", null, el("span", { text: param.name }), param.required ? el("span", { class: "req", text: " *" }) : null,
          el("span", { class: "ptype", text: "  " + (param["x-python-type"] || "Any") })),
        inputFor(param));
      form.append(label);
    }
    const button = el("button", { type: "submit", text: method["x-ppy-stream"] ? "Stream" : "Call" });
    form.append(button);
    const out = el("div", { class: "out", hidden: true }, el("div", { class: "meta" }), el("pre", { class: "result" }));
    form.addEventListener("submit", (event) => { event.preventDefault(); callFunction(method, form, button, out); });
    const doc = method.description || "";
    const more = doc && doc !== method.summary ? el("details", null, el("summary", { text: "docstring" }), el("pre", { text: doc })) : null;
    return el("article", { class: "fn", "data-method": method.name },
      el("h3", null, el("code", { text: method.name })),
      el("code", { class: "sig", text: method["x-signature"] || method.name }),
      method.summary ? richText(el("p", { class: "doc" }), method.summary) : null,
      more, form, out);
  }

  // Docstrings are reST/Markdown-ish: show ``literal`` and `literal` as code, everything else as text.
  function richText(node, text) {
    text.split(/(``[^`]+``|`[^`]+`)/).forEach((part, i) => {
      if (i % 2) node.append(el("code", { text: part.replace(/^`+|`+$/g, "") }));
      else if (part) node.append(part);
    });
    return node;
  }

  function collect(method, form) {
    const positional = [];
    const keywords = {};
    const usesStar = method.params.some((p) => p["x-kind"] === "var_positional");
    for (const param of method.params) {
      const input = form.querySelector('[data-param="' + CSS.escape(param.name) + '"]');
      const kind = input.dataset.kind;
      const raw = input.value;
      let value;
      if (raw === "") {
        if (kind === "string" && param.required) value = "";
        else if (usesStar && !param["x-kind"] && param.required) throw new Error(param.name + " is required");
        else continue;
      } else if (kind === "bool") value = raw === "true";
      else if (kind === "int" || kind === "number") value = Number(raw);
      else if (kind === "string") value = raw;
      else {
        try { value = JSON.parse(raw); } catch (error) {
          if (kind === "any") value = raw;
          else throw new Error(param.name + ": not valid JSON (" + error.message + ")");
        }
      }
      if (param["x-kind"] === "var_keyword") Object.assign(keywords, value);
      else if (param["x-kind"] === "var_positional") positional.push(...(Array.isArray(value) ? value : [value]));
      else if (usesStar && param["x-kind"] !== "keyword_only") positional.push(value);
      else keywords[param.name] = value;
    }
    if (usesStar) {
      if (Object.keys(keywords).length) throw new Error("with *args, pass keyword-only values through the API instead");
      return positional;
    }
    return keywords;
  }

  async function callFunction(method, form, button, out) {
    let params;
    try { params = collect(method, form); } catch (error) {
      show(out, "err", ["not sent"], error.message);
      return;
    }
    const dot = method.name.lastIndexOf(".");
    const path = "call/" + encodeURIComponent(method.name.slice(0, dot)) + "/" + encodeURIComponent(method.name.slice(dot + 1));
    button.disabled = true;
    const started = performance.now();
    try {
      if (method["x-ppy-stream"]) { await streamFunction(path.replace(/^call\//, "stream/"), params, out, started); return; }
      const response = await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(params) });
      const ms = performance.now() - started;
      const body = await response.json();
      if (response.ok) show(out, "ok", ["HTTP " + response.status, formatMs(ms)], JSON.stringify(body.result, null, 2));
      else {
        const e = body.error || {};
        const text = e.message + (e.data ? "\n\n" + JSON.stringify(e.data, null, 2) : "");
        show(out, "err", ["HTTP " + response.status, "error " + e.code, formatMs(ms)], text);
      }
    } catch (error) {
      if (error instanceof AuthError) { askToken("The token stopped working; enter it again."); return; }
      show(out, "err", ["failed"], String(error));
    } finally {
      button.disabled = false;
    }
  }

  // A generator function: POST stream/{entry}/{func} answers Server-Sent Events, read here as they arrive
  // (fetch rather than EventSource, so the token header and a JSON body can go with it).
  async function streamFunction(path, params, out, started) {
    const response = await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(params) });
    if (!response.ok) {
      const e = (await response.json()).error || {};
      show(out, "err", ["HTTP " + response.status, "error " + e.code], e.message);
      return;
    }
    const lines = [];
    const text = () => lines.join("\n");
    show(out, "ok", ["streaming"], "");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const fields = {};
        for (const line of buffer.slice(0, cut).split("\n")) {
          const colon = line.indexOf(": ");
          if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 2);
        }
        buffer = buffer.slice(cut + 2);
        const data = JSON.parse(fields.data || "null");
        const ms = formatMs(performance.now() - started);
        if (fields.event === "item") {
          lines.push(JSON.stringify(data));
          show(out, "ok", ["streaming", lines.length + " items", ms], text());
        } else if (fields.event === "end") {
          const tail = data.result === null ? "" : "\n\nreturned " + JSON.stringify(data.result, null, 2);
          show(out, "ok", ["stream ended", lines.length + " items", ms], text() + tail);
        } else if (fields.event === "error") {
          const e = data.error || {};
          show(out, "err", ["stream failed", "error " + e.code, lines.length + " items", ms], text() + (lines.length ? "\n\n" : "") + e.message);
        }
      }
    }
  }

  function show(out, kind, metaParts, text) {
    out.hidden = false;
    out.className = "out " + kind;
    const meta = out.querySelector(".meta");
    meta.textContent = "";
    for (const part of metaParts) meta.append(el("span", { text: part }));
    out.querySelector(".result").textContent = text;
    meta.dataset.done = String(performance.now());  // tests wait for this to change
  }

  $("filter").addEventListener("input", () => {
    const needle = $("filter").value.trim().toLowerCase();
    const shown = new Set();
    for (const card of document.querySelectorAll(".fn")) {
      const match = !needle || card.dataset.method.toLowerCase().includes(needle) || card.textContent.toLowerCase().includes(needle);
      card.hidden = !match;
      if (match) shown.add(card.dataset.method.slice(0, card.dataset.method.lastIndexOf(".")));
    }
    for (const title of document.querySelectorAll(".entry-title")) title.hidden = !shown.has(title.dataset.entry);
  });

  // -- live charts ----------------------------------------------------------------------

  function formatMs(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1) return ms.toFixed(3) + " ms";
    if (ms < 100) return ms.toFixed(1) + " ms";
    return Math.round(ms) + " ms";
  }
  function formatRate(rate) { return rate < 10 ? rate.toFixed(2) : rate < 1000 ? rate.toFixed(1) : Math.round(rate).toLocaleString("en"); }
  function formatPct(ratio) { return ratio === null || ratio === undefined ? "–" : (ratio * 100).toFixed(ratio < 0.1 ? 1 : 0) + " %"; }

  function sparkline(values, kind) {
    const w = 120, h = 34;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark" + (kind === "err" ? " err" : ""));
    svg.setAttribute("aria-hidden", "true");
    const n = values.length;
    const max = Math.max(0, ...values.filter((v) => v !== null));
    if (!n || max <= 0) return svg;
    const x = (i) => (n === 1 ? w : (i * w) / (n - 1));
    const y = (v) => h - 1 - (v / max) * (h - 4);
    let line = "", area = "";
    let open = false;
    values.forEach((v, i) => {
      if (v === null) { open = false; return; }
      line += (open ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      open = true;
    });
    const points = values.map((v, i) => [x(i), y(v === null ? 0 : v)]);
    area = "M0 " + h + points.map(([px, py]) => "L" + px.toFixed(1) + " " + py.toFixed(1)).join("") + "L" + w + " " + h + "Z";
    const areaPath = document.createElementNS(SVG, "path");
    areaPath.setAttribute("d", area);
    areaPath.setAttribute("class", "spark-area");
    const linePath = document.createElementNS(SVG, "path");
    linePath.setAttribute("d", line);
    linePath.setAttribute("class", "spark-line");
    svg.append(areaPath, linePath);
    return svg;
  }

  function setChart(id, values, kind) {
    const box = $(id);
    box.textContent = "";
    box.append(sparkline(values, kind));
  }

  function renderStats(stats) {
    const total = stats.total;
    $("window-min").textContent = String(Math.round(stats.window / 60));
    $("total-rate").textContent = formatRate(total.rate);
    $("total-errors").textContent = formatPct(total.error_rate);
    $("total-p50").textContent = formatMs(total.p50_ms);
    $("total-p99").textContent = formatMs(total.p99_ms);
    $("total-calls").textContent = total.calls.toLocaleString("en");
    $("inflight").textContent = String(stats.inflight);
    setChart("chart-rate", total.series.rate);
    setChart("chart-errors", total.series.error_rate, "err");
    setChart("chart-p50", total.series.p50_ms);
    setChart("chart-p99", total.series.p99_ms);
    setStatus(stats.ready ? "ready" : "draining", stats.ready ? "ready" : "down");

    const names = Object.keys(stats.methods).sort();
    $("no-traffic").hidden = names.length > 0;
    const box = $("per-method");
    box.textContent = "";
    if (!names.length) return;
    box.append(el("div", { class: "row head" }, el("span", { text: "function" }), el("span", { text: "calls/s" }),
      el("span", { text: "errors" }), el("span", { text: "p50" }), el("span", { text: "p99" })));
    for (const name of names) {
      const m = stats.methods[name];
      const cell = (label, text, values, kind, key) => el("div", { class: "cell", "data-metric": key },
        el("span", { class: "label-sm", text: label }), el("span", { class: "num", text: text }), sparkline(values, kind));
      box.append(el("div", { class: "row", "data-method": name, "data-calls": String(m.calls) },
        el("span", { class: "name", text: name }),
        cell("calls/s", formatRate(m.rate), m.series.rate, null, "rate"),
        cell("errors", formatPct(m.error_rate), m.series.error_rate, "err", "errors"),
        cell("p50", formatMs(m.p50_ms), m.series.p50_ms, null, "p50"),
        cell("p99", formatMs(m.p99_ms), m.series.p99_ms, null, "p99")));
    }
  }

  function stopRefresh() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  async function refresh() {
    stopRefresh();
    try {
      const response = await api("console/stats.json");
      renderStats(await response.json());
    } catch (error) {
      if (error instanceof AuthError) { askToken("The token stopped working; enter it again."); return; }
      setStatus("server unreachable", "down");
    }
    timer = setTimeout(refresh, document.hidden ? REFRESH_MS * 5 : REFRESH_MS);
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden && !$("main").hidden) refresh(); });
  start(false);
})();

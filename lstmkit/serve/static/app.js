// lstmkit's web page: choose a served model, use its task's widget. Plain JS, no build step.
// Every widget calls the same JSON API a program would (see /docs for the schema).
"use strict";

const $ = (id) => document.getElementById(id);
let models = {};  // name -> the model's entry of GET /v1/models

// POST JSON (or raw bytes) and return the parsed answer; a refusal throws its message
async function post(path, body, contentType = "application/json") {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": contentType },
    body: contentType === "application/json" ? JSON.stringify(body) : body,
  });
  if (!response.ok) throw await failure(response);
  return response;
}

async function failure(response) {
  try {
    const e = (await response.json()).error;
    return new Error(`${e.field}: ${e.message} (HTTP ${e.status})`);
  } catch {
    return new Error(`HTTP ${response.status}`);
  }
}

function showError(error) {
  $("error").textContent = error ? error.message : "";
}

const modelUrl = (suffix) => `/v1/models/${encodeURIComponent($("model").value)}/${suffix}`;

// -- choosing a model ------------------------------------------------------------------------

async function loadModels() {
  const list = (await (await fetch("/v1/models")).json()).models;
  const select = $("model");
  for (const m of list) {
    models[m.name] = m;
    select.add(new Option(`${m.name} (${m.task})`, m.name));
  }
  select.addEventListener("change", showWidget);
  $("raw").addEventListener("change", showWidget);
  showWidget();
  document.body.dataset.ready = "true";  // the browser tests wait for this
}

function showWidget() {
  const m = models[$("model").value];
  if (!m) return;
  const widget = $("raw").checked ? "generic" : m.widget;
  for (const section of document.querySelectorAll("section[id^=widget-]")) {
    section.hidden = section.id !== `widget-${widget}`;
  }
  const score = Object.entries(m.metrics)
    .filter(([k, v]) => typeof v === "number" && ["accuracy", "bits_per_char", "owa", "wer",
      "bleu"].includes(k))
    .map(([k, v]) => `${k} ${v.toFixed(4)}`);
  $("model-info").textContent = `${m.parameters.toLocaleString()} parameters ${score.join(" ")}`;
  showError(null);
}

// -- sentiment: label, probability and a per-word heat-map of one gate -------------------------

let lastGates = null;

async function classify() {
  showError(null);
  const text = $("review").value;
  const m = models[$("model").value];
  let result;
  if (m.endpoints.includes("gates")) {
    result = await (await post(modelUrl("gates"), { text })).json();
  } else {
    result = (await (await post(modelUrl("predict"), { inputs: [text] })).json()).outputs[0];
  }
  $("label").textContent = result.label;
  $("probability").textContent = result.probability.toFixed(4);
  lastGates = result.gates ? result : null;
  drawHeatmap();
}

function drawHeatmap() {
  const box = $("heatmap");
  box.textContent = "";
  if (!lastGates) return;
  const gate = $("gate").value;
  const values = lastGates.gates[gate];
  lastGates.tokens.forEach((token, t) => {
    const span = document.createElement("span");
    span.textContent = token;
    span.title = `${gate} = ${values[t].toFixed(3)}`;
    span.dataset.value = values[t];
    span.style.background = gate === "c" ? diverging(values[t]) : sequential(values[t]);
    box.append(span);
  });
}

// gates in [0, 1]: white to blue; the cell state: red (negative) - white - blue (positive)
const sequential = (v) => `rgb(${255 - 200 * v}, ${255 - 130 * v}, 255)`;
function diverging(v) {
  const a = Math.min(1, Math.abs(v));
  return v < 0 ? `rgb(255, ${255 - 180 * a}, ${255 - 180 * a})`
               : `rgb(${255 - 180 * a}, ${255 - 180 * a}, 255)`;
}

// -- generation: server-sent events read from the POST's body as they arrive -----------------

async function generate() {
  showError(null);
  const out = $("generated");
  out.textContent = "";
  $("gen-status").textContent = "generating...";
  const body = {
    prompt: $("prompt").value,
    max_new_tokens: Number($("max-new").value),
    temperature: Number($("temperature").value),
    seed: Number($("seed").value),
  };
  const response = await post(modelUrl("generate"), body);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event.type === "done") $("gen-status").textContent = "done";
      else out.textContent += event.data.text;
    }
  }
}

function parseEvent(block) {
  const event = { type: "message", data: null };
  for (const line of block.split("\n")) {
    const colon = line.indexOf(": ");
    const key = line.slice(0, colon), value = line.slice(colon + 2);
    if (key === "event") event.type = value;
    if (key === "data") event.data = JSON.parse(value);
  }
  return event;
}

// -- forecast: history, median forecast and interval as an SVG plot --------------------------

async function forecast() {
  showError(null);
  const history = $("series").value.split(/[\s,]+/).filter((s) => s).map(Number);
  const result = (await (await post(modelUrl("predict"), { inputs: [history] })).json())
    .outputs[0];
  drawForecast(history, result);
}

function drawForecast(history, result) {
  const svg = $("plot");
  const width = svg.width.baseVal.value, height = svg.height.baseVal.value;
  const all = [...history, ...result.forecast, ...(result.lower || []), ...(result.upper || [])];
  const lo = Math.min(...all), hi = Math.max(...all);
  const n = history.length + result.forecast.length;
  const x = (t) => 10 + (t / Math.max(1, n - 1)) * (width - 20);
  const y = (v) => height - 10 - ((v - lo) / (hi - lo || 1)) * (height - 20);
  const line = (values, start) => values.map((v, k) => `${x(start + k)},${y(v)}`).join(" ");
  const h = history.length;
  let band = "";
  if (result.lower) {
    const upper = line(result.upper, h), lower = result.lower.map((v, k) => `${x(h + k)},${y(v)}`);
    band = `<polygon points="${upper} ${lower.reverse().join(" ")}" fill="#cfe0ff"/>`;
  }
  svg.innerHTML = band +
    `<polyline id="history-line" points="${line(history, 0)}" fill="none" stroke="#333"/>` +
    `<polyline id="forecast-line" points="${line(result.forecast, h)}" fill="none" stroke="#1f5fd1"/>`;
}

// -- speech: a WAV file's bytes posted as they are -------------------------------------------

async function transcribe() {
  showError(null);
  const file = $("wav").files[0];
  if (!file) throw new Error("choose a WAV file first");
  const result = await (await post(modelUrl("transcribe"), await file.arrayBuffer(),
    "audio/wav")).json();
  $("transcript").textContent = result.transcript;
}

// -- translation: the output and its attention map (rows target, columns source subwords) --

async function translate() {
  showError(null);
  const result = await (await post(modelUrl("attention"), { text: $("source").value })).json();
  $("translation").textContent = result.translation;
  const table = $("attention");
  table.textContent = "";
  const head = table.insertRow();
  head.insertCell().textContent = "";
  for (const token of result.source_tokens) head.insertCell().textContent = token;
  result.target_tokens.forEach((token, t) => {
    const row = table.insertRow();
    row.insertCell().textContent = token;
    for (const w of result.weights[t]) {
      const cell = row.insertCell();
      cell.dataset.value = w;
      cell.title = w.toFixed(3);
      cell.style.background = sequential(w);
    }
  });
}

// -- anything else: one input (JSON when it parses, else the text) -> the JSON output ---------

async function predictGeneric() {
  showError(null);
  const raw = $("generic-input").value;
  let input;
  try { input = JSON.parse(raw); } catch { input = raw; }
  const result = await (await post(modelUrl("predict"), { inputs: [input] })).json();
  $("generic-output").textContent = JSON.stringify(result.outputs[0], null, 2);
}

// every button reports its failure on the page instead of failing silently
function onClick(id, action) {
  $(id).addEventListener("click", () => action().catch(showError));
}

document.addEventListener("DOMContentLoaded", () => {
  onClick("classify", classify);
  onClick("generate", generate);
  onClick("forecast", forecast);
  onClick("transcribe", transcribe);
  onClick("translate", translate);
  onClick("predict", predictGeneric);
  $("gate").addEventListener("change", drawHeatmap);
  loadModels().catch(showError);
});

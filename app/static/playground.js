// Playground: streams POST /generate_stream (Server-Sent Events read with fetch + ReadableStream, because
// EventSource cannot POST), shows POST /predict candidates as bars and GET /info as a model card.
"use strict";

const $ = (id) => document.getElementById(id);
const SLIDERS = ["temperature", "top_k", "top_p", "min_p", "max_new_tokens", "repetition_penalty"];
let running = null; // AbortController of the generation in progress

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// The message of a failed answer: TGI's {"error": "..."} or OpenAI's {"error": {"message": "..."}}.
async function apiError(response) {
  try {
    const body = await response.json();
    const error = body.error;
    return (error && error.message) || error || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

function parameters() {
  const greedy = $("greedy").checked;
  const params = {
    max_new_tokens: Number($("max_new_tokens").value),
    repetition_penalty: Number($("repetition_penalty").value),
    details: false,
  };
  if (!greedy) {
    params.do_sample = true;
    params.temperature = Number($("temperature").value);
    params.top_k = Number($("top_k").value);
    params.top_p = Number($("top_p").value);
    params.min_p = Number($("min_p").value);
  }
  const seed = $("seed").value.trim();
  if (seed !== "") params.seed = Number(seed);
  return params;
}

// Splits an SSE byte stream into events; returns the `data:` payload of each complete event.
function sseParser() {
  let buffer = "";
  return (chunk) => {
    buffer += chunk.replace(/\r\n?/g, "\n");
    const events = [];
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) events.push(data);
    }
    return events;
  };
}

// One tab's start and stop buttons and its output's aria-busy while a request runs (the chat tab uses it too).
function showRunning(busy, startId, stopId, outputId) {
  $(startId).disabled = busy;
  $(stopId).disabled = !busy;
  $(outputId).setAttribute("aria-busy", String(busy));
}

function setRunning(controller) {
  running = controller;
  showRunning(Boolean(controller), "generate", "stop", "output");
}

// POST a JSON body to a streaming route and yield each Server-Sent Event's JSON as it arrives (OpenAI's closing
// [DONE] skipped); a refused request throws its error message. Both tabs stream through this.
async function* postEvents(url, body, signal) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw new Error(await apiError(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parse = sseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    for (const data of parse(value)) {
      if (data !== "[DONE]") yield JSON.parse(data);
    }
  }
}

async function generate() {
  if (running) return;
  const prompt = $("prompt").value;
  showError("");
  const output = $("output");
  output.replaceChildren();
  const promptSpan = document.createElement("span");
  promptSpan.className = "prompt-text";
  promptSpan.textContent = prompt;
  output.append(promptSpan);
  $("status").textContent = "生成中… generating";

  const controller = new AbortController();
  setRunning(controller);
  const started = performance.now();
  let count = 0;
  let finalEvent = null;
  try {
    const body = { inputs: prompt, parameters: parameters() };
    for await (const event of postEvents("/generate_stream", body, controller.signal)) {
      if (event.error) throw new Error(event.error);
      const span = document.createElement("span");
      span.className = "token";
      span.textContent = event.token.text;
      span.title = `logprob ${event.token.logprob.toFixed(2)}` +
        (event.token.similarity === null ? "" : `, cos ${event.token.similarity.toFixed(2)}`);
      output.append(span);
      count += 1;
      if (event.details) finalEvent = event;
    }
    const seconds = (performance.now() - started) / 1000;
    let status = `${count} 词 · ${seconds.toFixed(2)} s`;
    if (finalEvent) {
      const d = finalEvent.details;
      status += ` · 结束 ${d.finish_reason}` + (d.seed === null ? "" : ` · seed ${d.seed}`);
      if (d.unknown_words.length) status += ` · 未知词 unknown: ${d.unknown_words.join("、")}`;
    }
    $("status").textContent = status;
    await predict(prompt + (finalEvent ? finalEvent.generated_text : ""));
  } catch (error) {
    if (error.name === "AbortError") {
      $("status").textContent = `已停止 stopped after ${count} 词`;
    } else {
      showError(error.message);
      $("status").textContent = "";
    }
  } finally {
    setRunning(null);
  }
}

async function predict(text) {
  const context = text ?? $("prompt").value;
  const list = $("candidates");
  const response = await fetch("/predict", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ inputs: context, top_k: 10 }),
  });
  if (!response.ok) {
    showError(await apiError(response));
    list.replaceChildren();
    return;
  }
  const body = await response.json();
  const top = body.candidates.length ? body.candidates[0].probability : 1;
  list.replaceChildren(
    ...body.candidates.map((candidate) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "candidate";
      const percent = (candidate.probability * 100).toFixed(1);
      button.setAttribute("aria-label", `${candidate.word} ${percent}%`);
      const word = document.createElement("span");
      word.className = "word";
      word.textContent = candidate.word;
      const track = document.createElement("span");
      track.className = "bar-track";
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(1, (candidate.probability / top) * 100)}%`;
      track.append(bar);
      const prob = document.createElement("span");
      prob.className = "prob";
      prob.textContent = `${percent}%`;
      button.append(word, track, prob);
      if (candidate.similarity !== null) {
        const sim = document.createElement("span");
        sim.className = "sim";
        sim.textContent = `cos ${candidate.similarity.toFixed(3)}`;
        button.append(sim);
      }
      button.addEventListener("click", () => {
        $("prompt").value += candidate.word;
        predict();
      });
      item.append(button);
      return item;
    }),
  );
}

function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return value.toLocaleString();
    return Math.abs(value) < 1 ? `${(value * 100).toFixed(1)}%` : value.toFixed(1);
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function metricsTable(evaluation) {
  const rows = ["model", "lstm", "token_ngram", "unigram", "bigram", "char_5gram_kn", "ppmd"].filter(
    (name) => evaluation[name] && typeof evaluation[name] === "object",
  );
  if (!rows.length) return null;
  // bits per character first: the one figure comparable across tokenizers and baselines.
  const columns = ["bpc", "acc@1", "acc@10", "perplexity"];
  const key = (row, column) => {
    const entry = evaluation[row];
    const variants = [column, column.replace("@", "_at_"), column.replace("@", "")];
    for (const variant of variants) if (variant in entry) return entry[variant];
    return null;
  };
  const table = document.createElement("table");
  const caption = document.createElement("caption");
  caption.className = "help";
  caption.textContent = "留出集 held-out";
  table.append(caption);
  const head = table.insertRow();
  for (const title of ["", ...columns]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = title;
    head.append(th);
  }
  for (const row of rows) {
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = row;
    tr.append(th);
    for (const column of columns) {
      const value = key(row, column);
      const digits = { perplexity: 1, bpc: 2 }[column];
      tr.insertCell().textContent = digits && typeof value === "number" ? value.toFixed(digits) : fmt(value);
    }
  }
  return table;
}

async function loadCard() {
  const card = $("model-card");
  const response = await fetch("/info");
  if (!response.ok) {
    card.textContent = await apiError(response);
    return;
  }
  const info = await response.json();
  const corpus = info.corpus || {};
  const vocab = info.vocabulary || {};
  const network = info.network || {};
  const training = info.training || {};
  const facts = [
    ["模型 model", info.model_id],
    ["语料 corpus", corpus.name],
    ["字数 chars", corpus.chars],
    ["回数 chapters", corpus.chapters],
    ["词数 tokens", corpus.tokens],
    ["词表 vocabulary", vocab.size],
    ["向量维度 dim", vocab.dim],
    ["网络 network", `${network.layers ?? "?"}×LSTM(${network.hidden ?? "?"}) · ${network.loss ?? "?"}`],
    ["训练轮数 epochs", training.epochs],
    ["创建 created", info.created_at],
  ].filter(([, value]) => value !== undefined && value !== null);
  const list = document.createElement("dl");
  for (const [name, value] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = fmt(value);
    list.append(dt, dd);
  }
  card.replaceChildren(list);
  const table = info.evaluation ? metricsTable(info.evaluation) : null;
  if (table) {
    // Many baseline rows make the table wider than a phone: it scrolls inside its box, never the page.
    const scroller = document.createElement("div");
    scroller.className = "table-scroll";
    scroller.append(table);
    card.append(scroller);
  }
  const limits = info.limits || {};
  if (limits.max_new_tokens) {
    const slider = $("max_new_tokens");
    slider.max = String(Math.min(limits.max_new_tokens, 500));
  }
  if (limits.top_k) $("top_k").max = String(Math.min(limits.top_k, 200));
}

function init() {
  for (const id of SLIDERS) {
    const slider = $(id);
    const shown = $(`${id}-value`);
    const update = () => { shown.textContent = slider.value; };
    slider.addEventListener("input", update);
    update();
  }
  $("greedy").addEventListener("change", () => {
    for (const id of ["temperature", "top_k", "top_p", "min_p"]) $(id).disabled = $("greedy").checked;
  });
  $("generate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    generate();
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      generate();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && running) running.abort();
  });
  $("stop").addEventListener("click", () => running && running.abort());
  $("predict").addEventListener("click", () => {
    showError("");
    predict();
  });
  loadCard().catch((error) => { $("model-card").textContent = String(error); });
}

init();

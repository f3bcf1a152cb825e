// Playground chat tab: talks to POST /v1/chat/completions (the same route OpenAI clients use) with
// stream=true, and renders the reply as it streams in. The novel's lines the server recalled for the turn
// (the response's `grounding` extension, in its first chunk) are shown under the reply in a collapsible
// "from the novel" list with their chapters. The conversation lives in `history` while the page
// is open; GET /characters fills the character list. No libraries, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const history = []; // [{role: "user"|"assistant", content}]
  let running = null; // AbortController of the reply in progress

  function showError(message) {
    $("chat-error").textContent = message;
    $("chat-error").hidden = !message;
  }

  function bubble(role, speaker, text) {
    const item = document.createElement("li");
    item.className = `bubble ${role}`;
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = speaker;
    const words = document.createElement("span");
    words.className = "words";
    words.textContent = text;
    item.append(who, words);
    $("chat-log").append(item);
    item.scrollIntoView({ block: "nearest" });
    return words;
  }

  // The recalled exchanges under a reply: closed by default, so the conversation stays readable.
  function groundingList(item, lines) {
    if (!lines || !lines.length) return;
    const details = document.createElement("details");
    details.className = "grounding";
    const summary = document.createElement("summary");
    summary.textContent = `出自原著 from the novel (${lines.length})`;
    const list = document.createElement("ul");
    for (const line of lines) {
      const entry = document.createElement("li");
      const chapter = document.createElement("span");
      chapter.className = "chapter";
      chapter.textContent = `第${line.chapter}回`;
      entry.append(chapter, document.createTextNode(line.text));
      list.append(entry);
    }
    details.append(summary, list);
    item.append(details);
  }

  // postEvents (a streamed POST's events), apiError and showRunning are playground.js's, loaded before this
  // file.
  function setRunning(controller) {
    running = controller;
    showRunning(Boolean(controller), "chat-send", "chat-stop", "chat-log");
  }

  async function send() {
    if (running) return;
    const text = $("chat-input").value.trim();
    if (!text) {
      showError("先输入一句话 (type a message first)");
      return;
    }
    showError("");
    const character = $("chat-character").value;
    const user = $("chat-user").value.trim();
    history.push({ role: "user", content: text });
    bubble("user", user || "你", text);
    $("chat-input").value = "";
    const words = bubble("assistant", character || "答", "");
    words.parentElement.classList.add("streaming");
    const body = { messages: history, stream: true, max_tokens: 60, top_p: 0.9 };
    if (character) body.character = character;
    if (user) body.user_character = user;
    const temperature = $("chat-temperature").value.trim();
    if (temperature !== "") body.temperature = Number(temperature);
    const seed = $("chat-seed").value.trim();
    if (seed !== "") body.seed = Number(seed);
    const controller = new AbortController();
    setRunning(controller);
    $("chat-status").textContent = "回复中… replying";
    let reply = "";
    let finish = null;
    try {
      for await (const event of postEvents("/v1/chat/completions", body, controller.signal)) {
        if (event.error) throw new Error(event.error.message || String(event.error));
        if (event.grounding) groundingList(words.parentElement, event.grounding);
        const choice = event.choices && event.choices[0];
        if (!choice) continue;
        if (choice.delta && choice.delta.content) {
          reply += choice.delta.content;
          words.textContent = reply;
          // How many pieces the reply arrived in (a streamed reply has one per token or so).
          words.parentElement.dataset.chunks = String(Number(words.parentElement.dataset.chunks || 0) + 1);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      $("chat-status").textContent = `完成 done (${finish === "length" ? "length: max_tokens reached" : "stop"})`;
    } catch (error) {
      if (error.name === "AbortError") {
        $("chat-status").textContent = "已停止 stopped";
      } else {
        showError(String(error.message || error));
        $("chat-status").textContent = "";
      }
    } finally {
      words.parentElement.classList.remove("streaming");
      // A stopped reply stays in the conversation as far as it got; a failed, empty one is dropped.
      if (reply) history.push({ role: "assistant", content: reply });
      else words.parentElement.remove();
      setRunning(null);
    }
  }

  async function loadCharacters() {
    const response = await fetch("/characters");
    if (!response.ok) throw new Error(await apiError(response));
    const data = await response.json();
    const select = $("chat-character");
    select.replaceChildren();
    if (!data.characters.length) {
      const option = new Option("（旁白 narrator: this novel has no attributed dialogue）", "");
      select.append(option);
      return;
    }
    for (const character of data.characters) {
      select.append(new Option(`${character.name}（${character.utterances} 句）`, character.name));
    }
    select.value = data.default;
  }

  function selectTab(chat) {
    $("tab-chat").setAttribute("aria-selected", String(chat));
    $("tab-continue").setAttribute("aria-selected", String(!chat));
    $("chat-view").hidden = !chat;
    $("continue-view").hidden = chat;
    if (chat) $("chat-input").focus();
  }

  $("tab-chat").addEventListener("click", () => selectTab(true));
  $("tab-continue").addEventListener("click", () => selectTab(false));
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("chat-stop").addEventListener("click", () => running && running.abort());
  $("chat-clear").addEventListener("click", () => {
    if (running) running.abort();
    history.length = 0;
    $("chat-log").replaceChildren();
    $("chat-status").textContent = "";
  });
  if (location.hash === "#chat") selectTab(true);
  loadCharacters().catch((error) => showError(String(error.message || error)));
})();

// segscope web chat: posts the question, reads the server-sent events with fetch and a
// ReadableStream, and writes the answer as text as it arrives (never as markup). The `done`
// event's answer is authoritative and replaces the streamed text; its cited figures link to
// the segment cards. State for tests: window.segscopeChat.
(function () {
  "use strict";
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-question");
  var send = document.getElementById("chat-send");
  var log = document.getElementById("chat-log");
  var run = form.dataset.run;
  var state = window.segscopeChat = { busy: false, answers: 0, last: null, tokens: 0, error: null };

  function bubble(kind, text) {
    var d = document.createElement("div");
    d.className = "msg " + kind;
    d.textContent = text;
    log.appendChild(d);
    d.scrollIntoView({ block: "end" });
    return d;
  }

  function showFigures(el, figures) {
    if (!figures || !figures.length) { return; }
    var list = document.createElement("ul");
    list.className = "figures";
    figures.forEach(function (f) {
      var li = document.createElement("li"), m = /^segment\.(\d+)\./.exec(f.key), label = f.key + " = " + f.display;
      if (m) {
        var a = document.createElement("a");
        a.href = "/runs/" + encodeURIComponent(run) + "#segment-" + m[1];
        a.textContent = label;
        li.appendChild(a);
      } else { li.textContent = label; }
      list.appendChild(li);
    });
    el.appendChild(list);
  }

  // One SSE block: "event: NAME" and "data: JSON" lines.
  function handle(block, answer) {
    var name = "message", data = "";
    block.split("\n").forEach(function (l) {
      if (l.indexOf("event:") === 0) { name = l.slice(6).trim(); }
      else if (l.indexOf("data:") === 0) { data += l.slice(5).replace(/^ /, ""); }
    });
    if (!data) { return; }
    var payload = JSON.parse(data);
    if (name === "token") {
      state.tokens++;
      answer.text.textContent += payload.text;
    } else if (name === "done") {
      answer.text.textContent = payload.text;
      showFigures(answer.el, payload.figures);
      state.last = payload; state.answers++;
    } else if (name === "error") {
      answer.el.classList.add("error");
      answer.text.textContent = payload.message;
      state.error = payload;
    }
  }

  function ask(question) {
    state.busy = true; state.error = null; send.disabled = true;
    bubble("user", question);
    var el = bubble("bot", ""), text = document.createElement("span");
    text.className = "answer-text";
    el.appendChild(text);
    var answer = { el: el, text: text };
    fetch("/api/v1/runs/" + encodeURIComponent(run) + "/chat", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
      body: JSON.stringify({ question: question })
    }).then(function (r) {
      var type = r.headers.get("content-type") || "";
      if (type.indexOf("text/event-stream") !== 0) {
        return r.json().then(function (body) {
          el.classList.add("error");
          text.textContent = body.error ? body.error.message : "The question could not be answered (" + r.status + ").";
          state.error = body.error || { code: String(r.status) };
        });
      }
      var reader = r.body.getReader(), decoder = new TextDecoder(), buffered = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { return; }
          buffered += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
          var at;
          while ((at = buffered.indexOf("\n\n")) >= 0) {
            handle(buffered.slice(0, at), answer);
            buffered = buffered.slice(at + 2);
          }
          return pump();
        });
      }
      return pump();
    }).catch(function (e) {
      el.classList.add("error");
      text.textContent = "The connection failed: " + e.message;
      state.error = { code: "network" };
    }).then(function () {
      state.busy = false; send.disabled = false; input.focus();
    });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q = input.value.trim();
    if (!q || state.busy) { return; }
    input.value = "";
    ask(q);
  });
  state.ask = ask;
})();

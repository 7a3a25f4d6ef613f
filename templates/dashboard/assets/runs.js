// segscope runs list: start a run on files in the inbox (POST /api/v1/runs) and follow its
// progress over server-sent events; the list reloads when the run is done.
(function () {
  "use strict";
  var form = document.getElementById("start-form");
  if (!form) { return; }
  var status = document.getElementById("start-status");
  var button = document.getElementById("start-submit");
  function kind() { return form.elements.kind.value; }
  function showKind() {
    form.querySelectorAll("fieldset[data-kind]").forEach(function (f) { f.hidden = f.dataset.kind !== kind(); });
  }
  form.elements.kind.addEventListener("change", showKind);
  showKind();
  function say(text) { status.textContent = text; }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = { kind: kind() };
    var fields = kind() === "store" ? ["transactions", "events", "as_of"] : ["features", "id_column", "label_column"];
    fields.forEach(function (name) { var v = form.elements[name].value.trim(); if (v) { body[name] = v; } });
    var k = form.elements.k.value.trim();
    if (k) { body.k = /^\d+$/.test(k) ? Number(k) : k; }
    var maps = form.elements.maps.value.split(",").map(function (m) { return m.trim(); }).filter(Boolean);
    if (maps.length) { body.maps = maps; }
    button.disabled = true;
    say("Starting…");
    fetch("/api/v1/runs", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (answer) {
        if (r.status !== 202) { throw new Error(answer.error ? answer.error.message : "status " + r.status); }
        follow(answer);
      });
    }).catch(function (e) { say("Not started: " + e.message); button.disabled = false; });
  });

  function follow(started) {
    var events = new EventSource(started.events);
    events.addEventListener("progress", function (ev) {
      var p = JSON.parse(ev.data);
      if (p.state === "succeeded") { events.close(); say("Run " + p.run_id + " is ready."); location.reload(); return; }
      if (p.state === "failed" || p.state === "interrupted") { events.close(); say("Run " + p.run_id + " " + p.state + ": " + (p.error || "")); button.disabled = false; return; }
      say("Run " + p.run_id + ": " + p.stage + " (" + Math.round(p.percent) + "%)");
    });
    events.onerror = function () { if (events.readyState === EventSource.CLOSED) { button.disabled = false; } };
  }
})();

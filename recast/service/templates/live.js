// Live updates of a request page from the API's Server-Sent Events; without JavaScript the page
// simply shows the state as of loading. Text only: nothing received is ever parsed as HTML.
(function () {
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var status = document.getElementById("status");
  var progress = document.getElementById("progress");
  var log = document.getElementById("log");
  var bar = document.getElementById("bar");
  var initial = status.textContent;
  var source = new EventSource(live.dataset.events);
  source.addEventListener("request", function (event) {
    var r = JSON.parse(event.data);
    status.textContent = r.status;
    var p = r.progress;
    if (p) {
      var percent = p.total ? Math.floor(100 * p.done / p.total) : 0;
      var text = p.done + "/" + (p.total || "?") + " jobs done" + (p.total ? " (" + percent + "%)" : "");
      if (bar) { bar.value = percent; bar.textContent = percent + "%"; }
      if (p.running && p.running.length) text += "; running: " + p.running.join(", ");
      if (p.failed && p.failed.length) text += "; failed: " + p.failed.join(", ");
      progress.textContent = text;
      log.textContent = (p.log || []).join("\n");
    }
  });
  source.addEventListener("end", function () {
    source.close();
    if (status.textContent !== initial) window.location.reload();  // results, timeline and actions
  });
})();

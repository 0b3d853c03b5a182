/* Job page: each variant's text as it is written, from the job's event stream (GET /api/v1/jobs/{id}/stream,
   Server-Sent Events; see generation/streaming.py). When the job ends, the stored variants replace it.
   Without EventSource (or if the stream is refused) the page's polling still shows the result. */
(function () {
  "use strict";

  var section = document.getElementById("job-stream");
  if (!section || !window.EventSource) return;
  var list = section.querySelector(".variants");
  var source = new EventSource(section.getAttribute("data-stream"));

  function textOf(index) {
    var id = "job-stream-text-" + index;
    var text = document.getElementById(id);
    if (text) return text;
    var card = document.createElement("article");
    card.className = "card variant is-streaming";
    var header = document.createElement("header");
    header.className = "variant-header";
    var title = document.createElement("h3");
    title.textContent = "Variant " + (index + 1);
    header.appendChild(title);
    text = document.createElement("div");
    text.className = "variant-text";
    text.id = id;
    card.appendChild(header);
    card.appendChild(text);
    // Cards in variant order, whichever wrote first.
    var next = Array.prototype.find.call(list.children, function (other) {
      return Number(other.getAttribute("data-index")) > index;
    });
    card.setAttribute("data-index", String(index));
    list.insertBefore(card, next || null);
    return text;
  }

  // "start": the text (re)starts from nothing, e.g. a new attempt after a lost worker.
  source.addEventListener("start", function () {
    list.replaceChildren();
    section.hidden = true;
  });

  source.addEventListener("delta", function (event) {
    var delta = JSON.parse(event.data);
    textOf(delta.variant).textContent += delta.text;
    section.hidden = false;
  });

  // "end": the variants are stored; show them now rather than at the next poll.
  source.addEventListener("end", function () {
    source.close();
    list.querySelectorAll(".variant").forEach(function (card) { card.classList.remove("is-streaming"); });
    if (window.htmx && document.getElementById("job-live")) {
      window.htmx.ajax("GET", section.getAttribute("data-refresh"), { target: "#job-live", swap: "outerHTML" });
    }
  });
})();

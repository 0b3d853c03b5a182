/* Loom dashboard: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  var root = document.documentElement;
  root.classList.remove("no-js");
  root.classList.add("js");

  // Copy-to-clipboard: <button data-copy="#selector">.
  function copy(button) {
    var target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) return;
    var text = "value" in target ? target.value : target.textContent;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      button.disabled = true;
      setTimeout(function () { button.textContent = label; button.disabled = false; }, 1800);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(target, done); });
    } else {
      fallbackCopy(target, done);
    }
  }

  function fallbackCopy(target, done) {
    if (target.select) target.select();
    try { if (document.execCommand("copy")) done(); } catch (e) { /* the text stays selected */ }
  }

  document.addEventListener("click", function (event) {
    var el = event.target instanceof Element ? event.target : null;
    if (!el) return;

    var copyButton = el.closest("[data-copy]");
    if (copyButton) { event.preventDefault(); copy(copyButton); return; }

    var dismiss = el.closest("[data-dismiss]");
    if (dismiss) { var alert = dismiss.closest(".alert"); if (alert) alert.remove(); return; }

    var confirmButton = el.closest("button[data-confirm]");
    if (confirmButton && !window.confirm(confirmButton.getAttribute("data-confirm"))) {
      event.preventDefault();
      return;
    }

    // Close open dropdowns when clicking elsewhere.
    document.querySelectorAll("details.dropdown[open]").forEach(function (details) {
      if (!details.contains(el)) details.removeAttribute("open");
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.dropdown[open]").forEach(function (details) {
      details.removeAttribute("open");
      var summary = details.querySelector("summary");
      if (summary) summary.focus();
    });
  });

  // Inline (htmx) actions. A refusal from our views comes as a 4xx with "HX-Reswap: none" and
  // the message out of band: swap that in. Any other failure (an expired CSRF token, a 500)
  // leaves the page alone and says so in the message area.
  function showMessage(level, text) {
    var box = document.getElementById("messages");
    if (!box) return;
    var alert = document.createElement("div");
    alert.className = "alert alert-" + level;
    alert.setAttribute("role", "alert");
    var span = document.createElement("span");
    span.className = "grow";
    span.textContent = text;
    alert.appendChild(span);
    box.replaceChildren(alert);
  }

  // A refused inline role change: put the <select> back on the role the member still has.
  function resetSelect(el) {
    if (!(el instanceof HTMLSelectElement)) return;
    for (var i = 0; i < el.options.length; i++) {
      if (el.options[i].defaultSelected) { el.selectedIndex = i; return; }
    }
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status < 400) return;
    if (xhr.status < 500 && xhr.getResponseHeader("HX-Reswap") === "none") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
      resetSelect(event.detail.elt);
      return;
    }
    event.detail.shouldSwap = false;
    showMessage("error", xhr.status >= 500
      ? "Something went wrong on our side. Please try again in a moment."
      : "That did not work (" + xhr.status + "). Reload the page and try again.");
  });

  document.addEventListener("htmx:sendError", function () {
    showMessage("error", "The server could not be reached. Check your connection and try again.");
  });

  document.addEventListener("focusin", function (event) {
    var el = event.target;
    if (el instanceof HTMLInputElement && el.hasAttribute("data-select-on-focus")) el.select();
  });
})();

// okapp's small UI glue: the one modal (focus in and out, Escape), toasts, embedded detection.
// Everything else is htmx attributes in the templates.
(function () {
  "use strict";

  // Inside the Shopify admin the sidebar carries navigation, so the in-page bar hides.
  if (window.top !== window.self) document.documentElement.classList.add("embedded");

  let returnFocusId = null;
  let returnFocusEl = null;

  function modal() { return document.getElementById("modal"); }

  function focusInto() {
    // First what needs fixing, then what the template asked for, then the first field or button.
    const content = document.getElementById("modal-content");
    const target = content.querySelector("[aria-invalid=true]") ||
      content.querySelector("[autofocus]") ||
      content.querySelector(".modal-body input:not([type=hidden]):not([disabled]), .modal-body select, .modal-body textarea") ||
      content.querySelector(".modal-footer .btn-primary, .modal-footer .btn, .modal-close");
    if (target) target.focus();
  }

  function openModal() {
    const dialog = modal();
    if (!dialog.open) {
      const active = document.activeElement;
      returnFocusEl = active && active !== document.body ? active : null;
      returnFocusId = returnFocusEl && returnFocusEl.id ? returnFocusEl.id : null;
      dialog.showModal();
    }
    focusInto();
  }

  function closeModal() {
    const dialog = modal();
    if (dialog && dialog.open) dialog.close();
  }

  function restoreFocus() {
    // The element that opened the modal may have been re-rendered by the save: find it by id.
    let el = returnFocusEl && returnFocusEl.isConnected ? returnFocusEl : null;
    if (!el && returnFocusId) el = document.getElementById(returnFocusId);
    if (!el) el = document.getElementById("main");
    if (el) el.focus();
    returnFocusEl = null;
    returnFocusId = null;
  }

  function showToast(message) {
    if (!message) return;
    if (window.shopify && window.shopify.toast) { window.shopify.toast.show(message); return; }
    const toast = document.getElementById("toast");
    toast.textContent = message;
    toast.classList.add("show");
    clearTimeout(showToast.timer);
    showToast.timer = setTimeout(function () { toast.classList.remove("show"); }, 3000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const dialog = modal();
    if (!dialog) return;
    dialog.addEventListener("close", function () {
      document.getElementById("modal-content").innerHTML = "";
      restoreFocus();
    });
    // A click on the backdrop (the dialog element itself, outside its content) closes it.
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) closeModal();
    });
  });

  // Cancel/close: inside the open modal it closes it; on a full page it is a plain link back.
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-modal-close]") && modal().open) {
      event.preventDefault();
      closeModal();
    }
  });

  // Template picker: the name follows the chosen template until the merchant types their own.
  document.addEventListener("change", function (event) {
    const radio = event.target.closest("input[data-default-name]");
    if (!radio) return;
    const name = radio.form && radio.form.elements.namedItem("name");
    if (!name) return;
    const defaults = Array.from(radio.form.querySelectorAll("input[data-default-name]"))
      .map(function (r) { return r.dataset.defaultName; });
    if (!name.value.trim() || defaults.indexOf(name.value) !== -1) name.value = radio.dataset.defaultName;
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    const target = event.detail.target;
    if (target && target.id === "modal-content" && target.children.length) openModal();
  });

  // The server says what happened with HX-Trigger headers: {"modal:close": true, "toast": "Saved"}.
  // (This script is deferred, so the body exists.)
  document.body.addEventListener("modal:close", closeModal);
  document.body.addEventListener("toast", function (event) { showToast(event.detail.value); });
  // Whole-page navigation asked for by the server (App Bridge's Navigation API inside the admin).
  document.body.addEventListener("navigate", function (event) { window.open(event.detail.value, "_self"); });

  // A request that failed says so instead of doing nothing. (401 is left to session-token.js,
  // which fetches a new ID token and retries.)
  document.body.addEventListener("htmx:responseError", function (event) {
    const status = event.detail.xhr.status;
    if (status === 401) return;
    showToast(status === 404 ? "That item no longer exists. Reload the page." :
      "Something went wrong (" + status + "). Nothing was changed; try again.");
  });
  document.body.addEventListener("htmx:sendError", function () {
    showToast("okapp could not be reached. Check your connection and try again.");
  });

  window.okapp = { openModal: openModal, closeModal: closeModal, showToast: showToast };
})();

// Puts a fresh Shopify ID token on every htmx request made inside the admin.
//
// htmx 2 sends XMLHttpRequests, which App Bridge does not patch, so each request waits for
// `await shopify.idToken()` (tokens live one minute; App Bridge caches them) and carries it as
// `Authorization: Bearer`. A 401 with X-Shopify-Retry-Invalid-Session-Request is retried once
// with a new token, as App Bridge's own fetch would.
(function () {
  "use strict";
  if (!window.shopify || typeof window.shopify.idToken !== "function") {
    return; // not embedded: the development login's cookie signs requests in
  }
  var RETRY_HEADER = "X-Shopify-Retry-Invalid-Session-Request";
  var tokens = new WeakMap(); // element -> token fetched for its pending request
  var retried = new WeakSet(); // elements whose failed request was already re-sent once

  document.addEventListener("htmx:confirm", function (evt) {
    var elt = evt.detail.elt;
    if (tokens.has(elt)) {
      return; // the token for this request is ready; let htmx carry on
    }
    evt.preventDefault();
    var question = evt.detail.question;
    if (question && !window.confirm(question)) {
      return;
    }
    window.shopify.idToken().then(function (token) {
      tokens.set(elt, token);
      evt.detail.issueRequest(true); // true: the hx-confirm question was asked above
    });
  });

  document.addEventListener("htmx:configRequest", function (evt) {
    var elt = evt.detail.elt;
    var token = tokens.get(elt);
    if (token) {
      evt.detail.headers["Authorization"] = "Bearer " + token;
      tokens.delete(elt);
    }
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var xhr = evt.detail.xhr;
    var elt = evt.detail.elt;
    if (!xhr || xhr.status !== 401 || !xhr.getResponseHeader(RETRY_HEADER)) {
      retried.delete(elt);
      return;
    }
    if (retried.has(elt)) {
      retried.delete(elt);
      return; // a second refusal: the session is really gone; the error shows as usual
    }
    retried.add(elt);
    var cfg = evt.detail.requestConfig || {};
    // htmx.ajax re-reads the element's values itself, and goes through htmx:confirm again,
    // which fetches a new token.
    window.htmx.ajax(cfg.verb || "get", cfg.path || xhr.responseURL, {
      source: elt,
      target: evt.detail.target,
    });
  });
})();

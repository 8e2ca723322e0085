// The review page without JavaScript is a plain form that works. With it: previews of the chosen
// photos and videos, and a progress bar while they upload (XMLHttpRequest reports upload progress;
// fetch does not).
(function () {
  "use strict";

  function focusBanner() {
    var banner = document.querySelector("[data-autofocus]");
    if (banner) banner.focus();
  }

  function showPreviews(input) {
    var list = document.getElementById(input.getAttribute("data-previews"));
    if (!list) return;
    list.querySelectorAll("[data-url]").forEach(function (el) { URL.revokeObjectURL(el.getAttribute("data-url")); });
    list.textContent = "";
    Array.prototype.forEach.call(input.files, function (file) {
      var item = document.createElement("li");
      var url = URL.createObjectURL(file);
      var media;
      if (file.type.indexOf("video/") === 0) {
        media = document.createElement("video");
        media.muted = true;
        media.playsInline = true;
        media.preload = "metadata";
      } else {
        media = document.createElement("img");
        media.alt = "";
        // HEIC cannot be shown by most browsers: the file name below still says what was chosen.
        media.onerror = function () { media.removeAttribute("src"); };
      }
      media.src = url;
      media.setAttribute("data-url", url);
      var name = document.createElement("span");
      name.className = "rv-preview-name";
      name.textContent = file.name;  // text, never HTML
      item.appendChild(media);
      item.appendChild(name);
      list.appendChild(item);
    });
  }

  function replacePage(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var main = doc.getElementById("main");
    if (!main) { document.open(); document.write(html); document.close(); return; }
    // Files the server did not complain about stay chosen: move the old inputs into the new form.
    var kept = 0;
    main.querySelectorAll("input[type=file]").forEach(function (fresh) {
      var old = document.getElementById(fresh.id);
      if (old && old.files.length && fresh.getAttribute("aria-invalid") !== "true") {
        fresh.replaceWith(old);
        kept += 1;
      }
    });
    if (kept) main.querySelectorAll("[data-files-notice]").forEach(function (el) { el.remove(); });
    document.getElementById("main").replaceWith(main);
    main.querySelectorAll("input[type=file][data-previews]").forEach(showPreviews);
    window.scrollTo(0, 0);
    focusBanner();
  }

  function send(form) {
    var hasFiles = Array.prototype.some.call(form.querySelectorAll("input[type=file]"), function (i) { return i.files.length; });
    var button = form.querySelector("[type=submit]");
    var progress = form.querySelector("[data-progress]");
    var bar = progress && progress.querySelector("progress");
    var text = progress && progress.querySelector("[data-progress-text]");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    if (hasFiles && progress) {
      progress.hidden = false;
      xhr.upload.onprogress = function (event) {
        if (!event.lengthComputable) return;
        var pct = Math.round(100 * event.loaded / event.total);
        bar.value = pct;
        text.textContent = pct < 100 ? "Uploading… " + pct + "%" : "Checking your files…";
      };
    }
    button.disabled = true;
    xhr.onload = function () {
      // Success redirects to the page with its thank-you note; errors come back as the page.
      if (xhr.status < 300 && xhr.responseURL && xhr.responseURL.indexOf("saved=1") !== -1) {
        window.location.assign(xhr.responseURL);
      } else {
        replacePage(xhr.responseText);
      }
    };
    xhr.onerror = function () {
      button.disabled = false;
      if (progress) progress.hidden = true;
      alert("The connection was interrupted. Nothing was lost: please try again.");
    };
    xhr.send(new FormData(form));
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("input[type=file][data-previews]")) showPreviews(event.target);
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("[data-review-form]") || !window.FormData || !window.DOMParser) return;
    event.preventDefault();
    send(form);
  });
  document.addEventListener("DOMContentLoaded", focusBanner);
})();

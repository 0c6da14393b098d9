// npsd dashboard: small enhancements on top of pages that work without JavaScript.
// htmx requests carry the session's CSRF token (forms carry it as a hidden field).
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
  }
});

// A filter updated in place (hx-boost, see _forms.html in_place) that the server refuses answers
// 400 with the same page, its errors next to their fields: show it, as a page load would.
// Other htmx requests (the live polls) keep htmx's rule of not swapping an error.
document.addEventListener("htmx:beforeSwap", function (event) {
  if (event.detail.boosted && event.detail.xhr.status === 400) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

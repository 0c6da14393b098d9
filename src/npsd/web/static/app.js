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

// After a filter updated the page in place, the keyboard stays where it was: the control that was
// used (the same field by its id, or the link or button with the same text) has the focus again,
// instead of the page's start.
var usedControl = null;
document.addEventListener("htmx:beforeRequest", function (event) {
  var el = document.activeElement;
  usedControl = event.detail.boosted && el && el !== document.body
    ? { id: el.id, tag: el.tagName.toLowerCase(), text: el.textContent.trim() }
    : null;
});
document.addEventListener("htmx:afterSettle", function (event) {
  var used = usedControl;
  if (!event.detail.boosted || !used) {
    return;
  }
  usedControl = null;
  var again = used.id
    ? document.getElementById(used.id)
    : Array.prototype.find.call(document.querySelectorAll("#main " + used.tag), function (el) {
        return el.textContent.trim() === used.text;
      });
  if (again) {
    again.focus();
  }
});

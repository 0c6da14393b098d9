// Starts Swagger UI on /docs (npsd.web.docs). A file of its own, not an inline script: the page's
// Content-Security-Policy allows scripts from npsd only. The URLs come from the page's data-*.
(function () {
  "use strict";
  var element = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // The default validator is a badge image from validator.swagger.io: never another host.
    validatorUrl: null,
    oauth2RedirectUrl: new URL(element.dataset.oauth2RedirectUrl, window.location.href).href,
  });
})();

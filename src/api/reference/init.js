// Veritrail: start the vendored Scalar viewer on this service's own OpenAPI description,
// with nothing fetched from another origin (no web fonts, no proxy, no telemetry).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  Scalar.createApiReference("#reference", {
    url: "/openapi.json",
    withDefaultFonts: false,
    hideClientButton: true,
    telemetry: false,
    showDeveloperTools: "never",
    agent: { disabled: true },
  });
});

/* Sets <html data-theme> before the first paint: the choice stored by the theme button, else
 * the system's (prefers-color-scheme). app.js owns the button and later changes. */
(function () {
  "use strict";
  var stored = null;
  try {
    stored = window.localStorage.getItem("dashboard-theme");
  } catch (e) {
    stored = null;
  }
  var system = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  document.documentElement.dataset.theme = stored === "dark" || stored === "light" ? stored : system;
})();

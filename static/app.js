// Sends the page's CSRF token with every htmx request, as the X-CSRF-Token header.
// htmx 2 and htmx 4 name the event that configures a request differently.
(() => {
  const token = () => document.querySelector('meta[name="csrf-token"]')?.content;
  document.addEventListener("htmx:configRequest", (event) => {
    const value = token();
    if (value) event.detail.headers["X-CSRF-Token"] = value;
  });
  document.addEventListener("htmx:config:request", (event) => {
    const value = token();
    if (value) event.detail.ctx.request.headers["X-CSRF-Token"] = value;
  });
})();

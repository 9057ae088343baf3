// Loaded before anything else on every page (a classic script, not a module, so it runs first).
// Each page's module sends its forms itself, once booted (it then adds "ready" to <html>). A form
// submitted before that (a slow start: the page shows after 1.5 s even when not ready) would be
// sent by the browser instead: the page would be left for a bare error and the typing lost. Hold
// it, and send it once the page's module handles it (the last one only, so a double click sends
// once).
(() => {
  const root = document.documentElement;
  /** @type {{form: HTMLFormElement, submitter: HTMLElement | null} | null} */
  let held = null;
  document.addEventListener(
    "submit",
    (event) => {
      if (root.classList.contains("ready")) return;
      event.preventDefault();
      const submit = /** @type {SubmitEvent} */ (event);
      held = { form: /** @type {HTMLFormElement} */ (submit.target), submitter: submit.submitter };
    },
    true,
  );
  new MutationObserver((_, observer) => {
    if (!root.classList.contains("ready")) return;
    observer.disconnect();
    // A task later: the module attaches its handlers right after boot() resolves.
    setTimeout(() => {
      if (held && held.form.isConnected) {
        const { form, submitter } = held;
        held = null;
        const button = /** @type {HTMLButtonElement | null} */ (submitter);
        form.requestSubmit(button && button.form === form ? button : undefined);
      }
    }, 0);
  }).observe(root, { attributes: true, attributeFilter: ["class"] });
})();

// The browser's EventTarget, with each event carrying one value (its detail): on(type, fn) hands
// fn that value and returns what stops listening. A listener that throws is reported by the
// browser and does not keep the others from running.

/**
 * @template {Record<string, any>} M event type -> the value its listeners get
 */
export class Events extends EventTarget {
  /**
   * @template {keyof M & string} K
   * @param {K} type
   * @param {(value: M[K]) => void} fn
   * @returns {() => void} stops listening
   */
  on(type, fn) {
    /** @param {Event} e */
    const listener = (e) => fn(/** @type {CustomEvent<M[K]>} */ (e).detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /**
   * @template {keyof M & string} K
   * @param {K} type
   * @param {M[K]} value
   */
  emit(type, value) {
    this.dispatchEvent(new CustomEvent(type, { detail: value }));
  }
}

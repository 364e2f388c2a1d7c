/**
 * A minimal typed event emitter.
 *
 * Invariant: a listener that throws never breaks the client's state: the
 * exception is reported asynchronously (like an uncaught error in an event
 * handler of the DOM) and the other listeners still run.
 */

type Listener<T> = (event: T) => void;

export class Emitter<Events> {
  #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Call `listener` on every `event`. Returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Remove a listener added with {@link on}. */
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(event)?.delete(listener as Listener<never>);
  }

  /** Call the listeners of `event`, in the order they were added. */
  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (err) {
        reportLater(err);
      }
    }
  }
}

function reportLater(err: unknown): void {
  setTimeout(() => {
    throw err;
  }, 0);
}

/**
 * A minimal typed event emitter.
 *
 * Invariant: a listener that throws never breaks the client's state: the
 * exception is reported asynchronously (like an uncaught error in an event
 * handler of the DOM) and the other listeners still run.
 */
type Listener<T> = (event: T) => void;
export declare class Emitter<Events> {
    #private;
    /** Call `listener` on every `event`. Returns a function that removes it. */
    on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void;
    /** Remove a listener added with {@link on}. */
    off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void;
    /** Call the listeners of `event`, in the order they were added. */
    protected emit<K extends keyof Events>(event: K, payload: Events[K]): void;
}
export {};

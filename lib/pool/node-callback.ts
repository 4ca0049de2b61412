export type NodeCallback<T> = (err: Error | undefined, value?: T) => void;

/**
 * Calls a Node-style callback with how `result` settles, outside any promise reaction (as pg-pool
 * calls it from its client's callback): an exception the callback throws is an uncaught exception,
 * never an unhandled rejection nor a second call of the callback.
 */
export function callBack<T>(result: Promise<T>, cb: NodeCallback<T>): undefined {
  result.then(
    (value) => process.nextTick(cb, undefined, value),
    (err: Error) => process.nextTick(cb, err),
  );
  return undefined;
}

/** pg-pool's answer to `pool.query(fn)`: the function is called back with an error, never run as a statement. */
export function functionAsQuery(fn: NodeCallback<unknown>): undefined {
  return callBack(Promise.reject(new TypeError('Passing a function as the first parameter to pool.query is not supported')), fn);
}

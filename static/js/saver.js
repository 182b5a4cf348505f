/**
 * The annotator's save queue: every accepted object is saved to the server, and a failed
 * save is retried and shown, never silently dropped.
 *
 *   const q = new SaveQueue({ send: (payload) => fetch(...), onChange: (job) => render(job) });
 *   const job = q.add(payload);     // job.state: "saving" -> "saved" | "retrying" | "failed"
 *   await q.idle();                 // every job saved or failed for good
 *
 * `send(payload)` resolves to the server's answer or throws; an error whose `retriable` is
 * false (a 4xx answer: the server refused the data) stops the job in state "failed" (the
 * page offers a Retry button: `q.retry(job)`); any other error (network down, 5xx, 429)
 * is retried after the next delay of `delays` (the last one repeats), for as long as it takes.
 * `q.retry(job)` also cuts a waiting job's delay short. Pure logic (no DOM, injectable
 * `sleep`), tested with node --test.
 */

export class SaveError extends Error {
  constructor(message, { retriable = true, status = null } = {}) {
    super(message);
    this.name = "SaveError";
    this.retriable = retriable;
    this.status = status;
  }
}

/** A SaveError from an HTTP answer: 408, 429 and 5xx are worth retrying, other 4xx are not. */
export function httpError(status, message) {
  const retriable = status === 408 || status === 429 || status >= 500;
  return new SaveError(message || `HTTP ${status}`, { retriable, status });
}

const defaultSleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.wake = () => {
      clearTimeout(t);
      resolve();
    };
  });

let nextJobId = 1;

export class SaveQueue {
  /**
   * @param {{send: (payload: any) => Promise<any>, onChange?: (job: object) => void,
   *   delays?: number[], sleep?: (ms: number, signal: {wake?: () => void}) => Promise<void>}} opts
   */
  constructor({ send, onChange = () => {}, delays = [1000, 2000, 4000, 8000, 15000, 30000], sleep = defaultSleep }) {
    this.send = send;
    this.onChange = onChange;
    this.delays = delays;
    this.sleep = sleep;
    this.jobs = [];
    this.waiters = [];
  }

  /** Queue `payload`; returns the job {id, payload, state, attempts, error, result, retryInMs}. */
  add(payload, extra = {}) {
    const job = { id: nextJobId++, payload, state: "saving", attempts: 0, error: null, result: null, retryInMs: null, ...extra };
    this.jobs.push(job);
    this._run(job);
    return job;
  }

  /** Jobs not saved yet (saving, waiting to retry, or failed). */
  get unsaved() {
    return this.jobs.filter((j) => j.state !== "saved" && j.state !== "cancelled");
  }

  /** Jobs that stopped for good (need the user: retry or delete). */
  get failed() {
    return this.jobs.filter((j) => j.state === "failed");
  }

  /** Try a failed job again, or cut a waiting job's delay short. */
  retry(job) {
    if (job.state === "failed") {
      job.state = "saving";
      this._run(job);
    } else if (job.state === "retrying") {
      job.signal?.wake?.();
    }
  }

  /** Give up a job that is not saved (the user deleted the object); false if it is saved or being sent. */
  cancel(job) {
    if (job.state === "failed" || job.state === "retrying") {
      job.state = "cancelled";
      job.signal?.wake?.();
      this._changed(job);
      return true;
    }
    return false;
  }

  /** Resolves once no job is saving or waiting to retry. */
  idle() {
    if (!this._busy()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  _busy() {
    return this.jobs.some((j) => j.state === "saving" || j.state === "retrying");
  }

  _changed(job) {
    try {
      this.onChange(job);
    } finally {
      if (!this._busy()) {
        const w = this.waiters;
        this.waiters = [];
        for (const resolve of w) resolve();
      }
    }
  }

  async _run(job) {
    for (;;) {
      job.state = "saving";
      job.retryInMs = null;
      job.attempts++;
      this._changed(job);
      try {
        job.result = await this.send(job.payload);
        job.state = "saved";
        job.error = null;
        this._changed(job);
        return;
      } catch (e) {
        job.error = e?.message ?? String(e);
        if (e instanceof SaveError && !e.retriable) {
          job.state = "failed";
          this._changed(job);
          return;
        }
        const delay = this.delays[Math.min(job.attempts - 1, this.delays.length - 1)];
        job.state = "retrying";
        job.retryInMs = delay;
        job.signal = {};
        this._changed(job);
        await this.sleep(delay, job.signal);
        job.signal = null;
        if (job.state === "cancelled") return;
      }
    }
  }
}

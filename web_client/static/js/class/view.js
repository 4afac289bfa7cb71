// What the page shows, told to the server (`view`): the videos it sends are chosen from it
// (docs/protocol.md, "What a page shows"). Sent when it changes, debounced, within the server's
// budget; sent again after a refusal and after every (re)join.

// The server takes 10 `view` messages per 5 seconds: one every 600 ms at most stays well within.
const VIEW_EVERY_MS = 600;
const VIEW_RETRY_MS = 1000; // a view refused as rate_limited is sent again this much later

export class ViewReporter {
  /** `canSend()`: whether the session is in class with its socket open; `send(message)` sends. */
  constructor(signal, canSend) {
    this.signal = signal;
    this.canSend = canSend;
    this.view = null; // none yet: until the page tells, the server sends every video
    this.sent = null; // the JSON of the last view sent on this connection
    this.ids = new Set(); // ids of view messages, whose rate_limited refusal is ours to handle
    this.at = 0;
    this.timer = null;
  }

  /**
   * The page's view: the video tiles on screen ({track_id, width, height}, css px), the
   * participant pinned, the data saver.
   */
  set(view) {
    const json = JSON.stringify(view);
    if (json === JSON.stringify(this.view)) return; // the page drew again, showing the same
    this.view = view;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.send(), 250);
  }

  send() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.view || !this.canSend()) return;
    const json = JSON.stringify(this.view);
    if (json === this.sent) return;
    const wait = this.at + VIEW_EVERY_MS - performance.now();
    if (wait > 0 && this.sent !== null) {
      this.timer = setTimeout(() => this.send(), wait);
      return;
    }
    const id = this.signal.id();
    this.ids.add(id);
    if (this.ids.size > 32) this.ids.delete(this.ids.values().next().value);
    this.sent = json;
    this.at = performance.now();
    this.signal.send({ type: "view", id, ...this.view });
  }

  /** A new connection knows nothing of the page: tell it again. */
  forget() {
    this.sent = null;
    this.ids.clear();
  }

  /** Whether the error `message` refuses one of our views; if so, it is handled. */
  refused(message) {
    if (!this.ids.delete(message.ref)) return false;
    if (message.code !== "rate_limited") {
      console.error("view refused", message); // a view of ours the server finds wrong: not sent again
      return true;
    }
    // Not taken: the latest view goes again a moment later.
    this.sent = null;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.send(), VIEW_RETRY_MS);
    return true;
  }
}

// The video grid: one tile per participant, one per screen share; the pinned one shown large, the
// others in pages of thumbnails (a class of 30 does not scroll 30 live videos). The grid also
// knows which video tiles are on screen and at what size: the server sends only those (`view`).
import { el } from "../dom.js";
import { label, t } from "../i18n.js";

const MAX_PAGE = 9; // thumbnails on a page, at most: with the teacher large, ten videos
const THUMB = { width: 192, height: 108 }; // css px: the smallest thumbnail worth drawing
const GAP = 8; // css px, as .grid's gap
const PAGER_HEIGHT = 44; // css px the page controls take under the grid, with their gap

function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `/static/img/icons.svg#${name}`);
  svg.append(use);
  return svg;
}

/** The first letter of a name, past any direction marks (which would show nothing). */
function initial(name) {
  const letters = [...(name || "").replace(/[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "").trim()];
  return (letters[0] || "?").toUpperCase();
}

/** How many whole thumbnails fit along a side. */
function fit(length, thumb) {
  return Math.max(1, Math.floor((length + GAP) / (thumb + GAP)));
}

/** Columns and rows for `count` tiles in a box: the largest 16:9 picture, within the limits. */
function arrange(count, width, height, maxColumns, maxRows) {
  let best = { columns: Math.min(count, maxColumns) || 1, rows: 1, area: -1 };
  for (let columns = 1; columns <= Math.min(count, maxColumns); columns += 1) {
    const rows = Math.ceil(count / columns);
    if (rows > maxRows) continue;
    const w = (width - (columns - 1) * GAP) / columns;
    const h = (height - (rows - 1) * GAP) / rows;
    const area = Math.min(w, (h * 16) / 9) * Math.min(h, (w * 9) / 16);
    if (area > best.area) best = { columns, rows, area };
  }
  return best;
}

class Tile {
  constructor(key, onPin) {
    this.key = key;
    this.video = el("video", { attrs: { autoplay: true, playsinline: true, muted: true } });
    this.video.muted = true; // sound plays from the audio elements, never twice
    // Until its first frame, a video shows the initial rather than a black box.
    this.video.addEventListener("loadeddata", () => this.root.classList.remove("blank"));
    this.avatar = el("span", { className: "avatar", attrs: { "aria-hidden": "true" } });
    this.name = el("span", { className: "name" });
    this.role = el("span", { className: "role", i18n: "room.teacher_badge", attrs: { hidden: true } });
    this.muted = el("span", { className: "state muted", attrs: { hidden: true } }, [
      icon("microphone-off"),
      el("span", { className: "visually-hidden", i18n: "room.muted_badge" }),
    ]);
    this.hand = el("span", { className: "state hand", attrs: { hidden: true } }, [
      icon("hand"),
      el("span", { className: "visually-hidden", i18n: "people.hand_raised" }),
    ]);
    this.pin = el("button", { className: "pin", attrs: { type: "button", "aria-pressed": "false" }, on: { click: () => onPin(key) } }, [
      icon("pin"),
    ]);
    this.root = el("figure", { className: "tile", attrs: { "data-key": key } }, [
      this.video,
      this.avatar,
      el("figcaption", {}, [this.name, this.role, this.muted, this.hand]),
      this.pin,
    ]);
    this.trackId = null;
  }

  /**
   * `track` the MediaStreamTrack to draw (if any), `trackId` the server's id of the video shown
   * here (null for one's own), `live` whether its picture is shown: a video the server does not
   * send now, or that the data saver holds back, shows the name and initial, not a frozen frame.
   */
  update({ participant, track, trackId, live, screen, me, pinned, speaking }) {
    if (this.video.srcObject?.getTracks()[0] !== track) {
      this.video.srcObject = track ? new MediaStream([track]) : null;
      this.root.classList.add("blank");
    }
    this.trackId = trackId || null;
    this.root.classList.toggle("has-video", Boolean(track) && live !== false);
    this.root.classList.toggle("screen", screen);
    this.root.classList.toggle("me", me);
    this.root.classList.toggle("speaking", speaking);
    this.root.dataset.participant = participant.id;
    if (trackId) this.root.dataset.track = trackId;
    else delete this.root.dataset.track;
    this.avatar.textContent = initial(participant.name);
    const nameKey = screen ? "room.screen_of" : me ? "room.you" : "room.name";
    label(this.name, nameKey, { name: participant.name });
    this.role.hidden = participant.role !== "teacher" || screen;
    this.muted.hidden = screen || participant.microphone;
    this.hand.hidden = screen || !participant.hand;
    this.pin.setAttribute("aria-pressed", String(pinned));
    this.pin.dataset.i18nAttr = `aria-label=${pinned ? "room.unpin" : "room.pin"}`;
    this.pin.dataset.i18nVars = JSON.stringify({ name: participant.name });
    this.pin.setAttribute("aria-label", t(pinned ? "room.unpin" : "room.pin", { name: participant.name }));
  }
}

export class Grid {
  /** `pager`: {root, previous, next, status, elsewhere, speaker}, the page controls under the grid. */
  constructor(stage, grid, pager) {
    this.stage = stage;
    this.grid = grid;
    this.pager = pager;
    this.tiles = new Map();
    this.pinned = null; // chosen by the person; otherwise the layout's own choice
    this.speaker = null;
    this.page = 0;
    this.pageSize = MAX_PAGE;
    this.entries = [];
    this.defaultPin = null;
    this.onView = null; // called when what is on screen (or its size) may have changed
    this.onScreen = new Set(); // tile roots the browser sees on screen
    this.measured = false; // whether the browser said yet what is on screen (not before the first look)
    this.observer = new IntersectionObserver((changes) => {
      this.measured = true;
      for (const change of changes) {
        if (change.isIntersecting) this.onScreen.add(change.target);
        else this.onScreen.delete(change.target);
      }
      this.onView?.();
    }, { threshold: 0.1 });
    // A window resized, a panel opened: the page may hold more or fewer thumbnails, drawn at another size.
    this.resizer = new ResizeObserver(() => {
      if (this.layout()) this.place();
      this.onView?.();
    });
    this.resizer.observe(grid.parentElement);
    pager.previous.addEventListener("click", () => this.turn(-1));
    pager.next.addEventListener("click", () => this.turn(1));
    pager.speaker.addEventListener("click", () => this.show(this.speaker));
  }

  togglePin(key) {
    this.pinned = this.pinned === key ? "none" : key;
    this.onChange?.();
  }

  turn(step) {
    this.page = Math.max(0, Math.min(this.pages() - 1, this.page + step));
    this.place();
    this.onView?.();
  }

  /** Turn to the page where a participant's tile is. */
  show(participantId) {
    const index = this.thumbnails().findIndex((e) => !e.screen && e.participant.id === participantId);
    if (index < 0) return;
    this.page = Math.floor(index / this.pageSize);
    this.place();
    this.onView?.();
  }

  /** The key shown large now, or null. */
  pin() {
    return this.pinned === "none" ? null : this.pinned || this.defaultPin;
  }

  /** The participant the person pinned themselves (told to the server), or null. */
  pinnedParticipant() {
    if (!this.pinned || this.pinned === "none") return null;
    return this.entries.find((e) => e.key === this.pinned)?.participant.id ?? null;
  }

  thumbnails() {
    const pin = this.pin();
    return this.entries.filter((e) => e.key !== pin);
  }

  pages() {
    return Math.max(1, Math.ceil(this.thumbnails().length / this.pageSize));
  }

  /**
   * Work out how many thumbnails a page holds in the space there is: a strip under the stage, or
   * the whole area. Measured from boxes the page controls do not resize (no loop). True if it changed.
   */
  layout() {
    const count = this.thumbnails().length;
    const width = this.grid.clientWidth;
    let size = MAX_PAGE;
    let columns;
    let rows;
    if (width > 0) {
      const strip = !this.stage.hidden;
      const pagerShown = !this.pager.root.hidden;
      const height = strip ? THUMB.height : this.grid.clientHeight + (pagerShown ? PAGER_HEIGHT : 0);
      const maxColumns = fit(width, THUMB.width);
      const fits = (h) => Math.min(MAX_PAGE, maxColumns * (strip ? 1 : fit(h, THUMB.height)));
      size = fits(height);
      const paged = count > size;
      if (paged && !strip) size = fits(height - PAGER_HEIGHT);
      const onPage = Math.min(size, count) || 1;
      if (strip) {
        columns = maxColumns;
        rows = 1;
      } else {
        const box = arrange(onPage, width, paged ? height - PAGER_HEIGHT : height, maxColumns, fit(paged ? height - PAGER_HEIGHT : height, THUMB.height));
        columns = box.columns;
        rows = box.rows;
      }
    }
    const shape = `${size}/${columns}/${rows}`;
    if (shape === this.shape) return false;
    this.shape = shape;
    this.pageSize = size;
    this.grid.style.gridTemplateColumns = columns ? `repeat(${columns}, minmax(0, 1fr))` : "";
    this.grid.style.gridTemplateRows = rows ? `repeat(${rows}, minmax(0, 1fr))` : "";
    return true;
  }

  /** Entries: [{key, participant, track, trackId, live, screen, me}] in display order. */
  render(entries, defaultPin) {
    this.entries = entries;
    this.defaultPin = defaultPin;
    const keys = new Set(entries.map((e) => e.key));
    for (const [key, tile] of this.tiles) {
      if (!keys.has(key)) {
        tile.root.remove();
        this.observer.unobserve(tile.root);
        this.onScreen.delete(tile.root);
        this.tiles.delete(key);
      }
    }
    if (this.pinned && this.pinned !== "none" && !keys.has(this.pinned)) this.pinned = null;
    const pin = this.pin();
    for (const entry of entries) {
      let tile = this.tiles.get(entry.key);
      if (!tile) {
        tile = new Tile(entry.key, (key) => this.togglePin(key));
        this.tiles.set(entry.key, tile);
        this.observer.observe(tile.root);
      }
      tile.update({ ...entry, pinned: entry.key === pin, speaking: !entry.screen && entry.participant.id === this.speaker });
    }
    this.stage.hidden = !pin;
    this.layout();
    this.place();
  }

  /** Put the pinned tile on the stage and the current page in the grid; the rest leaves the page. */
  place() {
    const pin = this.pin();
    const thumbnails = this.thumbnails();
    const pages = this.pages();
    this.page = Math.min(this.page, pages - 1);
    const first = this.page * this.pageSize;
    const shown = thumbnails.slice(first, first + this.pageSize);
    const placed = new Map([
      [this.stage, pin && this.tiles.has(pin) ? [this.tiles.get(pin)] : []],
      [this.grid, shown.map((e) => this.tiles.get(e.key))],
    ]);
    const kept = new Set([...placed.values()].flat());
    for (const tile of this.tiles.values()) if (!kept.has(tile)) tile.root.remove();
    // Move a tile only when its place changes: a video taken out of the page pauses.
    for (const [parent, tiles] of placed) {
      for (const child of [...parent.children]) if (!tiles.some((tile) => tile.root === child)) child.remove();
      tiles.forEach((tile, index) => {
        if (parent.children[index] !== tile.root) {
          parent.insertBefore(tile.root, parent.children[index] || null);
          tile.video.play().catch(() => {});
        }
      });
    }
    this.grid.dataset.count = String(shown.length);
    this.renderPager(thumbnails, first, pages);
  }

  /** The page controls: previous and next, where we are, and the raised hands on other pages. */
  renderPager(thumbnails, first, pages) {
    const { root, previous, next, status, elsewhere, speaker } = this.pager;
    const wasHidden = root.hidden;
    root.hidden = pages < 2;
    if (root.hidden !== wasHidden && this.layout()) {
      this.place(); // the controls take their room from the grid
      return;
    }
    previous.disabled = this.page === 0;
    next.disabled = this.page >= pages - 1;
    // At the first or last page the button pressed turns off: the keyboard stays in the controls.
    if (document.activeElement === next && next.disabled && !previous.disabled) previous.focus();
    if (document.activeElement === previous && previous.disabled && !next.disabled) next.focus();
    label(status, "room.page_of", { page: this.page + 1, pages });
    const onPage = new Set(thumbnails.slice(first, first + this.pageSize).map((e) => e.key));
    const hands = thumbnails.filter((e) => !onPage.has(e.key) && !e.screen && !e.me && e.participant.hand).length;
    elsewhere.hidden = !hands;
    if (hands) label(elsewhere, "room.hands_elsewhere", { count: hands });
    // Who speaks, when their thumbnail is on another page: one click turns to it.
    const index = thumbnails.findIndex((e) => !e.screen && !e.me && e.participant.id === this.speaker);
    const away = index >= 0 && !onPage.has(thumbnails[index].key);
    speaker.hidden = !away;
    if (away) label(speaker, "room.speaking_elsewhere", { name: thumbnails[index].participant.name, page: Math.floor(index / this.pageSize) + 1 });
  }

  /**
   * The videos drawn now, for the server: [{track_id, width, height}] in css px. Only tiles on
   * this page, in the window, and of a video the server knows (not one's own camera).
   */
  visible() {
    const tiles = [];
    for (const tile of this.tiles.values()) {
      if (!tile.trackId || !tile.root.isConnected || !this.onScreen.has(tile.root)) continue;
      const box = tile.root.getBoundingClientRect();
      tiles.push({ track_id: tile.trackId, width: Math.round(box.width), height: Math.round(box.height) });
    }
    return tiles.sort((a, b) => (a.track_id < b.track_id ? -1 : a.track_id > b.track_id ? 1 : 0));
  }
}

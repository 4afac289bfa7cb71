// The video grid: one tile per participant, one per screen share; the pinned one shown large.
import { el } from "../dom.js";
import { label, t } from "../i18n.js";

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

class Tile {
  constructor(key, onPin) {
    this.key = key;
    this.video = el("video", { attrs: { autoplay: true, playsinline: true, muted: true } });
    this.video.muted = true; // sound plays from the audio elements, never twice
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
  }

  update({ participant, track, screen, me, pinned, speaking }) {
    if (this.video.srcObject?.getTracks()[0] !== track) this.video.srcObject = track ? new MediaStream([track]) : null;
    this.root.classList.toggle("has-video", Boolean(track));
    this.root.classList.toggle("screen", screen);
    this.root.classList.toggle("me", me);
    this.root.classList.toggle("speaking", speaking);
    this.root.dataset.participant = participant.id;
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
  constructor(stage, grid) {
    this.stage = stage;
    this.grid = grid;
    this.tiles = new Map();
    this.pinned = null; // chosen by the person; otherwise the layout's own choice
    this.speaker = null;
  }

  togglePin(key) {
    this.pinned = this.pinned === key ? "none" : key;
    this.onChange?.();
  }

  /** Entries: [{key, participant, track, screen, me}] in display order. */
  render(entries, defaultPin) {
    const keys = new Set(entries.map((e) => e.key));
    for (const [key, tile] of this.tiles) {
      if (!keys.has(key)) {
        tile.root.remove();
        this.tiles.delete(key);
      }
    }
    if (this.pinned && this.pinned !== "none" && !keys.has(this.pinned)) this.pinned = null;
    const pin = this.pinned === "none" ? null : this.pinned || defaultPin;
    const placed = new Map([[this.stage, []], [this.grid, []]]);
    for (const entry of entries) {
      let tile = this.tiles.get(entry.key);
      if (!tile) {
        tile = new Tile(entry.key, (key) => this.togglePin(key));
        this.tiles.set(entry.key, tile);
      }
      tile.update({ ...entry, pinned: entry.key === pin, speaking: !entry.screen && entry.participant.id === this.speaker });
      placed.get(entry.key === pin ? this.stage : this.grid).push(tile);
    }
    // Move a tile only when its place changes: a video taken out of the page pauses.
    for (const [parent, tiles] of placed) {
      tiles.forEach((tile, index) => {
        if (parent.children[index] !== tile.root) {
          parent.insertBefore(tile.root, parent.children[index] || null);
          tile.video.play().catch(() => {});
        }
      });
    }
    this.stage.hidden = !pin;
    this.grid.dataset.count = String(entries.length - (pin ? 1 : 0));
  }
}

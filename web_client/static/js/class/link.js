// The links of a visit to a class, and their state: the signaling WebSocket (joining, pings, the
// silence that means it is dead, requests by id), and the publishing and subscribing peer
// connections (their ICE candidates trickled to the server, what to do when they fail, and what
// is known of how they connect, for a problem report). No DOM here.

const PROTOCOL = 1;
const PING_EVERY_MS = 10_000;
const SILENCE_LIMIT_MS = 25_000; // no message for this long: the link is dead, rejoin
const CONNECTIONS = ["publish", "subscribe"];

export class SignalingLink {
  /** `lost()` is called when the socket closes, or has said nothing for too long. */
  constructor(lost) {
    this.onLost = lost;
    this.ws = null;
    this.nextId = 1;
    this.replies = new Map(); // message id -> {resolve, reject}
    this.rtt = null;
  }

  /**
   * A new socket that joins with `token`; each message it receives goes to `receive`. `url` is the
   * node hosting the class, from the join answer (`ws_url`); without one, this page's own server.
   */
  open(token, receive, url) {
    const ws = new WebSocket(url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    this.ws = ws;
    this.heard = Date.now();
    ws.addEventListener("open", () => this.send({ type: "join", protocol: PROTOCOL, token }));
    ws.addEventListener("message", (event) => {
      this.heard = Date.now();
      const message = JSON.parse(event.data);
      if (message.type === "pong" && this.pingSentAt) this.rtt = performance.now() - this.pingSentAt;
      receive(message);
    });
    ws.addEventListener("close", () => {
      if (this.ws === ws) this.onLost();
    });
    clearInterval(this.pinger);
    this.pinger = setInterval(() => this.ping(), PING_EVERY_MS);
  }

  isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  ping() {
    if (!this.isOpen()) return;
    if (Date.now() - this.heard > SILENCE_LIMIT_MS) {
      this.onLost();
      return;
    }
    this.pingSentAt = performance.now();
    this.send({ type: "ping" });
  }

  send(message) {
    if (this.isOpen()) this.ws.send(JSON.stringify(message));
  }

  /** A fresh message id. */
  id() {
    return this.nextId++;
  }

  /** Send a message with an id; resolves with the reply that names it, rejects on its error. */
  request(message, timeoutMs) {
    const id = this.id();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(id);
        reject(Object.assign(new Error("timeout"), { code: "timeout" }));
      }, timeoutMs);
      this.replies.set(id, {
        resolve: (value) => (clearTimeout(timer), resolve(value)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
      this.send({ ...message, id });
    });
  }

  /** Every request still waiting fails with `code`: its socket is gone. */
  rejectAll(code) {
    for (const reply of this.replies.values()) reply.reject(Object.assign(new Error(code), { code }));
    this.replies.clear();
  }

  /** Close the socket; its close event is then ignored. */
  close() {
    const ws = this.ws;
    this.ws = null;
    ws?.close();
  }

  /** For good: no more pings either. */
  stop() {
    clearInterval(this.pinger);
    this.close();
  }
}

/** "Chrome 126", "Firefox 127", "Safari 17": the browser, without the rest of the user agent. */
export function browserName(agent = navigator.userAgent) {
  for (const [name, pattern] of [
    ["Edge", /Edg\/(\d+)/],
    ["Firefox", /Firefox\/(\d+)/],
    ["Chrome", /Chrom(?:e|ium)\/(\d+)/],
    ["Safari", /Version\/(\d+).*Safari/],
  ]) {
    const found = pattern.exec(agent);
    if (found) return `${name} ${found[1]}`;
  }
  return "other";
}

/** The two peer connections of a visit, made anew at each (re)join. */
export class MediaLink {
  /** `send(message)` writes to the signaling socket; `failed()` is called when a connection fails. */
  constructor(send, failed) {
    this.send = send;
    this.onFailed = failed;
    this.pub = null;
    this.sub = null;
    this.turnOffered = false;
    this.relayOnly = false; // this attempt uses the relay alone
    this.relayRetried = false; // a direct attempt failed in this visit and the relay alone was tried
    this.connected = false; // a connection of this attempt came up
    this.failure = null; // why the last attempt failed: ice_failed, connection_lost, network_blocked…
    this.states = {}; // connection -> its last ICE state, kept once it is closed
    this.paths = {}; // connection -> the kind of its candidate pair in use, kept once it is closed
    this.told = {}; // connection -> its relay protocol was sent to the server (relay_path)
    this.waiting = {}; // connection -> candidates held until its offer or answer has gone
  }

  /**
   * New peer connections for a (re)join. After a media connection that never came up, the relay
   * alone is used (a network that blocks UDP may answer direct checks slowly, or only in part).
   */
  open(iceServers) {
    this.close();
    this.turnOffered = iceServers.some((server) => [server.urls].flat().some((url) => /^turns?:/.test(url)));
    const config = {
      iceServers,
      bundlePolicy: "max-bundle",
      iceTransportPolicy: this.relayOnly && this.turnOffered ? "relay" : "all",
    };
    this.connected = false;
    this.states = {};
    this.paths = {};
    this.told = {};
    this.pub = new RTCPeerConnection(config);
    this.sub = new RTCPeerConnection(config);
    // Candidates wait until their connection's offer or answer has gone (docs/protocol.md, "Trickle ICE").
    this.waiting = { publish: [], subscribe: [] };
    for (const [name, pc] of this.named()) {
      pc.addEventListener("icecandidate", (event) => this.trickle(pc, name, event.candidate));
      pc.addEventListener("iceconnectionstatechange", () => {
        if (pc === this.pub || pc === this.sub) this.states[name] = pc.iceConnectionState;
      });
      pc.addEventListener("connectionstatechange", () => {
        if (pc !== this.pub && pc !== this.sub) return;
        if (pc.connectionState === "connected") {
          this.connected = true;
          this.notePath(name, pc).catch(() => {}); // closed meanwhile: the last path known stays
        }
        if (pc.connectionState === "failed") this.onFailed("failed");
      });
    }
  }

  named() {
    return [
      ["publish", this.pub],
      ["subscribe", this.sub],
    ];
  }

  trickle(pc, name, candidate) {
    if (pc !== this.pub && pc !== this.sub) return;
    if (candidate && !candidate.candidate) return; // the end of one generation: `null` comes for all
    const message = {
      type: "candidate",
      connection: name,
      candidate: candidate ? { candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex } : null,
    };
    if (this.waiting[name]) this.waiting[name].push(message);
    else this.send(message);
  }

  /** The offer or answer of `name` has been sent: its candidates follow it, from now on at once. */
  described(name) {
    const waiting = this.waiting[name];
    this.waiting[name] = null;
    for (const message of waiting || []) this.send(message);
  }

  close() {
    for (const pc of [this.pub, this.sub]) pc?.close();
    this.pub = this.sub = null;
  }

  /**
   * A media connection failed (`code`: the server's ice_failed or connection_lost, or "failed"
   * seen here). What next: "rejoin" (it had worked: the network changed), "relay" (try the
   * relay alone, once) or "blocked" (say that this network seems to block the video).
   */
  failed(code) {
    this.failure = code;
    if (this.connected) return "rejoin";
    if (this.turnOffered && !this.relayOnly) {
      this.relayOnly = true;
      this.relayRetried = true;
      return "relay";
    }
    this.failure = "network_blocked";
    return "blocked";
  }

  /** The kind of path in use, from the browser's statistics: kinds and protocols, no address. */
  async notePath(name, pc) {
    const stats = await pc.getStats();
    for (const report of stats.values()) {
      if (report.type !== "transport" || !report.selectedCandidatePairId) continue;
      const pair = stats.get(report.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      const remote = pair && stats.get(pair.remoteCandidateId);
      if (!local || !remote) continue;
      this.paths[name] = {
        local: local.candidateType,
        remote: remote.candidateType,
        protocol: local.protocol,
        relay_protocol: local.relayProtocol || null,
      };
      // The server sees coturn's UDP whatever reaches coturn: tell it, for its operators' counts.
      if (local.candidateType === "relay" && ["udp", "tcp", "tls"].includes(local.relayProtocol) && !this.told[name]) {
        this.told[name] = true;
        this.send({ type: "relay_path", connection: name, protocol: local.relayProtocol });
      }
    }
  }

  /**
   * What a problem report says of the connection: states, the kind of path, TURN, the relay
   * retry, the failure, and the media that arrived lately (`arrival`, from the quality probe).
   * Kinds and counts only: never an address.
   */
  async diagnosis(arrival) {
    for (const [name, pc] of this.named()) {
      if (pc && pc.connectionState !== "closed") {
        this.states[name] = pc.iceConnectionState;
        await this.notePath(name, pc).catch(() => {});
      }
    }
    return {
      browser: browserName(),
      ice: Object.fromEntries(CONNECTIONS.map((name) => [name, this.states[name] || "new"])),
      path: Object.fromEntries(CONNECTIONS.map((name) => [name, this.paths[name] || null])),
      turn_offered: this.turnOffered,
      relay_only: this.relayOnly && this.turnOffered,
      relay_retry: this.relayRetried,
      failure: this.failure,
      media: arrival || null,
    };
  }
}

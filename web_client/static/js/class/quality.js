// How good the media connection is, from the browser's own statistics: whether the video the
// server should send arrives (bytes received rising), the round-trip time and the share of
// packets lost since the last look. Shown as bars; sent with a problem report.

// Expected video with no byte for this long: it does not arrive (a network that lets the
// connection up but not the media, a sender gone quiet). Measures are 2 s apart.
const STALL_MS = 5000;

export class QualityProbe {
  constructor() {
    this.previous = new Map(); // stats id -> {packetsLost, packetsReceived, bytes, frames, at}
    this.since = new Map(); // expected mid -> when it became expected
    this.arrived = new Map(); // mid -> when bytes last arrived on it
  }

  async measure(session) {
    const result = { rtt_ms: null, loss: 0, received_kbps: 0, sent_kbps: 0, inbound: {}, ice: {} };
    const arrival = { expected_videos: 0, video_bytes: 0, video_frames: 0, audio_bytes: 0, seconds: null, last_video_ms: null };
    const now = performance.now();
    const mids = new Map(); // receiving track id -> mid, for browsers whose statistics lack the mid
    for (const transceiver of session.sub?.getTransceivers() || []) {
      if (transceiver.receiver.track) mids.set(transceiver.receiver.track.id, transceiver.mid);
    }
    let lost = 0;
    let received = 0;
    for (const [name, pc] of [["publish", session.pub], ["subscribe", session.sub]]) {
      if (!pc) continue;
      result.ice[name] = pc.connectionState;
      const stats = await pc.getStats();
      for (const report of stats.values()) {
        if (report.type === "candidate-pair" && report.nominated && report.currentRoundTripTime !== undefined) {
          result.rtt_ms = Math.max(result.rtt_ms ?? 0, Math.round(report.currentRoundTripTime * 1000));
        } else if (report.type === "inbound-rtp") {
          const before = this.previous.get(report.id) || { packetsLost: 0, packetsReceived: 0, bytes: 0, frames: 0, at: report.timestamp };
          lost += Math.max(0, report.packetsLost - before.packetsLost);
          received += Math.max(0, report.packetsReceived - before.packetsReceived);
          const bytes = Math.max(0, report.bytesReceived - before.bytes);
          const seconds = (report.timestamp - before.at) / 1000;
          if (seconds > 0) {
            result.received_kbps += Math.round((bytes * 8) / seconds / 1000);
            arrival.seconds = Math.max(arrival.seconds ?? 0, Math.round(seconds * 10) / 10);
          }
          result.inbound[report.kind] = (result.inbound[report.kind] || 0) + report.packetsReceived;
          if (report.kind === "video") {
            arrival.video_bytes += bytes;
            arrival.video_frames += Math.max(0, (report.framesDecoded || 0) - before.frames);
            if (bytes > 0) this.arrived.set(report.mid ?? mids.get(report.trackIdentifier), now);
          } else {
            arrival.audio_bytes += bytes;
          }
          this.previous.set(report.id, {
            packetsLost: report.packetsLost,
            packetsReceived: report.packetsReceived,
            bytes: report.bytesReceived,
            frames: report.framesDecoded || 0,
            at: report.timestamp,
          });
        } else if (report.type === "remote-inbound-rtp" && report.fractionLost !== undefined) {
          result.loss = Math.max(result.loss, report.fractionLost);
        }
      }
    }
    if (received + lost > 0) result.loss = Math.max(result.loss, lost / (received + lost));
    if (result.rtt_ms === null && session.rtt !== null) result.rtt_ms = Math.round(session.rtt);
    result.media = this.arriving(session.status === "joined" ? session.expectedVideos() : [], now, arrival);
    result.arrival = arrival;
    result.level = level(result, session);
    return result;
  }

  /**
   * Whether the expected video arrives: "none" expected, "flowing" (bytes on one of them within
   * STALL_MS), "waiting" (expected for less than that, nothing yet) or "stalled".
   */
  arriving(expected, now, arrival) {
    const mids = new Set(expected.map((m) => m.mid));
    for (const mid of mids) if (!this.since.has(mid)) this.since.set(mid, now);
    for (const mid of [...this.since.keys()]) if (!mids.has(mid)) this.since.delete(mid);
    for (const mid of [...this.arrived.keys()]) if (!mids.has(mid)) this.arrived.delete(mid); // a rejoin reuses mids
    arrival.expected_videos = mids.size;
    if (!mids.size) return "none";
    const last = Math.max(...[...mids].map((mid) => this.arrived.get(mid) ?? -Infinity));
    if (last > -Infinity) arrival.last_video_ms = Math.round(now - last);
    if (now - last < STALL_MS) return "flowing";
    return now - Math.min(...this.since.values()) < STALL_MS ? "waiting" : "stalled";
  }
}

/** "good", "fair", "bad", "connecting" (the video is still to come) or "stalled" (it does not arrive). */
function level(result, session) {
  if (session.status !== "joined" || Object.values(result.ice).some((s) => s === "failed" || s === "disconnected")) {
    return "bad";
  }
  if (result.media === "stalled") return "stalled";
  if (result.media === "waiting") return "connecting";
  const rtt = result.rtt_ms ?? 0;
  if (result.loss > 0.08 || rtt > 400) return "bad";
  if (result.loss > 0.02 || rtt > 150) return "fair";
  return "good";
}

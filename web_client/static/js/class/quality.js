// How good the media connection is, from the browser's own statistics: round-trip time and the
// share of packets lost since the last look. Shown as bars; sent with a problem report.

export class QualityProbe {
  constructor() {
    this.previous = new Map(); // stats id -> {packetsLost, packetsReceived}
  }

  async measure(session) {
    const result = { rtt_ms: null, loss: 0, received_kbps: 0, sent_kbps: 0, inbound: {}, ice: {} };
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
          const before = this.previous.get(report.id) || { packetsLost: 0, packetsReceived: 0, bytes: 0, at: report.timestamp };
          lost += Math.max(0, report.packetsLost - before.packetsLost);
          received += Math.max(0, report.packetsReceived - before.packetsReceived);
          const seconds = (report.timestamp - before.at) / 1000;
          if (seconds > 0) result.received_kbps += Math.round(((report.bytesReceived - before.bytes) * 8) / seconds / 1000);
          result.inbound[report.kind] = (result.inbound[report.kind] || 0) + report.packetsReceived;
          this.previous.set(report.id, {
            packetsLost: report.packetsLost,
            packetsReceived: report.packetsReceived,
            bytes: report.bytesReceived,
            at: report.timestamp,
          });
        } else if (report.type === "remote-inbound-rtp" && report.fractionLost !== undefined) {
          result.loss = Math.max(result.loss, report.fractionLost);
        }
      }
    }
    if (received + lost > 0) result.loss = Math.max(result.loss, lost / (received + lost));
    if (result.rtt_ms === null && session.rtt !== null) result.rtt_ms = Math.round(session.rtt);
    result.level = level(result, session);
    return result;
  }
}

function level(result, session) {
  if (session.status !== "joined" || Object.values(result.ice).some((s) => s === "failed" || s === "disconnected")) {
    return "bad";
  }
  const rtt = result.rtt_ms ?? 0;
  if (result.loss > 0.08 || rtt > 400) return "bad";
  if (result.loss > 0.02 || rtt > 150) return "fair";
  return "good";
}

// How each source is encoded for the server: cameras in three simulcast layers with temporal
// layers, so that the server can give every subscriber what its link and its screen take
// (docs/protocol.md, "Simulcast and layers"); screen shares at full resolution, adapting by frame rate.

// Quarter, half and full resolution; the caps suit a class (a 1280×720 camera gives 320×180,
// 640×360 and 1280×720). The rids are the ones the server accepts, lowest first.
export const CAMERA_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];
const TEMPORAL = "L1T3"; // three temporal layers: 7.5, 15 and 30 frames a second

function withTemporal(encodings) {
  return encodings.map((encoding) => ({ ...encoding, scalabilityMode: TEMPORAL }));
}

/** Add the sending section of one source, layered where the browser can. */
export function addSection(pc, source, trackOrKind) {
  const kind = typeof trackOrKind === "string" ? trackOrKind : trackOrKind.kind;
  const layers = kind !== "video" ? null : source === "camera" ? CAMERA_LAYERS : [{}];
  let transceiver;
  if (layers) {
    try {
      transceiver = pc.addTransceiver(trackOrKind, { direction: "sendonly", sendEncodings: withTemporal(layers) });
    } catch {
      // A browser without temporal layers for this codec still sends the spatial ones.
      transceiver = pc.addTransceiver(trackOrKind, { direction: "sendonly", sendEncodings: layers });
    }
    preferCodec(transceiver);
  } else {
    transceiver = pc.addTransceiver(trackOrKind, { direction: "sendonly" });
  }
  return transceiver;
}

/** VP8 first (its temporal layers can be dropped by the server), H.264 where VP8 is missing. */
function preferCodec(transceiver) {
  const codecs = RTCRtpSender.getCapabilities?.("video")?.codecs;
  if (!codecs || !transceiver.setCodecPreferences) return;
  const rank = (codec) => {
    const name = codec.mimeType.toLowerCase();
    return name === "video/vp8" ? 0 : name === "video/h264" ? 1 : 2;
  };
  transceiver.setCodecPreferences([...codecs].sort((a, b) => rank(a) - rank(b)));
}

/**
 * The server's `layers` message: encode only the layers someone receives (dynacast). A layer
 * nobody receives costs the pupil's uplink and the server's CPU for nothing.
 */
export async function applyLayers(transceiver, active) {
  const sender = transceiver.sender;
  const parameters = sender.getParameters();
  if (!parameters.encodings?.length) return;
  let changed = false;
  for (const encoding of parameters.encodings) {
    if (!encoding.rid) continue;
    const on = active.includes(encoding.rid);
    if (encoding.active !== on) {
      encoding.active = on;
      changed = true;
    }
  }
  if (changed) await sender.setParameters(parameters);
}

// The participant's own camera and microphone: asking for them, listing them, metering the microphone.

// 720p when the camera has it: the full simulcast layer (encodings.js); the server sends each subscriber less.
const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24, max: 30 } };
const MICROPHONE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

/** Why a device could not be opened, as a catalogue key suffix: denied, missing, busy, insecure. */
function reason(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "denied";
    case "NotFoundError":
    case "OverconstrainedError":
      return "missing";
    case "NotReadableError":
    case "AbortError":
      return "busy";
    default:
      return "failed";
  }
}

/** Open one source (camera or microphone), on a chosen device if `deviceId`; {track} or {error}. */
export async function open(source, deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) return { error: "insecure" };
  const device = deviceId ? { deviceId: { exact: deviceId } } : {};
  const constraints = source === "camera" ? { video: { ...CAMERA, ...device } } : { audio: { ...MICROPHONE, ...device } };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    return { track: stream.getTracks()[0] };
  } catch (error) {
    if (deviceId && error.name === "OverconstrainedError") return open(source, null); // the device went away
    return { error: reason(error) };
  }
}

export async function list() {
  if (!navigator.mediaDevices?.enumerateDevices) return { camera: [], microphone: [] };
  const all = await navigator.mediaDevices.enumerateDevices();
  return {
    camera: all.filter((d) => d.kind === "videoinput" && d.deviceId),
    microphone: all.filter((d) => d.kind === "audioinput" && d.deviceId),
  };
}

/** Share the screen; {track} or {error} ("cancelled" when the person closed the picker). */
export async function openScreen() {
  if (!navigator.mediaDevices?.getDisplayMedia) return { error: "unsupported" };
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    return { track: stream.getVideoTracks()[0] };
  } catch (error) {
    return { error: error.name === "NotAllowedError" ? "cancelled" : "failed" };
  }
}

/** The loudness of a microphone track, 0 to 1, sampled ten times a second. */
export class LevelMeter {
  constructor(track, onLevel) {
    this.context = new AudioContext();
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 512;
    this.context.createMediaStreamSource(new MediaStream([track])).connect(this.analyser);
    this.samples = new Float32Array(this.analyser.fftSize);
    // A page may not start audio before the person interacts with it: resume on the first gesture.
    this.resume = () => {
      if (this.context.state === "suspended") this.context.resume();
    };
    document.addEventListener("pointerdown", this.resume);
    document.addEventListener("keydown", this.resume);
    this.timer = setInterval(() => onLevel(this.level()), 100);
  }

  level() {
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const sample of this.samples) sum += sample * sample;
    return Math.min(1, Math.sqrt(sum / this.samples.length) * 4);
  }

  stop() {
    clearInterval(this.timer);
    document.removeEventListener("pointerdown", this.resume);
    document.removeEventListener("keydown", this.resume);
    this.context.close();
  }
}

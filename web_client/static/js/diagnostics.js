// What a problem report carries besides the user's words: the browser and the connection, never
// names, addresses or anything said in class.
export function browserDiagnostics() {
  const connection = navigator.connection;
  return {
    user_agent: navigator.userAgent,
    language: navigator.language,
    online: navigator.onLine,
    screen: `${screen.width}x${screen.height}`,
    network: connection ? { type: connection.effectiveType, downlink_mbps: connection.downlink, rtt_ms: connection.rtt } : null,
    page: location.pathname.startsWith("/c/") ? "/c/…" : location.pathname,
    webrtc: typeof RTCPeerConnection === "function",
  };
}

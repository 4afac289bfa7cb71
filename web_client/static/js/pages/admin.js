// The console's first page: what waits (new reports) and what runs (live classes).
import { api } from "../api.js";
import { $ } from "../dom.js";
import { label } from "../i18n.js";
import { bootConsole } from "../console.js";

await bootConsole();
const overview = await api("GET", "/api/admin/overview");
label($("overview-reports"), "console.new_reports", { count: overview.new_reports });
label($("overview-classes"), "console.live_summary", { count: overview.live_classes });
label($("overview-participants"), "console.participants", { count: overview.live_participants });
$("directory-warning").hidden = overview.directory === "ok";

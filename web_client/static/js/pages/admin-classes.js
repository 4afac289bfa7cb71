// Live classes: how many, on which server, with how many participants (never who, never what is
// said); a lesson can be ended for everyone in an emergency.
import { api } from "../api.js";
import { $, confirmDialog, el } from "../dom.js";
import { label, t } from "../i18n.js";
import { bootConsole, cell } from "../console.js";

function nodeRow(node) {
  return el("tr", {}, [
    cell(node.id),
    cell(el("span", { i18n: `console.node_state.${node.state}` })),
    cell(String(node.classes)),
    cell(String(node.participants)),
  ]);
}

function classRow(live) {
  const title = live.title || t("console.untitled");
  return el("tr", { attrs: { "data-class": live.id } }, [
    cell(live.title ? el("span", { text: live.title }) : el("span", { i18n: "console.untitled" })),
    cell(live.owner || "—"),
    cell(live.node),
    cell(String(live.participants)),
    cell(
      el("button", {
        className: "danger small",
        i18n: "console.end",
        vars: { title },
        attrs: { type: "button" },
        on: {
          click: async () => {
            if (!(await confirmDialog("console.end_confirm", "console.end_short", { title }))) return;
            await api("POST", `/api/admin/classes/${encodeURIComponent(live.id)}/end`);
            await refresh();
            label($("announcer"), "console.ended");
          },
        },
      }),
    ),
  ]);
}

async function refresh() {
  const live = await api("GET", "/api/admin/classes");
  label($("live-summary"), "console.live_summary", { count: live.total_classes });
  label($("live-participants"), "console.participants", { count: live.total_participants });
  $("directory-warning").hidden = live.directory === "ok";
  $("node-rows").replaceChildren(...live.nodes.map(nodeRow));
  $("class-rows").replaceChildren(...live.classes.map(classRow));
  $("classes-empty").hidden = live.classes.length > 0;
}

await bootConsole();
$("refresh").addEventListener("click", refresh);
await refresh();

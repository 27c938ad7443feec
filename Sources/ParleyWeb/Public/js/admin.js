// The operator's zone page (/admin): polls /admin/overview.json every second and redraws
// the three tables; drain and restart ask for confirmation, then post the page's CSRF token.
// Text only ever goes in through textContent.

const root = document.getElementById("admin");
const csrf = root.dataset.csrf;
const updated = document.getElementById("updated");
const overviewProblem = document.getElementById("overview-problem");
const actionResult = document.getElementById("action-result");
const dialog = document.getElementById("confirm");

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function duration(ms) {
  if (ms == null) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 1) return `${ms} ms`;
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

function fill(tableId, rows, draw, emptyId) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows.map((item) => {
    const row = document.createElement("tr");
    draw(row, item);
    return row;
  }));
  if (emptyId) document.getElementById(emptyId).hidden = rows.length > 0;
}

function readiness(process) {
  if (process.ready === true) return "ready";
  if (process.ready === false) return `not ready: ${process.notReady.join("; ")}`;
  return "-";
}

function draw(overview) {
  fill("processes", overview.processes, (row, p) => {
    row.id = `process-${p.name}`;
    row.dataset.state = p.state;
    cell(row, p.name);
    cell(row, p.role);
    cell(row, p.machine ?? "-");
    cell(row, p.detail ? `${p.state} (${p.detail})` : p.state).className = "state";
    cell(row, p.pid ?? "-").className = "pid";
    cell(row, duration(p.uptimeMs));
    cell(row, String(p.restarts)).className = "restarts";
    cell(row, readiness(p)).className = "ready";
    cell(row, p.load);
    const actions = cell(row, "");
    for (const action of p.actions) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = action === "drain" ? "Drain" : "Restart";
      button.id = `${action}-${p.name}`;
      button.addEventListener("click", () => confirmAction(action, p.name));
      actions.appendChild(button);
    }
  });
  fill("meetings", overview.meetings, (row, m) => {
    row.id = `meeting-${m.id}`;
    cell(row, m.id);
    cell(row, m.host).className = "host";
    cell(row, m.standby ?? "-").className = "standby";
    cell(row, m.edges.length ? m.edges.join(", ") : "-").className = "edges";
    cell(row, String(m.participants)).className = "participants";
    cell(row, m.opsPerSecond == null ? "-" : m.opsPerSecond.toFixed(1)).className = "ops";
  }, "no-meetings");
  fill("failovers", overview.failovers, (row, f) => {
    row.className = "failover";
    row.dataset.meeting = f.meeting;
    cell(row, f.meeting);
    cell(row, f.to).className = "to";
    cell(row, `${f.durationMs} ms`).className = "took";
    cell(row, `${duration(f.agoMs)} ago`);
  }, "no-failovers");
}

async function refresh() {
  try {
    const response = await fetch("/admin/overview.json", { cache: "no-store", credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.message ?? `HTTP ${response.status}`);
    draw(body);
    overviewProblem.hidden = true;
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    updated.dataset.at = String(Date.now());
  } catch (error) {
    overviewProblem.textContent = `The zone's status could not be read: ${error.message}`;
    overviewProblem.hidden = false;
  }
}

function confirmAction(action, name) {
  const what = action === "drain"
    ? `Drain ${name}? Its meetings move to their standbys live; it then stops until restarted.`
    : `Restart ${name}? It is stopped and started again; its meetings fail over to their standbys.`;
  document.getElementById("confirm-text").textContent = what;
  dialog.dataset.action = action;
  dialog.dataset.process = name;
  dialog.returnValue = "";
  dialog.showModal();
}

dialog.addEventListener("close", async () => {
  if (dialog.returnValue !== "yes") return;
  const { action, process } = dialog.dataset;
  actionResult.hidden = false;
  actionResult.className = "";
  actionResult.textContent = `${action === "drain" ? "Draining" : "Restarting"} ${process}…`;
  try {
    const response = await fetch(`/admin/processes/${encodeURIComponent(process)}/${action}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ _csrf: csrf }),
    });
    const body = await response.json();
    actionResult.textContent = body.ok ? `Done: ${body.message}` : `Refused: ${body.message}`;
    actionResult.className = body.ok ? "ok" : "error";
    actionResult.dataset.code = body.code ?? "";
  } catch (error) {
    actionResult.textContent = `The ${action} of ${process} could not be sent: ${error.message}`;
    actionResult.className = "error";
  }
  refresh();
});

// One request at a time: the next poll is scheduled when this one has finished, so a slow
// zone is not asked again and again, and a late answer never overwrites a newer one.
async function poll() {
  await refresh();
  setTimeout(poll, 1000);
}
poll();

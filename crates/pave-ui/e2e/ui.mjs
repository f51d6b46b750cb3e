// End-to-end browser test of pave's web UI, run by
// crates/pave-cli/tests/ui_browser.rs against a live `pave standalone`.
//
// Environment: PAVE_URL (http://127.0.0.1:PORT), PAVE_USER, PAVE_PASSWORD,
// SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium), PAVE_DAG (default
// ml_pipeline). It logs in, triggers the DAG from the UI, watches the new
// run finish in the grid, opens a task's log, and saves screenshots.
// playwright-core never downloads a browser: it drives Debian's chromium.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.PAVE_URL;
const user = process.env.PAVE_USER || "admin";
const password = process.env.PAVE_PASSWORD;
const shots = process.env.SCREENSHOT_DIR || "ui-screenshots";
const dagId = process.env.PAVE_DAG || "ml_pipeline";
const runTimeoutMs = Number(process.env.RUN_TIMEOUT_MS || 240000);
if (!base || !password) {
  console.error("set PAVE_URL and PAVE_PASSWORD");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

function step(text) {
  console.log(`[ui-e2e] ${new Date().toISOString()} ${text}`);
}

async function shot(page, name) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  step(`screenshot ${path}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
  ],
});
const errors = [];
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: "light" });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console error: ${m.text()}`); });
  page.on("dialog", (d) => d.accept());

  step("anonymous visit goes to the login page");
  await page.goto(base + "/");
  await page.waitForURL(/\/login/);
  await shot(page, "01-login");

  step("log in");
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => !u.pathname.startsWith("/login"));
  await page.getByRole("link", { name: dagId, exact: true }).waitFor();
  await shot(page, "02-dag-list");

  step(`open the trigger form of ${dagId}`);
  await page.getByRole("link", { name: `Trigger ${dagId}` }).click();
  await page.waitForURL(new RegExp(`/dags/${dagId}/trigger`));
  await shot(page, "03-trigger-form");

  step("trigger");
  await page.getByRole("button", { name: /Trigger/ }).click();
  await page.waitForURL(new RegExp(`/dags/${dagId}\\?tab=grid`));
  const before = await page.locator("#grid thead th.run-col").count();
  step(`grid shows ${before} run(s)`);
  const newest = page.locator("#grid thead th.run-col").last().locator(".run-bar");
  const runTitle = await page.locator("#grid thead th.run-col").last().locator("a").getAttribute("title");
  if (!runTitle || !runTitle.startsWith("manual__")) {
    throw new Error(`the newest column of the grid is not the manual run: ${runTitle}`);
  }
  step(`watching ${runTitle}`);
  await page.waitForTimeout(1500);
  await shot(page, "04-grid-running");

  step("wait for the run to finish in the grid (htmx polls, no reload)");
  await page.waitForFunction(
    () => {
      const bars = document.querySelectorAll("#grid thead th.run-col .run-bar");
      const last = bars[bars.length - 1];
      return last && (last.classList.contains("st-success") || last.classList.contains("st-failed"));
    },
    null,
    { timeout: runTimeoutMs, polling: 500 },
  );
  const finalClass = await newest.getAttribute("class");
  step(`run finished: ${finalClass}`);
  if (!finalClass.includes("st-success")) throw new Error(`the run did not succeed: ${finalClass}`);
  await shot(page, "05-grid-finished");

  step("expand the mapped task in the grid");
  const toggle = page.locator("#grid a.toggle").first();
  if (await toggle.count()) {
    await toggle.click();
    await page.locator("#grid tr.row-instance").first().waitFor({ timeout: 10000 });
    await shot(page, "06-grid-expanded");
  }

  step("graph view");
  await page.getByRole("link", { name: "Graph", exact: true }).click();
  await page.locator("#graph svg .node").first().waitFor({ timeout: 15000 });
  await shot(page, "07-graph");

  step("gantt view");
  await page.getByRole("link", { name: "Gantt", exact: true }).click();
  await page.locator(".gantt-bar").first().waitFor({ timeout: 15000 });
  await shot(page, "08-gantt");

  step("code view");
  await page.getByRole("link", { name: "Code", exact: true }).click();
  await page.locator(".code-view").waitFor();
  await shot(page, "09-code");

  step("open a task's log from the grid");
  await page.getByRole("link", { name: "Grid", exact: true }).click();
  const cell = page.locator('#grid tr.row-task[data-task="evaluate"] td').last().locator("a.cell");
  const target = (await cell.count()) ? cell : page.locator("#grid tr.row-task td").last().locator("a.cell");
  await target.click();
  await page.waitForURL(/\/tasks\//);
  await page.waitForFunction(() => document.querySelector("pre[data-log]")?.dataset.done === "true", null, { timeout: 30000 });
  const log = await page.locator("pre[data-log]").innerText();
  step(`log: ${log.length} characters`);
  if (log.trim().length === 0) throw new Error("the task's log is empty");
  await shot(page, "10-task-log");

  step("run page");
  await page.locator(".crumbs a").nth(2).click();
  await page.waitForURL(/\/runs\/[^/]+$/);
  await shot(page, "11-run");

  step("dark theme");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto(`${base}/dags/${dagId}?tab=grid`);
  await shot(page, "12-grid-dark");
  await page.goto(`${base}/`);
  await shot(page, "13-dag-list-dark");

  if (errors.length) throw new Error(`errors in the browser:\n${errors.join("\n")}`);
  step("passed");
} catch (e) {
  failed = true;
  console.error(`[ui-e2e] FAILED: ${e.stack || e}`);
  if (errors.length) console.error(errors.join("\n"));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);

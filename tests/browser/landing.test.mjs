// The landing page as a person sees it: Debian's chromium, driven by
// playwright-core, opens `/` of a real exporter serving the bundled sample
// (files source, read once). The page must load without console errors,
// show every unanswered conversation that `analyze --details` finds in the
// sample, narrow its rows when an address is typed in the filter box, put
// the largest unanswered conversation in a headline sentence ("payments-db:
// 14 unanswered from 10.2.3.4 to 10.0.0.10:5432 in the last 1 min") with the
// command that proves it, and leave screenshots in target/browser-artifacts/.
//
// Run by scripts/test after cargo has built the binary; on its own:
//   (cd tests/browser && npm ci && node --test)
// Env: VPC_FLOW_EXPORTER_BIN (default target/debug/vpc-flow-exporter),
//      CHROMIUM (default /usr/bin/chromium).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, "target");
const binary = process.env.VPC_FLOW_EXPORTER_BIN || join(targetDir, "debug", "vpc-flow-exporter");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const sample = join(repo, "examples", "sample-flows.log");
const artifacts = join(targetDir, "browser-artifacts");
const TIMEOUT_MS = 20_000;

let scratch, repeated, exporter, exporterLog = "", baseUrl, context;

function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

async function waitReady(url) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    try {
      if ((await fetch(url + "/ready")).ok) return;
    } catch { /* not listening yet */ }
    if (exporter.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the exporter did not get ready:\n${exporterLog}`);
    }
    await new Promise(r => setTimeout(r, 100));
  }
}

/** What the page must show: the sessions as analyze decides them. */
function analyzeDetails() {
  const out = execFileSync(binary, ["analyze", "--output", "json", "--details", sample, repeated], { encoding: "utf8" });
  return JSON.parse(out).details;
}

/**
 * Beside the sample, the conversation a person debugging must see first:
 * 14 connections from 10.2.3.4 to payments-db's PostgreSQL, let in and
 * never answered (SYN only, in the sample's capture windows).
 */
function repeatedUnanswered() {
  const lines = ["version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status instance-id tcp-flags pkt-srcaddr pkt-dstaddr"];
  for (let i = 0; i < 14; i++) {
    const start = 1732780800 + 20 * i;
    lines.push(`3 123456789010 eni-00000000000000000 10.2.3.4 10.0.0.10 ${41000 + i} 5432 6 2 120 ${start} ${start + 30} ACCEPT OK i-0123456789abcdef0 2 10.2.3.4 10.0.0.10`);
  }
  return lines.join("\n") + "\n";
}

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), "vpc-flow-browser-"));
  const port = await freePort();
  repeated = join(scratch, "repeated-unanswered.log");
  writeFileSync(repeated, repeatedUnanswered());
  const config = join(scratch, "config.toml");
  writeFileSync(config, [
    "[server]", `listen_address = "127.0.0.1:${port}"`, "",
    "[files]", `paths = [${JSON.stringify(sample)}, ${JSON.stringify(repeated)}]`, "",
    "[interfaces.eni-00000000000000000]", 'name = "payments-db"', "",
  ].join("\n"));
  exporter = spawn(binary, ["serve", "--config", config], {
    env: { PATH: process.env.PATH, AWS_EC2_METADATA_DISABLED: "true" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  for (const stream of [exporter.stdout, exporter.stderr]) {
    stream.on("data", chunk => { exporterLog = (exporterLog + chunk).slice(-20_000); });
  }
  baseUrl = `http://127.0.0.1:${port}`;
  await waitReady(baseUrl);
  // A fresh profile, and nothing that would reach past loopback.
  context = await chromium.launchPersistentContext(join(scratch, "profile"), {
    executablePath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1400, height: 1000 },
  });
});

after(async () => {
  await context?.close();
  exporter?.kill("SIGTERM");
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test("the landing page shows the sample's unanswered conversations and filters them", async () => {
  const page = await context.newPage();
  const problems = [];
  page.on("console", message => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", error => problems.push(`page error: ${error.message}`));
  page.on("requestfailed", request => problems.push(`request failed: ${request.url()}`));
  page.on("request", request => {
    if (!request.url().startsWith(baseUrl)) problems.push(`request off the exporter: ${request.url()}`);
  });

  await page.goto(baseUrl + "/", { waitUntil: "load" });
  const rows = page.locator("#conversations tbody tr.conversation");
  await rows.first().waitFor({ timeout: TIMEOUT_MS });

  // Every unanswered session of the sample is on screen, from its initiator to its responder.
  const unanswered = analyzeDetails().filter(s => s.verdict === "unanswered");
  assert.ok(unanswered.length >= 3, "the sample has unanswered sessions");
  const shown = await page.locator('#conversations tbody tr[data-verdict="unanswered"]').allInnerTexts();
  for (const session of unanswered) {
    const from = session.initiator.replace(/:\d+$/, "");
    assert.ok(
      shown.some(row => row.includes(`${from} \u2192 ${session.responder}`)),
      `unanswered ${session.initiator} -> ${session.responder} is not shown:\n${shown.join("\n")}`,
    );
  }
  // The interface's configured name is shown, and its last hour's counts.
  const interfaces = await page.locator("#interfaces tbody").innerText();
  assert.match(interfaces, /payments-db/);
  // Each row carries the command that proves it.
  const command = await rows.first().locator("code.command").innerText();
  assert.match(command, /^vpc-flow-exporter analyze --details --interface eni-\S+ --address \S+ --port \d+ /);

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "landing.png"), fullPage: true });

  // Typing an address narrows the rows to that address's conversations.
  const before = await rows.count();
  const address = unanswered[0].initiator.replace(/:\d+$/, "");
  await page.fill("#filter-address", address);
  await page.waitForFunction(
    ([n, a]) => {
      const all = [...document.querySelectorAll("#conversations tbody tr.conversation")];
      return all.length > 0 && all.length < n && all.every(row => row.innerText.includes(a));
    },
    [before, address],
    { timeout: TIMEOUT_MS },
  );
  const narrowed = await rows.allInnerTexts();
  assert.ok(narrowed.length < before, `${narrowed.length} rows after filtering, ${before} before`);
  assert.ok(narrowed.every(row => row.includes(`--address ${address} `)), narrowed.join("\n"));
  await page.screenshot({ path: join(artifacts, "landing-filtered.png"), fullPage: true });

  // With the verdict narrowed to unanswered, the headline says it in a
  // sentence, for the largest conversation analyze finds.
  const names = { "eni-00000000000000000": "payments-db" };
  // The page's conversations: interface, protocol, initiator address, responder.
  const groups = new Map();
  for (const s of unanswered) {
    const from = s.initiator.replace(/:\d+$/, "");
    const key = [s.interface_id, s.protocol, from, s.responder].join(" ");
    const sentence = `${names[s.interface_id] || s.interface_id}: ? unanswered from ${from} to ${s.responder}`;
    const group = groups.get(key) || { sentence, count: 0 };
    group.count += 1;
    groups.set(key, group);
  }
  const largest = Math.max(...[...groups.values()].map(g => g.count));
  const expected = [...groups.values()].filter(g => g.count === largest).map(g => g.sentence.replace("?", String(largest)));
  assert.deepEqual(expected, ["payments-db: 14 unanswered from 10.2.3.4 to 10.0.0.10:5432"], "analyze finds the repeated conversation");
  await page.click("#filter-clear");
  await page.selectOption("#filter-verdict", "unanswered");
  await page.waitForFunction(
    n => {
      const all = [...document.querySelectorAll("#conversations tbody tr.conversation")];
      return all.length === n && all.every(row => row.dataset.verdict === "unanswered");
    },
    groups.size,
    { timeout: TIMEOUT_MS },
  );
  const headline = page.locator("#headlines li").first();
  const said = await headline.evaluate(li => li.querySelector("strong").textContent + li.querySelector(".sentence").textContent);
  const sentence = said.match(/^(.*) in the last \d+ min$/);
  assert.ok(sentence, `headline "${said}" is not a sentence`);
  assert.ok(expected.includes(sentence[1]), `headline "${said}", expected one of:\n${expected.join("\n")}`);
  // ... with the command that proves it.
  assert.match(await headline.locator("code.command").innerText(), /^vpc-flow-exporter analyze --details --interface eni-\S+ /);
  await page.screenshot({ path: join(artifacts, "landing-unanswered.png"), fullPage: true });

  assert.deepEqual(problems, [], "the page loaded without errors");
});

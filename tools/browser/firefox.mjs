// Drives Debian's firefox-esr, headless, through WebDriver BiDi (puppeteer-core, no download).
//
// Usage: node firefox.mjs FIREFOX_BINARY PREFS_JSON
// Then one JSON command per line on stdin, one JSON reply per line on stdout:
//   {"do": "goto", "url": "..."}                 -> {"ok": true}
//   {"do": "click", "selector": "..."}           -> {"ok": true}
//   {"do": "check", "selector": "...", "nth": 0} (the nth match, unless already checked)
//   {"do": "fill", "selector": "...", "text": "..."}
//   {"do": "eval", "js": "() => ..."}            -> {"ok": true, "value": <JSON>}
//   {"do": "wait", "js": "() => ...", "timeout": ms} (until the function returns truthy)
//   {"do": "screenshot", "path": "..."}
//   {"do": "close"}                              -> {"ok": true}, then the process exits
// A failed command answers {"ok": false, "error": "..."} and the session goes on.
// Uncaught page errors are collected and returned by {"do": "errors"}.
import readline from "node:readline";
import puppeteer from "puppeteer-core";

const [executablePath, prefsJson] = process.argv.slice(2);
const browser = await puppeteer.launch({
  browser: "firefox",
  protocol: "webDriverBiDi",
  executablePath,
  headless: true,
  defaultViewport: { width: 1440, height: 900 },
  extraPrefsFirefox: JSON.parse(prefsJson || "{}"),
});
const page = await browser.newPage();
page.setDefaultTimeout(15000);
const errors = [];
page.on("pageerror", (err) => errors.push(`${page.url()}: ${err.message || err}`));

async function run(cmd) {
  switch (cmd.do) {
    case "goto":
      await page.goto(cmd.url, { waitUntil: "load" });
      return null;
    case "click":
      await (await page.waitForSelector(cmd.selector, { visible: true })).click();
      return null;
    case "check": {
      // The nth (from 0) element the selector matches, clicked unless already checked.
      await page.waitForSelector(cmd.selector, { visible: true });
      const el = (await page.$$(cmd.selector))[cmd.nth ?? 0];
      if (!(await el.evaluate((e) => e.checked))) await el.click();
      return null;
    }
    case "fill": {
      const el = await page.waitForSelector(cmd.selector, { visible: true });
      await el.click({ count: 3 });
      await el.type(cmd.text);
      return null;
    }
    case "eval":
      return await page.evaluate(`(${cmd.js})()`);
    case "wait":
      await page.waitForFunction(`(${cmd.js})()`, { timeout: cmd.timeout ?? 15000, polling: 100 });
      return null;
    case "screenshot":
      await page.screenshot({ path: cmd.path, fullPage: true });
      return null;
    case "errors":
      return errors;
    case "close":
      await browser.close();
      return null;
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd.do)}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ ok: true, value: await browser.version() }) + "\n");
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply;
  let cmd = {};
  try {
    cmd = JSON.parse(line);
    reply = { ok: true, value: (await run(cmd)) ?? null };
  } catch (err) {
    reply = { ok: false, error: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
  if (cmd.do === "close") break;
}
await browser.close().catch(() => {});
process.exit(0);

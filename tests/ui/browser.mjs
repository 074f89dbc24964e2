// Drives Debian's chromium through playwright-core for tests/ui_browser.rs.
// Usage: node browser.mjs '<json>' where the JSON is
// { "chromium": path, "steps": [ ... ] }; prints one JSON line of results.
// Steps: {goto}, {click} (waits for the page it loads), {tap} (a click
// that loads nothing), {wait, timeout},
// {text, as}, {data, as} (the dataset of every match), {touch} (writes a
// file: tells the test a point was reached), {screenshot}.
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";

const job = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: job.chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const out = { statuses: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("response", (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) {
      out.statuses.push(r.status());
    }
  });
  for (const s of job.steps) {
    if (s.goto) await page.goto(s.goto, { waitUntil: "load" });
    if (s.click) {
      await Promise.all([page.waitForEvent("load"), page.click(s.click)]);
    }
    if (s.tap) await page.click(s.tap);
    if (s.wait) await page.waitForSelector(s.wait, { timeout: s.timeout || 10000 });
    if (s.text) out[s.as] = (await page.textContent(s.text)) || "";
    if (s.data) {
      out[s.as] = await page.$$eval(s.data, (els) => els.map((e) => ({ ...e.dataset })));
    }
    if (s.touch) writeFileSync(s.touch, "reached\n");
    if (s.screenshot) await page.screenshot({ path: s.screenshot, fullPage: true });
  }
} catch (e) {
  out.error = String(e && e.message ? e.message : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

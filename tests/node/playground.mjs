// The playground in headless Chromium (Debian's, driven by playwright-core): chat with streaming
// tokens, a server-side tool call, an approval, then a reload that must show the whole history.
//
//   node playground.mjs <base-url> <screenshot.png>
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(base);
  await page.waitForSelector('#agent option[value="approval-agent"]', { state: "attached" });
  await page.selectOption("#agent", "approval-agent");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "ready");

  // 1. streaming tokens: sample the answer while it grows
  await page.fill("#input", "[[long:30]] [[delay:40]]");
  await page.press("#input", "Enter");
  const lengths = new Set();
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    const text = await page.evaluate(() => document.querySelector(".message.assistant:last-child .text")?.textContent ?? "");
    lengths.add(text.split(" ").filter(Boolean).length);
    if (lengths.has(30)) break;
    await page.waitForTimeout(50);
  }
  result.partialLengths = [...lengths].sort((a, b) => a - b);

  // 2. a server-side tool call, shown with its input and output
  await page.waitForFunction(() => document.querySelector("#status").textContent === "ready");
  await page.fill("#input", '[[call:lookup {"order": "P-1"}]] look it up');
  await page.press("#input", "Enter");
  await page.waitForSelector('.tool[data-tool="lookup"][data-state="output-available"]', { timeout: 20000 });
  await page.waitForFunction(() => document.querySelector("#status").textContent === "ready");
  result.toolText = await page.textContent('.tool[data-tool="lookup"]');

  // 3. an approval: the person clicks Approve, the call runs
  await page.fill("#input", '[[call:refund {"order": "P-1", "amount": 5}]] refund it');
  await page.press("#input", "Enter");
  await page.waitForSelector('.tool[data-tool="refund"] button:text("Approve")', { timeout: 20000 });
  await page.click('.tool[data-tool="refund"] button:text("Approve")');
  await page.waitForSelector('.tool[data-tool="refund"][data-state="output-available"]', { timeout: 20000 });
  await page.waitForFunction(() => document.querySelector("#status").textContent === "ready");
  result.steps = await page.$$eval("#steps li", (items) => items.map((li) => li.textContent));
  result.before = await page.$$eval(".message", (els) => els.map((e) => e.innerText));

  // 4. reload: the conversation comes back from the server
  await page.reload();
  await page.waitForSelector('.tool[data-tool="refund"][data-state="output-available"]', { timeout: 20000 });
  result.after = await page.$$eval(".message", (els) => els.map((e) => e.innerText));
  await page.screenshot({ path: screenshot, fullPage: true });
  result.consoleErrors = consoleErrors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));

import { existsSync } from 'node:fs';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Chromium as the tests run it: headless, no network chatter, a throwaway profile. */
export async function launchChromium(
  profile: string,
  opts: { httpCredentials?: { username: string; password: string } } = {},
): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `This needs Chromium at ${CHROMIUM}. Install it with ` +
        '`apt-get update && apt-get install -y chromium`, or set CHROMIUM_PATH.',
    );
  }
  // A persistent context is how Playwright takes a fresh --user-data-dir.
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    ...(opts.httpCredentials ? { httpCredentials: opts.httpCredentials } : {}),
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/**
 * Installed before the page's own scripts: records the first animation frame that shows a producer
 * row (the first render, as the user sees it), every long task, every page update and, for each
 * click on the page's title, how long the click waited for the main thread.
 */
const RECORDER = `
(() => {
  const f = (window.__figures = { firstRender: null, longTasks: [], updates: 0, inputDelays: [] });
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) f.longTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask', buffered: true });
  } catch {}
  const frame = () => {
    if (document.querySelector('#producers tbody tr')) {
      f.firstRender = performance.now();
      const updated = document.getElementById('updated');
      if (updated) new MutationObserver(() => f.updates++).observe(updated, { childList: true, characterData: true, subtree: true });
      return;
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  addEventListener('pointerdown', (e) => {
    if (e.target && e.target.closest && e.target.closest('h1')) f.inputDelays.push(performance.now() - e.timeStamp);
  }, true);
})();
`;

export type PageFigures = {
  /** From navigation start to the first frame showing producer rows, ms. */
  firstRenderMs: number;
  /** Long tasks (over 50 ms) after the first render: how many, the longest, ms. */
  longTasks: number;
  longestTaskMs: number;
  /** Updates the page rendered while watched, and how long it was watched, s. */
  updatesRendered: number;
  watchedS: number;
  /** Clicks made while watched and the longest time one waited for the main thread, ms. */
  clicks: number;
  maxInputDelayMs: number;
  /** The longest a click took to return to the driver (an upper bound of its wait). */
  slowestClickMs: number;
  /** Elements in the document once watched. */
  domNodes: number;
};

/**
 * Opens `url` in a new page, waits (up to `renderTimeoutMs`) for its first render, then watches it
 * for `watchMs` while clicking its title every 250 ms, and reports what it saw.
 */
export async function measurePage(
  browser: BrowserContext,
  url: string,
  opts: { watchMs: number; renderTimeoutMs: number },
): Promise<PageFigures> {
  const page: Page = await browser.newPage();
  try {
    await page.addInitScript(RECORDER);
    await page.goto(url);
    type Figures = {
      firstRender: number | null;
      longTasks: { start: number; duration: number }[];
      updates: number;
      inputDelays: number[];
    };
    // No DOM types here: the page's globals are reached through globalThis.
    const read = () => page.evaluate(() => (globalThis as unknown as { __figures: Figures }).__figures);
    const title = await page.locator('h1').boundingBox();
    if (!title) throw new Error(`${url}: the page has no title to click`);
    const deadline = Date.now() + opts.renderTimeoutMs;
    let firstRender: number | null = null;
    while ((firstRender = (await read()).firstRender) === null) {
      if (Date.now() > deadline)
        throw new Error(`${url}: no producer row rendered within ${opts.renderTimeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const updatesBefore = (await read()).updates;
    const watchStart = Date.now();
    let clicks = 0;
    // Measured in the page (event time to handler) and, as a bound, by how long a click takes to return.
    let slowestClickMs = 0;
    while (Date.now() - watchStart < opts.watchMs) {
      const t = Date.now();
      await page.mouse.click(title.x + title.width / 2, title.y + title.height / 2); // inert
      slowestClickMs = Math.max(slowestClickMs, Date.now() - t);
      clicks++;
      await new Promise((r) => setTimeout(r, 250));
    }
    const watchedS = (Date.now() - watchStart) / 1000;
    const f = await read();
    const after = f.longTasks.filter((t) => t.start + t.duration > firstRender);
    return {
      firstRenderMs: Math.round(firstRender),
      longTasks: after.length,
      longestTaskMs: Math.round(Math.max(0, ...after.map((t) => t.duration))),
      updatesRendered: f.updates - updatesBefore,
      watchedS: Math.round(watchedS * 10) / 10,
      clicks,
      maxInputDelayMs: Math.round(Math.max(0, ...f.inputDelays)),
      slowestClickMs,
      domNodes: await page.evaluate(
        () =>
          (
            globalThis as unknown as { document: { getElementsByTagName(t: string): { length: number } } }
          ).document.getElementsByTagName('*').length,
      ),
    };
  } finally {
    await page.close();
  }
}

// Opens a livecdn player page in headless Chromium (Debian's, never a downloaded one) and
// samples the <video> until it has played `min` seconds or `deadline` seconds pass, then
// prints one JSON object on stdout. It judges nothing: tests/tests/browser.rs asserts.
//
// usage: node play.mjs URL [--min SECONDS] [--deadline SECONDS] [--chromium PATH]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const argv = process.argv.slice(2);
const url = argv[0];
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const minPlayed = Number(opt("min", "5"));
const deadlineS = Number(opt("deadline", "40"));
const executablePath = opt("chromium", process.env.CHROMIUM || "/usr/bin/chromium");
const SAMPLE_MS = 500;

if (!url) {
  console.error("usage: node play.mjs URL [--min S] [--deadline S] [--chromium PATH]");
  process.exit(2);
}

// Whatever happens inside, the process ends: the Rust side has its own deadline too, and
// Chromium exits when its DevTools pipe to this process closes.
const watchdog = setTimeout(() => {
  console.error("play.mjs: watchdog expired");
  process.exit(3);
}, (deadlineS + 60) * 1000);
watchdog.unref();

const result = {
  url,
  browser: null,
  mode: null,
  status: null,
  hlsjs: false,
  src: null,
  livecdn: null,
  played: 0,
  frames: { first: null, last: null },
  samples: [],
  console: [],
  pageErrors: [],
  badResponses: [],
  failedRequests: [],
  error: null,
};

// A fresh profile every run: nothing cached from an earlier run can make it pass.
const profile = mkdtempSync(join(tmpdir(), "livecdn-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    timeout: 20000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  result.browser = context.browser()?.version() ?? null;
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("response", (r) => {
    if (r.status() >= 400) result.badResponses.push(`${r.status()} ${r.url()}`);
  });
  page.on("requestfailed", (r) =>
    result.failedRequests.push(`${r.failure()?.errorText ?? "failed"} ${r.url()}`),
  );
  await page.goto(url, { waitUntil: "load", timeout: 15000 });

  const start = Date.now();
  let prev = null;
  while (Date.now() - start < deadlineS * 1000) {
    const s = await page.evaluate(() => {
      const v = document.getElementById("video");
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
      const b = v.buffered;
      return {
        ct: v.currentTime,
        rs: v.readyState,
        paused: v.paused,
        frames: q ? q.totalVideoFrames : null,
        buffered: b.length ? [b.start(0), b.end(b.length - 1)] : null,
        fatal: window.livecdn ? window.livecdn.fatal : "no window.livecdn",
      };
    });
    s.t = (Date.now() - start) / 1000;
    result.samples.push(s);
    if (s.frames !== null) {
      result.frames.first ??= s.frames;
      result.frames.last = s.frames;
    }
    // Real playback only: a step of currentTime counts if it is no faster than about the wall
    // clock, so a seek to the live edge is not mistaken for playing.
    if (prev) {
      const dct = s.ct - prev.ct;
      const dwall = s.t - prev.t;
      if (dct > 0 && dct <= dwall * 1.5 + 0.25) result.played += dct;
    }
    prev = s;
    if (s.fatal || result.played >= minPlayed) break;
    await new Promise((r) => setTimeout(r, SAMPLE_MS));
  }

  Object.assign(
    result,
    await page.evaluate(() => {
      const v = document.getElementById("video");
      return {
        mode: window.livecdn ? window.livecdn.mode : null,
        livecdn: window.livecdn ?? null,
        status: document.getElementById("status").textContent,
        hlsjs: typeof window.Hls === "function" && window.Hls.isSupported(),
        src: v.currentSrc || v.src || null,
      };
    }),
  );
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
result.played = Math.round(result.played * 1000) / 1000;
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(result.error ? 1 : 0);

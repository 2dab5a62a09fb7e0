/**
 * Headless Chromium for the browser test and bench: Debian's binary
 * (`apt-get install chromium`) or `$CRT_CHROMIUM`, and the switches both
 * launch it with.
 *
 * @module
 */

/** The Chromium binary: `$CRT_CHROMIUM`, else Debian's `/usr/bin/chromium`. */
export const CHROMIUM: string = Deno.env.get("CRT_CHROMIUM") ?? "/usr/bin/chromium";

/**
 * The switches the test and the bench launch Chromium with: no sandbox, no
 * GPU, no QUIC, no first-run screens, and none of the browser's background
 * traffic (background networking, component updates, sync).
 */
export const CHROMIUM_ARGS: readonly string[] = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

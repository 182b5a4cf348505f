/**
 * The one way the browser code talks to the server: `http(url, init)` is `fetch` that sends
 * the session's CSRF token (from `<meta name="csrf-token">`, which every page carries) as the
 * `X-CSRF-Token` header on every state-changing request (POST, PUT, PATCH, DELETE), and keeps
 * the cookies on the same origin. The server refuses such a request without the token
 * (webapp/security.py, docs/security.md). Works in workers too (no document: no token, reads only).
 *
 *   import { http } from "./http.js";
 *   const resp = await http(url, { method: "POST", body: JSON.stringify(data) });
 */

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** The session's CSRF token from the page's meta tag ("" where there is none). */
export function csrfToken() {
  if (typeof document === "undefined") return "";
  return document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") ?? "";
}

/** `fetch(url, init)` plus the CSRF header on state-changing methods. */
export function http(url, init = {}) {
  const method = (init.method ?? "GET").toUpperCase();
  const headers = new Headers(init.headers ?? {});
  if (UNSAFE.has(method) && !headers.has("X-CSRF-Token")) headers.set("X-CSRF-Token", csrfToken());
  return fetch(url, { credentials: "same-origin", ...init, method, headers });
}

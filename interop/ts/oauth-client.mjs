// Interop check: the official TypeScript MCP SDK client completes mcpgate's
// OAuth 2.1 flow on its own.
//
//   node oauth-client.mjs <mcp-url>
//
// The client connects without a credential, gets 401, discovers the
// protected-resource and authorization-server metadata, registers itself
// dynamically (RFC 7591), and asks the user to authorize: it prints one line
//
//   AUTHORIZE <authorization-url>
//
// on stdout and waits (up to 60 s) for the browser to come back to its
// loopback redirect URI (http://127.0.0.1:<port>/callback, served here).
// It then checks state and iss (RFC 9207), exchanges the code with PKCE
// (transport.finishAuth), reconnects, lists the tools, calls
// getAccountBalance, refreshes its tokens once (refresh-token rotation) and
// calls it again, and prints one JSON object on stdout as its last line.
// Any failure prints {"error": …} and exits 2.
import http from "node:http";
import { randomBytes } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError, auth } from "@modelcontextprotocol/sdk/client/auth.js";

const [url] = process.argv.slice(2);
if (!url) {
  console.error("usage: node oauth-client.mjs <mcp-url>");
  process.exit(64);
}

function fail(err) {
  console.log(JSON.stringify({ error: String(err?.message ?? err) }));
  process.exit(2);
}

// The redirect URI's listener: resolves with the authorization response.
const callback = http.createServer();
let settle;
const response = new Promise((resolve, reject) => {
  settle = { resolve, reject };
});
callback.on("request", (req, res) => {
  const u = new URL(req.url, "http://127.0.0.1");
  if (u.pathname !== "/callback") {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end("<!doctype html><title>Connected</title><h1 id=done>You can close this window.</h1>");
  settle.resolve(Object.fromEntries(u.searchParams));
});
await new Promise((resolve) => callback.listen(0, "127.0.0.1", resolve));
const redirectUrl = `http://127.0.0.1:${callback.address().port}/callback`;

// An OAuthClientProvider keeping everything in memory.
class MemoryProvider {
  constructor() {
    this._state = randomBytes(16).toString("hex");
  }
  get redirectUrl() {
    return redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: "mcpgate TypeScript interop",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    return this._state;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  redirectToAuthorization(authorizationUrl) {
    this.authorizationUrl = authorizationUrl.toString();
    console.log(`AUTHORIZE ${this.authorizationUrl}`);
  }
  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }
  codeVerifier() {
    return this._verifier;
  }
}

const provider = new MemoryProvider();
const timer = setTimeout(() => settle.reject(new Error("no authorization response within 60 s")), 60_000);
try {
  // 1. Unauthenticated: 401 → discovery → registration → AUTHORIZE line.
  let transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  let client = new Client({ name: "mcpgate-oauth-interop", version: "1.0.0" });
  try {
    await client.connect(transport);
    throw new Error("connected without authorization");
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
  }

  // 2. The browser comes back with the code.
  const cb = await response;
  clearTimeout(timer);
  if (cb.error) throw new Error(`authorization refused: ${cb.error} ${cb.error_description ?? ""}`);
  if (cb.state !== provider._state) throw new Error(`state mismatch: ${cb.state}`);
  const authorizationUrl = new URL(provider.authorizationUrl);
  await transport.finishAuth(cb.code);
  const firstTokens = provider.tokens();

  // 3. Reconnect with the token and call tools.
  transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  client = new Client({ name: "mcpgate-oauth-interop", version: "1.0.0" });
  await client.connect(transport);
  const tools = await client.listTools();
  const balance = await client.callTool({ name: "getAccountBalance", arguments: {} });

  // 4. Refresh (rotation) and call again with the new access token.
  const refreshed = await auth(provider, { serverUrl: new URL(url) });
  const secondTokens = provider.tokens();
  const again = await client.callTool({ name: "getAccountBalance", arguments: {} });

  console.log(JSON.stringify({
    clientId: provider.clientInformation()?.client_id ?? null,
    iss: cb.iss ?? null,
    issuer: firstTokens?.issuer ?? null,
    requestedScope: authorizationUrl.searchParams.get("scope"),
    resource: authorizationUrl.searchParams.get("resource"),
    codeChallengeMethod: authorizationUrl.searchParams.get("code_challenge_method"),
    scope: firstTokens?.scope ?? null,
    tokenType: firstTokens?.token_type ?? null,
    hasRefreshToken: Boolean(firstTokens?.refresh_token),
    refresh: refreshed,
    rotated: Boolean(secondTokens?.refresh_token) && secondTokens.refresh_token !== firstTokens.refresh_token &&
      secondTokens.access_token !== firstTokens.access_token,
    protocolVersion: transport.protocolVersion ?? null,
    tools: tools.tools.map((t) => t.name).sort(),
    balance: balance.structuredContent ?? null,
    balanceIsError: balance.isError ?? false,
    balanceAfterRefresh: again.structuredContent ?? null,
  }));
  await transport.terminateSession().catch(() => {});
  await client.close();
  callback.close();
} catch (err) {
  fail(err);
}

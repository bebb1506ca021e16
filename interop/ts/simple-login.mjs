// Interop check of the simple login for scripts (docs/oauth.md, "Simple
// login for scripts"): a plain Node client logs in with fetch, then calls
// a tool with the official TypeScript MCP SDK client using the access
// token as a bearer token.
//
//   node simple-login.mjs <base-url> <email> <password>
//
// Prints one JSON object on stdout. A failure prints {"error": …} and
// exits 2, so the Go test (internal/server/direct_login_test.go) can
// report it.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [base, email, password] = process.argv.slice(2);
if (!base || !email || !password) {
  console.error("usage: node simple-login.mjs <base-url> <email> <password>");
  process.exit(64);
}

try {
  // A wrong password first: 401 with the API's error body.
  const bad = await fetch(`${base}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password: password + "x" }),
  });
  const badBody = await bad.json();

  const res = await fetch(`${base}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  const login = await res.json();
  if (res.status !== 200) {
    throw new Error(`login failed: ${res.status} ${JSON.stringify(login)}`);
  }

  const st = await fetch(`${base}/auth/status`, { headers: { Authorization: `Bearer ${login.access_token}` } });
  const status = await st.json();

  const client = new Client({ name: "mcpgate-simple-login", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${login.access_token}` } },
  });
  await client.connect(transport);
  const tools = await client.listTools();
  const balance = await client.callTool({ name: "getAccountBalance", arguments: {} });
  await transport.terminateSession().catch(() => {});
  await client.close();

  console.log(JSON.stringify({
    badStatus: bad.status,
    badError: badBody.error ?? null,
    loginStatus: res.status,
    tokenType: login.token_type,
    message: login.message,
    expiresIn: login.expires_in,
    hasRefreshToken: typeof login.refresh_token === "string" && login.refresh_token.length > 0,
    statusStatus: st.status,
    statusEmail: status.user?.email ?? null,
    statusMethod: status.method ?? null,
    tools: tools.tools.map((t) => t.name).sort(),
    balance: balance.structuredContent ?? null,
    balanceIsError: balance.isError ?? false,
  }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err?.message ?? err) }));
  process.exit(2);
}

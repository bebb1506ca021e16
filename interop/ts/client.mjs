// Interop check: the official TypeScript MCP SDK client against mcpgate.
//
//   node client.mjs <mcp-url> <header-name> <credential>
//
// Connects with the credential in the given header (Authorization gets the
// "Bearer " scheme), lists the tools, calls getAccountBalance and prints one
// JSON object on stdout. A refused connection prints {"error": …, "status": …}
// and exits 2, so the Go test can assert on refusals too.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, headerName, credential] = process.argv.slice(2);
if (!url || !headerName || !credential) {
  console.error("usage: node client.mjs <mcp-url> <header-name> <credential>");
  process.exit(64);
}
const headers = {};
headers[headerName] = headerName.toLowerCase() === "authorization" ? `Bearer ${credential}` : credential;

const client = new Client({ name: "mcpgate-interop", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
try {
  await client.connect(transport);
  const tools = await client.listTools();
  const balance = await client.callTool({ name: "getAccountBalance", arguments: {} });
  const latest = await client.callTool({ name: "getLatestTransactions", arguments: { limit: 2 } });
  console.log(JSON.stringify({
    protocolVersion: transport.protocolVersion ?? null,
    sessionId: transport.sessionId ?? null,
    tools: tools.tools.map((t) => t.name).sort(),
    balance: balance.structuredContent ?? null,
    balanceIsError: balance.isError ?? false,
    latest: latest.structuredContent ?? null,
  }));
  await transport.terminateSession().catch(() => {});
  await client.close();
} catch (err) {
  console.log(JSON.stringify({ error: String(err?.message ?? err), status: err?.code ?? null }));
  process.exit(2);
}

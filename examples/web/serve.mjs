// Serves this folder on http://localhost:5173 (WEB_PORT to change it; PORT is the API server's): the
// example page's own origin, which the server must allow. Run `npm run example:web`; see the README, "Web
// clients".
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join } from "node:path";

const setting = process.env.WEB_PORT ?? "";
const port = setting === "" ? 5173 : Number(setting);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`example:web: WEB_PORT: expected a port number (1-65535), got ${JSON.stringify(setting)}`);
  process.exit(1);
}
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };

createServer(async (req, res) => {
  const name = new URL(req.url ?? "/", "http://localhost").pathname.slice(1) || "index.html";
  const type = types[extname(name)];
  const body =
    type && !name.includes("/") ? await readFile(join(import.meta.dirname, name)).catch(() => null) : null;
  if (body === null) return void res.writeHead(404).end("not found");
  res.writeHead(200, { "content-type": type, "cache-control": "no-store" }).end(body);
})
  .on("error", (err) => {
    console.error(
      err.code === "EADDRINUSE"
        ? `example:web: port ${port} is already in use: set WEB_PORT to another port`
        : `example:web: ${err.message}`,
    );
    process.exit(1);
  })
  .listen(port, "localhost", () => {
    console.log(`example page: http://localhost:${port}/`);
    console.log(
      `start the server with API_KEY_SERVER_CORS_ORIGINS=http://localhost:${port} (npm start), then`,
    );
    console.log("paste a token from: npm run -s cli -- token --product product-dev --sub me");
  });

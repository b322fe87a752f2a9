// A stock graphql-ws client, configured with nothing but the URL and a token:
//   node client.mjs ws://127.0.0.1:7480/graphql/ws <token> '<subscription>' <count>
// Prints each result as one JSON line, exits 0 after <count> results, 1 on any error.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, query, countArg] = process.argv.slice(2);
const count = Number(countArg || 1);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
});
let seen = 0;
const fail = (e) => {
  console.error(JSON.stringify(e, Object.getOwnPropertyNames(e ?? {})));
  process.exit(1);
};
try {
  for await (const result of client.iterate({ query })) {
    console.log(JSON.stringify(result));
    if (result.errors) fail(result.errors);
    seen += 1;
    if (seen >= count) break;
  }
  await client.dispose();
  process.exit(seen >= count ? 0 : 1);
} catch (e) {
  fail(e);
}

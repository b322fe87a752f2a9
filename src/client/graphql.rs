//! GraphQL over the websocket at `/graphql/ws` (graphql-transport-ws) for subscriptions, and
//! `POST /graphql` for mutations. An `https://` server is reached over `wss://` with the HTTP
//! client's TLS trust. The token goes in `connection_init` as
//! `{"authorization": "Bearer ..."}`, never in the URL.

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{Body, Client, ClientError};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One running subscription.
#[derive(Debug)]
pub struct Subscription {
    ws: Ws,
    server: String,
}

fn ws_error(server: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Api {
        status: 0,
        code: "websocket".into(),
        message: format!("the websocket to {server} failed: {e}"),
        details: Value::Null,
    }
}

fn graphql_error(errors: &Value) -> ClientError {
    let first = errors.as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);
    ClientError::Api {
        status: 200,
        code: first["extensions"]["code"].as_str().unwrap_or("graphql").to_owned(),
        message: first["message"].as_str().unwrap_or("the GraphQL request failed").to_owned(),
        details: errors.clone(),
    }
}

impl Client {
    /// Runs a GraphQL mutation or query over `POST /graphql`; answers `data`.
    ///
    /// # Errors
    ///
    /// The HTTP error, or the first GraphQL error.
    pub async fn graphql(&self, query: &str, variables: Value) -> Result<Value, ClientError> {
        let body = json!({ "query": query, "variables": variables });
        let v: Value = self.json(Method::POST, "/graphql", &[], Body::Json(body)).await?;
        if let Some(errors) = v.get("errors").filter(|e| !e.is_null()) {
            return Err(graphql_error(errors));
        }
        Ok(v["data"].clone())
    }

    /// Opens the websocket, authenticates and starts one subscription.
    ///
    /// # Errors
    ///
    /// A refused connection or `connection_init`, or a GraphQL error at the start.
    pub async fn subscribe(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<Subscription, ClientError> {
        let url = if let Some(rest) = self.server().strip_prefix("https://") {
            format!("wss://{rest}/graphql/ws")
        } else {
            format!("ws://{}/graphql/ws", self.server().trim_start_matches("http://"))
        };
        let mut req = url.as_str().into_client_request().map_err(|e| ws_error(self.server(), e))?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
        // `wss://` trusts what the HTTP client trusts (public roots and `--ca-cert`).
        let connector = tokio_tungstenite::Connector::Rustls(self.tls());
        let (mut ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(connector))
                .await
                .map_err(|e| ws_error(self.server(), e))?;
        let token = self.access_token().await?.unwrap_or_default();
        let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
        ws.send(Message::text(init.to_string())).await.map_err(|e| ws_error(self.server(), e))?;
        let mut sub = Subscription { ws, server: self.server().to_owned() };
        loop {
            match sub.recv_raw().await? {
                Some(m) if m["type"] == "connection_ack" => break,
                Some(_) => {}
                None => {
                    return Err(ClientError::Api {
                        status: 401,
                        code: "unauthenticated".into(),
                        message: "the server closed the websocket: the token was refused".into(),
                        details: Value::Null,
                    });
                }
            }
        }
        let start = json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}});
        sub.ws
            .send(Message::text(start.to_string()))
            .await
            .map_err(|e| ws_error(&sub.server, e))?;
        Ok(sub)
    }
}

impl Subscription {
    async fn recv_raw(&mut self) -> Result<Option<Value>, ClientError> {
        loop {
            let Some(msg) = self.ws.next().await else { return Ok(None) };
            match msg.map_err(|e| ws_error(&self.server, e))? {
                Message::Text(t) => {
                    let v: Value =
                        serde_json::from_str(t.as_str()).map_err(|e| ws_error(&self.server, e))?;
                    if v["type"] == "ping" {
                        let pong = json!({"type": "pong"}).to_string();
                        self.ws
                            .send(Message::text(pong))
                            .await
                            .map_err(|e| ws_error(&self.server, e))?;
                        continue;
                    }
                    return Ok(Some(v));
                }
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
    }

    /// The next item's `data`, or `None` when the subscription completed.
    ///
    /// # Errors
    ///
    /// A GraphQL error (as [`ClientError::Api`] with its `extensions.code`) or a broken socket.
    pub async fn next(&mut self) -> Result<Option<Value>, ClientError> {
        loop {
            let Some(m) = self.recv_raw().await? else { return Ok(None) };
            match m["type"].as_str() {
                Some("next") => {
                    if let Some(errors) = m["payload"].get("errors").filter(|e| !e.is_null()) {
                        return Err(graphql_error(errors));
                    }
                    return Ok(Some(m["payload"]["data"].clone()));
                }
                Some("error") => return Err(graphql_error(&m["payload"])),
                Some("complete") => return Ok(None),
                _ => {}
            }
        }
    }

    /// Ends the subscription and closes the socket.
    pub async fn close(mut self) {
        let _ =
            self.ws.send(Message::text(json!({"id": "1", "type": "complete"}).to_string())).await;
        let _ = self.ws.close(None).await;
    }
}

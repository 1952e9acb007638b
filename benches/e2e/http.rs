//! A minimal keep-alive HTTP/1.1 client for the naive loop's writes to the fake
//! Kubernetes API: one request per write, nothing read first (the root package has no
//! plain HTTP client of its own to borrow).

use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

type Conn = BufReader<tokio::net::TcpStream>;

/// Keep-alive HTTP/1.1 connections to one `host:port`, reused across requests.
pub struct HttpPool {
    host: String,
    idle: Mutex<Vec<Conn>>,
}

impl HttpPool {
    /// Connections to `url` (`http://host:port`).
    pub fn new(url: &str) -> Self {
        Self {
            host: url.trim_start_matches("http://").trim_end_matches('/').to_string(),
            idle: Mutex::new(vec![]),
        }
    }

    /// Sends one request and returns the response status. A pooled connection the server
    /// closed is replaced once.
    pub async fn send(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> std::io::Result<u16> {
        let pooled = self.idle.lock().expect("pool lock").pop();
        let fresh = pooled.is_none();
        let conn = match pooled {
            Some(c) => c,
            None => BufReader::new(tokio::net::TcpStream::connect(&self.host).await?),
        };
        match self.exchange(conn, method, path, content_type, body).await {
            Ok(status) => Ok(status),
            Err(_) if !fresh => {
                let conn = BufReader::new(tokio::net::TcpStream::connect(&self.host).await?);
                self.exchange(conn, method, path, content_type, body).await
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> std::io::Result<u16> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        conn.get_mut().write_all(&req).await?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(bad("connection closed"));
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Err(bad("headers cut"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                match k.as_str() {
                    "content-length" => length = v.parse().map_err(|_| bad("content-length"))?,
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    "connection" => close = v == "close",
                    _ => {}
                }
            }
        }
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("chunk size"))?;
                let mut skip = vec![0u8; size + 2];
                conn.read_exact(&mut skip).await?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut skip = vec![0u8; length];
            conn.read_exact(&mut skip).await?;
        }
        if !close {
            self.idle.lock().expect("pool lock").push(conn);
        }
        Ok(status)
    }
}

//! A minimal HTTP/1.1 keep-alive client for the load generator: one connection per virtual
//! user, requests prepared as bytes once, Content-Length and chunked answers.

use std::net::SocketAddr;

use tokio::net::TcpStream;

pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

pub struct HttpConn {
    pub addr: SocketAddr,
    pub stream: Option<TcpStream>,
    pub buf: Vec<u8>,
}

pub fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

pub async fn write_all(s: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        s.writable().await?;
        match s.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub async fn read_more(s: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut tmp = [0u8; 16 * 1024];
    loop {
        s.readable().await?;
        match s.try_read(&mut tmp) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Decodes a complete chunked body; None while incomplete.
pub fn decode_chunked(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let eol = find(data, b"\r\n", pos)?;
        let size_text = std::str::from_utf8(&data[pos..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = eol + 2;
        if size == 0 {
            return find(data, b"\r\n", pos).map(|_| out);
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        out.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

pub fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

impl HttpConn {
    pub fn new(addr: SocketAddr) -> HttpConn {
        HttpConn {
            addr,
            stream: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    pub async fn request(&mut self, req: &[u8]) -> Result<Resp, String> {
        let reused = self.stream.is_some();
        match self.exchange(req).await {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                // The server may close an idle keep-alive connection: one retry on a new one.
                self.stream = None;
                self.exchange(req).await.map_err(|e| {
                    self.stream = None;
                    e.to_string()
                })
            }
            Err(e) => {
                self.stream = None;
                Err(e.to_string())
            }
        }
    }

    pub async fn exchange(&mut self, req: &[u8]) -> std::io::Result<Resp> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let HttpConn { stream, buf, .. } = self;
        let s = stream.as_ref().ok_or_else(|| invalid("no stream"))?;
        write_all(s, req).await?;
        buf.clear();
        let mut scanned: usize = 0;
        let head_end = loop {
            read_more(s, buf).await?;
            if let Some(p) = find(buf, b"\r\n\r\n", scanned.saturating_sub(3)) {
                break p;
            }
            scanned = buf.len();
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid("head"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("status line"))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        let body_start = head_end + 4;
        let body = if chunked {
            loop {
                if let Some(b) = decode_chunked(&buf[body_start..]) {
                    break b;
                }
                read_more(s, buf).await?;
            }
        } else {
            let len = length.unwrap_or(0);
            while buf.len() < body_start + len {
                read_more(s, buf).await?;
            }
            buf[body_start..body_start + len].to_vec()
        };
        if close {
            *stream = None;
        }
        Ok(Resp { status, body })
    }
}

pub fn build_request(
    method: &str,
    host: SocketAddr,
    path: &str,
    auth: &str,
    extra_headers: &str,
    body: Option<&str>,
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}");
    if !auth.is_empty() {
        r.push_str(&format!("Authorization: {auth}\r\n"));
    }
    if let Some(b) = body {
        r.push_str("Content-Type: application/json\r\n");
        r.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
        r.push_str(b);
    } else {
        r.push_str("\r\n");
    }
    r.into_bytes()
}

/// The string value of the first `"key": "…"` in a compact JSON document, from `from` on.
pub fn json_str<'a>(body: &'a [u8], key: &str, from: usize) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let mut p = find(body, pat.as_bytes(), from)? + pat.len();
    while body.get(p).is_some_and(|c| c.is_ascii_whitespace()) {
        p += 1;
    }
    if body.get(p) != Some(&b'"') {
        return None;
    }
    let start = p + 1;
    let end = start + body[start..].iter().position(|&c| c == b'"')?;
    std::str::from_utf8(&body[start..end]).ok()
}

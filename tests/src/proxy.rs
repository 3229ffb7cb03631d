//! A TCP proxy between a framework and a real Mesos master that does to the
//! SUBSCRIBE stream what a real master will not do on demand: re-chunk it to
//! single bytes, stall it, drop it in the middle of a record, answer with a
//! `307` to another address, or with `503`s. Other requests pass through.
//!
//! The stream is re-framed, not just forwarded: the proxy decodes the HTTP
//! chunked body and the RecordIO records in it, then writes every byte as an
//! HTTP chunk of its own when asked to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Every byte of the stream's body in an HTTP chunk of its own.
    pub single_bytes: bool,
    /// After this many records of the next stream, hold everything for this long (once).
    pub stall_after: Option<(usize, Duration)>,
    /// Hold the open stream for this long before its next record (once).
    pub stall_next: Option<Duration>,
    /// Close the next stream half-way through this record (0 = the first) (once).
    pub drop_in_record: Option<usize>,
    /// Answer the next SUBSCRIBE with `307 Location: //addr` (once).
    pub redirect_to: Option<SocketAddr>,
    /// Answer this many next SUBSCRIBEs with 503.
    pub unavailable: u32,
}

pub struct Proxy {
    pub addr: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    /// SUBSCRIBE requests seen, whatever was answered.
    subscribes: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy listens");
        let addr = listener.local_addr().expect("addr");
        let faults = Arc::new(Mutex::new(Faults::default()));
        let subscribes = Arc::new(Mutex::new(0));
        let (f, s) = (faults.clone(), subscribes.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (f, s) = (f.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = handle(client, upstream, f, s).await;
                });
            }
        });
        Proxy { addr, faults, subscribes, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().expect("faults"));
    }

    pub fn subscribes(&self) -> u32 {
        *self.subscribes.lock().expect("count")
    }
}

async fn read_head(s: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(p + 4));
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    subscribes: Arc<Mutex<u32>>,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut buf = Vec::new();
    let Some(head_len) = read_head(&mut client, &mut buf).await? else { return Ok(()) };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let body_len: usize = header_value(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_len + body_len {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).into_owned();
    let is_subscribe = body.contains("\"type\":\"SUBSCRIBE\"");
    enum Answer {
        Unavailable,
        Redirect(SocketAddr),
        Relay(Faults),
    }
    let answer = if is_subscribe {
        *subscribes.lock().expect("count") += 1;
        let mut f = faults.lock().expect("faults");
        if f.unavailable > 0 {
            f.unavailable -= 1;
            Answer::Unavailable
        } else if let Some(to) = f.redirect_to.take() {
            Answer::Redirect(to)
        } else {
            Answer::Relay(Faults {
                single_bytes: f.single_bytes,
                stall_after: f.stall_after.take(),
                drop_in_record: f.drop_in_record.take(),
                ..Faults::default()
            })
        }
    } else {
        Answer::Relay(Faults::default())
    };
    let plan = match answer {
        Answer::Unavailable => {
            let msg = "No leader elected";
            let resp = format!("HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}", msg.len());
            return client.write_all(resp.as_bytes()).await;
        }
        Answer::Redirect(to) => {
            let resp = format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: //{to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return client.write_all(resp.as_bytes()).await;
        }
        Answer::Relay(plan) => plan,
    };
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    up.write_all(&buf).await?;
    if !is_subscribe {
        // Plain pass-through, both ways, for as long as either side talks.
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        return Ok(());
    }
    relay_stream(client, up, plan, faults).await
}

/// Forwards the SUBSCRIBE response: head as is, the chunked body re-framed.
async fn relay_stream(mut client: TcpStream, mut up: TcpStream, plan: Faults, live: Arc<Mutex<Faults>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let Some(head_len) = read_head(&mut up, &mut buf).await? else { return Ok(()) };
    client.write_all(&buf[..head_len]).await?;
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        client.write_all(&buf[head_len..]).await?;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        return Ok(());
    }
    let mut raw = buf[head_len..].to_vec(); // chunked-encoded bytes not yet decoded
    let mut records = mesos::recordio::Decoder::new(64 << 20);
    let mut sent = 0usize;
    let mut stalled = false;
    loop {
        // Decode whole HTTP chunks out of `raw`.
        while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&raw[..eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_text:?}")))?;
            if raw.len() < eol + 2 + size + 2 {
                break;
            }
            if size == 0 {
                client.write_all(b"0\r\n\r\n").await?;
                return Ok(());
            }
            records.push(&raw[eol + 2..eol + 2 + size]);
            raw.drain(..eol + 2 + size + 2);
        }
        while let Some(record) = records.next().map_err(std::io::Error::other)? {
            if let Some((after, pause)) = plan.stall_after
                && sent == after
                && !stalled
            {
                stalled = true;
                tokio::time::sleep(pause).await;
            }
            let pause = live.lock().expect("faults").stall_next.take();
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            let framed = mesos::recordio::encode(&record);
            if plan.drop_in_record == Some(sent) {
                let cut = framed.len() - record.len() / 2;
                write_body(&mut client, &framed[..cut], plan.single_bytes).await?;
                return client.shutdown().await; // mid-record, and no terminating chunk
            }
            write_body(&mut client, &framed, plan.single_bytes).await?;
            sent += 1;
        }
        let mut chunk = [0u8; 8192];
        let n = up.read(&mut chunk).await?;
        if n == 0 {
            return client.shutdown().await;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

async fn write_body(client: &mut TcpStream, bytes: &[u8], single: bool) -> std::io::Result<()> {
    if single {
        for b in bytes {
            client.write_all(&[b'1', b'\r', b'\n', *b, b'\r', b'\n']).await?;
        }
    } else if !bytes.is_empty() {
        client.write_all(format!("{:x}\r\n", bytes.len()).as_bytes()).await?;
        client.write_all(bytes).await?;
        client.write_all(b"\r\n").await?;
    }
    client.flush().await
}

//! Artifact transfers have no deadline, only a limit on time without progress: a slow but
//! steady transfer that outlasts the idle timeout many times over completes, a stalled one
//! fails after it. A real MLflow server cannot be made slow on demand, so the peer here is a
//! bare TCP socket that speaks just enough HTTP/1.1 and paces its reads and writes.

use std::time::{Duration, Instant};

use mlflow::{Client, Error, RunInfo, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const IDLE: Duration = Duration::from_secs(2);
const PACE: Duration = Duration::from_millis(10);
const PIECE: usize = 64 * 1024;

fn client(port: u16) -> Client {
    let timeouts = Timeouts { connect: Duration::from_secs(5), request: IDLE, idle: IDLE };
    Client::with_timeouts(&format!("http://127.0.0.1:{port}"), timeouts).expect("client")
}

fn run() -> RunInfo {
    serde_json::from_value(serde_json::json!({
        "run_id": "r1", "experiment_id": "1", "status": "RUNNING",
        "artifact_uri": "mlflow-artifacts:/1/r1/artifacts",
    }))
    .expect("run info")
}

/// A listener with a small receive buffer, so that the kernel cannot swallow a whole upload
/// while the peer is not reading.
fn listener() -> (TcpListener, u16) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let listener = socket.listen(8).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// Reads the request head; returns it (lowercased) and any body bytes read with it.
async fn read_head(conn: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    loop {
        let n = conn.read(&mut piece).await.expect("read head");
        assert!(n > 0, "connection closed before the request head ended");
        buf.extend_from_slice(&piece[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return (String::from_utf8_lossy(&buf[..end]).to_lowercase(), buf[end + 4..].to_vec());
        }
    }
}

fn temp_file(len: usize) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("mlflow-transfer-{}-{len}", std::process::id()));
    std::fs::write(&path, vec![7u8; len]).expect("write");
    path
}

#[tokio::test]
async fn a_slow_upload_outlasts_the_idle_timeout() {
    let (listener, port) = listener();
    let len = 16 << 20;
    let peer = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let (head, body) = read_head(&mut conn).await;
        // A declared length, not chunked encoding: the server knows the size before storing.
        assert!(head.contains(&format!("content-length: {len}")) && !head.contains("transfer-encoding"), "{head}");
        let mut got = body.len();
        let mut piece = vec![0u8; PIECE];
        while got < len {
            tokio::time::sleep(PACE).await;
            got += conn.read(&mut piece).await.expect("read body");
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.expect("answer");
        got
    });
    let file = temp_file(len);
    let start = Instant::now();
    let sent = client(port).upload_artifact(&run(), "big.bin", &file).await;
    let _ = std::fs::remove_file(&file);
    assert_eq!(sent.expect("a slow upload completes"), len as u64);
    assert_eq!(peer.await.expect("peer"), len);
    assert!(start.elapsed() > IDLE, "took {:?}: not slow enough to prove anything", start.elapsed());
}

#[tokio::test]
async fn a_stalled_upload_fails_after_the_idle_timeout() {
    let (listener, port) = listener();
    let peer = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        read_head(&mut conn).await;
        // Never reads the body; holds the connection until the client gives up.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let file = temp_file(32 << 20);
    let start = Instant::now();
    let err = client(port).upload_artifact(&run(), "big.bin", &file).await.expect_err("stalled");
    let _ = std::fs::remove_file(&file);
    peer.abort();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("made no progress"), "{err}");
    assert!(start.elapsed() < IDLE * 4, "gave up only after {:?}", start.elapsed());
}

#[tokio::test]
async fn a_slow_download_outlasts_the_idle_timeout_and_a_stalled_one_fails() {
    let (listener, port) = listener();
    let len = 16 << 20;
    let peer = tokio::spawn(async move {
        // First connection: paced to the end. Second: a third of the body, then silence.
        for stall_at in [len, len / 3] {
            let (mut conn, _) = listener.accept().await.expect("accept");
            read_head(&mut conn).await;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n");
            conn.write_all(head.as_bytes()).await.expect("head");
            let piece = vec![7u8; PIECE];
            let mut sent = 0;
            while sent < stall_at {
                tokio::time::sleep(PACE).await;
                conn.write_all(&piece).await.expect("body");
                sent += PIECE;
            }
            if stall_at < len {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    });
    let dest = std::env::temp_dir().join(format!("mlflow-download-{}", std::process::id()));
    let client = client(port);

    let start = Instant::now();
    assert_eq!(client.download_artifact(&run(), "big.bin", &dest).await.expect("slow download"), len as u64);
    assert!(start.elapsed() > IDLE, "took {:?}: not slow enough to prove anything", start.elapsed());
    assert_eq!(std::fs::metadata(&dest).expect("downloaded").len(), len as u64);
    let _ = std::fs::remove_file(&dest);

    let err = client.download_artifact(&run(), "big.bin", &dest).await.expect_err("stalled");
    peer.abort();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(!dest.exists(), "a failed download must leave no file");
}

//! The server without libtorch: `fundus-serve` links none of it, starts with
//! no torch library on the loader path, answers `/readyz` and idles in a
//! fraction of the full binary's memory; `fundus serve` becomes it.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tests::{Harness, Stack};

fn libraries(bin: &str) -> String {
    let out = Command::new("ldd").arg(bin).output().expect("ldd (Debian package libc-bin)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).expect("VmRSS")
}

async fn ready(port: u16, child: &mut Child) {
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            return;
        }
        assert!(child.try_wait().expect("wait").is_none(), "the server exited");
        assert!(started.elapsed() < Duration::from_secs(30), "not ready after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_server_runs_without_libtorch() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let lean = env!("CARGO_BIN_EXE_fundus-serve");
    let libs = libraries(lean);
    assert!(!libs.contains("torch") && !libs.contains("libc10"), "fundus-serve links libtorch:\n{libs}");
    assert!(libraries(env!("CARGO_BIN_EXE_fundus")).contains("libtorch"), "the full binary links libtorch (else this test proves nothing)");

    // No torch library reachable: the loader path is emptied.
    let port = free_port();
    let mut c = h.command(lean, &[]);
    c.env("FUNDUS_LISTEN", format!("127.0.0.1:{port}")).env_remove("LD_LIBRARY_PATH");
    let mut child = c.spawn().expect("fundus-serve");
    ready(port, &mut child).await;
    let rss = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(rss < 64 * 1024, "fundus-serve idles at {} MiB", rss / 1024);

    // `fundus serve` execs it: the process answering is fundus-serve.
    let port = free_port();
    let mut c = h.command(env!("CARGO_BIN_EXE_fundus"), &["serve", "--listen", &format!("127.0.0.1:{port}")]);
    let mut child = c.spawn().expect("fundus serve");
    ready(port, &mut child).await;
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).expect("exe");
    let rss = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(exe.ends_with("fundus-serve"), "fundus serve is {}", exe.display());
    assert!(rss < 64 * 1024, "fundus serve idles at {} MiB", rss / 1024);
}

//! The Mesos client against a real Mesos 1.11 master and agent, directly and
//! through a proxy that re-chunks, stalls, drops, redirects and refuses.

use std::time::{Duration, Instant};

use mesos::proto::{Capability, FrameworkInfo};
use mesos::{Backoff, Call, Client, Event, Subscription};
use tests::Stack;
use tests::mesos::Mesos;
use tests::proxy::Proxy;

const GPU_AGENT: &str = "cpus:2;mem:2048;gpus:1";

fn framework(gpu: bool) -> FrameworkInfo {
    let mut capabilities = vec![Capability::new(Capability::MULTI_ROLE)];
    if gpu {
        capabilities.push(Capability::new(Capability::GPU_RESOURCES));
    }
    FrameworkInfo {
        user: "root".into(),
        name: "client-test".into(),
        roles: vec!["test".into()],
        failover_timeout: Some(60.0),
        capabilities,
        ..Default::default()
    }
}

async fn subscribed(sub: &mut Subscription) -> mesos::Id {
    match tokio::time::timeout(Duration::from_secs(20), sub.next()).await.expect("an event within 20 s").expect("an event") {
        Event::Subscribed(s) => s.framework_id,
        e => panic!("first event was {e:?}"),
    }
}

/// The next event that is not a heartbeat, within `limit`.
async fn next_real(sub: &mut Subscription, limit: Duration) -> Option<Event> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, sub.next()).await {
            Err(_) => return None,
            Ok(Ok(Event::Heartbeat)) => continue,
            Ok(r) => return Some(r.expect("stream healthy")),
        }
    }
}

#[tokio::test]
async fn only_a_framework_with_gpu_resources_gets_the_gpu_agents_offers() {
    let stack = Stack::shared();
    let m = Mesos::start(&stack, GPU_AGENT);
    let mut without = Client::new(&m.url()).expect("client");
    let mut sub = without.subscribe(&Call::subscribe(framework(false), None)).await.expect("subscribe");
    subscribed(&mut sub).await;
    let got = next_real(&mut sub, Duration::from_secs(6)).await;
    assert!(got.is_none(), "a framework without GPU_RESOURCES got {got:?}");
    drop(sub);

    let mut with = Client::new(&m.url()).expect("client");
    let mut sub = with.subscribe(&Call::subscribe(framework(true), None)).await.expect("subscribe");
    subscribed(&mut sub).await;
    match next_real(&mut sub, Duration::from_secs(10)).await {
        Some(Event::Offers(offers)) => {
            assert_eq!(offers.iter().map(|o| o.scalar("gpus")).sum::<f64>(), 1.0);
            assert!(offers[0].scalar("cpus") > 0.0);
        }
        e => panic!("expected offers with the GPU, got {e:?}"),
    }
}

#[tokio::test]
async fn the_stream_decodes_when_every_byte_is_its_own_chunk_and_calls_carry_the_stream_id() {
    let stack = Stack::shared();
    let m = Mesos::start(&stack, GPU_AGENT);
    let proxy = Proxy::start(m.addr()).await;
    proxy.set(|f| f.single_bytes = true);
    let mut client = Client::new(&proxy.url()).expect("client");
    let mut sub = client.subscribe(&Call::subscribe(framework(true), None)).await.expect("subscribe");
    let fw = subscribed(&mut sub).await;
    let offers = match next_real(&mut sub, Duration::from_secs(10)).await {
        Some(Event::Offers(o)) => o,
        e => panic!("expected offers, got {e:?}"),
    };
    // A call on the second connection, with the stream id: accepted (202).
    let caller = sub.caller();
    caller.call(&Call::decline(&fw, offers.iter().map(|o| o.id.clone()).collect(), 1.0)).await.expect("DECLINE accepted");
    caller.call(&Call::suppress(&fw, vec!["test".into()])).await.expect("SUPPRESS accepted");
    // A call with a wrong stream id is refused by the master: the header matters.
    let forged = serde_json::to_vec(&Call::revive(&fw, vec!["test".into()])).expect("json");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/scheduler", m.url()))
        .header("Content-Type", "application/json")
        .header("Mesos-Stream-Id", "00000000-0000-0000-0000-000000000000")
        .body(forged)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap_or_default());
}

#[tokio::test]
async fn a_stalled_stream_trips_the_watchdog_and_a_resubscription_recovers() {
    let stack = Stack::shared();
    let m = Mesos::start(&stack, GPU_AGENT);
    let proxy = Proxy::start(m.addr()).await;
    // The master's heartbeat is 15 s; 1.2 missed heartbeats is 18 s of silence.
    proxy.set(|f| f.stall_after = Some((1, Duration::from_secs(40))));
    let mut client = Client::new(&proxy.url()).expect("client").with_missed_heartbeats(1.2);
    let mut info = framework(true);
    let mut sub = client.subscribe(&Call::subscribe(info.clone(), Some(vec!["test".into()]))).await.expect("subscribe");
    let fw = subscribed(&mut sub).await;
    let start = Instant::now();
    let err = loop {
        match sub.next().await {
            Ok(Event::Heartbeat) => continue,
            Ok(e) => panic!("nothing should arrive during the stall, got {e:?}"),
            Err(e) => break e,
        }
    };
    let waited = start.elapsed();
    assert!(matches!(err, mesos::Error::HeartbeatTimeout(_)), "{err}");
    assert!(waited >= Duration::from_secs(17) && waited < Duration::from_secs(25), "watchdog fired after {waited:?}");
    // Resubscribing as the same framework (failover) works through the same proxy.
    info.id = Some(fw.clone());
    let mut again = client.subscribe(&Call::subscribe(info, None)).await.expect("resubscribe");
    assert_eq!(subscribed(&mut again).await, fw);
}

#[tokio::test]
async fn a_stream_dropped_mid_record_is_an_error_not_a_garbled_event() {
    let stack = Stack::shared();
    let m = Mesos::start(&stack, GPU_AGENT);
    let proxy = Proxy::start(m.addr()).await;
    // Record 0 is SUBSCRIBED, record 1 the OFFERS: cut in the middle of it.
    proxy.set(|f| f.drop_in_record = Some(1));
    let mut client = Client::new(&proxy.url()).expect("client");
    let mut info = framework(true);
    let mut sub = client.subscribe(&Call::subscribe(info.clone(), None)).await.expect("subscribe");
    let fw = subscribed(&mut sub).await;
    let r = tokio::time::timeout(Duration::from_secs(20), sub.next()).await.expect("the cut arrives");
    match r {
        Err(mesos::Error::StreamEnded | mesos::Error::Stream(_)) => {}
        other => panic!("expected the stream to end with an error, got {other:?}"),
    }
    info.id = Some(fw.clone());
    let mut again = client.subscribe(&Call::subscribe(info, None)).await.expect("resubscribe");
    assert_eq!(subscribed(&mut again).await, fw);
    assert!(matches!(next_real(&mut again, Duration::from_secs(10)).await, Some(Event::Offers(_))));
}

#[tokio::test]
async fn a_307_moves_the_client_to_the_leader_and_503s_are_retried_with_backoff() {
    let stack = Stack::shared();
    let m = Mesos::start(&stack, GPU_AGENT);
    let leader = Proxy::start(m.addr()).await;
    let follower = Proxy::start(m.addr()).await;
    follower.set(|f| f.redirect_to = Some(leader.addr));
    let mut client = Client::new(&follower.url()).expect("client");
    let mut sub = client.subscribe(&Call::subscribe(framework(true), None)).await.expect("subscribe via a redirect");
    let fw = subscribed(&mut sub).await;
    assert_eq!(client.master().as_str(), format!("{}/", leader.url()));
    assert_eq!((follower.subscribes(), leader.subscribes()), (1, 1));
    // Calls go to the leader too.
    sub.caller().call(&Call::suppress(&fw, vec!["test".into()])).await.expect("call to the leader");
    drop(sub);

    // Three 503s, then a normal answer: retried with growing delays.
    leader.set(|f| f.unavailable = 3);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
    let mut info = framework(true);
    info.id = Some(fw.clone());
    let start = Instant::now();
    let mut refusals = 0;
    let mut sub = loop {
        match client.subscribe(&Call::subscribe(info.clone(), None)).await {
            Ok(s) => break s,
            Err(mesos::Error::Unavailable(..)) => {
                refusals += 1;
                assert!(refusals <= 3, "more 503s than the proxy sent");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    };
    assert_eq!(refusals, 3);
    // 200 + 400 + 800 ms at full delay, at least half of each with jitter.
    assert!(start.elapsed() >= Duration::from_millis(700), "{:?}", start.elapsed());
    assert_eq!(subscribed(&mut sub).await, fw);
}

#[tokio::test]
async fn the_master_refuses_what_the_reference_says_it_refuses() {
    // The wire facts the client is built on, checked against the real master:
    // a Content-Type with parameters is refused, and so is SUBSCRIBE carrying a stream id.
    let stack = Stack::shared();
    let m = Mesos::start(&stack, GPU_AGENT);
    let body = serde_json::to_vec(&Call::subscribe(framework(true), None)).expect("json");
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/scheduler", m.url());
    let r = http.post(&url).header("Content-Type", "application/json; charset=utf-8").body(body.clone()).send().await.expect("post");
    assert_eq!(r.status(), 415);
    let r = http.post(&url).header("Content-Type", "application/json").header("Mesos-Stream-Id", "x").body(body).send().await.expect("post");
    assert_eq!(r.status(), 400);
    // An unknown framework id on a call.
    let r = http
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Mesos-Stream-Id", "x")
        .body(serde_json::to_vec(&Call::teardown(&mesos::Id::new("nope"))).expect("json"))
        .send()
        .await
        .expect("post");
    assert!(r.status() == 400 || r.status() == 403, "{}", r.status());
}

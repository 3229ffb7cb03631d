//! Every example in the shared wire reference (each checked against the real
//! v1 protos) decodes, and every call re-encodes to the same JSON.

use mesos::{Call, Event, TaskState};
use serde_json::Value;

fn examples() -> Vec<(String, String, Value)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire-examples.json");
    let text = std::fs::read_to_string(path).expect("wire-examples.json");
    let all: Vec<Value> = serde_json::from_str(&text).expect("valid JSON");
    all.into_iter()
        .map(|e| (e["name"].as_str().expect("name").to_owned(), e["kind"].as_str().expect("kind").to_owned(), e["json"].clone()))
        .collect()
}

#[test]
fn every_event_decodes_to_its_own_variant() {
    let mut seen = 0;
    for (name, kind, json) in examples() {
        if kind != "Event" {
            continue;
        }
        seen += 1;
        let event = Event::decode(json.to_string().as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ty = json["type"].as_str().expect("type");
        match (ty, &event) {
            ("SUBSCRIBED", Event::Subscribed(s)) => {
                assert_eq!(s.framework_id.value, "2f1e-0000");
                assert_eq!(s.heartbeat_interval_seconds, Some(15.0));
            }
            ("HEARTBEAT", Event::Heartbeat) => {}
            ("OFFERS", Event::Offers(offers)) => {
                assert_eq!(offers.len(), 1, "{name}");
                assert_eq!(offers[0].scalar("gpus"), 2.0);
                assert_eq!(offers[0].scalar("cpus"), 16.0);
                assert_eq!(offers[0].agent_id.value, "a1b2-S0");
            }
            ("RESCIND", Event::Rescind { offer_id }) => assert_eq!(offer_id.value, "2f1e-O7"),
            ("UPDATE", Event::Update(s)) => {
                // The reliable update carries a uuid to acknowledge; the master's own does not.
                let fw = mesos::Id::new("2f1e-0000");
                if s.state == TaskState::Running {
                    assert_eq!(s.uuid.as_deref(), Some("1B2M2Y8AsgTpgAmY7PhCfg=="));
                    let ack = Call::acknowledge(&fw, s).expect("acknowledged");
                    assert_eq!(ack.acknowledge.expect("body").uuid, "1B2M2Y8AsgTpgAmY7PhCfg==");
                } else {
                    assert_eq!(s.state, TaskState::Error);
                    assert!(s.state.is_terminal());
                    assert_eq!(s.reason.as_deref(), Some("REASON_TASK_INVALID"));
                    assert!(Call::acknowledge(&fw, s).is_none(), "{name}: no uuid, no ACKNOWLEDGE");
                }
            }
            ("FAILURE", Event::Failure { status, .. }) => assert_eq!(*status, Some(137)),
            ("ERROR", Event::Error(m)) => assert_eq!(m, "Framework has been removed"),
            _ => panic!("{name}: decoded as {event:?}"),
        }
    }
    assert_eq!(seen, 8);
}

#[test]
fn every_call_round_trips_exactly() {
    let mut seen = 0;
    for (name, kind, json) in examples() {
        if kind != "Call" {
            continue;
        }
        seen += 1;
        let call: Call = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = serde_json::to_value(&call).expect("serialises");
        assert_eq!(again, json, "{name}: re-encoded differently");
    }
    assert_eq!(seen, 12);
}

#[test]
fn calls_built_by_the_constructors_match_the_reference() {
    let by_name = |n: &str| examples().into_iter().find(|(name, _, _)| name.starts_with(n)).expect(n).2;
    let fw = mesos::Id::new("2f1e-0000");
    let check = |call: Call, want: Value| assert_eq!(serde_json::to_value(&call).expect("json"), want);
    check(Call::reconcile(&fw, vec![]), by_name("RECONCILE implicit"));
    check(
        Call::reconcile(&fw, vec![mesos::proto::ReconcileTask { task_id: mesos::Id::new("infer-0"), agent_id: Some(mesos::Id::new("a1b2-S0")) }]),
        by_name("RECONCILE explicit"),
    );
    check(Call::decline(&fw, vec![mesos::Id::new("2f1e-O9"), mesos::Id::new("2f1e-O10")], 300.0), by_name("DECLINE"));
    check(Call::suppress(&fw, vec!["infer".into()]), by_name("SUPPRESS"));
    check(Call::revive(&fw, vec!["infer".into()]), by_name("REVIVE"));
    check(Call::kill(&fw, mesos::Id::new("infer-0"), Some(mesos::Id::new("a1b2-S0")), Some(10.0)), by_name("KILL"));
    check(Call::teardown(&fw), by_name("TEARDOWN"));
    // Failover SUBSCRIBE: the id at the top level and in framework_info.
    let sub: Call = serde_json::from_value(by_name("SUBSCRIBE (failover")).expect("call");
    let info = sub.subscribe.expect("subscribe").framework_info;
    check(Call::subscribe(info, None), by_name("SUBSCRIBE (failover"));
}

#[test]
fn unknown_fields_and_states_are_tolerated() {
    let json = br#"{"type":"UPDATE","extra":1,"update":{"status":{"task_id":{"value":"t"},"state":"TASK_SOMETHING_NEW","new_field":{"x":1}}}}"#;
    match Event::decode(json).expect("decodes") {
        Event::Update(s) => assert_eq!(s.state, TaskState::Unrecognized),
        e => panic!("{e:?}"),
    }
    match Event::decode(br#"{"type":"INVERSE_OFFERS","inverse_offers":{"inverse_offers":[]}}"#).expect("decodes") {
        Event::Other { kind, .. } => assert_eq!(kind, "INVERSE_OFFERS"),
        e => panic!("{e:?}"),
    }
    assert!(Event::decode(br#"{"type":"OFFERS"}"#).is_err(), "OFFERS without offers");
    assert!(Event::decode(b"not json").is_err());
    // int64 as a numeric string, as the master accepts and some writers send.
    let d: mesos::proto::DurationInfo = serde_json::from_str(r#"{"nanoseconds":"30000000000"}"#).expect("string int64");
    assert_eq!(d.nanoseconds, 30_000_000_000);
}

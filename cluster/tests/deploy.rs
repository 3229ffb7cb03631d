//! The deployment files under `deploy/` use only fields Marathon (v2 apps) and
//! Metronome (v1 jobs and schedules) accept, with the types and values they
//! accept, as listed in `deploy/schema/` (taken from their API definitions).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Schema(Map<String, Value>);

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Schema {
    fn load(name: &str) -> Schema {
        let v = read(&root().join("deploy/schema").join(name));
        Schema(v["fields"].as_object().unwrap_or_else(|| panic!("{name}: no fields")).clone())
    }

    /// Every problem with `v` at `path`, as "path: what".
    fn check(&self, path: &str, v: &Value, errors: &mut Vec<String>) {
        let Some(entry) = self.0.get(path) else {
            errors.push(format!("{path:?}: not a field Marathon/Metronome accept"));
            return;
        };
        let types: Vec<&str> = match &entry["type"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            t => panic!("{path}: bad type {t}"),
        };
        let t = type_of(v);
        if !types.contains(&t) && !(t == "integer" && types.contains(&"number")) {
            errors.push(format!("{path}: {t} where {types:?} is expected"));
            return;
        }
        if let (Some(allowed), Value::String(s)) = (entry["enum"].as_array(), v)
            && !allowed.iter().any(|a| a.as_str() == Some(s))
        {
            errors.push(format!("{path}: {s:?} is not one of {allowed:?}"));
        }
        if let Some(n) = v.as_f64() {
            if entry["min"].as_f64().is_some_and(|m| n < m) || entry["max"].as_f64().is_some_and(|m| n > m) {
                errors.push(format!("{path}: {n} out of range"));
            }
        }
        if entry["open"].as_bool() == Some(true) {
            return;
        }
        let child = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
        match v {
            Value::Array(items) => {
                if entry["minItems"].as_u64().is_some_and(|m| (items.len() as u64) < m)
                    || entry["maxItems"].as_u64().is_some_and(|m| (items.len() as u64) > m)
                {
                    errors.push(format!("{path}: {} items", items.len()));
                }
                for item in items {
                    self.check(&format!("{path}[]"), item, errors);
                }
            }
            Value::Object(members) => match entry["keys"].as_array() {
                Some(keys) => {
                    for (k, val) in members {
                        if keys.iter().any(|x| x.as_str() == Some(k)) {
                            self.check(&child(k), val, errors);
                        } else {
                            errors.push(format!("{path:?}: unknown field {k:?}"));
                        }
                    }
                    for r in entry["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !members.contains_key(r) {
                            errors.push(format!("{path:?}: required field {r:?} missing"));
                        }
                    }
                }
                None => {
                    for val in members.values() {
                        self.check(&child("*"), val, errors);
                    }
                }
            },
            _ => {}
        }
    }

    fn errors(&self, v: &Value) -> Vec<String> {
        let mut e = Vec::new();
        self.check("", v, &mut e);
        e
    }
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("deploy folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    f.sort();
    f
}

#[test]
fn every_deploy_file_matches_the_schema_of_what_reads_it() {
    let app = Schema::load("marathon-app.json");
    let job = Schema::load("metronome-job.json");
    let schedule = Schema::load("metronome-schedule.json");
    let mut checked = 0;
    for p in files("deploy/marathon") {
        let e = app.errors(&read(&p));
        assert!(e.is_empty(), "{}:\n{}", p.display(), e.join("\n"));
        checked += 1;
    }
    for p in files("deploy/metronome") {
        let schema = if p.to_string_lossy().ends_with(".schedule.json") { &schedule } else { &job };
        let e = schema.errors(&read(&p));
        assert!(e.is_empty(), "{}:\n{}", p.display(), e.join("\n"));
        checked += 1;
    }
    assert!(checked >= 5, "{checked} files");
}

#[test]
fn the_checker_rejects_what_marathon_would() {
    let app = Schema::load("marathon-app.json");
    let good = read(&root().join("deploy/marathon/fundus-serve.json"));
    assert!(app.errors(&good).is_empty());
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        change(&mut v);
        app.errors(&v)
    };
    assert!(!broken(&|v| v["instance"] = Value::from(2)).is_empty(), "a misspelt field");
    assert!(!broken(&|v| v["instances"] = Value::from("2")).is_empty(), "a string for a number");
    assert!(!broken(&|v| v["instances"] = Value::from(-1)).is_empty(), "below the minimum");
    assert!(!broken(&|v| v["healthChecks"][0]["protocol"] = Value::from("GRPC2")).is_empty(), "an unknown protocol");
    assert!(!broken(&|v| v["healthChecks"][0]["path"] = Value::from(3)).is_empty(), "a nested type");
    assert!(!broken(&|v| { v.as_object_mut().expect("object").remove("id"); }).is_empty(), "a required field");
}
